"""Command line: ``sediment-xr run CONFIG.yaml`` and ``sediment-xr demo``.

Errors a user can make end with one line on stderr naming the problem and the fix, and exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

EXIT_USAGE = 2


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
            help="address of an existing dask scheduler (e.g. tcp://10.0.0.5:8786); "
            "default: an embedded LocalCluster of worker processes",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
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
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output made with a different config (only files the tool wrote)",
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
    from sediment_xr.pipeline import check, run

    config = load_config(args.config, args.overrides)
    source = check(config)  # bad input fails here, before a cluster starts or a file is written
    with _dask_client(args.scheduler, config.dask, quiet=args.quiet):
        result = run(config, overwrite=args.overwrite, progress=not args.quiet, source=source)
    print(result.output)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from sediment_xr.demo import run_demo

    path = run_demo(
        args.output,
        n_frames=args.frames,
        scheduler=args.scheduler,
        progress=not args.quiet,
    )
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sediment-xr`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    from sediment_xr.exceptions import SedimentXRError

    try:
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_demo(args)
    except SedimentXRError as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())
        print(f"sediment-xr: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sediment-xr: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except OSError as err:
        if args.debug:
            raise
        print(
            f"sediment-xr: error: {err.strerror or err} ({getattr(err, 'filename', '') or ''}). "
            "Check the path, permissions and free space, then run again to resume.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
