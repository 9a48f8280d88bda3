"""Command line: ``sediment-xr run CONFIG.yaml``, ``demo`` and ``evaluate OUTPUT``.

Errors a user can make (the input, the config, the output folder, credentials and storage
that cannot be reached) end with one line on stderr naming the problem, what was seen and the
fix, and exit code 2.  A failure of the machine (disk full, out of memory) ends with one line
and exit code 1; running the same command again resumes.  ``--debug`` shows the traceback
instead.  SIGINT (Ctrl-C) and SIGTERM stop a command cleanly: a run's submitted tasks are
cancelled and its lock released, one line is printed and the exit code is 130 (SIGINT) or
143 (SIGTERM); the same command resumes.  Warnings are one line each (``sediment-xr:
warning: ...``); warnings of the libraries underneath are shown only with ``--debug``.

Nothing printed holds a secret: every error, warning and stage message, and the output
path, goes through :func:`sediment_xr._redact.redact` (URLs without user-info or query
values), and once a config is read the values of its storage options and URL credentials
are replaced wherever a library underneath would echo them
(:func:`sediment_xr._redact.secret_values`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1
#: Exit codes of a run stopped by SIGINT (Ctrl-C) and SIGTERM: 128 + the signal's number.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_MAX_MAPPING_BYTES = 1_000_000


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

    evaluate = sub.add_parser(
        "evaluate",
        help="score a finished run against reference masks or point annotations",
        description="Score a finished run's labels against labelled masks or CoralNet-style "
        "points; writes one tidy table (CSV) and prints a summary. Masks and points are "
        "matched to the run's stills by name stem (foo.png -> foo.jpg), or to frames by "
        "number (frame_000012.png).",
    )
    evaluate.add_argument("output", help="output folder of a finished `sediment-xr run`")
    reference = evaluate.add_mutually_exclusive_group(required=True)
    reference.add_argument("--masks", metavar="DIR", help="folder of mask images (PNG)")
    reference.add_argument(
        "--points", metavar="FILE.csv", help="CSV with columns Name, Row, Column, Label"
    )
    evaluate.add_argument(
        "--mapping",
        metavar="FILE.yaml",
        help="class name -> mask values or colours (needed with --masks), or -> point label "
        "codes; optional keys `classes:` and `threshold:` (see the README)",
    )
    evaluate.add_argument(
        "--threshold",
        type=int,
        metavar="N",
        help="threshold-coded RGB masks: each channel >= N is 1, value R*4+G*2+B (SUIM: 128)",
    )
    evaluate.add_argument(
        "--match",
        choices=["auto", "names", "majority"],
        default="auto",
        help="clusters to classes: the run's classes (names), by majority of the reference "
        "(majority), or names when they fit and majority when the run has none of them (auto, "
        "the default)",
    )
    evaluate.add_argument(
        "--table",
        default="evaluation.csv",
        metavar="FILE.csv",
        help="where to write the table (default: ./evaluation.csv, replaced if it exists; "
        "'-' for standard output)",
    )
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    evaluate.set_defaults(quiet=False)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from sediment_xr._redact import redact, secret_values
    from sediment_xr.config import load_config
    from sediment_xr.pipeline import check, run
    from sediment_xr.scheduler import dask_client

    config = load_config(args.config, args.overrides)
    args.output_folder = config.output  # named by errors of the machine (disk full)
    args.secrets.update(secret_values(config.to_dict()))  # replaced in what is printed
    _check_locations(config, overwrite=args.overwrite)
    # Bad input fails here, before a cluster starts or a file is written.
    own_cluster = not (args.scheduler or config.dask.scheduler)
    frames = check(config, own_cluster=own_cluster)
    with dask_client(args.scheduler, config.dask):
        result = run(config, overwrite=args.overwrite, progress=not args.quiet, frames=frames)
    print(redact(result.output, args.secrets))
    return 0


def _read_mapping(path: str) -> tuple[dict[str, Any], int | None]:
    """The classes and threshold of a mapping file (see :func:`_cmd_evaluate`)."""
    from sediment_xr._yaml import parse
    from sediment_xr.exceptions import ConfigError

    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"mapping file {path} does not exist; --mapping needs a YAML file of class names "
            "and their mask values or label codes. Check the path."
        )
    if file.stat().st_size > _MAX_MAPPING_BYTES:
        raise ConfigError(
            f"mapping file {path} is {file.stat().st_size} bytes, but a mapping is a small YAML "
            "file of class names and values. Give the mapping, not the masks."
        )
    data = parse(file.read_text(encoding="utf-8", errors="replace"), f"mapping file {path}")
    example = "classes: {bio: [5, 2], sediment: 7}"
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"mapping file {path} needs a mapping of class names to mask values or label "
            f"codes, but holds {type(data).__name__}. Write e.g. {example}."
        )
    if "classes" in data and set(data) <= {"classes", "threshold"}:
        threshold = data.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int)
        ):
            raise ConfigError(
                f"mapping file {path}: threshold needs a whole number (e.g. 128), but got "
                f"{threshold!r}. Write e.g. threshold: 128."
            )
        return data["classes"], threshold
    return data, None


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sediment_xr.evaluate import evaluate_run, summary_text
    from sediment_xr.exceptions import NAMED, ConfigError, SedimentXRError, setting

    if args.masks and not args.mapping:
        raise ConfigError(
            "--masks needs --mapping FILE.yaml (class names with their mask values, e.g. "
            "classes: {bio: [5, 2], sediment: 7}), but got none. Give --mapping."
        )
    mapping, threshold = _read_mapping(args.mapping) if args.mapping else (None, None)
    if args.threshold is not None:
        threshold = args.threshold
    to_stdout = args.table == "-"
    if not to_stdout:
        target = Path(args.table)
        if target.is_dir() or not target.parent.is_dir():
            seen = "it is a folder" if target.is_dir() else f"there is no folder {target.parent}"
            raise ConfigError(
                f"--table {args.table}: {seen}, but --table needs a file path in an existing "
                "folder. Give e.g. --table evaluation.csv."
            )
    try:
        table = evaluate_run(
            args.output,
            masks=args.masks,
            points=args.points,
            mapping=mapping,
            threshold=threshold,
            match=args.match,
        )
    except SedimentXRError as err:  # settings named as options: --match majority
        text = str(err)
        for name, value in err.settings:
            if name in ("match", "threshold") and value is not NAMED:
                text = text.replace(setting(name, value), f"--{name} {value}")
        raise type(err)(text) from err
    text = table.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S")
    if to_stdout:
        sys.stdout.write(text)
        print(summary_text(table), file=sys.stderr)
    else:
        Path(args.table).write_text(text, encoding="utf-8")
        print(summary_text(table))
        print(f"table: {args.table}")
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
    from sediment_xr._fs import OBJECT_STORES, storage_errors, url_to_fs
    from sediment_xr.exceptions import ConfigError, OutputError
    from sediment_xr.store import OUTPUT_FILES

    for given in config.inputs:  # one input, or each recording of a list
        if "://" in given:
            fs, path = url_to_fs(given, config.input_options)
            with storage_errors(given):
                fs.exists(_literal_prefix(path))
    out = config.output
    if "://" in out:
        fs, path = url_to_fs(out, config.output_options)
        protocol = out.split("://", 1)[0].lower()
        bucket = path.strip("/").split("/", 1)[0]
        if protocol in OBJECT_STORES and bucket:
            with storage_errors(out):
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
    for given in config.inputs:
        if "://" not in given:
            _check_input_outside(given, out, real, overwrite=overwrite)


def _check_input_outside(given: str, out: str, real: Path, *, overwrite: bool) -> None:
    """Refuse a local input inside the output folder, or an output in the input's folder."""
    from sediment_xr.exceptions import ConfigError
    from sediment_xr.store import OUTPUT_FILES

    source = Path(_literal_prefix(given)).resolve()
    for name in OUTPUT_FILES:
        own = real / name
        if source == own or source.is_relative_to(own):
            what = "replaces" if overwrite else "writes"
            raise ConfigError(
                f"input {given} is {name} of the output folder {out}, which a run "
                f"there {what}. Copy the input out of the output folder, or choose another "
                "output."
            )
    folder = source if source.is_dir() else source.parent
    if real == folder or ("**" in given and real.is_relative_to(folder)):
        raise ConfigError(
            f"output {out} is {'the input folder' if real == folder else 'inside the input'}"
            f" {folder} of {given}, so files a run writes (segmented PNGs, the "
            "video) could be read as input by the next run. Choose an output folder "
            "outside the input folder."
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


def _one_line(text: Any, secrets: Collection[str] = ()) -> str:
    """Text as one line, without secrets (:func:`sediment_xr._redact.redact`)."""
    from sediment_xr._redact import redact

    return " ".join(redact(str(text), secrets).split())


def _show_warning(
    message, category, filename, lineno, file=None, line=None, *, secrets=()
) -> None:
    """Print a warning as one line (``warnings.showwarning`` of the command line)."""
    from sediment_xr.config import reword
    from sediment_xr.exceptions import SedimentXRWarning

    text = _one_line(reword(message) if isinstance(message, Warning) else message, secrets)
    if not issubclass(category, SedimentXRWarning):
        text = f"{category.__name__}: {text} ({filename}:{lineno})"
    print(f"sediment-xr: warning: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _warnings_as_lines(debug: bool, secrets: Collection[str] = ()) -> Iterator[None]:
    """Show sediment_xr's warnings as one line each; other libraries' only with ``--debug``.

    That includes what distributed logs at warning level, here and in the workers of the
    embedded cluster (:class:`sediment_xr.scheduler.EmbeddedWorkers`); the workers of an
    existing cluster log as that cluster says. `secrets` (filled in once the config is read)
    are replaced in the lines.
    """
    import distributed  # noqa: F401  (its import sets its logger's level: before ours)

    from sediment_xr.exceptions import SedimentXRWarning

    # distributed logs its warnings instead of warning; they are shown with --debug too.
    library = logging.getLogger("distributed")
    level = library.level
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
            library.setLevel(logging.ERROR)
        warnings.filterwarnings("default", category=SedimentXRWarning)
        warnings.showwarning = functools.partial(_show_warning, secrets=secrets)
        try:
            yield
        finally:
            library.setLevel(level)


class _OneLine(logging.Formatter):
    """A log record as one line without secrets (records of child loggers included)."""

    def __init__(self, secrets: Collection[str]) -> None:
        super().__init__("%(message)s")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record), self.secrets)


@contextlib.contextmanager
def _stage_messages(quiet: bool, secrets: Collection[str] = ()) -> Iterator[None]:
    """Show the ``sediment_xr`` logger's stage messages on stderr, one line each.

    `secrets` (filled in once the config is read) are replaced in the lines.
    """
    logger = logging.getLogger("sediment_xr")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(secrets))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _failure(err: BaseException, output: str | None = None) -> tuple[str, int] | None:
    """The error line and exit code of an exception the user can act on, or None.

    `output` is the run's output folder, named when the error does not name a file.
    """
    from sediment_xr._fs import storage_error
    from sediment_xr.config import reword
    from sediment_xr.exceptions import SedimentXRError

    if isinstance(err, SedimentXRError):
        return _one_line(reword(err)), EXIT_USAGE
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


class Terminated(BaseException):
    """SIGTERM arrived: unwinds a command like ``KeyboardInterrupt`` does for SIGINT.

    A ``BaseException``, so that nothing catches it as an error on the way: the tasks a run
    submitted are cancelled and its lock released by the code it unwinds.
    """


def _quiet_shutdown() -> None:
    """Stopping on purpose: distributed's errors while its cluster closes are not news.

    (Newer distributed logs a traceback at ERROR when the dashboard stops mid-close;
    distributed 2025.1's ``sync`` leaves a callback that fails in tornado's event loop.)
    """
    for name in ("distributed", "tornado.application", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _raise_terminated(signum: int, frame: Any) -> None:
    _quiet_shutdown()
    raise Terminated(signum)


def _raise_interrupted(signum: int, frame: Any) -> None:
    _quiet_shutdown()
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_unwinds(debug: bool = False) -> Iterator[None]:
    """SIGTERM raises :class:`Terminated`, SIGINT ``KeyboardInterrupt``, in the block.

    Without `debug`, either also silences distributed's logs of the cluster's closing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = None
    if not debug and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous_int = signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _stopped_line(name: str) -> str:
    return (
        f"sediment-xr: interrupted by {name}: the run's tasks were cancelled and its lock "
        "released; finished chunks are kept. Run the same command again to resume."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sediment-xr`` command.

    Returns the exit code: 0, 2 (the input, config, output or storage), 1 (the machine), or,
    when stopped, 130 (SIGINT, Ctrl-C) and 143 (SIGTERM), after one line on stderr.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    args.secrets = set()  # of the config, once read: replaced in every line printed
    try:
        with (
            _sigterm_unwinds(args.debug),
            _warnings_as_lines(args.debug, args.secrets),
            _stage_messages(args.quiet, args.secrets),
        ):
            if args.command == "run":
                return _cmd_run(args)
            if args.command == "evaluate":
                return _cmd_evaluate(args)
            return _cmd_demo(args)
    except KeyboardInterrupt:
        print(_stopped_line("SIGINT"), file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(_stopped_line("SIGTERM"), file=sys.stderr)
        return EXIT_SIGTERM
    except Exception as err:
        failure = None if args.debug else _failure(err, getattr(args, "output_folder", None))
        if failure is None:
            raise
        message, code = failure
        message = _one_line(message, args.secrets)
        print(f"sediment-xr: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
