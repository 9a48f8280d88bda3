"""One writer per output: a live lock refuses a second run, a stale one is taken over."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from sediment_xr import lock as lock_module
from sediment_xr import scheduler
from sediment_xr.cli import main
from sediment_xr.exceptions import OutputError
from sediment_xr.lock import OutputLock, stale_reason
from sediment_xr.store import Output
from sediment_xr.testing import write_images


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def _lock_doc(path: Path, **owner) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = "2026-01-01T00:00:00+00:00"
    doc = {"host": socket.gethostname(), "pid": 1, "token": "x", "started": stamp}
    path.write_text(json.dumps({**doc, "heartbeat": stamp, **owner}))


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    """In-process CLI runs compute on dask's threads, without starting a cluster."""
    monkeypatch.setattr(scheduler, "dask_client", lambda *a, **k: contextlib.nullcontext())


@pytest.fixture(scope="module")
def job(small_series, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lockjob")
    write_images(small_series["frames"], root / "stills")
    config = {
        "input": str(root / "stills"),
        "output": str(root / "out"),
        "ingest": {"chunk_frames": 2},
        "preprocess": {"crop": {"rows": [-small_series.attrs["crop_rows"], None]}},
        "cluster": {"n_clusters": 4},
        "classes": {"sediment": [0, 1, 2], "mat": [3]},
        "report": {"video": False, "html": False},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_second_lock_is_refused_until_released(tmp_path):
    out = Output(str(tmp_path / "out"))
    first = OutputLock(out, heartbeat=0)
    first.acquire()
    with pytest.raises(OutputError, match=r"being written by another sediment-xr run \(pid"):
        OutputLock(out, heartbeat=0).acquire()
    first.release()
    assert not (tmp_path / "out" / ".sediment_xr" / "lock").exists()
    with OutputLock(out, heartbeat=0) as second:
        assert second.read()["token"] == second.token
        assert not second.taken_over


def test_heartbeat_rewrites_the_lock(tmp_path):
    out = Output(str(tmp_path / "out"))
    with OutputLock(out, heartbeat=0.05) as lock:
        first = lock.read()["heartbeat"]
        deadline = time.monotonic() + 10
        while lock.read()["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        owner = lock.read()
        assert owner["heartbeat"] > first and owner["started"] == first
        assert owner["pid"] == os.getpid() and owner["token"] == lock.token


def test_release_never_removes_another_runs_lock(tmp_path):
    out = Output(str(tmp_path / "out"))
    lock = OutputLock(out, heartbeat=0)
    lock.acquire()
    _lock_doc(tmp_path / "out" / ".sediment_xr" / "lock", pid=os.getpid(), token="other")
    lock.release()
    assert json.loads((tmp_path / "out" / ".sediment_xr" / "lock").read_text())["token"] == (
        "other"
    )


def test_stale_reasons():
    host = socket.gethostname()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    assert stale_reason({"host": host, "pid": os.getpid(), "heartbeat": now}) == ""
    assert "no longer exists" in stale_reason({"host": host, "pid": _dead_pid(), "heartbeat": now})
    # Another host's clock is never compared with ours: only watching its heartbeat tells.
    elsewhere = {"host": "hub-node-7", "pid": 12, "heartbeat": "2026-01-01T00:00:00+00:00"}
    assert stale_reason(elsewhere) == ""
    assert stale_reason({}, file_age=10.0) == ""  # unreadable but fresh: still someone's
    assert "cannot be read" in stale_reason({}, file_age=1e6)


def test_stale_lock_of_a_killed_run_is_taken_over(job, tmp_path, capsys):
    out = tmp_path / "out"
    _lock_doc(out / ".sediment_xr" / "lock", pid=_dead_pid())
    assert main(["run", str(job), "--set", f"output={out}"]) == 0
    err = capsys.readouterr().err
    assert "took over the lock of an earlier run" in err and "no longer exists" in err
    assert not (out / ".sediment_xr" / "lock").exists()
    assert (out / "cover.csv").exists()


def test_lock_of_a_silent_run_elsewhere_is_taken_over(job, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lock_module, "STALE_SECONDS", 0.5)  # watched for 0.5 s, not 5 min
    out = tmp_path / "out"
    _lock_doc(out / ".sediment_xr" / "lock", host="hub-node-7", pid=99)
    assert main(["run", str(job), "--set", f"output={out}"]) == 0
    assert "heartbeat did not advance" in capsys.readouterr().err


def test_second_concurrent_run_is_refused(job, tmp_path, capsys):
    """Done-when (issue 5): a second run while one is running is refused, clearly."""
    out = tmp_path / "out"
    first = subprocess.Popen(
        [
            *(sys.executable, "-m", "sediment_xr.cli", "run", str(job), "--quiet"),
            *("--set", f"output={out}", "--set", "dask.n_workers=1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = out / ".sediment_xr" / "lock"
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.exists(), first.communicate(timeout=60)
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        code = main(["run", str(job), "--set", f"output={out}"])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1, err
        assert "is being written by another sediment-xr run" in err
        assert f"pid {first.pid}" in err and "Wait for it to finish" in err
        assert set(before) <= {p.relative_to(out) for p in out.rglob("*")}
        _, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 0, stderr
    assert (out / "cover.csv").exists() and not lock.exists()


@pytest.mark.parametrize("content", ["null", "[1, 2]", "{not json", ""])
def test_garbage_lock_is_refused_while_fresh_and_taken_over_when_old(tmp_path, content):
    out = Output(str(tmp_path / "out"))
    path = tmp_path / "out" / ".sediment_xr" / "lock"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(OutputError, match=r"lock .* cannot be read: another run may be starting"):
        OutputLock(out, heartbeat=0).acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))
    with OutputLock(out, heartbeat=0) as lock:
        assert "cannot be read" in lock.taken_over
    assert sorted(p.name for p in path.parent.iterdir()) == []  # no stale-* or tmp leftovers


def test_a_run_notices_its_lock_was_taken_over(tmp_path):
    out = Output(str(tmp_path / "out"))
    with OutputLock(out, heartbeat=0) as lock:
        lock.check()
        _lock_doc(tmp_path / "out" / ".sediment_xr" / "lock", pid=os.getpid(), token="new-owner")
        with pytest.raises(OutputError, match="this run lost the lock"):
            lock.check()


def test_heartbeat_survives_a_failed_read(tmp_path, monkeypatch):
    out = Output(str(tmp_path / "out"))
    lock = OutputLock(out, heartbeat=0.05)
    original = OutputLock.read
    failures = []

    def flaky(self):
        if len(failures) < 2 and threading.current_thread().name == "sediment-xr-lock":
            failures.append(1)
            raise OSError("503 SlowDown")
        return original(self)

    monkeypatch.setattr(OutputLock, "read", flaky)
    with lock:
        first = original(lock)["heartbeat"]
        deadline = time.monotonic() + 10
        while original(lock)["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(failures) == 2 and original(lock)["heartbeat"] > first
        assert not lock.lost
