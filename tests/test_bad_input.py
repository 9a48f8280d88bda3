"""The bad-input suite: every input a user can get wrong, through the real command line.

Each case writes a real bad input (tiny videos, stills, configs, a model file, an object store
on 127.0.0.1) and runs ``sediment_xr.cli.main`` in this process with ``--scheduler
synchronous`` (dask's in-process scheduler: no cluster starts), except the disk-full case,
which runs the command in a subprocess with a file-size limit.  A refused input must give
what the project promises:

* exactly one line on stderr, ``sediment-xr: error: ...``, naming the problem, what was seen
  and the fix;
* a non-zero exit code: 2 for the input, the config, credentials and storage; 1 for the
  machine (a full disk);
* no traceback;
* an earlier output in the same folder left byte for byte as it was (each refusal test runs
  against a copy of a finished run's output folder).

Inputs the tool must take rather than refuse (grey, RGBA and 16-bit stills, EXIF-rotated
JPEGs, hidden and ``._*`` files, out-of-order names, frames that do not decode in the middle
of a video) are checked for the right handling instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import moto_s3
from PIL import Image

from sediment_xr.cli import main
from sediment_xr.frames import FRAME_OK, FRAME_UNDECODABLE, MAX_FRAME_PIXELS
from sediment_xr.store import COMPLETE_ATTR
from sediment_xr.testing import sample_frames_dir, write_video

ERROR = "sediment-xr: error: "
WARNING = "sediment-xr: warning: "
SIZE = 64
TIMES = {"start_time": "2022-06-01T00:00:00", "frame_interval": "1h"}
# Small and quick: 3 clusters from a 2000-pixel sample, no report or segmented video.
QUICK = {
    "ingest": {**TIMES, "chunk_frames": 2},
    "cluster": {"n_clusters": 3, "sample_size": 2000},
    "report": {"html": False, "video": False},
}
RUN = ["--scheduler", "synchronous", "--quiet"]
KEEP_FRAMES = {"store_frames": True}  # the decoded frames are checked in cube.zarr


# --------------------------------------------------------------------------------------------
# inputs written at test time
def frames(n: int = 6, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """RGB frames with many colours, each frame different."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            np.stack([(x * 3 + 7 * k) % 256, (y * 5) % 256, np.full_like(x, 40 * k)], -1)
            for k in range(n)
        ]
    ).astype(np.uint8)


def good_video(path: Path, n: int = 6) -> Path:
    return write_video(frames(n), path, codec="ffv1")


def mjpeg_video(path: Path, n: int = 8, broken: tuple[int, ...] = ()) -> Path:
    """An MJPEG video whose frames at positions `broken` have their JPEG data zeroed.

    FFmpeg's MJPEG decoder reports such a frame as invalid data and decodes the next ones, as
    with a recording damaged in the middle.
    """
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
        for frame in frames(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    assert len(starts) == n
    for k in broken:
        end = data.index(b"\xff\xd9", starts[k]) + 2
        data[starts[k] : end] = bytes(end - starts[k])
    path.write_bytes(bytes(data))
    return path


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB(A), grey or 16-bit array as PNG with Pillow/OpenCV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == np.uint16 or image.ndim == 2:
        assert cv2.imwrite(str(path), image if image.ndim == 2 else image[..., ::-1])
    else:
        Image.fromarray(image).save(path)
    return path


def stamp(hour: int) -> str:
    return f"CAM_20220601T{hour:02d}0000_UTC"


def stills(folder: Path, images: list[np.ndarray], ext: str = "png") -> Path:
    for hour, image in enumerate(images):
        write_png(folder / f"{stamp(hour)}.{ext}", image)
    return folder


def write_config(
    tmp_path: Path, input_path: Path | str, output: Path | str | None = None, **sections
) -> Path:
    """A config: QUICK settings, updated section by section with `sections`."""
    data = {
        "input": str(input_path),
        "output": str(output if output is not None else tmp_path / "out"),
    }
    for name, value in QUICK.items():
        data[name] = dict(value)
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# running and checking
def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, words: list[str], exit_code: int = 2) -> str:
    """One error line naming the problem and the fix, the exit code, no traceback."""
    assert code == exit_code, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(ERROR), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    # a problem and a fix: at least two sentences
    assert len(err[len(ERROR) :].strip()) > 60 and ". " in err, err
    return err


def assert_ran(code: int, out: str, err: str, output: Path, warnings: int = 0) -> list[str]:
    """Exit 0, the output path on stdout, only `warnings` one-line warnings on stderr."""
    assert code == 0, err
    assert out.strip() == str(output)
    lines = err.splitlines()
    assert len(lines) == warnings, err
    assert all(line.startswith(WARNING) for line in lines), err
    assert "Traceback" not in err
    return lines


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (and link) under `folder` with a hash of its bytes; the lock is left out."""
    result = {}
    for root, dirs, files in os.walk(folder):
        for name in [*files, *[d for d in dirs if os.path.islink(os.path.join(root, d))]]:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if rel == ".sediment_xr/lock":
                continue
            if path.is_symlink():
                result[rel] = f"link to {os.readlink(path)}"
            else:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def open_cube(output: Path) -> xr.Dataset:
    return xr.open_zarr(output / "cube.zarr", zarr_format=3, consolidated=False)


def is_complete(output: Path) -> bool:
    """The output's cube says it is complete (False when there is no cube)."""
    root = output / "cube.zarr" / "zarr.json"
    if not root.exists():
        return False
    return json.loads(root.read_text())["attributes"].get(COMPLETE_ATTR, False)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """The output folder of a finished good run (a video of 6 frames)."""
    root = tmp_path_factory.mktemp("earlier")
    video = good_video(root / "video.mkv")
    config = write_config(root, video, root / "out")
    assert main(["run", str(config), *RUN]) == 0
    assert is_complete(root / "out")
    return root / "out"


def copy_of(earlier: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(earlier, copy, symlinks=True)
    return copy


@pytest.fixture()
def out(tmp_path, earlier) -> Iterator[Path]:
    """A copy of the earlier output; after the test every byte of it must be unchanged."""
    copy = copy_of(earlier, tmp_path)
    before = snapshot(copy)
    yield copy
    assert snapshot(copy) == before, "a refused run changed the earlier output"


# --------------------------------------------------------------------------------------------
# videos
def test_zero_byte_video(tmp_path, out, capsys):
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(code, stdout, err, ["empty.mp4 is empty (0 bytes)", "fetch the file again"])


def test_truncated_video(tmp_path, out, capsys):
    """A copy cut short keeps its header: FFmpeg reads the frames there without an error."""
    data = good_video(tmp_path / "full.mkv", n=8).read_bytes()
    video = tmp_path / "cut.mkv"
    video.write_bytes(data[: len(data) * 6 // 10])
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["cut.mkv is truncated", "header gives 0.800 s", "Download or copy it again", "-c copy"],
    )


def test_truncated_mp4_without_index(tmp_path, out, capsys):
    """An MP4 cut inside its index (moov, at the end): the header is there, the frames not."""
    data = write_video(frames(8), tmp_path / "full.mp4").read_bytes()
    video = tmp_path / "cut.mp4"
    video.write_bytes(data[: len(data) * 9 // 10])
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    if "cannot be opened by FFmpeg" in err:  # where the cut falls, FFmpeg may not open it
        expected = ["cut.mp4 cannot be opened by FFmpeg", "Check that it is a complete video"]
    else:
        expected = [
            "cut.mp4 is truncated",
            "header gives 0.800 s of video but no frame",
            "copy it again",
        ]
    assert_refused(code, stdout, err, expected)


def test_text_file_named_mp4(tmp_path, out, capsys):
    video = tmp_path / "page.mp4"
    video.write_text("<html><body>404 Not Found</body></html>\n" * 20)
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(code, stdout, err, ["page.mp4 cannot be opened by FFmpeg", "HTML error page"])


def test_unsupported_codec(tmp_path, out, capsys):
    """An AVI whose codec tag no FFmpeg decoder knows (FFV1 relabelled as 'ZZZ9')."""
    avi = tmp_path / "ffv1.avi"
    with av.open(str(avi), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        for frame in frames(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    video = tmp_path / "odd_codec.avi"
    video.write_bytes(avi.read_bytes().replace(b"FFV1", b"ZZZ9"))
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["odd_codec.avi", "codec this FFmpeg build cannot decode", "Re-encode it", "libx264"],
    )


def test_no_decodable_frames(tmp_path, out, capsys):
    video = mjpeg_video(tmp_path / "ruined.mkv", n=6, broken=tuple(range(6)))
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["ruined.mkv: none of its 6 frames can be decoded", "damaged", "re-encode it"],
    )


def test_video_stream_without_frames(tmp_path, out, capsys):
    video = tmp_path / "empty.avi"
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        container.start_encoding()
    code, stdout, err = run(["run", str(write_config(tmp_path, video, out))], capsys)
    assert_refused(code, stdout, err, ["empty.avi has a video stream but 0 frames", "ffprobe"])


def test_corrupt_frames_mid_stream_are_skipped_and_recorded(tmp_path, capsys):
    """Frames 3 and 5 do not decode: the run goes on, says so, and marks them."""
    video = mjpeg_video(tmp_path / "damaged.mkv", n=8, broken=(3, 5))
    output = tmp_path / "out"
    code, stdout, err = run(["run", str(write_config(tmp_path, video, output))], capsys)
    [line] = assert_ran(code, stdout, err, output, warnings=1)
    assert "2 of 8 frames" in line and "cannot be decoded and were skipped" in line
    assert "(frame 3, 5)" in line and "frame_status" in line
    cube = open_cube(output)
    status = cube["frame_status"].values
    expected = np.full(8, FRAME_OK)
    expected[[3, 5]] = FRAME_UNDECODABLE
    np.testing.assert_array_equal(status, expected)
    assert cube["frame_status"].attrs["flag_meanings"] == "not_read ok undecodable"
    labels = cube["labels"].values
    assert (labels[[3, 5]] == -1).all()  # no data
    assert (labels[[0, 1, 2, 4, 6, 7]] >= 0).all()
    cover = pd.read_csv(output / "cover.csv")
    clusters = cover.filter(like="cluster_")
    assert clusters.loc[[3, 5]].isna().all().all()
    np.testing.assert_allclose(clusters.drop(index=[3, 5]).sum(axis=1), 100.0)
    assert is_complete(output)


# --------------------------------------------------------------------------------------------
# still images taken as they are
def test_grayscale_images_become_three_equal_channels(tmp_path, capsys):
    grey = [frames(3)[k, ..., 0] for k in range(3)]
    folder = stills(tmp_path / "stills", grey)
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    stored = open_cube(output)["frames"].values
    np.testing.assert_array_equal(stored, np.repeat(np.stack(grey)[..., None], 3, axis=-1))


def test_rgba_images_drop_alpha(tmp_path, capsys):
    rgb = frames(3)
    alpha = np.broadcast_to(np.arange(SIZE, dtype=np.uint8)[None, :, None] * 4, (SIZE, SIZE, 1))
    folder = stills(tmp_path / "stills", [np.concatenate([f, alpha], -1) for f in rgb])
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    np.testing.assert_array_equal(open_cube(output)["frames"].values, rgb)


def test_16bit_images_are_scaled_to_8_bits(tmp_path, capsys):
    wide = frames(3).astype(np.uint16) * 257 + np.uint16(100)
    folder = stills(tmp_path / "stills", list(wide))
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    np.testing.assert_array_equal(open_cube(output)["frames"].values, (wide >> 8).astype(np.uint8))


def exif_jpeg(path: Path, image: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, exif=exif.tobytes(), quality=95)
    return path


def test_exif_rotated_jpegs_are_analysed_upright(tmp_path, capsys):
    """Orientation 6 (camera held on its side): stored 64 x 48, shown 48 x 64, as a viewer."""
    stored = frames(3, height=48, width=64)
    folder = tmp_path / "stills"
    folder.mkdir()
    for hour, image in enumerate(stored):
        exif_jpeg(folder / f"{stamp(hour)}.jpg", image, orientation=6)
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    cube = open_cube(output)
    assert (cube.sizes["y"], cube.sizes["x"]) == (64, 48)
    upright = np.rot90(stored, k=-1, axes=(1, 2))  # 90 degrees clockwise
    assert np.abs(cube["frames"].values.astype(int) - upright.astype(int)).mean() < 3


def test_exif_rotation_is_applied_before_the_size_check(tmp_path, out, capsys):
    """One of the same stored size, but not rotated: as shown, the sizes differ."""
    folder = tmp_path / "stills"
    folder.mkdir()
    images = frames(3, height=48, width=64)
    for hour, image in enumerate(images):
        exif_jpeg(folder / f"{stamp(hour)}.jpg", image, orientation=1 if hour == 1 else 6)
    code, stdout, err = run(["run", str(write_config(tmp_path, folder, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        [f"{stamp(1)}.jpg is 64x48 pixels", "48x64 (as shown, after EXIF rotation)"],
    )


def test_hidden_and_appledouble_files_are_ignored(tmp_path, capsys):
    folder = stills(tmp_path / "stills", list(frames(3)))
    (folder / f"._{stamp(0)}.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (folder / ".hidden_20220601T050000_UTC.png").write_bytes(b"not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    cube = open_cube(output)
    assert cube.sizes["time"] == 3
    np.testing.assert_array_equal(cube["frames"].values, frames(3))


def test_non_monotonic_name_order_is_sorted_by_time(tmp_path, capsys):
    """File names listed in one order, timestamps in another: time decides."""
    folder = tmp_path / "stills"
    images = frames(3)
    # name order a, b, c; time order c (00h), a (01h), b (02h)
    for prefix, hour, k in (("a", 1, 1), ("b", 2, 2), ("c", 0, 0)):
        write_png(folder / f"{prefix}_20220601T{hour:02d}0000_UTC.png", images[k])
    output = tmp_path / "out"
    code, stdout, err = run(
        ["run", str(write_config(tmp_path, folder, output, ingest=KEEP_FRAMES))], capsys
    )
    assert_ran(code, stdout, err, output)
    cube = open_cube(output)
    times = pd.DatetimeIndex(cube["time"].values)
    assert times.is_monotonic_increasing and times[0] == pd.Timestamp("2022-06-01T00:00")
    np.testing.assert_array_equal(cube["frames"].values, images)


# --------------------------------------------------------------------------------------------
# still images refused
def test_mixed_image_sizes(tmp_path, out, capsys):
    folder = stills(tmp_path / "stills", [frames(1)[0], frames(1, height=48)[0], frames(1)[0]])
    code, stdout, err = run(["run", str(write_config(tmp_path, folder, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        [f"{stamp(1)}.png is 64x48 pixels", "one size", "ingest.resize: [64, 64]"],
    )
    assert "resize=(" not in err  # the config key, not the Python argument


def test_duplicate_timestamps(tmp_path, out, capsys):
    folder = stills(tmp_path / "stills", list(frames(2)))
    shutil.copy(folder / f"{stamp(0)}.png", folder / "copy_20220601T000000Z.png")
    code, stdout, err = run(["run", str(write_config(tmp_path, folder, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["have the same timestamp (2022-06-01T00:00:00)", "one image per time", "rename one"],
    )


def test_image_over_the_pixel_limit(tmp_path, out, capsys):
    """A 12000 x 12000 PNG of 18 kB: refused from its header, never decoded."""
    folder = stills(tmp_path / "stills", list(frames(2)))
    bomb = folder / f"{stamp(2)}.png"
    Image.new("1", (12000, 12000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 100_000 and 12000**2 > MAX_FRAME_PIXELS
    code, stdout, err = run(["run", str(write_config(tmp_path, folder, out))], capsys)
    assert_refused(
        code,
        stdout,
        err,
        [
            f"{stamp(2)}.png is over the limit of 67 megapixels per frame",
            "12000x12000",
            "decompression bombs",
            "downscale them first",
        ],
    )


# --------------------------------------------------------------------------------------------
# what the config asks of the frames
def test_crop_outside_the_frame(tmp_path, out, capsys):
    cfg = write_config(
        tmp_path,
        good_video(tmp_path / "video.mkv"),
        out,
        preprocess={"crop": {"rows": [-9000, -8000]}},
    )
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(code, stdout, err, ["rows inside the frame (64 rows)", "selects nothing"])


def two_colour_stripes(n: int = 4) -> np.ndarray:
    """Frames of one-pixel stripes of two colours (every CLAHE tile sees the same mix)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, ::2] = (200, 190, 180)
    image[:, 1::2] = (30, 40, 50)
    return np.repeat(image[None], n, axis=0)


def test_more_clusters_than_colours(tmp_path, capsys):
    video = write_video(two_colour_stripes(), tmp_path / "stripes.mkv", codec="ffv1")
    output = tmp_path / "out"
    cfg = write_config(tmp_path, video, output, cluster={"n_clusters": 4})
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        [
            "cluster.n_clusters: 4 needs at least 4 distinct colours",
            "only 2",
            "Use cluster.n_clusters: 2",
        ],
    )
    # the fit comes first: nothing was written, nothing looks finished
    assert not is_complete(output)
    assert not (output / "cover.csv").exists()


def test_all_black_frames(tmp_path, capsys):
    black = np.zeros((4, SIZE, SIZE, 3), np.uint8)
    video = write_video(black, tmp_path / "lens_cap.mkv", codec="ffv1")
    output = tmp_path / "out"
    code, stdout, err = run(["run", str(write_config(tmp_path, video, output))], capsys)
    assert_refused(
        code, stdout, err, ["the frames are blank", "the same colour (", "Check the input"]
    )
    assert not is_complete(output)
    assert not (output / "cover.csv").exists()


# --------------------------------------------------------------------------------------------
# the config file
BAD_CONFIG_VALUES = {
    "nan": (
        {"preprocess": {"clahe": {"clip_limit": float("nan")}}},
        ["preprocess.clahe.clip_limit needs a positive finite number, but got nan"],
    ),
    "negative": (
        {"cluster": {"sample_size": -5}},
        ["cluster.sample_size needs a whole number from 100 to", "got -5"],
    ),
    "huge": (
        {"cluster": {"n_clusters": 10**30}},
        ["cluster.n_clusters needs a whole number from 2 to 100", "n_clusters: 4"],
    ),
    "wrong-type": (
        {"ingest": {"resize": "big"}},
        ["ingest.resize needs a size in pixels", "got 'big'", "resize: [1024, 1024]"],
    ),
    "memory-limit-not-a-size": (
        {"dask": {"memory_limit": "4 gigs"}},
        ["dask.memory_limit needs a size such as 4GiB, but got '4 gigs'", "memory_limit: '4GiB'"],
    ),
    "memory-limit-too-small": (
        {"dask": {"memory_limit": "4kB"}},
        ["dask.memory_limit needs a size from 1GiB to 1PiB per worker"],
    ),
}


@pytest.mark.parametrize(
    ("sections", "words"), BAD_CONFIG_VALUES.values(), ids=BAD_CONFIG_VALUES.keys()
)
def test_bad_config_values(tmp_path, out, capsys, sections, words):
    cfg = write_config(tmp_path, good_video(tmp_path / "video.mkv"), out, **sections)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(code, stdout, err, words)


def test_unknown_key(tmp_path, out, capsys):
    cfg = write_config(tmp_path, good_video(tmp_path / "video.mkv"), out, cluster={"n_cluster": 5})
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["unknown config key cluster.n_cluster", "cluster.n_clusters", "Fix the spelling"],
    )


def test_yaml_alias_bomb(tmp_path, out, capsys):
    """A billion laughs: 9 levels of 9 aliases would expand to 387 million items."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"input: video.mkv\noutput: {out}\n" + "\n".join(levels) + "\n")
    started = time.monotonic()
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert time.monotonic() - started < 10
    assert_refused(code, stdout, err, ["uses a YAML alias (*a0)", "Write the values out"])


def test_python_object_tag_in_yaml(tmp_path, out, capsys):
    """YAML that would run a command under an unsafe loader: refused, and nothing runs."""
    marker = tmp_path / "ran"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"input: !!python/object/apply:os.system ['touch {marker}']\noutput: {out}\n")
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code, stdout, err, ["config.yaml is not valid YAML", "python/object", "Fix the syntax"]
    )
    assert not marker.exists()


def test_frame_interval_without_start_time_names_config_keys(tmp_path, out, capsys):
    cfg = write_config(
        tmp_path, good_video(tmp_path / "video.mkv"), out, ingest={"start_time": None}
    )
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["ingest.frame_interval: '1h' needs ingest.start_time", "give both"],
    )
    assert "frame_interval=" not in err and "start_time=" not in err


def test_start_time_without_frame_interval_warns(tmp_path, capsys):
    """Time is then the playback time of the video: one warning line, and the run goes on."""
    output = tmp_path / "out"
    cfg = write_config(
        tmp_path, good_video(tmp_path / "video.mkv"), output, ingest={"frame_interval": None}
    )
    code, stdout, err = run(["run", str(cfg)], capsys)
    [line] = assert_ran(code, stdout, err, output, warnings=1)
    assert "ingest.start_time + the video's playback time" in line
    assert "Give ingest.frame_interval" in line
    assert open_cube(output)["time"].attrs["time_source"] == "start_time+stream"


def test_task_memory_over_the_limit(tmp_path, out, capsys):
    """Four 1024 x 1024 frames per task, with 1 GiB shared by 32 threads: too much."""
    cfg = write_config(
        tmp_path,
        sample_frames_dir(),
        out,
        ingest={"chunk_frames": 4},
        dask={"memory_limit": "1GiB", "threads_per_worker": 32},
    )
    # The embedded LocalCluster's limit (the check refuses before any cluster starts).
    code = main(["run", str(cfg), "--quiet"])
    captured = capsys.readouterr()
    stdout, err = captured.out, captured.err
    assert_refused(
        code,
        stdout,
        err,
        [
            "ingest.chunk_frames: 4 puts 4 frames of 1024x1024 pixels in each task",
            "(half of dask.memory_limit: '1GiB' / dask.threads_per_worker: 32)",
            "Use ingest.chunk_frames: 2",
        ],
    )


# --------------------------------------------------------------------------------------------
# the output folder
def test_output_link_out_of_the_folder(tmp_path, earlier, capsys):
    """cover.csv is a link to a file elsewhere: the run must not write through it."""
    out = copy_of(earlier, tmp_path)
    precious = tmp_path / "precious.csv"
    precious.write_text("keep me\n")
    (out / "cover.csv").unlink()
    (out / "cover.csv").symlink_to(precious)
    cfg = write_config(tmp_path, good_video(tmp_path / "video.mkv"), out)
    before = snapshot(out)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["holds cover.csv, a symbolic link to", "outside the output folder", "Remove the link"],
    )
    assert precious.read_text() == "keep me\n"
    assert snapshot(out) == before


def test_input_among_the_outputs_own_files(tmp_path, earlier, capsys):
    """Re-analysing a file the output folder's run replaces (with --overwrite) would delete it."""
    out = copy_of(earlier, tmp_path)
    video = write_video(frames(6), out / "segmented.mp4")  # H.264 (PyAV 14 refuses FFV1 in MP4)
    cfg = write_config(tmp_path, video, out)
    before = snapshot(out)
    code, stdout, err = run(["run", str(cfg), "--overwrite"], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["is segmented.mp4 of the output folder", "replaces", "Copy the input out"],
    )
    assert snapshot(out) == before


def test_output_is_a_file(tmp_path, capsys):
    output = tmp_path / "results.csv"
    output.write_text("a,b\n1,2\n")
    cfg = write_config(tmp_path, good_video(tmp_path / "video.mkv"), output)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(code, stdout, err, ["results.csv is a file", "needs a folder"])
    assert output.read_text() == "a,b\n1,2\n"


def test_tampered_model_file(tmp_path, out, capsys):
    model = json.loads((out / "model.json").read_text())
    model["centers"][0][0] += 1.0  # edited after it was written
    tampered = tmp_path / "model.json"
    tampered.write_text(json.dumps(model))
    cfg = write_config(
        tmp_path, good_video(tmp_path / "video.mkv"), out, cluster={"model": str(tampered)}
    )
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["model.json was modified after it was written", "checksum", "Restore the original"],
    )


# --------------------------------------------------------------------------------------------
# a full disk
def run_with_file_size_limit(config: Path, limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run the command in a subprocess that cannot write files over `limit` bytes.

    ``RLIMIT_FSIZE`` works without privileges: a write past the limit fails with EFBIG (File
    too large), as a full disk fails with ENOSPC (Python ignores SIGXFSZ, so the write raises
    instead of killing the process).  Every file the run writes meets it, as on a full disk.
    """
    code = (
        "import resource, signal, sys, runpy;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}));"
        f"sys.argv = ['sediment-xr', 'run', {str(config)!r}, *{RUN!r}];"
        "runpy.run_module('sediment_xr.cli', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_disk_full(tmp_path, capsys):
    """Frames that do not fit, then outputs that do not fit; nothing is lost, runs resume."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(4, 96, 96, 3), dtype=np.uint8)  # incompressible
    video = write_video(noise, tmp_path / "noise.mkv", codec="ffv1")
    output = tmp_path / "out"
    # Noise frames are all flagged (nothing like a scene); trends on them all keep
    # trend_summary.txt at its full size.
    quality = {"include_flagged": True}
    cfg = write_config(tmp_path, video, output, ingest=KEEP_FRAMES, quality=quality)
    limit = 8 * 1024  # a frame chunk is 55 kB; trend_summary.txt about 13 kB

    # 1. A fresh output: the first chunk of frames does not fit.
    proc = run_with_file_size_limit(cfg, limit, tmp_path)
    assert_refused(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        ["no space left to write", "File too large", "run the same command again to resume"],
        exit_code=1,
    )
    assert not (output / "cover.csv").exists()
    if (output / "cube.zarr" / "zarr.json").exists():
        assert not is_complete(output)

    # 2. With space again, the same command finishes the output.
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_ran(code, stdout, err, output)
    assert is_complete(output)
    before = snapshot(output)

    # 3. The disk fills again while a rerun rewrites the outputs: every file is either as it
    #    was or whole, and the cube no longer says it is complete.
    proc = run_with_file_size_limit(cfg, limit, tmp_path)
    assert_refused(
        proc.returncode, proc.stdout, proc.stderr, ["no space left to write"], exit_code=1
    )
    after = snapshot(output)
    partial = [name for name in after if name.endswith(".partial")]
    for name, digest in before.items():
        if name != "cube.zarr/zarr.json":
            assert after.get(name) == digest, f"{name} changed or was lost"
    assert set(after) - set(before) <= set(partial)
    if after["cube.zarr/zarr.json"] != before["cube.zarr/zarr.json"]:
        assert not is_complete(output)

    # 4. And the same command finishes it again.
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_ran(code, stdout, err, output)
    assert is_complete(output)
    assert (output / "trend_summary.txt").read_bytes()


# --------------------------------------------------------------------------------------------
# object storage: a real S3 API (moto) on 127.0.0.1
BUCKET = "sediment-xr-bad-input"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with a bucket holding a good video; its options."""
    with moto_s3(BUCKET, skip_instance_cache=True) as (fs, options):
        video = good_video(tmp_path_factory.mktemp("s3") / "video.mkv")
        fs.put(str(video), f"{BUCKET}/video.mkv")
        yield options


@pytest.fixture()
def moto_checks_credentials():
    """Make the moto server check credentials, as S3 does (moto accepts any by default)."""
    from moto import settings

    try:
        from moto.core.authorization import ActionAuthenticatorMixin  # moto >= 5.1.17
    except ImportError:
        from moto.core.responses import ActionAuthenticatorMixin

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


FAST = {"connect_timeout": 0.5, "read_timeout": 0.5, "retries": {"max_attempts": 1}}


def test_object_store_missing_bucket(tmp_path, out, s3, capsys):
    cfg = write_config(tmp_path, "s3://no-such-bucket/video.mkv", out, storage_options=dict(s3))
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["s3://no-such-bucket/video.mkv does not exist: there is no bucket 'no-such-bucket'"],
    )


def test_object_store_output_bucket_missing(tmp_path, s3, capsys):
    cfg = write_config(
        tmp_path, f"s3://{BUCKET}/video.mkv", "s3://no-such-bucket/run", storage_options=dict(s3)
    )
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        ["output s3://no-such-bucket/run: there is no bucket", "does not create buckets"],
    )


def test_object_store_wrong_credentials(tmp_path, out, s3, moto_checks_credentials, capsys):
    options = {**s3, "key": "AKIAWRONGKEY", "secret": "wrong"}
    cfg = write_config(tmp_path, f"s3://{BUCKET}/video.mkv", out, storage_options=options)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code,
        stdout,
        err,
        [f"s3://{BUCKET}/video.mkv cannot be accessed: permission denied", "credentials"],
    )
    assert "wrong" not in err  # the secret is not shown


def test_object_store_time_out(tmp_path, out, silent_server, capsys):
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{silent_server}"},
        "config_kwargs": FAST,
        "skip_instance_cache": True,
    }
    cfg = write_config(tmp_path, f"s3://{BUCKET}/video.mkv", out, storage_options=options)
    started = time.monotonic()
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert time.monotonic() - started < 60
    assert_refused(
        code,
        stdout,
        err,
        ["did not answer in time", "endpoint_url", "read_timeout: 60", "run again"],
    )


def test_object_store_unreachable(tmp_path, out, capsys):
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{closed_port()}"},
        "config_kwargs": FAST,
        "skip_instance_cache": True,
    }
    cfg = write_config(tmp_path, f"s3://{BUCKET}/video.mkv", out, storage_options=options)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(code, stdout, err, ["could not connect to the storage", "endpoint_url"])


# --------------------------------------------------------------------------------------------
# safe by construction
def test_nothing_is_persisted_or_loaded_with_pickle_or_unsafe_yaml():
    """Models are JSON with a checksum, configs YAML through a safe loader, data Zarr."""
    import sediment_xr

    unsafe = (
        "import pickle",
        "pickle.load",
        "cloudpickle",
        "joblib",
        "allow_pickle=True",
        "yaml.load(",
        "yaml.unsafe_load",
        "yaml.Loader",
        "FullLoader",
        "UnsafeLoader",
        "import marshal",
        "import shelve",
    )
    for path in Path(sediment_xr.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for word in unsafe:
            assert word not in text, f"{path.name} uses {word}"


@pytest.mark.parametrize("pattern", ["{folder}", "{folder}/*.png", "{folder}/**/*.png"])
def test_output_in_the_input_folder(tmp_path, capsys, pattern):
    """Output written among the inputs would feed the next run its own segmented PNGs."""
    stills = tmp_path / "stills"
    shutil.copytree(sample_frames_dir(), stills)
    out = stills if "**" not in pattern else stills / "results"
    cfg = write_config(tmp_path, pattern.format(folder=stills), out)
    code, stdout, err = run(["run", str(cfg)], capsys)
    assert_refused(code, stdout, err, ["the input", "Choose an output folder outside"])
    assert sorted(p.name for p in stills.iterdir()) == sorted(
        p.name for p in sample_frames_dir().iterdir()
    )
