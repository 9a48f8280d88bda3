"""The frames array every opener returns, and what the openers share.

A series of frames is a dask-backed :class:`xarray.DataArray` named ``"frames"`` with dims
``(time, y, x, channel)``, dtype ``uint8``, RGB, chunked along ``time`` only, with
coordinates ``time`` (datetime64[ns], naive UTC), ``frame`` (the frame's number in its
source), ``y`` and ``x`` (pixel positions) and ``frame_status`` (lazy: computed by the same
decode task as the pixels, see :data:`FRAME_STATUS_ATTRS`).  Each chunk is decoded by one
task that opens its own file, so the graph holds only plain values and runs on
``dask.distributed`` worker processes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from sediment_xr.exceptions import NAMED, InputError, setting

__all__ = [
    "AUTO_CHUNK_BYTES",
    "AUTO_CHUNK_MAX_FRAMES",
    "FRAME_NOT_READ",
    "FRAME_OK",
    "FRAME_STATUS_ATTRS",
    "FRAME_UNDECODABLE",
    "MAX_FRAME_PIXELS",
    "Window",
    "as_source",
    "auto_chunk_frames",
    "check_pixels",
    "chunk_from_task",
    "decoded",
    "decoded_window",
    "fit_frame",
    "frames_array",
    "in_window",
    "status_from_task",
    "too_many_pixels",
    "whole",
]

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
#: Most decoded frames (bytes) in a chunk chosen by :func:`auto_chunk_frames`.
AUTO_CHUNK_BYTES = 96 * 2**20
#: Most frames in a chunk chosen by :func:`auto_chunk_frames`.
AUTO_CHUNK_MAX_FRAMES = 32
#: ``(row_start, row_stop, col_start, col_stop)`` of a window of a frame, in pixels.
Window = tuple[int, int, int, int]
#: How to decode a window of the frames of the latest opened series, by the name of their
#: dask array (see :func:`decoded`); a few hundred at most, oldest forgotten first.
_WINDOWED: OrderedDict[str, tuple[str, Callable[[Window | None], Any]]] = OrderedDict()
_WINDOWED_MAX = 256
_DIMS = ("time", "y", "x", "channel")
_FRAME_ATTRS = {"long_name": "frame number in the input (0 = first frame)", "units": "1"}
_Y_ATTRS = {"long_name": "pixel row in the input frame (0 = top)", "units": "1", "axis": "Y"}
_X_ATTRS = {"long_name": "pixel column in the input frame (0 = left)", "units": "1", "axis": "X"}


def as_source(value: Any, func: str, example: str) -> str:
    """A path or URL given to an opener, as text (``os.PathLike`` accepted)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise InputError(
            f"{func} needs a path or URL string, but got {value!r} "
            f"({type(value).__name__}). Give e.g. {func}({example!r})."
        )
    return value


def auto_chunk_frames(width: int, height: int) -> int:
    """Frames per chunk for frames of this size: up to 32 and about 96 MiB of RGB.

    Measured on a 1024 x 1024 H.264 video (benchmarks/results.md): every chunk opens the
    file, seeks to a key frame and decodes past its last frame (B-frames), about 4.5 ms per
    frame more with 8-frame chunks than with 32. Larger chunks gain little more and hold
    more memory per task (1024 x 1024: 32 frames; 1920 x 1080: 16; 3840 x 2160: 4).
    """
    frame_bytes = max(int(width) * int(height) * 3, 1)
    return int(max(1, min(AUTO_CHUNK_MAX_FRAMES, AUTO_CHUNK_BYTES // frame_bytes)))


def whole(array: xr.DataArray, dims: tuple[str, ...]) -> xr.DataArray:
    """``array`` with each of ``dims`` in one dask chunk (numpy data are left as they are).

    Only the data are rechunked: coordinates stay in memory (``DataArray.chunk`` would turn
    them into dask arrays too).
    """
    if array.chunks is None:
        return array
    axes = {array.get_axis_num(d): -1 for d in dims if d in array.dims}
    return array.copy(data=array.data.rechunk(axes))


def frames_array(
    data: da.Array,
    status: da.Array,
    times: np.ndarray,
    numbers: np.ndarray,
    time_source: str,
    attrs: dict[str, Any],
) -> xr.DataArray:
    """Wrap a ``(time, y, x, channel)`` dask array and its status with coordinates."""
    time_attrs = {
        "standard_name": "time",
        "long_name": "time of frame (UTC)",
        "axis": "T",
        "time_source": time_source,
    }
    coords = {
        "time": ("time", np.asarray(times, dtype="datetime64[ns]"), time_attrs),
        "frame": ("time", np.asarray(numbers, dtype=np.int64), _FRAME_ATTRS),
        "y": ("y", np.arange(data.shape[1], dtype=np.int64), _Y_ATTRS),
        "x": ("x", np.arange(data.shape[2], dtype=np.int64), _X_ATTRS),
        "frame_status": ("time", status, dict(FRAME_STATUS_ATTRS)),
    }
    return xr.DataArray(data, dims=_DIMS, coords=coords, name="frames", attrs=attrs)


def chunk_from_task(task: Any, count: int, height: int, width: int) -> da.Array:
    """The frames of one chunk: item 0 of a delayed ``(frames, status)`` decode task."""
    return da.from_delayed(
        task[0],
        shape=(count, height, width, 3),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint8),
    )


def status_from_task(task: Any, count: int) -> da.Array:
    """The ``frame_status`` of one chunk: item 1 of the same decode task as its pixels."""
    return da.from_delayed(task[1], shape=(count,), dtype=np.uint8, meta=np.empty((0,), np.uint8))


def in_window(image: np.ndarray, window: Window | None) -> np.ndarray:
    """The ``window`` of a decoded ``(y, x, channel)`` frame (a view), or the frame."""
    if window is None:
        return image
    return image[window[0] : window[1], window[2] : window[3]]


def decoded(
    task_of: Callable[[Sequence[Any], Window | None], Any],
    chunks: Sequence[Sequence[Any]],
    height: int,
    width: int,
) -> tuple[da.Array, da.Array]:
    """Frames and ``frame_status`` of an opener's decode tasks, one task per chunk.

    ``task_of(chunk, window)`` is the delayed ``(frames, status)`` task of a chunk (all of
    each frame when ``window`` is None). The frames are remembered by their dask name, so
    that :func:`~sediment_xr.preprocess.crop` of these very frames builds tasks that decode
    only its window (:func:`decoded_window`): the same pixels, without holding and copying
    the rest of every frame.
    """

    def build(window: Window | None) -> tuple[da.Array, da.Array]:
        h, w = (height, width)
        if window is not None:
            h, w = window[1] - window[0], window[3] - window[2]
        blocks, statuses = [], []
        for chunk in chunks:
            task = task_of(chunk, window)
            blocks.append(chunk_from_task(task, len(chunk), h, w))
            statuses.append(status_from_task(task, len(chunk)))
        return da.concatenate(blocks, axis=0), da.concatenate(statuses, axis=0)

    data, status = build(None)
    _WINDOWED[data.name] = (status.name, build)
    while len(_WINDOWED) > _WINDOWED_MAX:
        _WINDOWED.popitem(last=False)
    return data, status


def decoded_window(frames: xr.DataArray, rows: slice, cols: slice) -> xr.DataArray | None:
    """``frames.isel(y=rows, x=cols)`` decoded window-only, if ``frames`` are an opener's own.

    None when the frames were changed after opening (their dask name is not one
    :func:`decoded` made, or their ``frame_status`` is not the same tasks'): then only
    slicing gives the window.
    """
    data = frames.data
    known = _WINDOWED.get(getattr(data, "name", None) or "")
    status = frames.coords.get("frame_status")
    if known is None or status is None or getattr(status.data, "name", None) != known[0]:
        return None
    if frames.dims != _DIMS:
        return None
    window = (int(rows.start), int(rows.stop), int(cols.start), int(cols.stop))
    pixels, flags = known[1](window)
    out = frames.isel(y=rows, x=cols).copy(data=pixels)
    return out.assign_coords(frame_status=("time", flags, dict(status.attrs)))


def too_many_pixels(name: str, seen: str) -> str:
    """Message for a frame over :data:`MAX_FRAME_PIXELS`."""
    limit = MAX_FRAME_PIXELS / 1e6
    return (
        f"{name} is over the limit of {limit:.0f} megapixels per frame ({seen}); larger "
        "frames are refused: they may be decompression bombs, and would not fit a worker's "
        "memory. If the images really are this large, downscale them first (e.g. `mogrify "
        "-resize 8192x8192 *.png`)."
    )


def check_pixels(name: str, width: int, height: int, what: str = "frames") -> None:
    """Refuse frames over :data:`MAX_FRAME_PIXELS` before anything is decoded."""
    if int(width) * int(height) > MAX_FRAME_PIXELS:
        raise InputError(too_many_pixels(name, f"{what} of {width}x{height} pixels"))


def fit_frame(
    image: np.ndarray,
    name: str,
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
) -> np.ndarray:
    """Resize a decoded frame to ``out_size`` ``(width, height)``, or check its size."""
    import cv2

    height, width = image.shape[:2]
    if out_size is not None:
        if (width, height) != tuple(out_size):
            image = cv2.resize(image, tuple(out_size), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image, dtype=np.uint8)
    if frame_size is not None and (height, width) != tuple(frame_size):
        size = (frame_size[1], frame_size[0])
        raise InputError(
            f"{name} is {width}x{height} pixels but the first frame is {size[0]}x{size[1]}; "
            f"frames must share one size. Resize every frame with {setting('resize', size)}.",
            settings=[("resize", size), ("resize", NAMED)],
        )
    return np.ascontiguousarray(image, dtype=np.uint8)
