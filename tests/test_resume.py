"""Kill `sediment-xr run` with SIGKILL at six points of a run, run it again, get the same answer.

Each run is the real CLI in its own session (process group) with its embedded LocalCluster;
the whole group, CLI and dask workers, is killed with SIGKILL, as when a hub kernel or a
node dies. The points are found by watching the output folder: the cube created but the model
not fitted yet (while sampling and fitting), model stored before any chunk is labelled,
mid-labelling (each chunk is decoded, labelled and counted in one task; once more with
``ingest.store_frames``), all chunks labelled before the tables are written, and while the
report files are written.
The resumed run must equal an uninterrupted run (labels, cover, CSV tables, model) and must
not redo stages that were finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.config import load_config
from sediment_xr.exceptions import OutputError
from sediment_xr.results import missing, open_results
from sediment_xr.store import COMPLETE_ATTR, Output
from sediment_xr.testing import write_video

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

N_FRAMES = 24
CHUNK = 2
N_CHUNKS = N_FRAMES // CHUNK


def _marks(out: Path, stage: str) -> int:
    folders = list((out / ".sediment_xr" / "progress").glob(f"{stage}-*"))
    return sum(len(list(f.iterdir())) for f in folders if f.is_dir())


def _complete(out: Path) -> bool:
    try:
        return bool(zarr.open_group(str(out / "cube.zarr"), mode="r").attrs.get(COMPLETE_ATTR))
    except (FileNotFoundError, ValueError, KeyError, OSError):
        return False


#: name -> (reached, passed): kill when ``reached(out)`` holds and ``passed(out)`` does not.
POSITIONS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], bool]]] = {
    "fitting": (
        lambda o: (o / "cube.zarr" / "zarr.json").exists(),
        lambda o: (o / "model.json").exists(),
    ),
    "model_stored_before_labels": (
        lambda o: (o / "model.json").exists(),
        lambda o: _marks(o, "label") > 0,
    ),
    "labelling": (
        lambda o: 1 <= _marks(o, "label") < N_CHUNKS,
        lambda o: _marks(o, "label") == N_CHUNKS,
    ),
    "labelling_frames_stored": (
        lambda o: 1 <= _marks(o, "label") < N_CHUNKS,
        lambda o: _marks(o, "label") == N_CHUNKS,
    ),
    "labelled_before_tables": (
        lambda o: _marks(o, "label") == N_CHUNKS,
        lambda o: (o / "cover.csv").exists(),
    ),
    "writing_report": (
        lambda o: (o / "cover.csv").exists(),
        lambda o: (o / "report.html").exists(),
    ),
}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    from sediment_xr.testing import synthetic_series

    root = tmp_path_factory.mktemp("resume")
    series = synthetic_series(N_FRAMES, size=256, start_cover=15.0, slope=0.4, seed=5)
    video = write_video(series["frames"], root / "series.mp4", codec="libx264", crf=20)
    raw = {
        "input": str(video),
        "output": str(root / "reference"),
        "ingest": {"start_time": "2022-06-01", "frame_interval": "17h", "chunk_frames": CHUNK},
        "preprocess": {"crop": {"rows": [-series.attrs["crop_rows"], None]}},
        "cluster": {"n_clusters": 4},
        "classes": {"sediment": [0, 1, 2], "mat": [3]},
        "dask": {"n_workers": 1, "threads_per_worker": 1},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    pipeline.run(load_config(path), progress=False)  # uninterrupted, in-process
    return {"path": path, "reference": Path(raw["output"])}


#: Settings of the runs killed at a position (the others use the job's config as it is).
SETTINGS = {"labelling_frames_stored": ["--set", "ingest.store_frames=true"]}


def _cli(job: dict, out: Path, position: str = "") -> list[str]:
    return [
        sys.executable,
        "-m",
        "sediment_xr.cli",
        "run",
        str(job["path"]),
        "--set",
        f"output={out}",
        *SETTINGS.get(position, []),
    ]


def _start(job: dict, out: Path, position: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*_cli(job, out, position), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: every worker of the group is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {proc.pid} survived SIGKILL")


def _kill_at(job: dict, out: Path, position: str) -> bool:
    """Start a run and SIGKILL it at ``position``; False when the run went past it unseen."""
    reached, passed = POSITIONS[position]
    proc = _start(job, out, position)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if passed(out):
                return False
            if reached(out):
                _kill_group(proc)
                return True
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            _kill_group(proc)


def _assert_equal_results(expected: Path, actual: Path, frames=None) -> None:
    a, b = Output(str(expected)).open_cube(), Output(str(actual)).open_cube()
    assert b.attrs[COMPLETE_ATTR] is True
    if frames is None:
        assert "frames" not in b  # not stored (the default)
    else:
        np.testing.assert_array_equal(b["frames"].values, frames)
    np.testing.assert_array_equal(a["frame_status"].values, b["frame_status"].values)
    np.testing.assert_array_equal(a["labels"].values, b["labels"].values)
    np.testing.assert_array_equal(a["cover"].values, b["cover"].values)
    np.testing.assert_array_equal(a["class_cover"].values, b["class_cover"].values)
    for name in ("cover.csv", "trend.csv", "clusters.json"):
        assert (expected / name).read_text() == (actual / name).read_text(), name
    assert json.loads((expected / "model.json").read_text()) == json.loads(
        (actual / "model.json").read_text()
    )
    assert (actual / "report.html").stat().st_size > 0
    assert (actual / "segmented.mp4").stat().st_size > 0
    assert not (actual / ".sediment_xr" / "lock").exists()


@pytest.mark.parametrize("position", list(POSITIONS))
def test_sigkill_then_resume_equals_uninterrupted(job, tmp_path, position):
    """Done-when (issue 5): killed at each position, the resumed run equals the reference."""
    out = tmp_path / "out"
    for attempt in range(3):  # bounded: a fast machine may step over a short window
        out = tmp_path / f"out{attempt}"
        if _kill_at(job, out, position):
            break
    else:
        pytest.fail(f"the run never stopped at {position!r} in 3 attempts")
    labels_done = _marks(out, "label") == N_CHUNKS and (out / "model.json").exists()
    labelled = _marks(out, "label")
    assert not _complete(out)  # a killed run never looks complete...
    assert missing(str(out))  # ...and reading it says what is missing
    with pytest.raises(OutputError, match=r"incomplete|no results"):
        open_results(str(out))
    assert (out / ".sediment_xr" / "lock").exists()  # left behind by the killed run

    resumed = subprocess.run(
        _cli(job, out, position),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    log = resumed.stderr
    assert "took over the lock of an earlier run" in log
    # Finished work is not redone.
    if labels_done:
        assert "label:" not in log and "cluster: sampling" not in log, log
    elif labelled and (out / "model.json").exists():
        assert f"label: {N_CHUNKS - labelled} of {N_CHUNKS} chunks" in log, log
    if position in SETTINGS:  # frames stored: they are the input's, every one
        assert f"label: {N_CHUNKS - labelled} of {N_CHUNKS} chunks" in log, log
        config = load_config(job["path"])
        frames = sx.crop(pipeline.check(config), rows=config.preprocess.crop.rows).values
        _assert_equal_results(job["reference"], out, frames)
    else:
        _assert_equal_results(job["reference"], out)
