"""Tests of the ``sediment-xr`` command line: user errors end in one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from sediment_xr import cli, scheduler
from sediment_xr.cli import main
from sediment_xr.exceptions import (
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRError,
    SedimentXRWarning,
)
from sediment_xr.testing import write_video

PREFIX = "sediment-xr: error: "
REAL_DASK_CLIENT = scheduler.dask_client
SIZE = 64
TIMES = {"start_time": "2022-06-01T00:00:00", "frame_interval": "1h"}


class ClusterStarted(Exception):
    """Raised by the stand-in for scheduler.dask_client: a test got past the input checks."""


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    """Fail loudly instead of starting a dask cluster; record how it was asked for."""
    calls = []

    def fake_dask_client(address, dask_config):
        calls.append((address, dask_config))
        raise ClusterStarted("the CLI tried to start a dask cluster")

    monkeypatch.setattr(scheduler, "dask_client", fake_dask_client)
    return calls


# --------------------------------------------------------------------------------------------
# inputs written at test time
def frames(n: int = 3, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            np.stack([(x * 3 + k) % 256, (y * 5) % 256, np.full_like(x, 40 * k)], -1)
            for k in range(n)
        ]
    ).astype(np.uint8)


def write_png(path: Path, height: int = SIZE, width: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), frames(1, height, width)[0])
    return path


def write_config(tmp_path: Path, input_path: Path | str, **sections) -> Path:
    data = {"input": str(input_path), "output": str(tmp_path / "out"), **sections}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def good_video(tmp_path: Path) -> Path:
    return write_video(frames(), tmp_path / "video.mkv", codec="ffv1")


def empty_avi(tmp_path: Path) -> Path:
    """An AVI with an FFV1 video stream but no frame muxed."""
    path = tmp_path / "empty.avi"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        container.start_encoding()
    assert path.stat().st_size > 0
    return path


# Each builder writes a bad input (or config) into tmp_path and returns the argv and the words
# the error line must contain.
Case = Callable[[Path], tuple[list[str], list[str]]]


def case_missing_input(tmp_path):
    cfg = write_config(tmp_path, tmp_path / "missing.mp4")
    return ["run", str(cfg)], ["missing.mp4", "does not exist", "Check the path"]


def case_zero_byte_mp4(tmp_path):
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    cfg = write_config(tmp_path, video, ingest=TIMES)
    return ["run", str(cfg)], ["empty.mp4", "is empty (0 bytes)", "fetch the file again"]


def case_text_mp4(tmp_path):
    video = tmp_path / "page.mp4"
    video.write_text("<html><body>404 Not Found</body></html>\n" * 20)
    cfg = write_config(tmp_path, video, ingest=TIMES)
    return ["run", str(cfg)], ["page.mp4", "cannot be opened by FFmpeg", "complete video"]


def case_video_without_frames(tmp_path):
    cfg = write_config(tmp_path, empty_avi(tmp_path), ingest=TIMES)
    return ["run", str(cfg)], ["empty.avi", "has a video stream but 0 frames", "ffprobe"]


def case_truncated_video(tmp_path):
    data = good_video(tmp_path).read_bytes()
    video = tmp_path / "truncated.mkv"
    video.write_bytes(data[:200])
    cfg = write_config(tmp_path, video, ingest=TIMES)
    return ["run", str(cfg)], ["truncated.mkv", "cannot be", "FFmpeg"]


def case_single_image(tmp_path):
    still = write_png(tmp_path / "still.png")
    cfg = write_config(tmp_path, still, ingest=TIMES)
    return ["run", str(cfg)], ["still.png", "is a single file", "folder or a glob pattern"]


def case_mixed_image_sizes(tmp_path):
    folder = tmp_path / "stills"
    write_png(folder / "cam_20220601T000000_UTC.png")
    write_png(folder / "cam_20220601T010000_UTC.png", height=48)
    write_png(folder / "cam_20220601T020000_UTC.png")
    cfg = write_config(tmp_path, folder)
    return ["run", str(cfg)], ["cam_20220601T010000_UTC.png", "64x48", "one size", "resize"]


def case_folder_without_images(tmp_path):
    folder = tmp_path / "stills"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here\n")
    (folder / ".hidden.png").write_bytes(b"")
    cfg = write_config(tmp_path, folder, ingest=TIMES)
    return ["run", str(cfg)], ["no image files found", "stills", "Check the folder"]


def case_untimestamped_images(tmp_path):
    folder = tmp_path / "stills"
    for k in range(3):
        write_png(folder / f"frame_{k}.png")
    cfg = write_config(tmp_path, folder)
    return ["run", str(cfg)], ["no timestamp", "start_time", "frame_interval"]


def case_crop_outside_frame(tmp_path):
    cfg = write_config(
        tmp_path, good_video(tmp_path), ingest=TIMES, preprocess={"crop": {"rows": [-9000, -8000]}}
    )
    return ["run", str(cfg)], ["rows", "inside the frame", "64 rows", "-9000", "selects nothing"]


def case_crop_cols_outside_frame(tmp_path):
    cfg = write_config(
        tmp_path, good_video(tmp_path), ingest=TIMES, preprocess={"crop": {"cols": [100, None]}}
    )
    return ["run", str(cfg)], ["cols", "inside the frame", "64 cols"]


def case_one_cluster(tmp_path):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest=TIMES, cluster={"n_clusters": 1})
    return ["run", str(cfg)], ["cluster.n_clusters", "from 2 to 100", "n_clusters: 4"]


def case_one_cluster_set(tmp_path):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest=TIMES)
    argv = ["run", str(cfg), "--set", "cluster.n_clusters=1"]
    return argv, ["cluster.n_clusters", "from 2 to 100"]


def case_broken_yaml(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"input: {good_video(tmp_path)}\noutput: {tmp_path / 'out'}\ningest: [1h\n")
    return ["run", str(cfg)], ["config.yaml", "not valid YAML", "line", "Fix the syntax"]


def case_unknown_key(tmp_path):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest=TIMES, cluster={"n_cluster": 5})
    return ["run", str(cfg)], ["unknown config key cluster.n_cluster", "valid keys", "n_clusters"]


def case_missing_config(tmp_path):
    good_video(tmp_path)
    return ["run", str(tmp_path / "nope.yaml")], ["nope.yaml", "does not exist", "YAML file"]


def case_set_without_equals(tmp_path):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest=TIMES)
    argv = ["run", str(cfg), "--set", "cluster.n_clusters"]
    return argv, ["--set needs section.key=value", "'cluster.n_clusters'", "--set cluster."]


def case_fps_for_images(tmp_path):
    folder = tmp_path / "stills"
    for hour in range(3):
        write_png(folder / f"cam_20220601T0{hour}0000_UTC.png")
    cfg = write_config(tmp_path, folder, ingest={"fps": 10})
    return ["run", str(cfg)], ["ingest.fps", "folder of stills", "Remove ingest.fps"]


def case_frame_interval_without_start(tmp_path):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest={"frame_interval": "1h"})
    return ["run", str(cfg)], ["ingest.frame_interval: '1h' needs ingest.start_time"]


CASES: dict[str, Case] = {
    "missing-input": case_missing_input,
    "zero-byte-mp4": case_zero_byte_mp4,
    "text-as-mp4": case_text_mp4,
    "video-without-frames": case_video_without_frames,
    "truncated-video": case_truncated_video,
    "single-image": case_single_image,
    "mixed-image-sizes": case_mixed_image_sizes,
    "folder-without-images": case_folder_without_images,
    "untimestamped-images": case_untimestamped_images,
    "crop-rows-outside": case_crop_outside_frame,
    "crop-cols-outside": case_crop_cols_outside_frame,
    "n-clusters-1": case_one_cluster,
    "n-clusters-1-via-set": case_one_cluster_set,
    "broken-yaml": case_broken_yaml,
    "unknown-key": case_unknown_key,
    "missing-config": case_missing_config,
    "set-without-equals": case_set_without_equals,
    "fps-for-images": case_fps_for_images,
    "frame-interval-without-start": case_frame_interval_without_start,
}


def assert_one_error_line(err: str, words: list[str]) -> str:
    assert err.startswith(PREFIX), err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    # the line names the problem and then the fix: more than one sentence
    assert len(err[len(PREFIX) :].strip()) > 40
    return err


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_user_error_is_one_line_and_exit_2(tmp_path, capsys, no_cluster, build):
    argv, words = build(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert_one_error_line(captured.err, words)
    # bad input is found before a cluster starts or anything is written
    assert no_cluster == []
    assert not (tmp_path / "out" / "cube.zarr").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (case_missing_input, InputNotFoundError),
        (case_zero_byte_mp4, InputError),
        (case_mixed_image_sizes, InputError),
        (case_crop_outside_frame, InputError),
        (case_one_cluster, ConfigError),
        (case_untimestamped_images, ConfigError),
        (case_broken_yaml, ConfigError),
    ],
    ids=["missing", "zero-byte", "mixed-sizes", "crop", "n-clusters", "untimestamped", "yaml"],
)
def test_debug_raises_the_error(tmp_path, capsys, build, error):
    argv, words = build(tmp_path)
    with pytest.raises(error) as info:
        main([*argv, "--debug"])
    assert isinstance(info.value, SedimentXRError)
    assert words[0] in str(info.value)
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "out" / "cube.zarr").exists()


def test_missing_input_is_a_file_not_found_error(tmp_path):
    argv, _ = case_missing_input(tmp_path)
    with pytest.raises(FileNotFoundError):
        main([*argv, "--debug"])


def test_console_entry_point_missing_input(tmp_path):
    cfg = write_config(tmp_path, "missing.mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "sediment_xr.cli", "run", str(cfg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    # `input: missing.mp4` is relative to the config file's folder
    assert lines[0].startswith(f"{PREFIX}{tmp_path / 'missing.mp4'} does not exist")
    assert not (tmp_path / "out").exists()


def test_console_entry_point_debug_shows_traceback(tmp_path):
    cfg = write_config(tmp_path, "missing.mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "sediment_xr.cli", "run", str(cfg), "--debug"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert "InputNotFoundError" in proc.stderr
    assert PREFIX not in proc.stderr


# --------------------------------------------------------------------------------------------
# a valid config gets past the checks to the cluster
def test_valid_input_reaches_the_cluster_with_nothing_written(tmp_path, no_cluster):
    cfg = write_config(
        tmp_path, good_video(tmp_path), ingest=TIMES, dask={"n_workers": 3, "memory_limit": "1GiB"}
    )
    with pytest.raises(ClusterStarted):
        main(["run", str(cfg), "--scheduler", "tcp://127.0.0.1:1", "--quiet"])
    [(address, dask_config)] = no_cluster
    assert address == "tcp://127.0.0.1:1"
    assert dask_config.n_workers == 3
    assert dask_config.memory_limit == "1GiB"
    assert not (tmp_path / "out").exists()


def test_set_overrides_reach_the_config(tmp_path, no_cluster):
    cfg = write_config(tmp_path, good_video(tmp_path), ingest=TIMES)
    with pytest.raises(ClusterStarted):
        main(["run", str(cfg), "--set", "dask.n_workers=5", "--set", "dask.n_workers=6"])
    [(address, dask_config)] = no_cluster
    assert address is None
    assert dask_config.n_workers == 6


# --------------------------------------------------------------------------------------------
# argparse
def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "sediment-xr" in out
    assert "run" in out
    assert "demo" in out


def test_run_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--set", "--overwrite", "--scheduler", "--debug", "--quiet"):
        assert option in out


@pytest.mark.parametrize("argv", [[], ["run"], ["frobnicate"], ["run", "c.yaml", "--bogus"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sediment-xr" in err
    assert "Traceback" not in err


def test_keyboard_interrupt_exits_130(tmp_path, capsys, monkeypatch):
    import sediment_xr.config

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sediment_xr.config, "load_config", interrupted)
    assert main(["run", str(tmp_path / "c.yaml")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "interrupted" in err
    assert "resume" in err


# --------------------------------------------------------------------------------------------
# warnings, in-process schedulers, failures of the machine
def warn_and_finish(args):
    import warnings

    warnings.warn("something to know\nover two lines", SedimentXRWarning, stacklevel=1)
    warnings.warn("a library's detail", RuntimeWarning, stacklevel=1)
    return 0


def test_warnings_are_one_line_and_library_warnings_need_debug(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_run", warn_and_finish)
    assert main(["run", "c.yaml"]) == 0
    err = capsys.readouterr().err
    assert err == "sediment-xr: warning: something to know over two lines\n"
    assert main(["run", "c.yaml", "--debug"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "sediment-xr: warning: something to know over two lines"
    assert lines[1].startswith("sediment-xr: warning: RuntimeWarning: a library's detail (")
    assert len(lines) == 2


@pytest.mark.parametrize("name", scheduler.IN_PROCESS_SCHEDULERS)
def test_in_process_scheduler_starts_no_cluster(name):
    import dask

    from sediment_xr.config import DaskConfig

    cv2.setNumThreads(2)
    with REAL_DASK_CLIENT(name, DaskConfig(n_workers=2, threads_per_worker=2)) as client:
        assert client is None
        assert dask.config.get("scheduler") == name
        assert dask.config.get("num_workers") == 4
        assert dask.array.ones(4, chunks=2).sum().compute() == 4
        assert cv2.getNumThreads() == 1  # one thread per task while computing here...
    assert cv2.getNumThreads() == 2  # ...and the caller's setting back afterwards


@pytest.mark.parametrize("value", ["processes", "localhost", "  "])
def test_unknown_scheduler_is_one_line(tmp_path, capsys, value):
    from sediment_xr.config import DaskConfig

    with pytest.raises(ConfigError, match=r"scheduler needs an address such as tcp://host:8786"):
        with REAL_DASK_CLIENT(value, DaskConfig()):
            pass


def test_folder_given_as_the_config(tmp_path, capsys):
    code = main(["run", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(PREFIX) and "is a folder. Give the path of a YAML" in err


@pytest.mark.parametrize(
    ("error", "output", "line", "code"),
    [
        (
            OSError(28, "No space left on device", "/data/out/cube.zarr/c/0"),
            None,
            "no space left to write /data/out/cube.zarr/c/0 (No space left on device). Free",
            1,
        ),
        (OSError(27, "File too large"), "/data/out", "no space left to write in /data/out", 1),
        (MemoryError(), None, "ran out of memory. Use a smaller ingest.chunk_frames", 1),
        (PermissionError(13, "Permission denied", "/data/out"), None, "permission denied", 2),
        (OSError(5, "Input/output error"), None, "Input/output error. Check the path", 1),
        (ConfigError("bad\nvalue. Fix it."), None, "bad value. Fix it.", 2),
    ],
)
def test_failures_are_one_line(error, output, line, code):
    message, exit_code = cli._failure(error, output)
    assert line in message
    assert "\n" not in message
    assert exit_code == code


def test_bugs_still_show_a_traceback():
    assert cli._failure(ZeroDivisionError("a bug")) is None
