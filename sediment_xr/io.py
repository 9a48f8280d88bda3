"""Open seafloor time-lapse videos and still sequences as lazy xarray cubes.

Both openers return a dask-backed :class:`xarray.DataArray` named ``"frames"`` with dims
``(time, y, x, channel)``, dtype ``uint8`` and RGB channel order, chunked along ``time`` only.
Metadata (frame timestamps, image sizes) is read eagerly when opening; pixels are decoded by
one dask task per chunk.  Each task opens its own file or container, so the task graph holds
only plain values (paths, URLs, lists of integers) and runs on ``dask.distributed`` worker
processes.

Writing frames to Zarr lives in another module; this one only opens.
"""

from __future__ import annotations

import bisect
import contextlib
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
    SedimentXRWarning,
)

__all__ = [
    "IMAGE_EXTENSIONS",
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
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_HEADER_THREADS = 16


# ---------------------------------------------------------------------------------------------
# Public helpers
# ---------------------------------------------------------------------------------------------


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
    chunk_frames: int = 8,
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
    chunk_frames : int, default 8
        Frames per dask chunk along ``time``.
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
        ``frame`` (along ``time``: 0-based index of the frame in the video), ``y``, ``x``.

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    InputError
        If the file is empty, not a video FFmpeg can open, has no video stream or no
        decodable frame.
    ConfigError
        If `fps`, `resize`, `chunk_frames`, `start_time` or `frame_interval` is invalid.

    Warns
    -----
    SedimentXRWarning
        If neither `start_time`, `frame_interval` nor the container's ``creation_time`` gives
        the time: time is then the stream time counted from 1970-01-01.

    Notes
    -----
    Lazy: opening reads the packet index of the video stream (no decoding) and decodes the
    first frame once; every chunk is decoded by its own task, which opens the video, seeks to
    the key frame at or before its first frame and decodes forward.

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

    blocks = []
    for begin in range(0, len(wanted), chunk_frames):
        chunk = wanted[begin : begin + chunk_frames]
        task = dask.delayed(_decode_video_chunk, pure=True)(
            target,
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
        )
        blocks.append(_block(task, len(chunk), out_h, out_w))
    data = da.concatenate(blocks, axis=0)

    offsets = _stream_offsets_ns(wanted, probe.pts[0], probe.time_base)
    if interval is not None:
        times = _regular_times(start, interval, len(wanted))
        time_source = "frame_interval"
    elif start is not None:
        times = _offset_times(start, offsets)
        time_source = "start_time+stream"
    else:
        created = _parse_creation_time(probe.creation_time)
        if created is not None:
            times = _offset_times(created, offsets)
            time_source = "creation_time+stream"
        else:
            warnings.warn(
                f"{target} has no usable creation_time metadata and no start_time was given, "
                "so time is the stream time counted from 1970-01-01T00:00:00. Give "
                f"start_time (and frame_interval for a time-lapse), e.g. {_INTERVAL_EXAMPLE}.",
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
    return _frames_array(data, times, np.asarray(indices, dtype=np.int64), time_source, attrs)


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
            container = stack.enter_context(_av_container(source, storage_options))
        except Exception as err:
            raise InputError(
                f"{source} cannot be opened by FFmpeg ({_short(err)}); open_video needs a "
                "video file FFmpeg can read (MP4/H.264, MKV, AVI...). Check that it is a "
                "complete video and not, e.g., an HTML error page or text saved with a "
                "video extension."
            ) from err
        streams = container.streams.video
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(
                f"{source} has no video stream (streams: {', '.join(kinds)}); open_video "
                "needs a file with a video stream. Check that this is the video, not its "
                "audio track or subtitles."
            )
        stream = streams[0]
        time_base = stream.time_base
        metadata = {**stream.metadata, **container.metadata}
        creation = metadata.get("creation_time")
        try:
            pts = sorted(
                {
                    int(packet.pts)
                    for packet in container.demux(stream)
                    if packet.pts is not None and packet.size > 0 and not packet.is_discard
                }
            )
        except Exception as err:
            raise InputError(
                f"{source} cannot be read to its end by FFmpeg ({_short(err)}); open_video "
                "needs a complete video file. The file may be truncated: download or copy "
                "it again."
            ) from err

    if not pts:
        raise InputError(
            f"{source} has a video stream but 0 frames; open_video needs at least one "
            "decodable frame. The recording is empty or truncated: check it with ffprobe."
        )
    if time_base is None:
        raise InputError(
            f"{source} has a video stream without a time base; open_video needs frame "
            "timestamps. Re-mux the file, e.g. `ffmpeg -i in -c copy out.mkv`."
        )
    try:
        first = _decode_video_chunk(source, [pts[0]], storage_options=storage_options)
    except Exception as err:
        raise InputError(
            f"{source}: its first frame (pts {pts[0]}) cannot be decoded ({_short(err)}); "
            "open_video needs decodable frames. The file may be damaged or use a codec "
            "this FFmpeg build lacks: check it with ffprobe or re-encode it."
        ) from err
    return _VideoProbe(
        pts=pts,
        time_base=Fraction(time_base),
        frame_size=(int(first.shape[1]), int(first.shape[2])),
        creation_time=creation,
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


def _decode_video_chunk(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Decode the frames with the given presentation timestamps.

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
    """
    if out_size is not None:
        cv2.setNumThreads(1)
    slots: dict[int, list[int]] = {}
    for position, pts in enumerate(wanted_pts):
        slots.setdefault(int(pts), []).append(position)
    if not slots:
        height, width = frame_size or (0, 0)
        if out_size is not None:
            width, height = out_size
        return np.empty((0, height, width, 3), dtype=np.uint8)

    found: dict[int, np.ndarray] = {}
    # First pass: seek to the key frame at/before the first wanted frame.  If the demuxer's
    # index is off and the seek lands after it, decode again from the start of the stream.
    for seek in (True, False):
        try:
            _decode_pass(source, storage_options, slots, found, frame_size, out_size, seek)
        except av.FFmpegError as err:
            raise InputError(
                f"{source}: decoding frames at pts {min(slots)}..{max(slots)} failed "
                f"({_short(err)}); the file may be damaged or may have changed since it was "
                "opened. Check it with ffprobe, or re-encode it."
            ) from err
        if len(found) == len(slots):
            break

    missing = sorted(set(slots) - set(found))
    if missing:
        raise InputError(
            f"{source}: frames with pts {missing[:5]} were not found when decoding; the "
            "file may be truncated or may have changed since it was opened. Open it again."
        )
    first = found[min(slots)]
    out = np.empty((len(wanted_pts), *first.shape), dtype=np.uint8)
    for pts, positions in slots.items():
        out[positions] = found[pts]
    return out


def _decode_pass(
    source: str,
    storage_options: Mapping[str, Any] | None,
    slots: Mapping[int, list[int]],
    found: dict[int, np.ndarray],
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
    seek: bool,
) -> None:
    """Decode forward (after a key-frame seek if `seek`) and store wanted frames in `found`."""
    last = max(slots)
    with _av_container(source, storage_options) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        if seek:
            try:
                container.seek(min(slots), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return  # input cannot seek: the caller decodes from the start instead
        for frame in container.decode(stream):
            pts = frame.pts
            if pts is None:
                continue
            if pts > last:
                break
            if pts in slots and pts not in found:
                rgb = frame.to_ndarray(format="rgb24")
                found[pts] = _fit_frame(rgb, source, pts, frame_size, out_size)
                if len(found) == len(slots):
                    break


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
    chunk_frames: int = 8,
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
    chunk_frames : int, default 8
        Images per dask chunk along ``time``.
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
        ``frame`` (0-based position in the sorted sequence), ``y``, ``x``.  The ordered file
        list is in the ``source_files`` attribute (a JSON string).

    Raises
    ------
    InputNotFoundError
        If the folder does not exist or holds no image files.
    InputError
        If only some names hold a timestamp, two names hold the same timestamp, an image
        cannot be read, or images differ in size and `resize` is not given.
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
    Images are decoded with ``cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION`` (EXIF
    rotation is not applied, so sizes match the headers); grey images become three equal
    channels and alpha is dropped.
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
            f"give start_time and frame_interval, e.g. {_INTERVAL_EXAMPLE}."
        )
    elif start is not None:
        stamp_ns = np.array([s.value for s in stamps], dtype=np.int64)
        times = _offset_times(start, stamp_ns - stamp_ns[0])
        time_source = "start_time+filename"
    else:
        times = np.array([s.to_datetime64() for s in stamps], dtype="datetime64[ns]")
        time_source = "filename"

    sizes = _image_sizes(files, options)
    width, height = sizes[0]
    if out_size is None:
        for name, size in zip(files, sizes, strict=True):
            if size != sizes[0]:
                raise InputError(
                    f"{name} is {size[0]}x{size[1]} pixels but {files[0]} is "
                    f"{width}x{height}; open_images needs images of one size. Resize them all "
                    f"to one size with resize=({width}, {height}) (config: ingest.resize: "
                    f"[{width}, {height}])."
                )
    try:
        _read_image_chunk(files[:1], storage_options=options)
    except InputError:
        raise
    except Exception as err:
        raise InputError(
            f"{files[0]} cannot be decoded ({_short(err)}); open_images needs readable "
            "PNG/JPEG/TIFF images. Check or replace this file."
        ) from err
    out_w, out_h = out_size if out_size is not None else (width, height)

    blocks = []
    for begin in range(0, len(files), chunk_frames):
        chunk = files[begin : begin + chunk_frames]
        task = dask.delayed(_read_image_chunk, pure=True)(
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
        )
        blocks.append(_block(task, len(chunk), out_h, out_w))
    data = da.concatenate(blocks, axis=0)

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
    return _frames_array(data, times, frames, time_source, attrs)


def _read_image_chunk(
    files: Sequence[str],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Read and decode image files into one array.

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
        ``(len(files), height, width, 3)`` uint8 RGB images.
    """
    cv2.setNumThreads(1)
    out: np.ndarray | None = None
    for position, name in enumerate(files):
        raw = np.frombuffer(_read_bytes(name, storage_options), dtype=np.uint8)
        try:
            bgr = cv2.imdecode(raw, _IMREAD_FLAGS) if raw.size else None
        except cv2.error:
            bgr = None
        if bgr is None:
            raise InputError(
                f"{name} cannot be decoded as an image by OpenCV ({raw.size} bytes); "
                "open_images needs readable PNG/JPEG/TIFF files. Check or replace this file."
            )
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rgb = _fit_frame(rgb, name, None, frame_size, out_size)
        if out is None:
            out = np.empty((len(files), *rgb.shape), dtype=np.uint8)
        out[position] = rgb
    if out is None:
        height, width = frame_size or (0, 0)
        if out_size is not None:
            width, height = out_size
        out = np.empty((0, height, width, 3), dtype=np.uint8)
    return out


def _list_images(source: str, storage_options: dict[str, Any]) -> list[str]:
    """List image files of a folder or glob pattern, as local paths or full URLs."""
    pattern = _has_glob(source)
    if _is_url(source):
        fs, path = _url_to_fs(source, storage_options)
        if pattern:
            entries = fs.glob(path, detail=True)
            names = [n for n, info in entries.items() if info.get("type") != "directory"]
        else:
            if not fs.exists(path):
                raise InputNotFoundError(
                    f"{source} does not exist; open_images needs a folder or a glob pattern "
                    "of images. Check the URL and storage_options."
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
                    f"{source} does not exist; open_images needs a folder or a glob pattern "
                    f"of images. Check the path (working directory: {os.getcwd()})."
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
            "open_images needs at least one image. Check the folder or the glob pattern."
        )
    return files


def _not_a_folder(source: str) -> str:
    return (
        f"{source} is a single file; open_images needs a folder or a glob pattern of images. "
        f"Give its folder, or a pattern such as '{_parent(source)}/*.jpg'."
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
            f"{len(files)} files do (like {_basename(example)}); open_images needs a "
            "timestamp in every name or in none. Move the odd files out or use a glob "
            "pattern that excludes them."
        )
    pairs = sorted(zip(stamps, files, strict=True), key=lambda p: (p[0], _natural_key(p[1])))
    for (stamp_a, name_a), (stamp_b, name_b) in itertools.pairwise(pairs):
        if stamp_a == stamp_b:
            raise InputError(
                f"{name_a} and {name_b} have the same timestamp ({stamp_a.isoformat()}) in "
                "their names; open_images needs one image per time. Remove or rename one."
            )
    return [name for _, name in pairs], [stamp for stamp, _ in pairs]


def _image_sizes(files: list[str], storage_options: dict[str, Any]) -> list[tuple[int, int]]:
    """``(width, height)`` of every image, read from the file headers only."""

    def size_of(name: str) -> tuple[int, int]:
        try:
            with _open_binary(name, storage_options) as handle, Image.open(handle) as image:
                return (int(image.size[0]), int(image.size[1]))
        except Exception as err:
            if _file_size(name, storage_options) == 0:
                raise InputError(
                    f"{name} is empty (0 bytes); open_images needs image files with data. "
                    "Remove it or copy it again."
                ) from err
            raise InputError(
                f"{name} is not a readable image ({_short(err)}); open_images needs "
                "PNG/JPEG/TIFF files. Remove or replace this file."
            ) from err

    if any(_is_url(name) for name in files) and len(files) > 1:
        with ThreadPoolExecutor(max_workers=_HEADER_THREADS) as pool:
            return list(pool.map(size_of, files))
    return [size_of(name) for name in files]


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _frames_array(
    data: da.Array,
    times: np.ndarray,
    frames: np.ndarray,
    time_source: str,
    attrs: dict[str, str],
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
    return xr.DataArray(data, dims=_DIMS, coords=coords, name="frames", attrs=attrs)


def _block(task: Any, count: int, height: int, width: int) -> da.Array:
    """One chunk of frames from a delayed kernel call."""
    return da.from_delayed(
        task,
        shape=(count, height, width, 3),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint8),
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
        raise InputError(
            f"{where} is {width}x{height} pixels but the first frame is "
            f"{frame_size[1]}x{frame_size[0]}; frames must share one size. Resize every "
            f"frame with resize=({frame_size[1]}, {frame_size[0]}) (config: ingest.resize: "
            f"[{frame_size[1]}, {frame_size[0]}])."
        )
    return np.ascontiguousarray(image, dtype=np.uint8)


def _check_file(source: str, storage_options: dict[str, Any]) -> None:
    """Raise if a video file is missing, a folder or empty."""
    if _is_url(source):
        fs, path = _url_to_fs(source, storage_options)
        if not fs.exists(path):
            raise InputNotFoundError(
                f"{source} does not exist; open_video needs a video file. Check the URL and "
                "storage_options."
            )
        if fs.isdir(path):
            raise InputError(_is_folder(source))
        size = fs.size(path)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputNotFoundError(
                f"{source} does not exist; open_video needs a video file. Check the path "
                f"(working directory: {os.getcwd()})."
            )
        if path.is_dir():
            raise InputError(_is_folder(source))
        size = path.stat().st_size
    if size == 0:
        raise InputError(
            f"{source} is empty (0 bytes); open_video needs a video file with frames. The "
            "download or copy probably failed: fetch the file again."
        )


def _is_folder(source: str) -> str:
    return (
        f"{source} is a folder; open_video needs one video file. For a folder of still "
        f"images use open_images({source!r})."
    )


def _url_to_fs(source: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        return fsspec.core.url_to_fs(source, **storage_options)
    except (ValueError, ImportError) as err:
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


def _check_chunk_frames(chunk_frames: Any) -> int:
    if (
        isinstance(chunk_frames, bool)
        or not isinstance(chunk_frames, numbers.Integral)
        or chunk_frames < 1
    ):
        raise ConfigError(
            f"chunk_frames needs a positive int (frames per dask chunk), but got "
            f"{chunk_frames!r}. Use e.g. chunk_frames=8."
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
            f"frame_interval={frame_interval!r} needs start_time (the UTC time of the first "
            f"frame), but start_time is None; give both, e.g. {_INTERVAL_EXAMPLE}."
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
