"""Command line: ``sediment-xr run CONFIG.yaml`` and ``sediment-xr demo``.

Errors a user can make (the input, the config, the output folder, credentials and storage
that cannot be reached) end with one line on stderr naming the problem, what was seen and the
fix, and exit code 2.  A failure of the machine (disk full, out of memory) ends with one line
and exit code 1; running the same command again resumes.  ``--debug`` shows the traceback
instead.  Warnings are one line each (``sediment-xr: warning: ...``); warnings of the
libraries underneath are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1
#: ``--scheduler`` values that compute in this process (no cluster): dask's own schedulers.
IN_PROCESS_SCHEDULERS = ("synchronous", "threads")
# A task may use this share of its thread's part of dask.memory_limit (dask spills at 60 %).
_TASK_MEMORY_SHARE = 0.5
# Bytes per pixel of a frame held by one task: the RGB frames, their preprocessed features
# (up to the same size), labels (1 byte) and working copies.
_TASK_BYTES_PER_PIXEL = 8
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sediment-xr",
        description="Percent cover of seafloor time-lapse video and stills, and its trend.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="address of an existing dask scheduler (e.g. tcp://10.0.0.5:8786), or "
            "'synchronous' or 'threads' to compute in this process (small inputs, "
            "debugging); default: an embedded LocalCluster of worker processes",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an output made with a different config (only files the tool wrote)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    run = sub.add_parser("run", help="run the pipeline of a YAML config")
    run.add_argument("config", help="YAML config file (see configs/)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set cluster.n_clusters=5 (repeatable)",
    )
    common(run)

    demo = sub.add_parser("demo", help="run the whole pipeline on the bundled sample")
    demo.add_argument(
        "--output",
        default="sediment_xr_demo",
        help="output folder (default: ./sediment_xr_demo)",
    )
    demo.add_argument(
        "--frames", type=int, default=48, help="number of frames of the sample (default 48)"
    )
    common(demo)
    return parser


@contextlib.contextmanager
def _dask_client(scheduler: str | None, dask_config, quiet: bool = False) -> Iterator[object]:
    """Connect to ``scheduler`` or start an embedded LocalCluster on 127.0.0.1."""
    from distributed import Client, LocalCluster

    from sediment_xr.exceptions import ConfigError

    address = scheduler or dask_config.scheduler
    if address in IN_PROCESS_SCHEDULERS:
        import dask

        workers = dask_config.n_workers * dask_config.threads_per_worker
        with dask.config.set(scheduler=address, num_workers=workers):
            yield None
        return
    if address:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(
                f"could not connect to the dask scheduler at {address} ({err}). Check the "
                "address, or leave out --scheduler to use a local cluster."
            ) from err
        with client:
            yield client
        return
    # Our worker tasks are single threaded; keep OpenCV/BLAS from oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    with (
        LocalCluster(
            n_workers=dask_config.n_workers,
            threads_per_worker=dask_config.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port: never clashes with another cluster
            memory_limit=dask_config.memory_limit,
        ) as cluster,
        Client(cluster) as client,
    ):
        if not quiet:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
        yield client


def _cmd_run(args: argparse.Namespace) -> int:
    from sediment_xr.config import load_config
    from sediment_xr.io import config_names
    from sediment_xr.pipeline import check, run

    config = load_config(args.config, args.overrides)
    args.output_folder = config.output  # named by errors of the machine (disk full)
    address = args.scheduler or config.dask.scheduler
    with config_names():  # messages name config keys (ingest.resize), not Python arguments
        _check_locations(config, overwrite=args.overwrite)
        # Bad input fails here, before a cluster starts or a file is written.
        source = check(config)
        _check_task_memory(config, source, address)
        with _dask_client(args.scheduler, config.dask, quiet=args.quiet):
            result = run(config, overwrite=args.overwrite, progress=not args.quiet, source=source)
    print(result.output)
    return 0


def _literal_prefix(path: str) -> str:
    """The part of a path or glob pattern before its first wildcard component."""
    parts = path.replace("\\", "/").split("/")
    keep = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        keep.append(part)
    return "/".join(keep) or "."


def _check_locations(config: Any, *, overwrite: bool) -> None:
    """Refuse an output that is a file, links out of its folder or holds the input.

    Also checks that a URL input's storage answers and that a URL output's bucket exists,
    so that bad credentials, a wrong endpoint or a time-out give one line naming the URL
    before anything is opened or written.
    """
    from sediment_xr.exceptions import ConfigError, OutputError
    from sediment_xr.io import _OBJECT_STORES, _storage_errors, _url_to_fs
    from sediment_xr.pipeline import OUTPUT_FILES

    options = dict(config.storage_options)
    if "://" in config.input:
        fs, path = _url_to_fs(config.input, options)
        with _storage_errors(config.input):
            fs.exists(_literal_prefix(path))
    out = config.output
    if "://" in out:
        fs, path = _url_to_fs(out, options)
        protocol = out.split("://", 1)[0].lower()
        bucket = path.strip("/").split("/", 1)[0]
        if protocol in _OBJECT_STORES and bucket:
            with _storage_errors(out):
                found = fs.exists(bucket)
            if not found:
                raise OutputError(
                    f"output {out}: there is no bucket {bucket!r} (or these credentials cannot "
                    "see it), and sediment-xr does not create buckets. Create it first, or fix "
                    "the bucket name in output."
                )
        return
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"output {out} is a file, but output needs a folder (created if missing). Give a "
            "folder path, e.g. output: results/run1."
        )
    real = folder.resolve()
    names = sorted({*OUTPUT_FILES, *(name.split("/")[0] for name in OUTPUT_FILES)})
    for name in names:
        item = folder / name
        if item.is_symlink() and not item.resolve().is_relative_to(real):
            raise OutputError(
                f"output {out} holds {name}, a symbolic link to {item.resolve()} outside the "
                "output folder, and sediment-xr writes only inside its output folder. Remove "
                "the link, or give the folder it points to as output."
            )
    if "://" not in config.input:
        source = Path(_literal_prefix(config.input)).resolve()
        for name in OUTPUT_FILES:
            own = real / name
            if source == own or source.is_relative_to(own):
                what = "replaces" if overwrite else "writes"
                raise ConfigError(
                    f"input {config.input} is {name} of the output folder {out}, which a run "
                    f"there {what}. Copy the input out of the output folder, or choose another "
                    "output."
                )
        folder = source if source.is_dir() else source.parent
        if real == folder or ("**" in config.input and real.is_relative_to(folder)):
            raise ConfigError(
                f"output {out} is {'the input folder' if real == folder else 'inside the input'}"
                f" {folder} of {config.input}, so files a run writes (segmented PNGs, the "
                "video) could be read as input by the next run. Choose an output folder "
                "outside the input folder."
            )


def _memory_per_thread(dask_config: Any) -> float:
    """Bytes of ``dask.memory_limit`` each worker thread may use."""
    from dask.utils import parse_bytes

    limit = dask_config.memory_limit
    if str(limit).lower() == "auto":
        from distributed.system import MEMORY_LIMIT

        total = MEMORY_LIMIT / dask_config.n_workers
    else:
        total = parse_bytes(limit)
    return total / dask_config.threads_per_worker


def _check_task_memory(config: Any, source: Any, address: str | None) -> None:
    """Refuse chunks whose tasks would not fit the memory limit of a worker thread.

    Checked for the embedded LocalCluster only: an existing scheduler sets its workers'
    limits, and in-process schedulers have none. (:func:`sediment_xr.pipeline.check` also
    refuses chunks over a fixed size, for every scheduler and the Python API.)
    """
    from dask.utils import format_bytes

    from sediment_xr.exceptions import ConfigError

    if address:  # an existing scheduler sets its workers' limits; in-process has none
        return
    frames = max(source.data.chunks[0]) if source.sizes["time"] else 0
    pixels = source.sizes["y"] * source.sizes["x"]
    need = frames * pixels * _TASK_BYTES_PER_PIXEL
    budget = _memory_per_thread(config.dask) * _TASK_MEMORY_SHARE
    if need <= budget:
        return
    fits = int(budget // (pixels * _TASK_BYTES_PER_PIXEL))
    fix = (
        f"Use ingest.chunk_frames: {fits}, or a larger dask.memory_limit"
        if fits >= 1
        else "Give ingest.resize (e.g. [1024, 1024]), or a larger dask.memory_limit"
    )
    raise ConfigError(
        f"ingest.chunk_frames: {config.ingest.chunk_frames or 'auto'} puts {frames} frames of "
        f"{source.sizes['x']}x{source.sizes['y']} pixels in each task, about "
        f"{format_bytes(need)}, more than half of what a worker thread may use "
        f"(dask.memory_limit {config.dask.memory_limit} / threads_per_worker "
        f"{config.dask.threads_per_worker}). {fix}."
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from sediment_xr.demo import run_demo

    path = run_demo(
        args.output,
        n_frames=args.frames,
        scheduler=args.scheduler,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(path)
    return 0


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line (``warnings.showwarning`` of the command line)."""
    from sediment_xr.exceptions import SedimentXRWarning

    text = _one_line(message)
    if not issubclass(category, SedimentXRWarning):
        text = f"{category.__name__}: {text} ({filename}:{lineno})"
    print(f"sediment-xr: warning: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _warnings_as_lines(debug: bool) -> Iterator[None]:
    """Show sediment_xr's warnings as one line each; other libraries' only with ``--debug``."""
    from sediment_xr.exceptions import SedimentXRWarning

    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
        warnings.filterwarnings("default", category=SedimentXRWarning)
        warnings.showwarning = _show_warning
        yield


def _failure(err: BaseException, output: str | None = None) -> tuple[str, int] | None:
    """The error line and exit code of an exception the user can act on, or None.

    `output` is the run's output folder, named when the error does not name a file.
    """
    from sediment_xr.exceptions import SedimentXRError
    from sediment_xr.io import storage_error

    if isinstance(err, SedimentXRError):
        return _one_line(err), EXIT_USAGE
    filename = getattr(err, "filename", None) or ""
    if isinstance(err, OSError) and err.errno in _NO_SPACE:
        where = f" {filename}" if filename else f" in {output}" if output else ""
        return (
            f"no space left to write{where} ({err.strerror or err}). Free some space, or "
            "choose an output folder on a larger disk, then run the same command again to "
            "resume: finished work is kept.",
            EXIT_FAILURE,
        )
    if type(err).__name__ == "KilledWorker":  # distributed: a task kept killing its worker
        return (
            "a dask worker died again and again while computing (most often out of memory). "
            "Use a smaller ingest.chunk_frames or give ingest.resize, or a larger "
            "dask.memory_limit, then run the same command again to resume.",
            EXIT_FAILURE,
        )
    if isinstance(err, MemoryError):
        return (
            "ran out of memory. Use a smaller ingest.chunk_frames or give ingest.resize, or "
            "run with more memory (dask.memory_limit), then run the same command again to "
            "resume.",
            EXIT_FAILURE,
        )
    failure = storage_error(err, filename or "the input or output storage")
    if failure is not None:
        return _one_line(failure), EXIT_USAGE
    if isinstance(err, OSError):
        where = f" ({filename})" if filename else ""
        return (
            f"{_one_line(err.strerror or err)}{where}. Check the path, permissions and free "
            "space, then run the same command again to resume.",
            EXIT_FAILURE,
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sediment-xr`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with _warnings_as_lines(args.debug):
            if args.command == "run":
                return _cmd_run(args)
            return _cmd_demo(args)
    except KeyboardInterrupt:
        print("sediment-xr: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as err:
        failure = None if args.debug else _failure(err, getattr(args, "output_folder", None))
        if failure is None:
            raise
        message, code = failure
        print(f"sediment-xr: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
