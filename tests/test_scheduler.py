"""`sediment-xr run --scheduler` on a real `dask scheduler` and `dask worker` processes.

Everything is started with the dask command-line tools, as an analyst or a cluster manager
would, listening on 127.0.0.1 only, and stopped at the end of the test. The pipeline runs
through the real CLI in its own process; its results are compared with an in-process run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sediment_xr import pipeline
from sediment_xr.config import load_config
from sediment_xr.store import COMPLETE_ATTR, Output
from sediment_xr.testing import write_video

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT = 60.0
N_CHUNKS = 12  # 12 frames, one per chunk


def _wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    """Poll ``predicate`` every 0.1 s up to ``timeout`` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args} exited early ({proc.returncode})")
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@contextlib.contextmanager
def dask_cluster(tmp: Path, n_workers: int = 2, nanny: bool = True) -> Iterator[dict]:
    """A `dask scheduler` and ``n_workers`` `dask worker` processes on 127.0.0.1."""
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler_file = tmp / "scheduler.json"
    procs: list[subprocess.Popen] = []
    log = (tmp / "dask.log").open("wb")  # a file, not a pipe: a full pipe would block dask
    try:
        procs.append(
            subprocess.Popen(
                [
                    *(DASK, "scheduler", "--host", "127.0.0.1", "--port", "0"),
                    *("--no-dashboard", "--scheduler-file", str(scheduler_file)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        _wait_for(scheduler_file.exists, START_TIMEOUT, "dask scheduler", procs)
        _wait_for(lambda: scheduler_file.stat().st_size > 0, START_TIMEOUT, "scheduler file")
        for i in range(n_workers):
            procs.append(
                subprocess.Popen(
                    [DASK, "worker", "--scheduler-file", str(scheduler_file)]
                    + ["--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"]
                    + ["--name", f"w{i}", "--local-directory", str(tmp / f"w{i}")]
                    + ([] if nanny else ["--no-nanny"]),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        from distributed import Client

        with Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=START_TIMEOUT)
            info = client.scheduler_info()
            workers = info["workers"]
            assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
            yield {
                "address": info["address"],
                "client": client,
                "worker_pids": client.run(os.getpid),
                "procs": procs,
            }
    finally:
        _stop(procs[::-1])
        log.close()


@pytest.fixture(scope="module")
def job(small_series, tmp_path_factory) -> dict:
    """A config file for a 12-frame video, and the in-process run of it."""
    root = tmp_path_factory.mktemp("scheduler")
    video = write_video(small_series["frames"], root / "series.mp4", codec="libx264", crf=20)
    raw = {
        "input": str(video),
        "output": str(root / "in_process"),
        "ingest": {"start_time": "2022-06-01", "frame_interval": "17h", "chunk_frames": 1},
        "preprocess": {"crop": {"rows": [-small_series.attrs["crop_rows"], None]}},
        "cluster": {"n_clusters": 4},
        "classes": {"sediment": [0, 1, 2], "mat": [3]},
        "report": {"video": False},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = pipeline.run(load_config(path), progress=False)
    return {"path": path, "root": root, "result": result, "output": Path(raw["output"])}


def _run_cli(job: dict, output: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "sediment_xr.cli", "run", str(job["path"]), "--quiet"),
            *("--scheduler", address, "--set", f"output={output}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_same_results(expected: Path, actual: Path) -> None:
    a, b = Output(str(expected)).open_cube(), Output(str(actual)).open_cube()
    assert b.attrs[COMPLETE_ATTR] is True
    np.testing.assert_array_equal(a["labels"].values, b["labels"].values)
    np.testing.assert_array_equal(a["frame_status"].values, b["frame_status"].values)
    np.testing.assert_array_equal(a["cover"].values, b["cover"].values)
    pd.testing.assert_frame_equal(
        pd.read_csv(expected / "cover.csv"), pd.read_csv(actual / "cover.csv")
    )
    assert json.loads((expected / "model.json").read_text()) == json.loads(
        (actual / "model.json").read_text()
    )


def test_run_through_scheduler_equals_in_process(job, tmp_path):
    """Done-when (issue 4): `dask scheduler` + two `dask worker`s via --scheduler."""
    with dask_cluster(tmp_path) as cluster:
        output = tmp_path / "on_cluster"
        proc = _run_cli(job, output, cluster["address"])
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        assert Path(stdout.strip().splitlines()[-1]) == output.resolve()
        # Both workers did labelling work (the tasks ran on the cluster, not in the CLI).
        done = cluster["client"].run(
            lambda dask_worker: sum(1 for key in dask_worker.state.log if "label" in str(key))
        )
        assert len(done) == 2 and all(n > 0 for n in done.values()), done
    _assert_same_results(job["output"], output)


def test_worker_killed_mid_run_gives_identical_results(job, tmp_path):
    """Done-when (issue 5): one of two worker processes is SIGKILLed mid-run.

    It is killed as soon as the cube exists: while the sample is decoded or the model fitted,
    with the sample's preprocessed chunks (kept for labelling) in its memory. Those are
    computed again on the other worker; no chunk has been labelled yet.
    """
    with dask_cluster(tmp_path, nanny=False) as cluster:
        output = tmp_path / "worker_lost"
        proc = _run_cli(job, output, cluster["address"])
        try:
            marks = output / ".sediment_xr" / "progress"

            def finished_chunks() -> int:
                if not marks.exists():
                    return 0
                return sum(len(list(stage.iterdir())) for stage in marks.iterdir())

            created = output / "cube.zarr" / "zarr.json"
            _wait_for(created.exists, 300, "the cube", [proc])
            victim = sorted(cluster["worker_pids"].values())[0]
            os.kill(victim, signal.SIGKILL)
            unfinished = N_CHUNKS - finished_chunks()  # label marks
            _, stderr = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=20)
        assert proc.returncode == 0, stderr
        assert unfinished > 0, unfinished  # the worker died with chunks still to do
        assert len(cluster["client"].scheduler_info()["workers"]) == 1
    _assert_same_results(job["output"], output)
