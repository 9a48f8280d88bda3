"""Frames and times are right or refused, and the work is bounded (issue 14).

Each test names the weakness it guards.  Inputs are real files written at test time (short
videos written with PyAV, stills, configs); refusals go through the real command line
(``sediment_xr.cli.main`` with ``--scheduler synchronous``) and must give one line on stderr,
``sediment-xr: error: ...``, naming the problem, what was seen and the fix, with exit code 2
and no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from av.video.stream import VideoStream
from test_bad_input import (
    RUN,
    SIZE,
    assert_refused,
    frames,
    good_video,
    mjpeg_video,
    write_config,
    write_png,
)

from sediment_xr.cli import main
from sediment_xr.decode import decode_chunk
from sediment_xr.exceptions import ConfigError, SedimentXRWarning
from sediment_xr.frames import FRAME_OK, FRAME_UNDECODABLE
from sediment_xr.timeaxis import parse_frame_interval
from sediment_xr.video import open_video


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------
# times
def test_times_next_to_the_datetime64_limit_are_refused_not_a_traceback(tmp_path, capsys):
    """Weakness: frames a few hours before 2262-04-11 were taken, and the trend's resampling
    then overflowed after the whole run (a traceback, an unfinished output)."""
    video = good_video(tmp_path / "video.mkv")
    ingest = {"start_time": "2262-04-10T00:00:00", "frame_interval": "1h"}
    cfg = write_config(tmp_path, video, ingest=ingest)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["ingest.start_time", "1678 to 2261"])
    assert not (tmp_path / "out").exists()


def test_frames_run_into_the_limit_are_refused_naming_the_settings(tmp_path, capsys):
    """Weakness: a start well inside the range whose last frames land after 2261 (within
    datetime64[ns], so not wrapped, but too close to its end for the analysis)."""
    video = good_video(tmp_path / "video.mkv")
    ingest = {"start_time": "2261-12-01T00:00:00", "frame_interval": "10D"}
    cfg = write_config(tmp_path, video, ingest=ingest)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code, out, err, ["ingest.start_time", "ingest.frame_interval", "6 frames", "2262-01-20"]
    )


def test_timestamps_in_names_next_to_the_limit_are_refused(tmp_path, capsys):
    """Weakness: stills named with times in 2262 were taken as they are (no start_time)."""
    folder = tmp_path / "stills"
    for hour, image in enumerate(frames(3)):
        write_png(folder / f"CAM_22620405T{hour:02d}0000_UTC.png", image)
    no_times = {"start_time": None, "frame_interval": None, "chunk_frames": 2}
    cfg = write_config(tmp_path, folder, ingest=no_times)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["CAM_22620405T000000_UTC.png", "1678 to 2261"])


def far_apart_video(path: Path, images: np.ndarray, step: int) -> Path:
    """A lossless MKV whose frames are `step` milliseconds apart in the stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        packets = []
        for image in images:
            packets += stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
        packets += stream.encode()
        for k, packet in enumerate(packets):
            packet.pts = packet.dts = k * step
            container.mux(packet)
    return path


def test_stream_times_past_datetime64_are_refused_or_not_used(tmp_path, capsys):
    """Weakness: a video whose stream times span more than datetime64[ns] holds (here 63 000
    years) raised Python's OverflowError (a traceback), even with frame_interval, which does
    not use them."""
    images = frames(3)
    video = far_apart_video(tmp_path / "far.mkv", images, 10**15)
    timed = open_video(video, start_time="2022-06-01", frame_interval="1h")
    np.testing.assert_array_equal(timed.values, images)
    cfg = write_config(tmp_path, video, ingest={"frame_interval": None})
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["far.mkv", "stream times span", "ingest.frame_interval"])


def test_numpy_timedelta_is_an_interval_with_a_unit():
    """Weakness: np.timedelta64(17, 'h') was refused as "a number without unit"; and one
    too long for datetime64[ns] raised pandas' own error instead of a ConfigError."""
    assert parse_frame_interval(np.timedelta64(17, "h")) == pd.Timedelta(hours=17)
    with pytest.raises(ConfigError, match=r"frame_interval needs .* at most about 292 years"):
        parse_frame_interval(np.timedelta64(10**9, "D"))


# --------------------------------------------------------------------------------------------
# frames
def mpeg_ts(path: Path, images: np.ndarray) -> Path:
    """A short MPEG-TS recording (timestamps from the start, as a camera writes each file)."""
    with av.open(str(path), mode="w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_recordings_joined_by_bytes_are_refused_not_half_dropped(tmp_path, capsys):
    """Weakness: `cat a.ts b.ts > joined.ts` repeats the timestamps; frames were told apart
    by them, so the second recording's frames silently took the first's places (12 frames
    in, 6 out)."""
    images = frames(12)
    first = mpeg_ts(tmp_path / "a.ts", images[:6]).read_bytes()
    second = mpeg_ts(tmp_path / "b.ts", images[6:]).read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first + second)
    cfg = write_config(tmp_path, joined)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["joined.ts", "go back or repeat", "frame 7 of 12", "concat"])
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# bounded work
def test_fps_far_over_the_videos_rate_is_refused(tmp_path, capsys):
    """Weakness: ingest.fps up to the absolute limit (1000) was taken for a 10 fps video of 6
    frames: each frame repeated 100 times, 501 frames decoded, labelled and stored.  Up to a
    few times the rate is still moviepy's sampling (2 x shows each frame twice)."""
    video = good_video(tmp_path / "video.mkv")
    frames_20 = open_video(video, fps=20, start_time="2022-06-01", frame_interval="1h")
    assert frames_20.frame.values.tolist() == [k // 2 for k in range(11)]
    cfg = write_config(tmp_path, video, ingest={"fps": 1000})
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code, out, err, ["ingest.fps: 1000.0", "10 frames per second", "ingest.fps: 10.0"]
    )
    assert not (tmp_path / "out").exists()


class _CountingContainer:
    """A real PyAV input container that counts the packets demuxed from it."""

    def __init__(self, container, counts: list[int]) -> None:
        self._container, self._counts = container, counts

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, *args, **kwargs):
        for packet in self._container.demux(*args, **kwargs):
            self._counts.append(packet.pts)
            yield packet


def test_a_damaged_frame_does_not_decode_the_video_again_from_its_start(tmp_path, monkeypatch):
    """Weakness: a frame that did not decode made its chunk decode the whole video again from
    frame 0 (with damage scattered over a long video, work quadratic in its length)."""
    video = str(mjpeg_video(tmp_path / "damaged.avi", n=60, broken=(50,)))
    with av.open(video) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    demuxed: list[int] = []
    real_open = av.open
    monkeypatch.setattr(
        av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k), demuxed)
    )
    chunk = pts[48:54]
    out, status = decode_chunk(video, chunk, frame_size=(SIZE, SIZE))
    assert status.tolist() == [FRAME_OK, FRAME_OK, FRAME_UNDECODABLE, FRAME_OK, FRAME_OK, FRAME_OK]
    np.testing.assert_array_equal(out[2], 0)
    # the chunk's frames (and the packets around the seek point), not the 50 before them
    assert len(demuxed) <= 2 * len(chunk), demuxed
    assert min(p for p in demuxed if p is not None) >= pts[40], demuxed


def test_a_late_seek_does_not_decode_the_video_again_from_its_start(tmp_path, monkeypatch):
    """Weakness: MPEG-TS seeks land after the key frame, so every chunk of a .ts recording
    decoded the whole video again from frame 0 (work quadratic in its length)."""
    images = frames(96)
    video = str(mpeg_ts(tmp_path / "long.ts", images))
    with av.open(video) as container:
        pts = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size)
    copy = tmp_path / "copy.ts"  # the reference from a copy: this thread keeps it open
    shutil.copyfile(video, copy)
    whole, _ = decode_chunk(str(copy), pts)
    demuxed: list[int] = []
    real_open = av.open
    monkeypatch.setattr(
        av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k), demuxed)
    )
    out, status = decode_chunk(video, pts[80:88])
    assert (status == FRAME_OK).all()
    np.testing.assert_array_equal(out, whole[80:88])
    # a few groups of pictures (12 frames each) before the chunk, not the 80 frames
    assert min(p for p in demuxed if p is not None) >= pts[40], demuxed


# --------------------------------------------------------------------------------------------
# display rotation
#: PyAV before 15 (the floor is 14) cannot write a display matrix; newer ones test reading it.
WRITES_DISPLAY_MATRIX = pytest.mark.skipif(
    not hasattr(VideoStream, "set_display_rotation"),
    reason="this PyAV cannot write a display matrix (newer ones test reading it)",
)
NO_DEV_ZERO = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")


def turned_video(path: Path, images: np.ndarray, degrees: int, hflip: bool = False) -> Path:
    """A lossless video whose display matrix turns (and maybe mirrors) its frames, as a
    phone writes one recorded upright (``rotate=90`` in older tools)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.height, stream.width = images.shape[1:3]
        stream.pix_fmt = "bgr0"
        stream.set_display_rotation(degrees, hflip=hflip)
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@WRITES_DISPLAY_MATRIX
@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_videos_display_rotation_is_applied(tmp_path, degrees):
    """Weakness: a phone video's display matrix was ignored: its frames were analysed on
    their side (the crop's "bottom rows" were a side of the picture as seen)."""
    images = frames(4, height=32, width=48)
    video = turned_video(tmp_path / "turned.mkv", images, degrees)
    shown = np.stack([np.rot90(image, degrees // 90) for image in images])
    opened = open_video(video, chunk_frames=3, start_time="2022-06-01", frame_interval="1h")
    assert opened.shape == shown.shape
    np.testing.assert_array_equal(opened.values, shown)
    resized = open_video(video, resize=(20, 10), start_time="2022-06-01", frame_interval="1h")
    assert resized.shape == (4, 10, 20, 3)  # the size asked for, as shown


@WRITES_DISPLAY_MATRIX
def test_a_mirroring_display_matrix_is_warned_once(tmp_path):
    """Weakness: a display matrix that mirrors the frames was ignored without a word."""
    images = frames(3, height=32, width=48)
    video = turned_video(tmp_path / "mirrored.mkv", images, 0, hflip=True)
    with pytest.warns(SedimentXRWarning) as caught:
        opened = open_video(video, start_time="2022-06-01", frame_interval="1h")
    assert len(caught) == 1
    assert "display matrix mirrors the frames, which is not applied" in str(caught[0].message)
    np.testing.assert_array_equal(opened.values, images)


# --------------------------------------------------------------------------------------------
# special files given as small files
def run_cli_with_timeout(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The command line in its own process: a hang fails the test (timeout), never blocks it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "sediment_xr.cli", *argv, *RUN],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("kind", ["fifo", pytest.param("/dev/zero", marks=NO_DEV_ZERO)])
def test_a_fifo_or_device_as_cluster_model_is_refused_quickly(tmp_path, kind):
    """Weakness: a FIFO as cluster.model blocked the run for ever on open, and /dev/zero was
    read until memory ran out (guarded here by a 60 s timeout on the command line)."""
    if kind == "fifo":
        model = tmp_path / "model.json"
        os.mkfifo(model)
    else:
        model = Path(kind)
    cfg = write_config(tmp_path, good_video(tmp_path / "video.mkv"), cluster={"model": str(model)})
    done = run_cli_with_timeout(["run", str(cfg)], tmp_path)
    assert_refused(
        done.returncode, done.stdout, done.stderr, [str(model), "is not a regular file"]
    )
    assert not (tmp_path / "out").exists()


@NO_DEV_ZERO
def test_a_device_as_config_is_refused_as_not_a_regular_file(tmp_path, capsys):
    """Weakness: /dev/zero as the config file was said not to exist (it does: it is a
    device), a message that sends the user looking for a typo."""
    code, out, err = run(["run", "/dev/zero"], capsys)
    assert_refused(code, out, err, ["config file /dev/zero is not a regular file"])
