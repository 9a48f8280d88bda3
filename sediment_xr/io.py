"""Open seafloor time-lapse videos and still sequences as lazy xarray cubes.

Both openers return a dask-backed :class:`xarray.DataArray` named ``"frames"`` with dims
``(time, y, x, channel)``, dtype ``uint8`` and RGB channel order, chunked along ``time`` only.
Metadata (frame timestamps, image sizes) is read eagerly when opening; pixels are decoded by
one dask task per chunk.  Each task opens its own file or container, so the task graph holds
only plain values (paths, URLs, lists of integers) and runs on ``dask.distributed`` worker
processes.

A frame that cannot be decoded (corrupt data in the middle of a video, a damaged still) does
not stop the run: its pixels are 0 and the lazy ``frame_status`` coordinate says
``undecodable`` (see :data:`FRAME_STATUS_ATTRS`); it is computed by the same tasks as the
pixels.

Writing frames to Zarr lives in another module; this one only opens.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import datetime as dt
import glob
import itertools
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import Any

import av
import cv2
import dask
import dask.array as da
import fsspec
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from sediment_xr.exceptions import (
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRError,
    SedimentXRWarning,
    StorageError,
)

__all__ = [
    "FRAME_NOT_READ",
    "FRAME_OK",
    "FRAME_STATUS_ATTRS",
    "FRAME_UNDECODABLE",
    "IMAGE_EXTENSIONS",
    "MAX_FRAME_PIXELS",
    "config_names",
    "open_images",
    "open_video",
    "parse_frame_interval",
    "parse_timestamp_from_name",
]

#: File name endings (lower case) that :func:`open_images` takes from a folder or glob.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_DIMS = ("time", "y", "x", "channel")
_EPOCH = pd.Timestamp("1970-01-01T00:00:00")
_INTERVAL_EXAMPLE = "start_time='2022-06-01', frame_interval='17h'"
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# YYYYMMDDTHHMMSS, optional fractional seconds, optional Z or _UTC (OOI camera names).
_STAMP_RE = re.compile(
    r"(?<!\d)(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:[.,](\d{1,9}))?(?:Z|_UTC)?(?!\d)"
)
#: ``frame_status`` of a frame never decoded: the fill value of a stored status not written.
FRAME_NOT_READ: int = 0
#: ``frame_status`` of a frame decoded without error.
FRAME_OK: int = 1
#: ``frame_status`` of a frame whose data cannot be decoded; its pixels are 0.
FRAME_UNDECODABLE: int = 2
#: CF flag attributes of the ``frame_status`` coordinate.
FRAME_STATUS_ATTRS: dict[str, Any] = {
    "long_name": "decoding status of each frame",
    "flag_values": [FRAME_NOT_READ, FRAME_OK, FRAME_UNDECODABLE],
    "flag_meanings": "not_read ok undecodable",
    "comment": "undecodable frames (corrupt or missing data) are skipped; their pixels are 0",
}
#: Largest frame (width x height, here 8192 x 8192) opened.  Larger images and videos are
#: refused before decoding: a few kilobytes of PNG can claim gigapixels (a decompression
#: bomb), and one such frame fills a worker's memory.
MAX_FRAME_PIXELS: int = 2**26
# Decoded with cv2 as stored (no EXIF rotation), then rotated by the EXIF orientation tag read
# with Pillow, so that the size read from the header and the decoded pixels always agree.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_HEADER_THREADS = 16
# Frames tried from the start of the input for one that decodes, when opening.
_FIRST_FRAME_TRIES = 16
_OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss")

# Whether messages name options as config keys (the command line) or Python arguments.
_CONFIG_NAMES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sediment_xr_config_names", default=False
)
_OPTION_SECTION = {
    "fps": "ingest",
    "resize": "ingest",
    "start_time": "ingest",
    "frame_interval": "ingest",
    "chunk_frames": "ingest",
}


# ---------------------------------------------------------------------------------------------
# Public helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def config_names() -> Iterator[None]:
    """Name options as config keys in messages, instead of as Python arguments.

    Inside the block, errors and warnings raised while opening say e.g.
    ``ingest.resize: [64, 48]`` and ``ingest.start_time`` where the Python API says
    ``resize=(64, 48)`` and ``start_time``.  The command line opens its input inside this
    block, so that every message names what the user wrote in the config file.

    Examples
    --------
    >>> with config_names():  # doctest: +SKIP
    ...     open_video("camera.mp4", frame_interval="1h")
    ConfigError: ingest.frame_interval: '1h' needs ingest.start_time ...
    """
    token = _CONFIG_NAMES.set(True)
    try:
        yield
    finally:
        _CONFIG_NAMES.reset(token)


def _option(name: str, value: Any = ...) -> str:
    """How the user sets option `name` (to `value`): config key or Python argument."""
    if _CONFIG_NAMES.get():
        section = _OPTION_SECTION.get(name)
        key = f"{section}.{name}" if section else name
        return key if value is ... else f"{key}: {_yaml_value(value)}"
    return name if value is ... else f"{name}={value!r}"


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _api(func: str) -> str:
    """Who needs something: the Python function, or (on the command line) the input."""
    return "the input" if _CONFIG_NAMES.get() else func


def _interval_example() -> str:
    return (
        f"{_option('start_time', '2022-06-01')} and {_option('frame_interval', '17h')}"
        if _CONFIG_NAMES.get()
        else _INTERVAL_EXAMPLE
    )


def parse_frame_interval(
    value: str | dt.timedelta | np.timedelta64 | pd.Timedelta,
) -> pd.Timedelta:
    """Parse the time between two frames.

    Parameters
    ----------
    value : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta
        A duration with a unit, e.g. ``"1h"``, ``"17h"``, ``"30min"`` or
        ``datetime.timedelta(hours=1)``.

    Returns
    -------
    pandas.Timedelta
        The interval, with nanosecond resolution.

    Raises
    ------
    ConfigError
        If `value` is a bare number (no unit), cannot be parsed, or is zero or negative.
    """
    bad = (
        "frame_interval needs a positive duration with a unit, like '1h', '17h' or '30min', "
        f"but got {value!r}"
    )
    if isinstance(value, bool | numbers.Number) or (
        isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+(\.\d*)?\s*", value)
    ):
        raise ConfigError(f"{bad} (a number without unit). Use e.g. frame_interval='{value}h'.")
    try:
        interval = pd.Timedelta(value)
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(f"{bad}. Use e.g. frame_interval='1h'.") from err
    if pd.isna(interval) or interval <= pd.Timedelta(0):
        raise ConfigError(f"{bad}, which is not positive. Use e.g. frame_interval='1h'.")
    return interval.as_unit("ns")


def parse_timestamp_from_name(name: str) -> pd.Timestamp | None:
    """Find a ``YYYYMMDDTHHMMSS`` timestamp in a file name.

    Recognises the OOI camera pattern ``CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg`` and
    similar names: optional fractional seconds (``.123``), optional ``Z`` or ``_UTC``.  Times
    are taken as UTC.  Only the last path component is searched; the first valid timestamp
    in it is used.

    Parameters
    ----------
    name : str
        File name or path.

    Returns
    -------
    pandas.Timestamp or None
        Naive (UTC) timestamp with nanosecond resolution, or None if the name holds no valid
        timestamp.

    Examples
    --------
    >>> parse_timestamp_from_name("CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg")
    Timestamp('2021-08-24 03:16:18')
    >>> parse_timestamp_from_name("frame_0006.png") is None
    True
    """
    base = _basename(name)
    for match in _STAMP_RE.finditer(base):
        year, month, day, hour, minute, second, frac = match.groups()
        nanos = int((frac or "").ljust(9, "0"))
        try:
            stamp = pd.Timestamp(
                year=int(year),
                month=int(month),
                day=int(day),
                hour=int(hour),
                minute=int(minute),
                second=int(second),
            ).as_unit("ns")
        except ValueError:
            continue
        return stamp + pd.Timedelta(nanos, unit="ns")
    return None


# ---------------------------------------------------------------------------------------------
# open_video
# ---------------------------------------------------------------------------------------------


def open_video(
    path_or_url: str | os.PathLike[str],
    *,
    fps: float | None = None,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a video as a lazy ``(time, y, x, channel)`` array of RGB frames.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        Local path, or an fsspec URL (``https://``, ``s3://``, ``gs://``, ``memory://``,
        ``file://``...), of any video FFmpeg can read (MP4/H.264, MKV, AVI...).
    fps : float, optional
        Sample the video at this rate, like moviepy's ``iter_frames(fps=...)``: for target
        times ``i / fps`` (``i = 0, 1, ...`` while not after the last frame), take the last
        frame shown at or before that time.  Frames repeat if `fps` exceeds the video's rate.
        Default: every frame.
    resize : int or (int, int), optional
        Output size: an int for a square, or ``(width, height)``.  Frames are resized with
        ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``.  Default: the video's size.
    chunk_frames : int, optional
        Frames per dask chunk along ``time``. Default: :func:`auto_chunk_frames` (32 frames
        of 1024 x 1024, fewer of larger frames).
    start_time : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        UTC time of the first frame.  Time zone aware values are converted to UTC.
    frame_interval : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta, optional
        Time between consecutive *output* frames, e.g. ``"1h"`` or ``"17h"`` for a time-lapse
        recorded at one frame per interval.  Needs `start_time`.
    storage_options : mapping, optional
        Passed to :func:`fsspec.open` for URLs (e.g. ``{"anon": True}``).

    Returns
    -------
    xarray.DataArray
        Named ``"frames"``, dims ``(time, y, x, channel)``, dtype uint8, RGB, dask-backed and
        chunked along ``time`` only.  Coordinates: ``time`` (datetime64[ns], naive UTC),
        ``frame`` (along ``time``: 0-based index of the frame in the video), ``y``, ``x``,
        and ``frame_status`` (lazy uint8 along ``time``, :data:`FRAME_STATUS_ATTRS`).

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    InputError
        If the file is empty, truncated (ends before the duration its header gives), not a
        video FFmpeg can open, has no video stream, uses a codec FFmpeg cannot decode, has
        frames over :data:`MAX_FRAME_PIXELS`, or none of its first frames decodes.
    StorageError
        If the file system or object store holding the file refuses access or times out.
    ConfigError
        If `fps`, `resize`, `chunk_frames`, `start_time` or `frame_interval` is invalid.

    Warns
    -----
    SedimentXRWarning
        If `start_time` is given without `frame_interval`: time is then the playback time of
        the video, which is not real time for a time-lapse.  If neither `start_time`,
        `frame_interval` nor the container's ``creation_time`` gives the time: time is then
        the stream time counted from 1970-01-01.

    Notes
    -----
    Lazy: opening reads the packet index of the video stream (no decoding) and decodes the
    first frame once; every chunk is decoded by its own task, which opens the video, seeks to
    the key frame at or before its first frame and decodes forward.  A frame that fails to
    decode is skipped (pixels 0, ``frame_status`` undecodable) and decoding goes on.

    Time is, in order of preference: ``start_time + k * frame_interval`` for output frame
    ``k``; ``start_time`` + the frame's presentation time in the stream (counted from the
    first frame); the container's ``creation_time`` + stream time; 1970-01-01 + stream time.
    The choice is stored in the ``time_source`` attribute of ``time``.
    """
    source = _as_source(path_or_url, "open_video")
    fps_frac = _check_fps(fps)
    out_size = _check_resize(resize)
    chunk_frames = _check_chunk_frames(chunk_frames)
    options = _check_storage_options(storage_options)
    start, interval = _check_time_options(start_time, frame_interval)

    target = _local_or_url(source)
    _check_file(target, options)
    probe = _probe_video(target, options)
    if fps_frac is None:
        indices = list(range(len(probe.pts)))
    else:
        indices = _sample_indices(probe.pts, probe.time_base, fps_frac)
    wanted = [probe.pts[i] for i in indices]
    height, width = probe.frame_size
    out_w, out_h = out_size if out_size is not None else (width, height)
    _check_pixels(target, out_w, out_h, "resized frames")
    chunk_frames = chunk_frames or auto_chunk_frames(out_w, out_h)

    blocks, statuses = [], []
    for begin in range(0, len(wanted), chunk_frames):
        chunk = wanted[begin : begin + chunk_frames]
        task = dask.delayed(_video_chunk_task, pure=True, nout=2)(
            target,
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
        )
        blocks.append(_block(task[0], len(chunk), out_h, out_w))
        statuses.append(_status_block(task[1], len(chunk)))
    data = da.concatenate(blocks, axis=0)
    status = da.concatenate(statuses, axis=0)

    offsets = _stream_offsets_ns(wanted, probe.pts[0], probe.time_base)
    if interval is not None:
        times = _regular_times(start, interval, len(wanted))
        time_source = "frame_interval"
    elif start is not None:
        warnings.warn(
            f"{target}: time is {_option('start_time')} + the video's playback time, because "
            f"{_option('frame_interval')} is not given; the playback time of a time-lapse "
            "video is not real time (331 frames may span 8 months). Give "
            f"{_option('frame_interval')} (the time between frames), e.g. "
            f"{_option('frame_interval', '17h')}.",
            SedimentXRWarning,
            stacklevel=2,
        )
        times = _offset_times(start, offsets)
        time_source = "start_time+stream"
    else:
        created = _parse_creation_time(probe.creation_time)
        if created is not None:
            times = _offset_times(created, offsets)
            time_source = "creation_time+stream"
        else:
            warnings.warn(
                f"{target} has no usable creation_time metadata and no "
                f"{_option('start_time')} was given, so time is the stream time counted from "
                f"1970-01-01T00:00:00. Give {_option('start_time')} (and "
                f"{_option('frame_interval')} for a time-lapse), e.g. {_interval_example()}.",
                SedimentXRWarning,
                stacklevel=2,
            )
            times = _offset_times(_EPOCH, offsets)
            time_source = "epoch+stream"

    call = _call_repr(
        "open_video",
        source,
        fps=fps,
        resize=resize,
        chunk_frames=chunk_frames,
        start_time=start_time,
        frame_interval=frame_interval,
    )
    attrs = {
        "long_name": "video frames",
        "source": source,
        "channel_order": "RGB",
        "history": f"{_now()}: {call}",
    }
    frames = np.asarray(indices, dtype=np.int64)
    return _frames_array(data, times, frames, time_source, attrs, status=status)


@dataclass(frozen=True)
class _VideoProbe:
    pts: list[int]
    time_base: Fraction
    frame_size: tuple[int, int]
    creation_time: str | None


def _probe_video(source: str, storage_options: dict[str, Any]) -> _VideoProbe:
    """Read the video stream's packet index and decode its first frame (client side)."""
    with contextlib.ExitStack() as stack:
        try:
            with _storage_errors(source):
                container = stack.enter_context(_av_container(source, storage_options))
        except SedimentXRError:
            raise
        except Exception as err:
            raise InputError(
                f"{source} cannot be opened by FFmpeg ({_short(err)}); "
                f"{_api('open_video')} needs a video file FFmpeg can read (MP4/H.264, MKV, "
                "AVI...). Check that it is a complete video and not, e.g., an HTML error page "
                "or text saved with a video extension."
            ) from err
        streams = container.streams.video
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(
                f"{source} has no video stream (streams: {', '.join(kinds)}); "
                f"{_api('open_video')} needs a file with a video stream. Check that this is "
                "the video, not its audio track or subtitles."
            )
        stream = streams[0]
        if stream.codec_context is None:
            raise InputError(
                f"{source}: its video stream uses a codec this FFmpeg build cannot decode; "
                f"{_api('open_video')} needs a codec FFmpeg decodes (H.264, HEVC, MJPEG, "
                "FFV1, VP9...). Re-encode it, e.g. `ffmpeg -i in.avi -c:v libx264 -crf 18 "
                "out.mp4`."
            )
        _check_pixels(source, stream.codec_context.width, stream.codec_context.height)
        time_base = stream.time_base
        metadata = {**stream.metadata, **container.metadata}
        creation = metadata.get("creation_time")
        try:
            packets = [
                (int(packet.pts), int(packet.duration or 0))
                for packet in container.demux(stream)
                if packet.pts is not None and packet.size > 0 and not packet.is_discard
            ]
        except Exception as err:
            raise InputError(
                f"{source} cannot be read to its end by FFmpeg ({_short(err)}); "
                f"{_api('open_video')} needs a complete video file. The file may be "
                "truncated: download or copy it again."
            ) from err
        declared = _declared_duration(container, stream)
        pts = sorted({p for p, _ in packets})

    if not pts and declared:
        raise InputError(
            f"{source} is truncated: its header gives {float(declared):.3f} s of video but "
            f"no frame is there; {_api('open_video')} needs a complete video. Download or "
            "copy it again."
        )
    if not pts:
        raise InputError(
            f"{source} has a video stream but 0 frames; {_api('open_video')} needs at least "
            "one decodable frame. The recording is empty or truncated: check it with ffprobe."
        )
    if time_base is None:
        raise InputError(
            f"{source} has a video stream without a time base; {_api('open_video')} needs "
            "frame timestamps. Re-mux the file, e.g. `ffmpeg -i in -c copy out.mkv`."
        )
    _check_not_truncated(source, packets, pts, Fraction(time_base), declared)
    first = _first_decodable_frame(source, pts, storage_options)
    return _VideoProbe(
        pts=pts,
        time_base=Fraction(time_base),
        frame_size=(int(first.shape[0]), int(first.shape[1])),
        creation_time=creation,
    )


def _declared_duration(container: Any, stream: Any) -> Fraction | None:
    """Duration (seconds) the file's header gives for the video stream, or None.

    Only where the header states it: an MP4/MOV track's own duration, or an MKV/WebM
    segment's duration when the video is its only stream.  FFmpeg fills in other durations
    by estimating (from other streams, or the bit rate), which would not show truncation.
    """
    formats = set(container.format.name.split(","))
    if formats & {"mov", "mp4"} and stream.duration and stream.time_base is not None:
        return stream.duration * Fraction(stream.time_base)
    if formats & {"matroska", "webm"} and len(container.streams) == 1 and container.duration:
        return Fraction(container.duration, av.time_base)
    return None


def _check_not_truncated(
    source: str,
    packets: Sequence[tuple[int, int]],
    pts: Sequence[int],
    time_base: Fraction,
    declared: Fraction | None,
) -> None:
    """Raise if the frames end well before the duration the file's header declares.

    A download or copy cut short keeps its header: FFmpeg then reads the frames that are
    there without an error, and the run would look complete with part of the video.
    """
    if declared is None:
        return
    steps = [b - a for a, b in itertools.pairwise(pts) if b > a]
    last_duration = max((d for p, d in packets if p == pts[-1]), default=0)
    step = last_duration or (int(np.median(steps)) if steps else 0)
    if step <= 0:
        return
    found = (pts[-1] - pts[0] + step) * time_base
    missing = declared - found
    # The last frame's duration is exact when the file stores it; otherwise allow for a last
    # frame shown longer than the others.
    slack = Fraction(1, 2) if last_duration else Fraction(3, 2)
    if missing > slack * step * time_base:
        raise InputError(
            f"{source} is truncated: its header gives {float(declared):.3f} s of video but "
            f"its {len(pts)} frames end at {float(found):.3f} s; {_api('open_video')} needs "
            "a complete video. Download or copy it again; to analyse only the frames that "
            "are there, re-mux them first: `ffmpeg -i in.mkv -c copy complete.mkv`."
        )


def _first_decodable_frame(
    source: str, pts: Sequence[int], storage_options: Mapping[str, Any] | None
) -> np.ndarray:
    """Decode the first frame; if it is damaged, the first of the next few that decodes."""
    tries = [list(pts[:1]), list(pts[1:_FIRST_FRAME_TRIES])]
    errors: list[str] = []
    for wanted in tries:
        if not wanted:
            continue
        try:
            frames, status = _decode_video_frames(
                source, wanted, storage_options=storage_options, errors=errors
            )
        except av.FFmpegError as err:
            errors.append(_short(err))
            continue
        ok = np.flatnonzero(status == FRAME_OK)
        if ok.size:
            return frames[ok[0]]
    count = min(len(pts), _FIRST_FRAME_TRIES)
    which = f"its {count} frames" if count == len(pts) else f"its first {count} frames"
    seen = f" ({errors[0]})" if errors else ""
    raise InputError(
        f"{source}: none of {which} can be decoded{seen}; {_api('open_video')} needs "
        "decodable frames. The file is damaged or uses a codec this FFmpeg build lacks: "
        "check it with ffprobe, or re-encode it (`ffmpeg -i in -c:v libx264 out.mp4`)."
    )


@contextlib.contextmanager
def _av_container(source: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a PyAV input container on a local path or an fsspec URL, and close it."""
    with contextlib.ExitStack() as stack:
        if _is_url(source):
            target: Any = stack.enter_context(_open_binary(source, storage_options))
        else:
            target = source
        container = av.open(target, mode="r")
        stack.callback(container.close)
        yield container


def _video_chunk_task(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dask task: decode a chunk of frames, skipping undecodable ones.

    Returns
    -------
    tuple of numpy.ndarray
        ``(len(wanted_pts), height, width, 3)`` uint8 RGB frames (0 where undecodable) and
        their uint8 ``frame_status``.
    """
    try:
        return _decode_video_frames(
            source,
            wanted_pts,
            frame_size=frame_size,
            out_size=out_size,
            storage_options=storage_options,
        )
    except av.FFmpegError as err:
        raise InputError(
            f"{source}: reading frames at pts {min(wanted_pts)}..{max(wanted_pts)} failed "
            f"({_short(err)}); the file may have changed or become unreadable since it was "
            "opened. Check it with ffprobe and run again."
        ) from err


def _decode_video_chunk(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Decode the frames with the given presentation timestamps; every one must decode.

    Parameters
    ----------
    source : str
        Local path or fsspec URL.
    wanted_pts : sequence of int
        Presentation timestamps (stream time base), ascending; repeats allowed.
    frame_size : (int, int), optional
        Expected ``(height, width)`` of decoded frames (checked unless `out_size` is given).
    out_size : (int, int), optional
        ``(width, height)`` to resize each frame to.
    storage_options : mapping, optional
        fsspec options for URLs.

    Returns
    -------
    numpy.ndarray
        ``(len(wanted_pts), height, width, 3)`` uint8 RGB frames.

    Raises
    ------
    InputError
        If a frame cannot be decoded or is not found.
    """
    errors: list[str] = []
    try:
        frames, status = _decode_video_frames(
            source,
            wanted_pts,
            frame_size=frame_size,
            out_size=out_size,
            storage_options=storage_options,
            errors=errors,
        )
    except av.FFmpegError as err:
        raise InputError(
            f"{source}: decoding frames at pts {min(wanted_pts)}..{max(wanted_pts)} failed "
            f"({_short(err)}); the file may be damaged or may have changed since it was "
            "opened. Check it with ffprobe, or re-encode it."
        ) from err
    bad = sorted({int(p) for p, s in zip(wanted_pts, status, strict=True) if s != FRAME_OK})
    if bad:
        seen = f" ({errors[0]})" if errors else ""
        raise InputError(
            f"{source}: frames with pts {bad[:5]} were not found when decoding{seen}; the "
            "file may be damaged, truncated or may have changed since it was opened. Check "
            "it with ffprobe and open it again."
        )
    return frames


def _decode_video_frames(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    errors: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames with the given presentation timestamps, skipping undecodable ones.

    Parameters
    ----------
    source, wanted_pts, frame_size, out_size, storage_options
        As for :func:`_decode_video_chunk`.
    errors : list of str, optional
        Decoding errors met are appended to it.

    Returns
    -------
    tuple of numpy.ndarray
        Frames ``(len(wanted_pts), height, width, 3)`` uint8 RGB, 0 where a frame cannot be
        decoded or is not found, and the uint8 status of each (:data:`FRAME_OK` or
        :data:`FRAME_UNDECODABLE`).

    Raises
    ------
    av.FFmpegError
        If the file cannot be opened or demuxed (errors of single packets are skipped).
    """
    if out_size is not None:
        cv2.setNumThreads(1)
    errors = [] if errors is None else errors
    slots: dict[int, list[int]] = {}
    for position, pts in enumerate(wanted_pts):
        slots.setdefault(int(pts), []).append(position)
    status = np.full(len(wanted_pts), FRAME_UNDECODABLE, dtype=np.uint8)
    if not slots:
        height, width = frame_size or (0, 0)
        if out_size is not None:
            width, height = out_size
        return np.empty((0, height, width, 3), dtype=np.uint8), status

    found: dict[int, np.ndarray] = {}
    # First pass: seek to the key frame at/before the first wanted frame.  If the demuxer's
    # index is off and the seek lands after it, or a frame did not decode there (its
    # reference frames were before the seek point), decode again from the start.
    for seek in (True, False):
        _decode_pass(source, storage_options, slots, found, frame_size, out_size, seek, errors)
        if len(found) == len(slots):
            break

    if found:
        shape = next(iter(found.values())).shape
    else:
        height, width = frame_size or (0, 0)
        if out_size is not None:
            width, height = out_size
        shape = (height, width, 3)
    out = np.zeros((len(wanted_pts), *shape), dtype=np.uint8)
    for pts, positions in slots.items():
        if pts in found:
            out[positions] = found[pts]
            status[positions] = FRAME_OK
    return out, status


def _decode_pass(
    source: str,
    storage_options: Mapping[str, Any] | None,
    slots: Mapping[int, list[int]],
    found: dict[int, np.ndarray],
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
    seek: bool,
    errors: list[str] | None = None,
) -> None:
    """Decode forward (after a key-frame seek if `seek`) and store wanted frames in `found`.

    A packet that fails to decode is skipped (its error appended to `errors`); the frames it
    held are then missing from `found`.
    """
    last = max(slots)
    with _av_container(source, storage_options) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        if seek:
            try:
                container.seek(min(slots), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return  # input cannot seek: the caller decodes from the start instead
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError as err:
                if errors is not None:
                    errors.append(f"pts {packet.pts}: {_short(err)}")
                continue
            for frame in decoded:
                pts = frame.pts
                if pts is None:
                    continue
                if pts > last:
                    return
                if pts in slots and pts not in found:
                    rgb = frame.to_ndarray(format="rgb24")
                    found[pts] = _fit_frame(rgb, source, pts, frame_size, out_size)
                    if len(found) == len(slots):
                        return


def _sample_indices(pts: Sequence[int], time_base: Fraction, fps: Fraction) -> list[int]:
    """Return indices of frames shown at times ``i / fps`` (moviepy ``iter_frames`` sampling)."""
    times = [(p - pts[0]) * time_base for p in pts]
    count = math.floor(times[-1] * fps) + 1
    return [bisect.bisect_right(times, Fraction(i) / fps) - 1 for i in range(count)]


def _stream_offsets_ns(pts: Sequence[int], pts0: int, time_base: Fraction) -> np.ndarray:
    """Presentation times relative to the first frame, in integer nanoseconds."""
    return np.array([round((p - pts0) * time_base * 10**9) for p in pts], dtype=np.int64)


def _parse_creation_time(value: str | None) -> pd.Timestamp | None:
    """Container ``creation_time`` metadata as naive UTC, or None if absent or unparseable."""
    if not value:
        return None
    try:
        stamp = _naive_utc(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return None
    # Muxers write 1904-01-01 or 1970-01-01 when the recording time was unknown.
    return None if pd.isna(stamp) or stamp.year < 1971 else stamp


# ---------------------------------------------------------------------------------------------
# open_images
# ---------------------------------------------------------------------------------------------


def open_images(
    folder_or_glob: str | os.PathLike[str],
    *,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a sequence of still images as a lazy ``(time, y, x, channel)`` array.

    Parameters
    ----------
    folder_or_glob : str or os.PathLike
        A folder (local path or fsspec URL), or a glob pattern such as
        ``"stills/*.jpg"`` or ``"s3://bucket/cam/2021*/*.jpg"``.  Only files ending in
        .png, .jpg, .jpeg, .tif or .tiff (any case) are taken; hidden files and AppleDouble
        ``._*`` files are skipped.
    resize : int or (int, int), optional
        Output size: an int for a square, or ``(width, height)``, with
        ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``.  Needed when images differ in
        size.  Default: the images' size.
    chunk_frames : int, optional
        Images per dask chunk along ``time``. Default: :func:`auto_chunk_frames`.
    start_time : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        UTC time of the first image.  With timestamped names and no `frame_interval`, times
        become ``start_time`` + the time elapsed since the first name's timestamp.
    frame_interval : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta, optional
        Time between consecutive images, e.g. ``"17h"``; time is then
        ``start_time + k * frame_interval``.  Needs `start_time`.
    storage_options : mapping, optional
        Passed to fsspec for URLs (e.g. ``{"anon": True}``).

    Returns
    -------
    xarray.DataArray
        Named ``"frames"``, dims ``(time, y, x, channel)``, dtype uint8, RGB, dask-backed and
        chunked along ``time`` only.  Coordinates: ``time`` (datetime64[ns], naive UTC),
        ``frame`` (0-based position in the sorted sequence), ``y``, ``x``, and
        ``frame_status`` (lazy uint8 along ``time``, :data:`FRAME_STATUS_ATTRS`).  The
        ordered file list is in the ``source_files`` attribute (a JSON string).

    Raises
    ------
    InputNotFoundError
        If the folder does not exist or holds no image files.
    InputError
        If only some names hold a timestamp, two names hold the same timestamp, an image
        header cannot be read, an image is over :data:`MAX_FRAME_PIXELS`, none of the first
        images decodes, or images differ in size and `resize` is not given.
    StorageError
        If the file system or object store refuses access or times out.
    ConfigError
        If names hold no timestamps and `start_time`/`frame_interval` are missing, or an
        option is invalid.

    Notes
    -----
    Lazy: opening lists the files, reads each image's size from its header and decodes the
    first image once; each chunk is read and decoded by its own task.

    Order and time: if every name holds a timestamp like ``..._20210824T031618_UTC.jpg``,
    images are sorted by it and it is the time.  If none does, names are sorted naturally
    (``frame_2`` before ``frame_10``) and time needs `start_time` and `frame_interval`.
    Images are shown as a viewer shows them: the EXIF orientation tag (JPEG, PNG, TIFF) is
    applied, to the size read from the header and to the pixels alike, so a crop's "bottom
    rows" are the bottom of the picture as seen.  Grey images become three equal channels,
    alpha is dropped and 16-bit images are scaled to 8 bits (``value >> 8``).  An image whose
    header reads but whose data does not decode is skipped (pixels 0, ``frame_status``
    undecodable).
    """
    source = _as_source(folder_or_glob, "open_images")
    out_size = _check_resize(resize)
    chunk_frames = _check_chunk_frames(chunk_frames)
    options = _check_storage_options(storage_options)
    start, interval = _check_time_options(start_time, frame_interval)

    files = _list_images(source, options)
    files, stamps = _order_images(files)
    if interval is not None:
        times = _regular_times(start, interval, len(files))
        time_source = "frame_interval"
    elif stamps is None:
        raise ConfigError(
            f"{files[0]} has no timestamp in its name (like ..._20210824T031618_UTC.jpg); "
            f"give {_option('start_time')} and {_option('frame_interval')}, e.g. "
            f"{_interval_example()}."
        )
    elif start is not None:
        stamp_ns = np.array([s.value for s in stamps], dtype=np.int64)
        times = _offset_times(start, stamp_ns - stamp_ns[0])
        time_source = "start_time+filename"
    else:
        times = np.array([s.to_datetime64() for s in stamps], dtype="datetime64[ns]")
        time_source = "filename"

    sizes, rotated = _image_sizes(files, options)
    width, height = sizes[0]
    if out_size is None:
        for name, size in zip(files, sizes, strict=True):
            if size != sizes[0]:
                shown = " (as shown, after EXIF rotation)" if {name, files[0]} & rotated else ""
                raise InputError(
                    f"{name} is {size[0]}x{size[1]} pixels but {files[0]} is "
                    f"{width}x{height}{shown}; {_api('open_images')} needs images of one "
                    f"size. Resize them all to one size with {_option('resize', (width, height))}."
                )
    out_w, out_h = out_size if out_size is not None else (width, height)
    _check_pixels(source, out_w, out_h, "resized frames")
    _first_decodable_image(files, options)
    chunk_frames = chunk_frames or auto_chunk_frames(out_w, out_h)

    blocks, statuses = [], []
    for begin in range(0, len(files), chunk_frames):
        chunk = files[begin : begin + chunk_frames]
        task = dask.delayed(_image_chunk_task, pure=True, nout=2)(
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
        )
        blocks.append(_block(task[0], len(chunk), out_h, out_w))
        statuses.append(_status_block(task[1], len(chunk)))
    data = da.concatenate(blocks, axis=0)
    status = da.concatenate(statuses, axis=0)

    call = _call_repr(
        "open_images",
        source,
        resize=resize,
        chunk_frames=chunk_frames,
        start_time=start_time,
        frame_interval=frame_interval,
    )
    attrs = {
        "long_name": "image frames",
        "source": source,
        "source_files": json.dumps(files),
        "channel_order": "RGB",
        "history": f"{_now()}: {call} ({len(files)} files)",
    }
    frames = np.arange(len(files), dtype=np.int64)
    return _frames_array(data, times, frames, time_source, attrs, status=status)


def _read_image_chunk(
    files: Sequence[str],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Read and decode image files into one array; every one must decode.

    Parameters
    ----------
    files : sequence of str
        Local paths or fsspec URLs.
    frame_size : (int, int), optional
        Expected ``(height, width)`` of decoded images (checked unless `out_size` is given).
    out_size : (int, int), optional
        ``(width, height)`` to resize each image to.
    storage_options : mapping, optional
        fsspec options for URLs.

    Returns
    -------
    numpy.ndarray
        ``(len(files), height, width, 3)`` uint8 RGB images, EXIF orientation applied.

    Raises
    ------
    InputError
        If an image cannot be decoded.
    """
    frames, status, errors = _read_images(files, frame_size, out_size, storage_options)
    bad = np.flatnonzero(status != FRAME_OK)
    if bad.size:
        raise InputError(errors[0])
    return frames


def _image_chunk_task(
    files: Sequence[str],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dask task: read a chunk of images, skipping undecodable ones.

    Returns
    -------
    tuple of numpy.ndarray
        ``(len(files), height, width, 3)`` uint8 RGB images (0 where undecodable) and their
        uint8 ``frame_status``.
    """
    frames, status, _ = _read_images(files, frame_size, out_size, storage_options)
    return frames, status


def _read_images(
    files: Sequence[str],
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
    storage_options: Mapping[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (0 where undecodable), their ``frame_status`` and the decoding errors."""
    cv2.setNumThreads(1)
    decoded: list[np.ndarray | None] = []
    errors: list[str] = []
    for name in files:
        raw = _read_bytes(name, storage_options)
        rgb = _decode_image(raw)
        if rgb is None:
            errors.append(
                f"{name} cannot be decoded as an image by OpenCV ({len(raw)} bytes); "
                f"{_api('open_images')} needs readable PNG/JPEG/TIFF files. Check or replace "
                "this file."
            )
            decoded.append(None)
            continue
        decoded.append(_fit_frame(rgb, name, None, frame_size, out_size))
    if out_size is not None:
        shape = (out_size[1], out_size[0], 3)
    elif frame_size is not None:
        shape = (*frame_size, 3)
    else:
        shape = next((d.shape for d in decoded if d is not None), (0, 0, 3))
    out = np.zeros((len(files), *shape), dtype=np.uint8)
    status = np.full(len(files), FRAME_UNDECODABLE, dtype=np.uint8)
    for position, rgb in enumerate(decoded):
        if rgb is not None:
            out[position] = rgb
            status[position] = FRAME_OK
    return out, status, errors


def _decode_image(raw: bytes) -> np.ndarray | None:
    """RGB uint8 pixels of encoded image bytes as shown (EXIF orientation applied), or None."""
    if not raw:
        return None
    try:
        bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), _IMREAD_FLAGS)
    except cv2.error:
        return None
    if bgr is None:
        return None
    return _orient(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), _orientation(raw))


def _orientation(raw: bytes | Image.Image) -> int:
    """EXIF orientation tag (1-8) of image bytes or an open image; 1 when absent or invalid."""
    try:
        if isinstance(raw, Image.Image):
            value = raw.getexif().get(0x0112, 1)
        else:
            # No DecompressionBombWarning: sizes were checked against MAX_FRAME_PIXELS, which
            # is below Pillow's warning limit, and catching warnings is not thread-safe.
            with Image.open(BytesIO(raw)) as image:
                value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to pixels stored as ``(y, x, channel)``.

    The same transposes as :func:`PIL.ImageOps.exif_transpose`: 2 mirror, 3 rotate 180, 4 flip,
    5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    """
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = image.transpose(1, 0, 2)
    elif orientation == 6:
        image = np.rot90(image, k=-1)
    elif orientation == 7:
        image = image.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:
        image = np.rot90(image, k=1)
    return np.ascontiguousarray(image)


def _first_decodable_image(files: Sequence[str], storage_options: Mapping[str, Any]) -> None:
    """Raise unless one of the first images decodes (decoding stops at the first that does)."""
    errors: list[str] = []
    tries = files[:_FIRST_FRAME_TRIES]
    for name in tries:
        with _storage_errors(name):
            raw = _read_bytes(name, storage_options)
        if _decode_image(raw) is not None:
            return
        errors.append(f"{_basename(name)}, {len(raw)} bytes")
    which = f"its {len(tries)} images" if len(tries) == len(files) else f"the first {len(tries)}"
    raise InputError(
        f"none of {which} can be decoded as an image by OpenCV ({errors[0]}); "
        f"{_api('open_images')} needs readable PNG/JPEG/TIFF files. Check or replace them."
    )


def _list_images(source: str, storage_options: dict[str, Any]) -> list[str]:
    """List image files of a folder or glob pattern, as local paths or full URLs."""
    pattern = _has_glob(source)
    if _is_url(source):
        fs, path = _url_to_fs(source, storage_options)
        with _storage_errors(source):
            if pattern:
                entries = fs.glob(path, detail=True)
                names = [n for n, info in entries.items() if info.get("type") != "directory"]
            else:
                if not fs.exists(path):
                    raise InputNotFoundError(
                        f"{source} does not exist{_no_bucket(source, fs, path)}; "
                        f"{_api('open_images')} needs a folder or a glob pattern of images. "
                        "Check the URL and storage_options."
                    )
                if fs.isfile(path):
                    raise InputError(_not_a_folder(source))
                names = [e["name"] for e in fs.ls(path, detail=True) if e.get("type") == "file"]
        candidates = [fs.unstrip_protocol(n) for n in names]
    else:
        expanded = os.path.expanduser(source)
        if pattern:
            matches = glob.glob(expanded, recursive=True)
            candidates = [os.path.abspath(p) for p in matches if os.path.isfile(p)]
        else:
            folder = Path(expanded)
            if not folder.exists():
                raise InputNotFoundError(
                    f"{source} does not exist; {_api('open_images')} needs a folder or a glob "
                    f"pattern of images. Check the path (working directory: {os.getcwd()})."
                )
            if not folder.is_dir():
                raise InputError(_not_a_folder(source))
            with os.scandir(folder) as entries:
                candidates = [os.path.abspath(e.path) for e in entries if e.is_file()]

    files = [
        name
        for name in candidates
        if not _basename(name).startswith(".")
        and _basename(name).lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not files:
        raise InputNotFoundError(
            f"no image files found in {source} (looked for names ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case, skipping hidden and ._ files); "
            f"{_api('open_images')} needs at least one image. Check the folder or the glob "
            "pattern."
        )
    return files


def _not_a_folder(source: str) -> str:
    return (
        f"{source} is a single file; {_api('open_images')} needs a folder or a glob pattern "
        f"of images. Give its folder, or a pattern such as '{_parent(source)}/*.jpg'."
    )


def _order_images(files: list[str]) -> tuple[list[str], list[pd.Timestamp] | None]:
    """Sort by name timestamps if all names have one, else naturally (stamps then None)."""
    files = sorted(files, key=_natural_key)
    stamps = [parse_timestamp_from_name(name) for name in files]
    missing = [name for name, stamp in zip(files, stamps, strict=True) if stamp is None]
    if len(missing) == len(files):
        return files, None
    if missing:
        example = next(name for name, stamp in zip(files, stamps, strict=True) if stamp)
        raise InputError(
            f"{missing[0]} has no timestamp in its name, but {len(files) - len(missing)} of "
            f"{len(files)} files do (like {_basename(example)}); {_api('open_images')} needs a "
            "timestamp in every name or in none. Move the odd files out or use a glob "
            "pattern that excludes them."
        )
    pairs = sorted(zip(stamps, files, strict=True), key=lambda p: (p[0], _natural_key(p[1])))
    for (stamp_a, name_a), (stamp_b, name_b) in itertools.pairwise(pairs):
        if stamp_a == stamp_b:
            raise InputError(
                f"{name_a} and {name_b} have the same timestamp ({stamp_a.isoformat()}) in "
                f"their names; {_api('open_images')} needs one image per time. Remove or "
                "rename one."
            )
    return [name for _, name in pairs], [stamp for stamp, _ in pairs]


def _image_sizes(
    files: list[str], storage_options: dict[str, Any]
) -> tuple[list[tuple[int, int]], set[str]]:
    """``(width, height)`` of every image as shown, from the headers; the names rotated.

    An EXIF orientation of 5 to 8 turns the image a quarter: width and height swap.
    """
    rotated: set[str] = set()

    def size_of(name: str) -> tuple[int, int]:
        try:
            with (
                _storage_errors(name),
                _open_binary(name, storage_options) as handle,
                Image.open(handle) as image,
            ):
                width, height = int(image.size[0]), int(image.size[1])
                orientation = _orientation(image)
                if orientation != 1:
                    rotated.add(name)
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
        except SedimentXRError:
            raise
        except Image.DecompressionBombError as err:
            raise InputError(_too_many_pixels(name, _short(err))) from err
        except Exception as err:
            if _file_size(name, storage_options) == 0:
                raise InputError(
                    f"{name} is empty (0 bytes); {_api('open_images')} needs image files with "
                    "data. Remove it or copy it again."
                ) from err
            raise InputError(
                f"{name} is not a readable image ({_short(err)}); {_api('open_images')} "
                "needs PNG/JPEG/TIFF files. Remove or replace this file."
            ) from err
        _check_pixels(name, width, height)
        return width, height

    # Pillow warns from 89 megapixels; the limit here is MAX_FRAME_PIXELS, checked above.
    with _no_bomb_warning():
        if any(_is_url(name) for name in files) and len(files) > 1:
            with ThreadPoolExecutor(max_workers=_HEADER_THREADS) as pool:
                return list(pool.map(size_of, files)), rotated
        return [size_of(name) for name in files], rotated


@contextlib.contextmanager
def _no_bomb_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _frames_array(
    data: da.Array,
    times: np.ndarray,
    frames: np.ndarray,
    time_source: str,
    attrs: dict[str, str],
    *,
    status: da.Array | None = None,
) -> xr.DataArray:
    """Wrap a ``(time, y, x, channel)`` dask array with coordinates and attrs."""
    time_attrs = {
        "standard_name": "time",
        "long_name": "time of frame (UTC)",
        "time_source": time_source,
    }
    coords = {
        "time": ("time", np.asarray(times, dtype="datetime64[ns]"), time_attrs),
        "frame": ("time", frames),
        "y": ("y", np.arange(data.shape[1], dtype=np.int64)),
        "x": ("x", np.arange(data.shape[2], dtype=np.int64)),
    }
    if status is not None:
        coords["frame_status"] = ("time", status, dict(FRAME_STATUS_ATTRS))
    return xr.DataArray(data, dims=_DIMS, coords=coords, name="frames", attrs=attrs)


def _block(task: Any, count: int, height: int, width: int) -> da.Array:
    """One chunk of frames from a delayed kernel call."""
    return da.from_delayed(
        task,
        shape=(count, height, width, 3),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint8),
    )


def _status_block(task: Any, count: int) -> da.Array:
    """The ``frame_status`` of one chunk, from the same delayed kernel call as its pixels."""
    return da.from_delayed(task, shape=(count,), dtype=np.uint8, meta=np.empty((0,), np.uint8))


def _check_pixels(name: str, width: int, height: int, what: str = "frames") -> None:
    """Refuse frames over :data:`MAX_FRAME_PIXELS` before anything is decoded."""
    if int(width) * int(height) > MAX_FRAME_PIXELS:
        raise InputError(_too_many_pixels(name, f"{what} of {width}x{height} pixels"))


def _too_many_pixels(name: str, seen: str) -> str:
    limit = MAX_FRAME_PIXELS / 1e6
    return (
        f"{name} is over the limit of {limit:.0f} megapixels per frame ({seen}); larger "
        "frames are refused: they may be decompression bombs, and would not fit a worker's "
        "memory. If the images really are this large, downscale them first (e.g. `mogrify "
        "-resize 8192x8192 *.png`)."
    )


def _fit_frame(
    image: np.ndarray,
    name: str,
    pts: int | None,
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
) -> np.ndarray:
    """Resize a frame to `out_size` or check it has `frame_size`."""
    height, width = image.shape[:2]
    if out_size is not None:
        if (width, height) != tuple(out_size):
            image = cv2.resize(image, tuple(out_size), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image, dtype=np.uint8)
    if frame_size is not None and (height, width) != tuple(frame_size):
        where = name if pts is None else f"{name} (frame at pts {pts})"
        size = (frame_size[1], frame_size[0])
        # Raised in worker processes, where the command line's config_names() does not reach:
        # name both the Python argument and the config key.
        raise InputError(
            f"{where} is {width}x{height} pixels but the first frame is {size[0]}x{size[1]}; "
            f"frames must share one size. Resize every frame with resize={size} (config: "
            f"ingest.resize: [{size[0]}, {size[1]}])."
        )
    return np.ascontiguousarray(image, dtype=np.uint8)


def _check_file(source: str, storage_options: dict[str, Any]) -> None:
    """Raise if a video file is missing, a folder or empty."""
    if _is_url(source):
        fs, path = _url_to_fs(source, storage_options)
        with _storage_errors(source):
            if not fs.exists(path):
                raise InputNotFoundError(
                    f"{source} does not exist{_no_bucket(source, fs, path)}; "
                    f"{_api('open_video')} needs a video file. Check the URL and "
                    "storage_options."
                )
            if fs.isdir(path):
                raise InputError(_is_folder(source))
            size = fs.size(path)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputNotFoundError(
                f"{source} does not exist; {_api('open_video')} needs a video file. Check the "
                f"path (working directory: {os.getcwd()})."
            )
        if path.is_dir():
            raise InputError(_is_folder(source))
        size = path.stat().st_size
    if size == 0:
        raise InputError(
            f"{source} is empty (0 bytes); {_api('open_video')} needs a video file with "
            "frames. The download or copy probably failed: fetch the file again."
        )


def _no_bucket(source: str, fs: Any, path: str) -> str:
    """`` (there is no bucket b)`` when an object-store URL's bucket does not exist."""
    protocol = source.split("://", 1)[0].lower()
    bucket = path.strip("/").split("/", 1)[0]
    if protocol not in _OBJECT_STORES or not bucket or bucket == path.strip("/"):
        return ""
    try:
        fs.invalidate_cache(bucket)
        return "" if fs.exists(bucket) else f": there is no bucket {bucket!r}"
    except Exception:
        return ""


def _is_folder(source: str) -> str:
    return (
        f"{source} is a folder; open_video needs one video file. For a folder of still "
        f"images use open_images({source!r})."
    )


def _url_to_fs(source: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        with _storage_errors(source):
            return fsspec.core.url_to_fs(source, **storage_options)
    except SedimentXRError:
        raise
    except (ValueError, ImportError, TypeError) as err:
        raise InputError(
            f"{source} cannot be opened by fsspec ({_short(err)}); a URL needs a protocol "
            "fsspec knows with its package installed (s3:// needs s3fs, gs:// needs gcsfs)."
        ) from err


@contextlib.contextmanager
def _open_binary(name: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a local path or fsspec URL for binary reading."""
    if _is_url(name):
        with fsspec.open(name, "rb", **(storage_options or {})) as handle:
            if name.lower().startswith("memory://"):
                # fsspec's memory filesystem hands every opener the same file object, so
                # concurrent tasks would move each other's position: read a private copy.
                yield BytesIO(handle.getvalue())
            else:
                yield handle
    else:
        with open(name, "rb") as handle:
            yield handle


@contextlib.contextmanager
def _storage_errors(where: str) -> Iterator[None]:
    """Turn a file system or object store failure (access, time-out) into a StorageError."""
    try:
        yield
    except SedimentXRError:
        raise
    except Exception as err:
        failure = storage_error(err, where)
        if failure is None:
            raise
        raise failure from err


def storage_error(err: BaseException, where: str) -> StorageError | None:
    """A one-line :class:`StorageError` for a failure to reach or access storage.

    Parameters
    ----------
    err : BaseException
        What fsspec or its backend (s3fs/botocore, gcsfs, aiohttp...) raised.
    where : str
        The path or URL being read or written.

    Returns
    -------
    StorageError or None
        None when `err` is not a storage failure (missing files are left to the caller).
    """
    if isinstance(err, SedimentXRError | FileNotFoundError | IsADirectoryError):
        return None
    names = " ".join(cls.__name__ for cls in type(err).__mro__)
    module = type(err).__module__.split(".", 1)[0]
    remote = _is_url(where) and not where.lower().startswith(("file://", "memory://"))
    seen = _short(err)
    if isinstance(err, TimeoutError) or "Timeout" in names:
        return StorageError(
            f"{where}: the storage did not answer in time ({seen}). Check the network and the "
            "endpoint_url in storage_options; for a slow store give longer time-outs, e.g. "
            "storage_options: {config_kwargs: {connect_timeout: 60, read_timeout: 60}} (S3). "
            "Then run again: finished work is kept."
        )
    if isinstance(err, ConnectionError) or any(
        word in names for word in ("ConnectionError", "ConnectorError", "EndpointConnection")
    ):
        return StorageError(
            f"{where}: could not connect to the storage ({seen}). Check the network, the URL "
            "and the endpoint_url in storage_options, then run again: finished work is kept."
        )
    if isinstance(err, PermissionError) or any(
        word in names for word in ("NoCredentials", "PartialCredentials", "AccessDenied")
    ):
        fix = (
            "Check the credentials in storage_options (e.g. key and secret, a profile, or "
            "anon: true for a public bucket) and the bucket's permissions."
            if remote
            else "Check the file's permissions."
        )
        return StorageError(f"{where} cannot be accessed: permission denied ({seen}). {fix}")
    if remote and module in ("botocore", "aiobotocore", "aiohttp", "google", "gcsfs", "azure"):
        return StorageError(
            f"{where}: the storage answered with an error ({seen}). Check the URL and "
            "storage_options, then run again: finished work is kept."
        )
    return None


def _read_bytes(name: str, storage_options: Mapping[str, Any] | None) -> bytes:
    with _open_binary(name, storage_options) as handle:
        return handle.read()


def _file_size(name: str, storage_options: Mapping[str, Any] | None) -> int | None:
    try:
        if _is_url(name):
            fs, path = fsspec.core.url_to_fs(name, **(storage_options or {}))
            return fs.size(path)
        return os.path.getsize(name)
    except Exception:
        return None


def _as_source(value: Any, func: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        example = "'data/camera.mp4'" if func == "open_video" else "'stills/*.jpg'"
        raise InputError(
            f"{func} needs a path or URL string, but got {value!r} "
            f"({type(value).__name__}). Give e.g. {func}({example})."
        )
    return value


def _check_fps(fps: Any) -> Fraction | None:
    if fps is None:
        return None
    if (
        isinstance(fps, bool)
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(float(fps))
        or fps <= 0
    ):
        raise ConfigError(
            f"fps needs a positive number of frames per second, but got {fps!r}. Use e.g. "
            "fps=1, or fps=None for every frame."
        )
    if isinstance(fps, numbers.Integral):
        return Fraction(int(fps))
    if isinstance(fps, Fraction):
        return fps
    return Fraction(float(fps)).limit_denominator(1_000_000)


def _check_resize(resize: Any) -> tuple[int, int] | None:
    """``(width, height)`` from None, an int or a pair of ints."""
    if resize is None:
        return None

    def positive_int(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0

    if positive_int(resize):
        return (int(resize), int(resize))
    if (
        isinstance(resize, Sequence)
        and not isinstance(resize, str)
        and len(resize) == 2
        and all(positive_int(v) for v in resize)
    ):
        return (int(resize[0]), int(resize[1]))
    raise ConfigError(
        f"resize needs a positive int (square) or (width, height) of positive ints, but got "
        f"{resize!r}. Use e.g. resize=(1024, 1024), or resize=None to keep the size."
    )


#: Most decoded frames (bytes) in a chunk chosen by :func:`auto_chunk_frames`.
AUTO_CHUNK_BYTES = 96 * 2**20
#: Most frames in a chunk chosen by :func:`auto_chunk_frames`.
AUTO_CHUNK_MAX_FRAMES = 32


def auto_chunk_frames(width: int, height: int) -> int:
    """Frames per chunk for frames of this size: up to 32 and about 96 MiB of RGB.

    Measured on a 1024 x 1024 H.264 video (benchmarks/results.md): every chunk opens the
    file, seeks to a key frame and decodes past its last frame (B-frames), about 4.5 ms per
    frame more with 8-frame chunks than with 32. Larger chunks gain little more and hold
    more memory per task (1024 x 1024: 32 frames; 1920 x 1080: 16; 3840 x 2160: 4).
    """
    frame_bytes = max(int(width) * int(height) * 3, 1)
    return int(max(1, min(AUTO_CHUNK_MAX_FRAMES, AUTO_CHUNK_BYTES // frame_bytes)))


def _check_chunk_frames(chunk_frames: Any) -> int | None:
    if chunk_frames is None:
        return None
    if (
        isinstance(chunk_frames, bool)
        or not isinstance(chunk_frames, numbers.Integral)
        or chunk_frames < 1
    ):
        raise ConfigError(
            f"chunk_frames needs a positive int (frames per dask chunk), but got "
            f"{chunk_frames!r}. Use e.g. chunk_frames=32, or leave it out (auto)."
        )
    return int(chunk_frames)


def _check_storage_options(storage_options: Any) -> dict[str, Any]:
    if storage_options is None:
        return {}
    if not isinstance(storage_options, Mapping):
        raise ConfigError(
            f"storage_options needs a mapping of fsspec options, but got "
            f"{type(storage_options).__name__}. Use e.g. storage_options={{'anon': True}}."
        )
    return dict(storage_options)


def _check_time_options(
    start_time: Any, frame_interval: Any
) -> tuple[pd.Timestamp | None, pd.Timedelta | None]:
    interval = None if frame_interval is None else parse_frame_interval(frame_interval)
    start = None if start_time is None else _parse_start_time(start_time)
    if interval is not None and start is None:
        raise ConfigError(
            f"{_option('frame_interval', frame_interval)} needs {_option('start_time')} (the "
            f"UTC time of the first frame), but {_option('start_time')} is not given; give "
            f"both, e.g. {_interval_example()}."
        )
    return start, interval


def _parse_start_time(value: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError("not a time")
        return _naive_utc(stamp)
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(
            f"start_time needs a date-time (UTC, or with a time zone), but got {value!r}. "
            "Use e.g. start_time='2022-06-01T00:00:00Z'."
        ) from err


def _naive_utc(stamp: pd.Timestamp) -> pd.Timestamp:
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ns")


def _regular_times(start: pd.Timestamp, interval: pd.Timedelta, count: int) -> np.ndarray:
    step = np.int64(interval.as_unit("ns").value)
    return _offset_times(start, np.arange(count, dtype=np.int64) * step)


def _offset_times(start: pd.Timestamp, offsets_ns: np.ndarray) -> np.ndarray:
    base = np.datetime64(start.as_unit("ns").value, "ns")
    return base + np.asarray(offsets_ns, dtype=np.int64).astype("timedelta64[ns]")


def _call_repr(func: str, source: str, **options: Any) -> str:
    """``sediment_xr.io.func('source', key=value...)``, storage_options left out (secrets)."""
    parts = [repr(source)]
    for key, value in options.items():
        if not isinstance(value, str | int | float | tuple | list | type(None)):
            value = str(value)
        parts.append(f"{key}={value!r}")
    return f"sediment_xr.io.{func}({', '.join(parts)})"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local_or_url(source: str) -> str:
    """Absolute local path (so worker processes find it), or the URL unchanged."""
    return source if _is_url(source) else os.path.abspath(os.path.expanduser(source))


def _is_url(source: str) -> bool:
    return bool(_URL_RE.match(source))


def _has_glob(source: str) -> bool:
    magic = "*[" if source.lower().startswith(("http://", "https://")) else "*?["
    return any(char in source for char in magic)


def _basename(name: str) -> str:
    return name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def _parent(name: str) -> str:
    stripped = name.rstrip("/\\").replace("\\", "/")
    return stripped.rsplit("/", 1)[0] if "/" in stripped else "."


def _natural_key(name: str) -> tuple[list[Any], str]:
    """Sort key: digit runs compare as numbers (``frame_2`` before ``frame_10``)."""
    parts = re.split(r"(\d+)", name)
    return ([int(p) if p.isdigit() else p.lower() for p in parts], name)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
