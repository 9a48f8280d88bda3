"""Opening videos and still sequences as lazy frame cubes (video, stills, timeaxis, io)."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import av
import cloudpickle
import cv2
import dask
import dask.array as da
import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sediment_xr import decode, io, video
from sediment_xr import frames as frames_module
from sediment_xr._fs import storage_error
from sediment_xr.config import reword
from sediment_xr.exceptions import (
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRWarning,
)
from sediment_xr.frames import FRAME_OK, FRAME_STATUS_ATTRS, FRAME_UNDECODABLE, auto_chunk_frames
from sediment_xr.stills import open_images
from sediment_xr.timeaxis import parse_frame_interval, parse_timestamp_from_name
from sediment_xr.video import open_video

N_FRAMES = 20
HEIGHT, WIDTH = 48, 64
RATE = 10

# Most tests here open videos with start_time alone (time = start_time + playback time), which
# warns; test_video_time_from_start_time_plus_stream checks the warning.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*playback time:sediment_xr.exceptions.SedimentXRWarning"
)


def make_frame(k: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """RGB frame whose every pixel depends on the frame number and the position."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [(x * 4 + k) % 256, (y * 5 + 3 * k) % 256, np.full_like(x, (k * 11) % 256)], axis=-1
    ).astype(np.uint8)


EXPECTED = np.stack([make_frame(k) for k in range(N_FRAMES)])


def write_video(path, codec, pix_fmt, *, options=None, metadata=None, n=N_FRAMES):
    with av.open(str(path), "w") as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        stream.options = options or {}
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(make_frame(k), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decode_all(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        "ffv1": write_video(root / "lossless.mkv", "ffv1", "bgr0"),
        "created": write_video(
            root / "created.mkv",
            "ffv1",
            "bgr0",
            metadata={"creation_time": "2022-06-01T12:00:00.000000Z"},
        ),
        "h264": write_video(
            root / "lossy.mp4", "libx264", "yuv420p", options={"g": "4", "bf": "2"}
        ),
    }


@pytest.fixture(scope="module")
def h264_reference(videos):
    return decode_all(videos["h264"])


def _ooi_name(stamp: str) -> str:
    return f"CAMDSB106_10.33.9.6_{stamp}_UTC.png"


OOI_STAMPS = ["20210824T031618", "20210823T234205", "20210824T044621", "20210824T034618"]


@pytest.fixture()
def ooi_folder(tmp_path):
    """PNG stills with OOI timestamp names; frame k is written under OOI_STAMPS[k]."""
    folder = tmp_path / "ooi"
    folder.mkdir()
    for k, stamp in enumerate(OOI_STAMPS):
        cv2.imwrite(str(folder / _ooi_name(stamp)), cv2.cvtColor(make_frame(k), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture()
def numbered_folder(tmp_path):
    """PNG stills frame_1 ... frame_12 (frame_k holds make_frame(k)) plus junk to skip."""
    folder = tmp_path / "numbered"
    folder.mkdir()
    for k in range(1, 13):
        cv2.imwrite(str(folder / f"frame_{k}.png"), cv2.cvtColor(make_frame(k), cv2.COLOR_RGB2BGR))
    (folder / "._frame_3.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("camera notes")
    return folder


def _frames_in(order):
    return np.stack([make_frame(k) for k in order])


# --------------------------------------------------------------------------------------------
# open_video: layout, laziness, pixels
# --------------------------------------------------------------------------------------------


def test_open_video_layout(videos):
    arr = open_video(videos["ffv1"], chunk_frames=8, start_time="2022-06-01")
    assert isinstance(arr, xr.DataArray)
    assert arr.name == "frames"
    assert arr.dims == ("time", "y", "x", "channel")
    assert arr.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    assert arr.dtype == np.uint8
    assert isinstance(arr.data, da.Array)
    assert arr.chunks == ((8, 8, 4), (HEIGHT,), (WIDTH,), (3,))
    assert arr.time.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(arr.frame.values, np.arange(N_FRAMES))
    assert arr.frame.dims == ("time",)
    np.testing.assert_array_equal(arr.y.values, np.arange(HEIGHT))
    np.testing.assert_array_equal(arr.x.values, np.arange(WIDTH))
    assert "channel" not in arr.coords
    assert arr.attrs["long_name"] == "video frames"
    assert arr.attrs["channel_order"] == "RGB"
    assert arr.attrs["source"] == str(videos["ffv1"])
    assert "open_video" in arr.attrs["history"]
    assert "\n" not in arr.attrs["history"]
    assert arr.time.attrs["standard_name"] == "time"
    assert arr.time.attrs["long_name"] == "time of frame (UTC)"


def test_open_video_is_lazy(videos, monkeypatch):
    calls = []
    kernel = decode.decode_frames

    def counting(source, wanted_pts, **kwargs):
        calls.append(list(wanted_pts))
        return kernel(source, wanted_pts, **kwargs)

    monkeypatch.setattr(decode, "decode_frames", counting)  # the chunks' tasks
    monkeypatch.setattr(video, "decode_frames", counting)  # opening
    arr = open_video(videos["ffv1"], chunk_frames=4, start_time="2022-06-01")
    assert len(calls) == 1  # only the first frame, to learn the size
    assert len(calls[0]) == 1
    sub = arr.isel(time=slice(9, 11))
    assert len(calls) == 1
    np.testing.assert_array_equal(sub.values, EXPECTED[9:11])
    assert len(calls) == 2  # one chunk (frames 8..11) decoded
    assert len(calls[1]) == 4


@pytest.mark.parametrize("chunk_frames", [1, 3, 8, 50])
def test_ffv1_round_trip_is_exact(videos, chunk_frames):
    arr = open_video(videos["ffv1"], chunk_frames=chunk_frames, start_time="2022-06-01")
    np.testing.assert_array_equal(arr.values, EXPECTED)


@pytest.mark.parametrize(
    "selection", [5, 7, 19, slice(5, 14), slice(13, 20), [2, 11, 17], [19, 0, 6]]
)
def test_ffv1_reads_starting_mid_chunk(videos, selection):
    arr = open_video(videos["ffv1"], chunk_frames=8, start_time="2022-06-01")
    np.testing.assert_array_equal(arr.isel(time=selection).values, EXPECTED[selection])


@pytest.mark.parametrize("chunk_frames", [3, 7])
def test_h264_chunks_match_sequential_decode(videos, h264_reference, chunk_frames):
    arr = open_video(videos["h264"], chunk_frames=chunk_frames, start_time="2022-06-01")
    assert arr.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(arr.values, h264_reference)
    for index in [1, 2, 5, 10, 14, 18, 19]:
        np.testing.assert_array_equal(arr.isel(time=index).values, h264_reference[index])
    # lossy, but close to what was written
    assert np.abs(arr.values.astype(int) - EXPECTED.astype(int)).mean() < 6


def test_decode_kernel_without_dask(videos):
    pts = [300, 300, 1200, 1900]  # ffv1 in mkv: time base 1/1000, 100 per frame
    out, status = decode.decode_chunk(str(videos["ffv1"]), pts, frame_size=(HEIGHT, WIDTH))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, EXPECTED[[3, 3, 12, 19]])
    assert (status == FRAME_OK).all()


def test_decode_kernel_falls_back_to_decoding_from_start(videos, monkeypatch):
    passes = []
    real_pass = decode._decode_pass

    def seek_lands_too_late(*args, **kwargs):
        seek_to = inspect.signature(real_pass).bind(*args, **kwargs).arguments["seek_to"]
        passes.append(seek_to)  # None: from the start
        if seek_to is None:  # the seek passes find nothing, as if the index were wrong
            real_pass(*args, **kwargs)

    monkeypatch.setattr(decode, "_decode_pass", seek_lands_too_late)
    out, _ = decode.decode_chunk(str(videos["h264"]), [3072, 4096])
    assert passes == [3072, None]
    np.testing.assert_array_equal(out, decode_all(videos["h264"])[[3, 4]])


def test_chunks_of_one_video_reuse_the_open_container(videos, tmp_path, monkeypatch):
    """Weakness: each chunk opened its video again (about 20 ms per chunk, 0.6 ms per frame
    of a 1024 x 1024 H.264 video); the thread now seeks in the one it has open. A file
    replaced under the same name between two chunks is opened again, never read stale."""
    path = tmp_path / "clip.mp4"
    shutil.copyfile(videos["h264"], path)
    reference = decode_all(videos["h264"])
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    first, _ = decode.decode_chunk(str(path), [0, 1024, 2048, 3072])
    second, _ = decode.decode_chunk(str(path), [4096, 5120, 6144, 7168])
    np.testing.assert_array_equal(np.concatenate([first, second]), reference[:8])
    assert len(opened) == 1
    shutil.copyfile(videos["ffv1"], path)  # another video written over it
    again, _ = decode.decode_chunk(str(path), [400, 500], frame_size=(HEIGHT, WIDTH))
    np.testing.assert_array_equal(again, EXPECTED[[4, 5]])
    assert len(opened) == 2


def test_decode_kernel_marks_missing_frames(videos):
    out, status = decode.decode_chunk(str(videos["ffv1"]), [100, 150], frame_size=(HEIGHT, WIDTH))
    assert status.tolist() == [FRAME_OK, FRAME_UNDECODABLE]
    np.testing.assert_array_equal(out[0], EXPECTED[1])
    assert (out[1] == 0).all()


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (None, list(range(N_FRAMES))),
        (2.5, [0, 4, 8, 12, 16]),
        (4, [0, 2, 5, 7, 10, 12, 15, 17]),
        (1, [0, 10]),
        (0.5, [0]),
        (10, list(range(N_FRAMES))),
        (20, [k // 2 for k in range(39)]),
    ],
)
def test_fps_sampling_picks_expected_frames(videos, fps, expected):
    arr = open_video(videos["ffv1"], fps=fps, chunk_frames=3, start_time="2022-06-01")
    np.testing.assert_array_equal(arr.frame.values, expected)
    np.testing.assert_array_equal(arr.values, EXPECTED[expected])
    offsets = (arr.time.values - np.datetime64("2022-06-01")).astype("timedelta64[ms]")
    np.testing.assert_array_equal(offsets.astype(int), np.asarray(expected) * 100)


@pytest.mark.parametrize(("resize", "size"), [(32, (32, 32)), ((40, 30), (40, 30))])
def test_video_resize(videos, resize, size):
    arr = open_video(videos["ffv1"], resize=resize, chunk_frames=6, start_time="2022-06-01")
    width, height = size
    assert arr.shape == (N_FRAMES, height, width, 3)
    assert arr.chunks[1:] == ((height,), (width,), (3,))
    np.testing.assert_array_equal(arr.y.values, np.arange(height))
    np.testing.assert_array_equal(arr.x.values, np.arange(width))
    expected = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in EXPECTED]
    np.testing.assert_array_equal(arr.values, np.stack(expected))


@pytest.mark.parametrize(
    ("codec", "pix_fmt"), [("libx264", "yuv420p"), ("mjpeg", "yuvj420p"), ("ffv1", "bgr0")]
)
def test_a_window_converted_alone_has_the_whole_frames_pixels(tmp_path, codec, pix_fmt):
    """A 4:2:0 frame's window is converted to RGB alone (odd edges widened to even ones):
    the same pixels as converting the whole frame and cutting; other formats are left to the
    whole frame's path (None)."""
    from sediment_xr.decode import _rgb_window

    suffix = ".mkv" if codec == "ffv1" else ".mp4" if codec == "libx264" else ".avi"
    path = write_video(tmp_path / f"v{suffix}", codec, pix_fmt, n=3)
    windows = [
        (0, HEIGHT, 0, WIDTH),
        (1, HEIGHT - 1, 3, WIDTH - 2),
        (5, 6, 7, 8),
        (HEIGHT - 17, HEIGHT, 0, 1),
        (2, 9, 4, 10),
    ]
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.format.name == pix_fmt
            whole = frame.to_ndarray(format="rgb24")
            for r0, r1, c0, c1 in windows:
                part = _rgb_window(frame, (r0, r1, c0, c1), (HEIGHT, WIDTH))
                if pix_fmt == "bgr0":
                    assert part is None
                else:
                    np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])
            assert _rgb_window(frame, (0, 4, 0, 4), (HEIGHT + 2, WIDTH)) is None  # other size


@pytest.mark.parametrize("opener", ["h264", "h264_resized", "stills", "stills_resized"])
def test_crop_decodes_only_the_window_with_the_same_pixels(videos, numbered_folder, opener):
    """crop() of an opener's frames decodes each chunk's window only; same array as slicing."""
    from sediment_xr.preprocess import crop

    resize = (40, 30) if opener.endswith("resized") else None
    if opener.startswith("stills"):
        arr = open_images(
            numbered_folder,
            resize=resize,
            chunk_frames=5,
            start_time="2022-06-01",
            frame_interval="1h",
        )
    else:
        arr = open_video(videos["h264"], resize=resize, chunk_frames=6, start_time="2022-06-01")
    window = crop(arr, rows=[-17, None], cols=[3, -2])
    sliced = arr.isel(y=slice(arr.sizes["y"] - 17, None), x=slice(3, arr.sizes["x"] - 2))
    # the window's own decode tasks (no slice of full frames), each the window's size
    assert not any(key[0].startswith("getitem") for key in window.data.__dask_keys__()[0][0][0])
    first = window.data.blocks[0]
    assert first.compute(scheduler="sync").shape == (first.shape[0], 17, sliced.sizes["x"], 3)
    assert window.data.name != sliced.data.name
    assert window["frame_status"].data.name != arr["frame_status"].data.name
    computed = window.compute(scheduler="sync")
    xr.testing.assert_identical(
        computed.drop_attrs(), sliced.compute(scheduler="sync").drop_attrs()
    )
    # frames changed after opening are only sliced: the same answer
    shifted = crop(arr.isel(time=slice(1, None)), rows=[-17, None], cols=[3, -2])
    xr.testing.assert_identical(
        shifted.compute(scheduler="sync").drop_attrs(),
        computed.isel(time=slice(1, None)).drop_attrs(),
    )


def test_crop_window_keeps_undecodable_frames_flagged(videos, monkeypatch):
    """A frame missing from the stream is undecodable in the window as in the whole frame."""
    from sediment_xr.preprocess import crop

    arr = open_video(videos["ffv1"], chunk_frames=4, start_time="2022-06-01")
    original = decode.decode_frames

    def losing_frame_5(source, wanted, **kwargs):
        out, status = original(source, wanted, **kwargs)
        lost = [i for i, pts in enumerate(wanted) if pts == 5 * 100]
        out[lost], status[lost] = 0, FRAME_UNDECODABLE
        return out, status

    monkeypatch.setattr(decode, "decode_frames", losing_frame_5)
    window = crop(arr, rows=[10, 20]).compute(scheduler="sync")
    assert window["frame_status"].values.tolist() == [
        FRAME_UNDECODABLE if k == 5 else FRAME_OK for k in range(N_FRAMES)
    ]
    np.testing.assert_array_equal(window.values[6], EXPECTED[6][10:20])


def test_graph_pickles_and_runs_in_other_processes(videos):
    arr = open_video(videos["ffv1"], chunk_frames=8, start_time="2022-06-01")
    graph = arr.data.__dask_graph__()
    restored = cloudpickle.loads(cloudpickle.dumps(graph))
    assert set(restored.keys()) == set(graph.keys())
    (values,) = dask.compute(arr.data, scheduler="processes", num_workers=2)
    np.testing.assert_array_equal(values, EXPECTED)


# --------------------------------------------------------------------------------------------
# open_video: time
# --------------------------------------------------------------------------------------------


def test_video_time_from_frame_interval(videos):
    arr = open_video(videos["ffv1"], fps=2.5, start_time="2022-06-01", frame_interval="17h")
    expected = pd.Timestamp("2022-06-01") + pd.to_timedelta(np.arange(5) * 17, unit="h")
    np.testing.assert_array_equal(arr.time.values, expected.values.astype("datetime64[ns]"))
    assert arr.time.attrs["time_source"] == "frame_interval"


def test_video_time_from_start_time_plus_stream(videos):
    with pytest.warns(SedimentXRWarning, match=r"lossless\.mkv: time is start_time \+ the"):
        arr = open_video(videos["ffv1"], start_time="2022-06-01T02:00:00+02:00")
    assert arr.time.values[0] == np.datetime64("2022-06-01T00:00:00", "ns")
    assert arr.time.values[-1] == np.datetime64("2022-06-01T00:00:01.900", "ns")
    assert arr.time.attrs["time_source"] == "start_time+stream"


def test_video_time_from_creation_time(videos):
    arr = open_video(videos["created"])
    assert arr.time.values[0] == np.datetime64("2022-06-01T12:00:00", "ns")
    assert arr.time.values[3] == np.datetime64("2022-06-01T12:00:00.300", "ns")
    assert arr.time.attrs["time_source"] == "creation_time+stream"


def test_video_time_from_epoch_warns(videos):
    with pytest.warns(SedimentXRWarning, match=r"lossless\.mkv.*start_time"):
        arr = open_video(videos["ffv1"])
    assert arr.time.values[0] == np.datetime64("1970-01-01T00:00:00", "ns")
    assert arr.time.values[1] == np.datetime64("1970-01-01T00:00:00.100", "ns")
    assert arr.time.attrs["time_source"] == "epoch+stream"


def test_frame_interval_needs_start_time(videos):
    with pytest.raises(ConfigError, match=r"frame_interval='1h' needs start_time.*e\.g\."):
        open_video(videos["ffv1"], frame_interval="1h")


# --------------------------------------------------------------------------------------------
# open_video: bad input
# --------------------------------------------------------------------------------------------


def test_missing_video(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"nothere\.mp4 does not exist"):
        open_video(tmp_path / "nothere.mp4")


def test_empty_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        open_video(path)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match=r"notes\.mp4 cannot be opened by FFmpeg") as info:
        open_video(path)
    assert isinstance(info.value.__cause__, av.FFmpegError)


def _audio_frame():
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    return frame


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.mka"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        container.mux(stream.encode(_audio_frame()))
        container.mux(stream.encode())
    with pytest.raises(InputError, match=r"sound\.mka has no video stream \(streams: audio\)"):
        open_video(path)


def test_video_stream_without_frames(tmp_path):
    path = tmp_path / "noframes.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=RATE)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "bgr0"
        audio = container.add_stream("pcm_s16le", rate=8000)
        container.mux(audio.encode(_audio_frame()))
        container.mux(audio.encode())
    with pytest.raises(InputError, match=r"noframes\.mkv has a video stream but 0 frames"):
        open_video(path)


def test_folder_given_to_open_video(tmp_path):
    with pytest.raises(
        InputError, match=r"is a folder, but a video input is one file.*open_images"
    ):
        open_video(tmp_path)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"fps": 0}, r"fps needs a positive finite number, but got 0"),
        ({"fps": -2.0}, r"fps needs a positive finite number"),
        ({"fps": float("nan")}, r"fps needs a positive finite number"),
        ({"fps": 1e6}, r"fps needs a positive number of at most 1000, but got 1000000.0"),
        ({"fps": "10"}, r"fps needs a positive number, but got '10'"),
        ({"fps": True}, r"fps needs a positive number"),
        ({"resize": 0}, r"resize needs a size in pixels from 1 to 16384.*got 0"),
        ({"resize": (64, 48, 3)}, r"resize needs .*\[width, height\]"),
        ({"resize": (64.0, 48)}, r"resize needs"),
        ({"resize": "64x48"}, r"resize needs"),
        ({"chunk_frames": 0}, r"chunk_frames needs a whole number from 1 to 4096, or auto.*got 0"),
        ({"chunk_frames": 2.5}, r"chunk_frames needs a whole number"),
        ({"start_time": "2022-06-01", "frame_interval": "0s"}, r"frame_interval .*positive"),
        ({"start_time": "2022-06-01", "frame_interval": "-1h"}, r"frame_interval .*positive"),
        ({"start_time": "2022-06-01", "frame_interval": "17"}, r"without unit.*'17h'"),
        ({"start_time": "2022-06-01", "frame_interval": 5}, r"without unit"),
        ({"start_time": "2022-06-01", "frame_interval": "soon"}, r"got 'soon'"),
        ({"start_time": "yesterday-ish"}, r"start_time needs a date-time.*'yesterday-ish'"),
        ({"storage_options": "anon"}, r"storage_options needs a mapping"),
    ],
)
def test_bad_video_options(videos, options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        open_video(videos["ffv1"], **options)


def test_bad_options_checked_before_the_file(tmp_path):
    with pytest.raises(ConfigError, match="chunk_frames"):
        open_video(tmp_path / "nothere.mp4", chunk_frames=-1)


# --------------------------------------------------------------------------------------------
# fsspec URLs
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def memory_fs():
    fs = fsspec.filesystem("memory")
    root = "/sediment_xr_test_io"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_video_through_memory_url(videos, h264_reference, memory_fs):
    fs, root = memory_fs
    fs.pipe(f"{root}/lossless.mkv", Path(videos["ffv1"]).read_bytes())
    fs.pipe(f"{root}/lossy.mp4", Path(videos["h264"]).read_bytes())
    local = open_video(videos["ffv1"], chunk_frames=3, start_time="2022-06-01")
    remote = open_video(f"memory://{root}/lossless.mkv", chunk_frames=3, start_time="2022-06-01")
    assert remote.attrs["source"] == f"memory://{root}/lossless.mkv"
    xr.testing.assert_identical(remote.drop_attrs(), local.drop_attrs())
    mp4 = open_video(f"memory://{root}/lossy.mp4", chunk_frames=3, start_time="2022-06-01")
    np.testing.assert_array_equal(mp4.isel(time=slice(5, 12)).values, h264_reference[5:12])
    cloudpickle.dumps(remote.data.__dask_graph__())


def test_missing_memory_url(memory_fs):
    _, root = memory_fs
    with pytest.raises(InputNotFoundError, match=r"memory://.*gone\.mp4 does not exist"):
        open_video(f"memory://{root}/gone.mp4")


def test_images_through_memory_url(ooi_folder, memory_fs):
    fs, root = memory_fs
    for path in ooi_folder.iterdir():
        fs.pipe(f"{root}/ooi/{path.name}", path.read_bytes())
    local = open_images(ooi_folder, chunk_frames=3)
    remote = open_images(f"memory://{root}/ooi", chunk_frames=3)
    assert remote.time.attrs["time_source"] == "filename"
    xr.testing.assert_identical(remote.drop_attrs(), local.drop_attrs())
    files = remote.attrs["source_files"]
    assert all(name.startswith("memory://") for name in files)
    by_glob = open_images(f"memory://{root}/ooi/*.png")
    np.testing.assert_array_equal(by_glob.values, local.values)


# --------------------------------------------------------------------------------------------
# open_images
# --------------------------------------------------------------------------------------------


def test_images_ooi_names_give_order_and_time(ooi_folder):
    arr = open_images(ooi_folder, chunk_frames=3)
    assert arr.name == "frames"
    assert arr.dims == ("time", "y", "x", "channel")
    assert arr.dtype == np.uint8
    assert isinstance(arr.data, da.Array)
    assert arr.chunks == ((3, 1), (HEIGHT,), (WIDTH,), (3,))
    assert arr.attrs["long_name"] == "image frames"
    assert arr.attrs["channel_order"] == "RGB"
    assert "channel" not in arr.coords
    assert arr.time.attrs["time_source"] == "filename"
    expected_times = sorted(pd.Timestamp(s) for s in OOI_STAMPS)
    np.testing.assert_array_equal(
        arr.time.values, np.array([t.to_datetime64() for t in expected_times], "datetime64[ns]")
    )
    order = [1, 0, 3, 2]  # OOI_STAMPS index of each stamp in time order
    np.testing.assert_array_equal(arr.frame.values, np.arange(4))
    np.testing.assert_array_equal(arr.values, _frames_in(order))
    np.testing.assert_array_equal(arr.isel(time=2).values, make_frame(3))
    files = [Path(f).name for f in arr.attrs["source_files"]]
    assert files == [_ooi_name(OOI_STAMPS[k]) for k in order]


def test_images_frame_interval_overrides_names(ooi_folder):
    arr = open_images(ooi_folder, start_time="2022-06-01", frame_interval="30min")
    assert arr.time.attrs["time_source"] == "frame_interval"
    assert arr.time.values[1] == np.datetime64("2022-06-01T00:30:00", "ns")
    np.testing.assert_array_equal(arr.values, _frames_in([1, 0, 3, 2]))


def test_images_start_time_shifts_name_times(ooi_folder):
    arr = open_images(ooi_folder, start_time="2022-06-01")
    assert arr.time.attrs["time_source"] == "start_time+filename"
    assert arr.time.values[0] == np.datetime64("2022-06-01T00:00:00", "ns")
    assert arr.time.values[1] == np.datetime64("2022-06-01T03:34:13", "ns")


def test_images_natural_sort_and_skipped_files(numbered_folder):
    arr = open_images(
        numbered_folder, chunk_frames=5, start_time="2022-06-01", frame_interval="17h"
    )
    files = [Path(f).name for f in arr.attrs["source_files"]]
    assert files == [f"frame_{k}.png" for k in range(1, 13)]
    assert arr.chunks[0] == (5, 5, 2)
    np.testing.assert_array_equal(arr.values, _frames_in(range(1, 13)))
    assert arr.time.values[2] == np.datetime64("2022-06-02T10:00:00", "ns")
    assert arr.time.attrs["time_source"] == "frame_interval"


def test_images_glob_and_jpeg(tmp_path):
    for k in range(3):
        name = f"still_2022060{k + 1}T120000Z.JPG"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(make_frame(k), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "other_20220601T130000Z.png"), make_frame(9))
    arr = open_images(str(tmp_path / "still_*"))
    assert arr.shape == (3, HEIGHT, WIDTH, 3)
    assert arr.time.values[2] == np.datetime64("2022-06-03T12:00:00", "ns")
    assert np.abs(arr.values.astype(int) - _frames_in(range(3)).astype(int)).mean() < 4


def test_images_resize(numbered_folder):
    arr = open_images(
        numbered_folder, resize=(32, 20), start_time="2022-06-01", frame_interval="1h"
    )
    assert arr.shape == (12, 20, 32, 3)
    expected = [
        cv2.resize(make_frame(k), (32, 20), interpolation=cv2.INTER_LINEAR) for k in [1, 2]
    ]
    np.testing.assert_array_equal(arr.isel(time=[0, 1]).values, np.stack(expected))


def test_image_graph_pickles(numbered_folder):
    arr = open_images(numbered_folder, start_time="2022-06-01", frame_interval="1h")
    cloudpickle.dumps(arr.data.__dask_graph__())


def test_images_of_different_sizes(numbered_folder):
    small = make_frame(0, height=24, width=32)
    cv2.imwrite(str(numbered_folder / "frame_7.png"), small)
    kwargs = {"start_time": "2022-06-01", "frame_interval": "1h"}
    with pytest.raises(
        InputError, match=r"frame_7\.png is 32x24 pixels but .*frame_1\.png is 64x48.*resize"
    ):
        open_images(numbered_folder, **kwargs)
    arr = open_images(numbered_folder, resize=(64, 48), **kwargs)
    resized = cv2.resize(small[..., ::-1], (64, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(arr.isel(time=6).values, resized)


def test_images_without_timestamps_need_time_options(numbered_folder):
    with pytest.raises(
        ConfigError, match=r"frame_1\.png has no timestamp in its name.*frame_interval='17h'"
    ):
        open_images(numbered_folder)
    with pytest.raises(ConfigError, match=r"frame_1\.png has no timestamp"):
        open_images(numbered_folder, start_time="2022-06-01")
    with pytest.raises(ConfigError, match=r"needs start_time"):
        open_images(numbered_folder, frame_interval="1h")


def test_images_some_with_timestamps(ooi_folder):
    shutil.copy(ooi_folder / _ooi_name(OOI_STAMPS[0]), ooi_folder / "extra.png")
    with pytest.raises(InputError, match=r"extra\.png has no timestamp in its name, but 4 of 5"):
        open_images(ooi_folder)


def test_images_duplicate_timestamps(ooi_folder):
    shutil.copy(ooi_folder / _ooi_name(OOI_STAMPS[0]), ooi_folder / f"copy_{OOI_STAMPS[0]}Z.png")
    first = re.escape(_ooi_name(OOI_STAMPS[0]))
    pattern = rf"{first} and .*copy_{OOI_STAMPS[0]}Z\.png have the same timestamp"
    with pytest.raises(InputError, match=pattern) as info:
        open_images(ooi_folder)
    message = str(info.value)
    assert _ooi_name(OOI_STAMPS[0]) in message
    assert f"copy_{OOI_STAMPS[0]}Z.png" in message
    assert "same timestamp (2021-08-24T03:16:18)" in message


def test_non_image_named_png(numbered_folder):
    (numbered_folder / "frame_5.png").write_text("not really a png")
    with pytest.raises(InputError, match=r"frame_5\.png is not a readable image"):
        open_images(numbered_folder, start_time="2022-06-01", frame_interval="1h")


def test_zero_byte_image(numbered_folder):
    (numbered_folder / "frame_8.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"frame_8\.png is empty \(0 bytes\)"):
        open_images(numbered_folder, start_time="2022-06-01", frame_interval="1h")


def test_image_kernel_marks_undecodable_bytes(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out, status = decode.read_chunk([str(path)], frame_size=(HEIGHT, WIDTH))
    assert status.tolist() == [FRAME_UNDECODABLE]
    assert out.shape == (1, HEIGHT, WIDTH, 3) and not out.any()


def test_image_kernel_without_dask(numbered_folder):
    files = [str(numbered_folder / f"frame_{k}.png") for k in (3, 1)]
    out, status = decode.read_chunk(files, frame_size=(HEIGHT, WIDTH))
    np.testing.assert_array_equal(out, _frames_in([3, 1]))
    assert (status == FRAME_OK).all()


def test_no_images_found(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    (tmp_path / "._frame.png").write_bytes(b"junk")
    with pytest.raises(
        InputNotFoundError, match=r"no image files found in .*\.png, \.jpg, \.jpeg, \.tif, \.tiff"
    ):
        open_images(tmp_path)
    with pytest.raises(InputNotFoundError, match=r"no image files found in .*\*\.jpg"):
        open_images(str(tmp_path / "*.jpg"))


def test_missing_image_folder(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"nofolder does not exist"):
        open_images(tmp_path / "nofolder")


def test_single_file_given_to_open_images(numbered_folder):
    with pytest.raises(InputError, match=r"frame_1\.png is a single file.*glob pattern"):
        open_images(numbered_folder / "frame_1.png")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg", "2021-08-24T03:16:18"),
        ("s3://bucket/cam/CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg", "2021-08-24T03:16:18"),
        ("img_20220601T120000Z.png", "2022-06-01T12:00:00"),
        ("img_20220601T120000.250Z.png", "2022-06-01T12:00:00.250"),
        ("20220601T120000.png", "2022-06-01T12:00:00"),
        ("frame_0006.png", None),
        ("img_20221301T120000.png", None),  # month 13
        ("img_20220601T1200001.png", None),  # seven digits
        ("20220601T120000/frame_1.png", None),  # only the file name counts
    ],
)
def test_parse_timestamp_from_name(name, expected):
    result = parse_timestamp_from_name(name)
    if expected is None:
        assert result is None
    else:
        assert result == pd.Timestamp(expected)
        assert result.tzinfo is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1h", "1h"), ("17h", "17h"), ("30min", "30min"), (pd.Timedelta("2D"), "2D")],
)
def test_parse_frame_interval(value, expected):
    assert parse_frame_interval(value) == pd.Timedelta(expected)


def test_parse_frame_interval_accepts_timedelta():
    import datetime as dt

    assert parse_frame_interval(dt.timedelta(hours=3)) == pd.Timedelta("3h")


@pytest.mark.parametrize("value", ["0s", "-1h", "17", 3, 2.5, None, "soon"])
def test_parse_frame_interval_rejects(value):
    with pytest.raises(ConfigError, match="frame_interval needs a positive duration"):
        parse_frame_interval(value)


# --------------------------------------------------------------------------------------------
# frame status, damaged and truncated input, EXIF orientation, limits, messages
# --------------------------------------------------------------------------------------------


def _mjpeg(path, n=6, broken=()):
    """MJPEG video with the JPEG data of frames `broken` zeroed (they fail to decode)."""
    write_video(path, "mjpeg", "yuvj420p", n=n)
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    for k in broken:
        end = data.index(b"\xff\xd9", starts[k]) + 2
        data[starts[k] : end] = bytes(end - starts[k])
    path.write_bytes(bytes(data))
    return path


def test_frame_status_is_lazy_and_ok_for_good_frames(videos, numbered_folder):
    kwargs = {"start_time": "2022-06-01", "frame_interval": "1h"}
    for arr in (
        open_video(videos["ffv1"], chunk_frames=6, **kwargs),
        open_images(numbered_folder, chunk_frames=5, **kwargs),
    ):
        status = arr["frame_status"]
        assert status.dims == ("time",)
        assert isinstance(status.data, da.Array)
        assert status.chunks == arr.chunks[:1]
        assert status.attrs == FRAME_STATUS_ATTRS
        assert (status.values == FRAME_OK).all()


def test_undecodable_video_frames_are_skipped(tmp_path):
    path = _mjpeg(tmp_path / "damaged.mkv", n=6, broken=(2, 4))
    arr = open_video(path, chunk_frames=4, start_time="2022-06-01", frame_interval="1h")
    loaded = arr.load()  # pixels and status from the same tasks
    expected = [FRAME_OK] * 6
    expected[2] = expected[4] = FRAME_UNDECODABLE
    np.testing.assert_array_equal(loaded["frame_status"].values, expected)
    assert (loaded.values[[2, 4]] == 0).all()
    reference = decode_all(_mjpeg(tmp_path / "intact.mkv", n=6))
    np.testing.assert_array_equal(loaded.values[[0, 1, 3, 5]], reference[[0, 1, 3, 5]])


def test_first_frame_damaged_opens_from_the_next(tmp_path):
    path = _mjpeg(tmp_path / "bad_start.mkv", n=4, broken=(0,))
    arr = open_video(path, start_time="2022-06-01", frame_interval="1h")
    assert arr.shape == (4, HEIGHT, WIDTH, 3)
    assert arr["frame_status"].values.tolist() == [FRAME_UNDECODABLE] + [FRAME_OK] * 3


def test_no_decodable_frame(tmp_path):
    path = _mjpeg(tmp_path / "ruined.mkv", n=3, broken=(0, 1, 2))
    with pytest.raises(InputError, match=r"ruined\.mkv: none of its 3 frames can be decoded"):
        open_video(path, start_time="2022-06-01", frame_interval="1h")


def test_truncated_mkv_is_refused(videos, tmp_path):
    data = Path(videos["ffv1"]).read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.mkv is truncated: its header gives 2\.000 s"):
        open_video(path, start_time="2022-06-01", frame_interval="1h")


def test_unknown_codec_is_refused(tmp_path):
    path = tmp_path / "video.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "bgr0"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(make_frame(0), format="rgb24")))
        container.mux(stream.encode())
    path.write_bytes(path.read_bytes().replace(b"FFV1", b"ZZZ9"))
    with pytest.raises(InputError, match="codec this FFmpeg build cannot decode"):
        open_video(path, start_time="2022-06-01", frame_interval="1h")


def test_video_over_the_pixel_limit(videos, monkeypatch):
    monkeypatch.setattr(frames_module, "MAX_FRAME_PIXELS", WIDTH * HEIGHT - 1)
    with pytest.raises(InputError, match=r"over the limit of .*frames of 64x48 pixels"):
        open_video(videos["ffv1"], start_time="2022-06-01", frame_interval="1h")
    monkeypatch.setattr(frames_module, "MAX_FRAME_PIXELS", WIDTH * HEIGHT)
    with pytest.raises(InputError, match=r"resized frames of 100x100 pixels"):
        open_video(videos["ffv1"], resize=100, start_time="2022-06-01", frame_interval="1h")


def test_undecodable_image_is_skipped(numbered_folder):
    good = (numbered_folder / "frame_4.png").read_bytes()
    (numbered_folder / "frame_4.png").write_bytes(good[:60])  # header only
    arr = open_images(numbered_folder, start_time="2022-06-01", frame_interval="1h").load()
    assert arr["frame_status"].values[3] == FRAME_UNDECODABLE
    assert (arr.values[3] == 0).all()
    assert (arr["frame_status"].values[[0, 1, 2, 4]] == FRAME_OK).all()
    np.testing.assert_array_equal(arr.values[4], make_frame(5))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    from PIL import Image, ImageOps

    image = make_frame(3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"img_2022060{orientation}T000000Z.png"  # PNG: lossless
    Image.fromarray(image).save(path, exif=exif.tobytes())
    with Image.open(path) as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
    arr = open_images(str(tmp_path / "*.png"))
    assert arr.shape[1:3] == expected.shape[:2]
    np.testing.assert_array_equal(arr.values[0], expected)


def test_grey_rgba_and_16_bit_images(tmp_path):
    from PIL import Image

    rgb = make_frame(2)
    grey = rgb[..., 1]
    cv2.imwrite(str(tmp_path / "a_20220601T000000Z.png"), grey)
    rgba = np.concatenate([rgb, np.full((HEIGHT, WIDTH, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "b_20220601T010000Z.png")
    wide = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "c_20220601T020000Z.png"), wide[..., ::-1])
    arr = open_images(tmp_path).values
    np.testing.assert_array_equal(arr[0], np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(arr[1], rgb)
    np.testing.assert_array_equal(arr[2], rgb)


def test_decompression_bomb_png(tmp_path):
    from PIL import Image

    Image.new("1", (20000, 20000)).save(tmp_path / "bomb_20220601T000000Z.png")
    with pytest.raises(InputError, match=r"bomb_.*\.png is over the limit of 67 megapixels"):
        open_images(tmp_path)


def test_messages_name_settings_for_python_and_for_the_config(videos, numbered_folder):
    """Messages say frame_interval='1h'; reworded for a config they say ingest.frame_interval."""
    with pytest.raises(ConfigError, match=r"^frame_interval='1h' needs start_time") as info:
        open_video(videos["ffv1"], frame_interval="1h")
    assert reword(info.value).startswith("ingest.frame_interval: '1h' needs ingest.start_time")
    with pytest.raises(ConfigError, match=r"e\.g\. start_time='2022-06-01' and") as info:
        open_images(numbered_folder)
    assert "e.g. ingest.start_time: '2022-06-01' and ingest.frame_interval: '17h'" in reword(
        info.value
    )
    with pytest.warns(SedimentXRWarning, match=r"Give frame_interval") as record:
        open_video(videos["ffv1"], start_time="2022-06-01")
    assert "Give ingest.frame_interval" in reword(record[0].message)
    small = make_frame(0, height=24, width=32)
    cv2.imwrite(str(numbered_folder / "frame_7.png"), small)
    with pytest.raises(InputError, match=r"with resize=\(64, 48\)\.$") as info:
        open_images(numbered_folder, start_time="2022-06-01", frame_interval="1h")
    assert reword(info.value).endswith("with ingest.resize: [64, 48].")


def test_error_settings_survive_pickling():
    """Errors raised in worker processes keep the settings they name."""
    import pickle

    err = InputError("use resize=(64, 48).", settings=[("resize", (64, 48))])
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is InputError and again.settings == err.settings
    assert reword(again) == "use ingest.resize: [64, 48]."


def test_storage_error_classification():
    import botocore.exceptions

    url = "s3://bucket/video.mkv"
    timeout = botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9")
    assert "did not answer in time" in str(storage_error(timeout, url))
    refused = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    assert "could not connect" in str(storage_error(refused, url))
    denied = storage_error(PermissionError("Forbidden"), url)
    assert "permission denied (Forbidden). Check the credentials" in str(denied)
    assert isinstance(denied, OSError)
    assert "file's permissions" in str(storage_error(PermissionError("no"), "/data/v.mkv"))
    assert storage_error(FileNotFoundError("gone"), url) is None
    assert storage_error(ValueError("not storage"), url) is None


@pytest.mark.parametrize(
    ("width", "height", "frames"),
    [(1024, 1024, 32), (64, 48, 32), (1920, 1080, 16), (3840, 2160, 4), (16384, 8192, 1)],
)
def test_auto_chunk_frames(width, height, frames):
    assert auto_chunk_frames(width, height) == frames


def test_default_chunks_are_automatic(videos):
    arr = open_video(videos["ffv1"], start_time="2022-06-01")
    n = arr.sizes["time"]
    expected = auto_chunk_frames(arr.sizes["x"], arr.sizes["y"])
    assert arr.data.chunks[0][0] == min(n, expected)


def test_open_frames_chooses_the_opener(videos, numbered_folder):
    kwargs = {"start_time": "2022-06-01", "frame_interval": "1h"}
    assert io.open_frames(videos["ffv1"], **kwargs).attrs["long_name"] == "video frames"
    assert io.open_frames(numbered_folder, **kwargs).attrs["long_name"] == "image frames"
    glob = str(numbered_folder / "frame_1*.png")
    assert io.open_frames(glob, **kwargs).sizes["time"] == 4  # frame_1, frame_10, 11, 12
    with pytest.raises(ConfigError, match=r"fps samples a video, but .* is a folder of stills"):
        io.open_frames(numbered_folder, fps=2, **kwargs)


@pytest.mark.parametrize(
    ("start", "interval", "count"),
    [("2022-06-01", "1000D", 200), ("2261-12-30", "2D", 2), ("2022-06-01", "100000D", 3)],
)
def test_times_past_datetime64_are_refused(numbered_folder, start, interval, count):
    """A time axis that datetime64[ns] cannot hold is refused, never wrapped around."""
    from sediment_xr.timeaxis import parse_start_time, regular_times

    with pytest.raises(ConfigError, match=r"run past what datetime64\[ns\] can hold"):
        regular_times(parse_start_time(start), parse_frame_interval(interval), count)
    with pytest.raises(ConfigError, match=r"run past what datetime64\[ns\] can hold"):
        open_images(numbered_folder, start_time=start, frame_interval="100000D")
    with pytest.raises(ConfigError, match=r"frame_interval needs .* at most about 292 years"):
        open_images(numbered_folder, start_time=start, frame_interval="300000D")


def test_a_presigned_urls_signature_is_never_recorded():
    from sediment_xr._fs import without_query
    from sediment_xr._provenance import call_repr

    url = "https://bucket.s3.amazonaws.com/cam/v.mp4?X-Amz-Credential=AK&X-Amz-Signature=abc"
    assert without_query(url) == "https://bucket.s3.amazonaws.com/cam/v.mp4"
    assert without_query("data/v.mp4?not-a-url") == "data/v.mp4?not-a-url"  # a local name
    assert "Signature" not in call_repr("open_video", url, fps=2)
