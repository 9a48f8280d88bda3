"""Preprocessing: crop, contrast-limited equalisation (CLAHE) of the HSV value, colour space.

Every function takes and returns a lazy ``(time, y, x, channel)`` DataArray (numpy in gives
numpy out, dask in gives dask out).  The kernels work on whole frames, so the spatial dims are
core dimensions and the data stay chunked along ``time`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from sediment_xr._compat import append_history, is_dask, single_threaded
from sediment_xr.exceptions import ConfigError, InputError

__all__ = [
    "COLOR_SPACES",
    "crop",
    "enhance",
    "preprocess",
    "to_color_space",
    "to_rgb",
]

ColorSpace = Literal["bgr", "rgb", "hsv", "lab"]
#: Colour spaces available for clustering. ``bgr`` is the lesson's (OpenCV channel order).
COLOR_SPACES: tuple[str, ...] = ("bgr", "rgb", "hsv", "lab")

_FRAME_DIMS = ("y", "x", "channel")


def _check_frames(frames: xr.DataArray, what: str) -> None:
    if not isinstance(frames, xr.DataArray):
        raise InputError(
            f"{what} needs an xarray.DataArray of frames, but got {type(frames).__name__}. "
            "Open frames with sediment_xr.open_video or sediment_xr.open_images."
        )
    missing = [d for d in ("time", *_FRAME_DIMS) if d not in frames.dims]
    if missing or frames.sizes.get("channel") != 3:
        raise InputError(
            f"{what} needs frames with dims (time, y, x, channel) and 3 channels, but got dims "
            f"{dict(frames.sizes)}. Open frames with sediment_xr.open_video or open_images."
        )
    if frames.dtype != np.uint8:
        raise InputError(
            f"{what} needs uint8 frames (0-255), but got dtype {frames.dtype}. "
            "Convert with frames.clip(0, 255).astype('uint8')."
        )


def _slice_from(bounds: Sequence[int | None] | None, size: int, name: str) -> slice:
    """Turn ``[start, stop]`` with Python slice semantics into a validated slice."""
    if bounds is None:
        return slice(None)
    if isinstance(bounds, str) or len(bounds) != 2:
        raise ConfigError(
            f"crop {name} needs two values [start, stop] (null for an open end), but got "
            f"{bounds!r}. Use e.g. {name}: [-400, null]."
        )
    for value in bounds:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | np.integer)
        ):
            raise ConfigError(
                f"crop {name} needs whole numbers or null, but got {bounds!r}. "
                f"Use e.g. {name}: [-400, null]."
            )
    start, stop = (None if v is None else int(v) for v in bounds)
    selected = range(size)[slice(start, stop)]
    if len(selected) == 0:
        shown = ["null" if v is None else v for v in (start, stop)]
        raise InputError(
            f"crop needs {name} inside the frame ({size} {name}), but got {name} "
            f"[{shown[0]}, {shown[1]}], which selects nothing. Use e.g. {name}: [-400, null]."
        )
    return slice(start, stop)


def crop(
    frames: xr.DataArray,
    *,
    rows: Sequence[int | None] | None = None,
    cols: Sequence[int | None] | None = None,
) -> xr.DataArray:
    """Crop frames to a window of rows and columns.

    Parameters
    ----------
    frames : xarray.DataArray
        Frames with dims ``(time, y, x, channel)``.
    rows, cols : [start, stop], optional
        Python slice semantics on pixel positions: negative values count from the end and
        ``None`` leaves that end open. The lesson keeps ``rows=[-400, None]``, the bottom 400
        rows. ``None`` keeps everything.

    Returns
    -------
    xarray.DataArray
        The cropped frames. The ``y`` and ``x`` coordinates keep the original pixel positions.

    Notes
    -----
    Lazy: positional indexing only.
    """
    _check_frames(frames, "crop")
    ys = _slice_from(rows, frames.sizes["y"], "rows")
    xs = _slice_from(cols, frames.sizes["x"], "cols")
    out = frames.isel(y=ys, x=xs)
    out.attrs = append_history(
        frames.attrs, f"crop rows={list(rows or [None, None])} cols={list(cols or [None, None])}"
    )
    return out


@single_threaded
def _clahe_frames(
    block: np.ndarray, clip_limit: float, tile_grid_size: tuple[int, int]
) -> np.ndarray:
    """CLAHE on the HSV value of RGB uint8 frames ``(..., y, x, 3)``; returns RGB uint8."""
    import cv2

    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(tile_grid_size))
    flat = block.reshape((-1, *block.shape[-3:]))
    out = np.empty_like(flat)
    for i, rgb in enumerate(flat):
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
        hsv[:, :, 2] = clahe.apply(np.ascontiguousarray(hsv[:, :, 2]))
        out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out.reshape(block.shape)


_TO_SPACE = {"bgr": "COLOR_RGB2BGR", "hsv": "COLOR_RGB2HSV", "lab": "COLOR_RGB2LAB"}
_FROM_SPACE = {"bgr": "COLOR_BGR2RGB", "hsv": "COLOR_HSV2RGB", "lab": "COLOR_LAB2RGB"}


@single_threaded
def _convert_frames(block: np.ndarray, code_name: str | None) -> np.ndarray:
    """Convert uint8 3-channel pixels ``(..., 3)`` with an OpenCV colour conversion code."""
    if code_name is None:
        return block.copy()
    import cv2

    flat = np.ascontiguousarray(block.reshape(-1, 1, 3))
    return cv2.cvtColor(flat, getattr(cv2, code_name)).reshape(block.shape)


def _check_color_space(color_space: str) -> str:
    if color_space not in COLOR_SPACES:
        raise ConfigError(
            f"color_space needs one of {', '.join(COLOR_SPACES)}, but got {color_space!r}. "
            "Use color_space: bgr to cluster like the lesson."
        )
    return color_space


def _apply_frames(func, frames: xr.DataArray, **kwargs) -> xr.DataArray:
    """Apply a whole-frame uint8 kernel lazily (numpy in -> numpy out, dask in -> dask out)."""
    if is_dask(frames):
        frames = frames.chunk({d: -1 for d in _FRAME_DIMS})
    return xr.apply_ufunc(
        func,
        frames,
        kwargs=kwargs,
        input_core_dims=[list(_FRAME_DIMS)],
        output_core_dims=[list(_FRAME_DIMS)],
        dask="parallelized",
        output_dtypes=[np.uint8],
        keep_attrs=False,
    ).transpose(*frames.dims)


def enhance(
    frames: xr.DataArray,
    *,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
) -> xr.DataArray:
    """Equalise contrast with CLAHE on the HSV value channel, as in the lesson.

    Each frame is converted RGB -> HSV, ``cv2.createCLAHE(clip_limit, tile_grid_size)`` is
    applied to V, and the result is converted back to RGB.

    Parameters
    ----------
    frames : xarray.DataArray
        uint8 RGB frames with dims ``(time, y, x, channel)``.
    clip_limit : float, default 2.0
        CLAHE contrast limit (OpenCV's ``clipLimit``).
    tile_grid_size : (int, int), default (8, 8)
        Number of CLAHE tiles along (columns, rows), OpenCV's ``tileGridSize``.

    Returns
    -------
    xarray.DataArray
        Enhanced uint8 RGB frames, same shape and coordinates.

    Notes
    -----
    Lazy: one task per time chunk; spatial dims are made whole if they were chunked.
    """
    _check_frames(frames, "enhance")
    clip_limit, tile_grid_size = _check_clahe(clip_limit, tile_grid_size)
    out = _apply_frames(
        _clahe_frames, frames, clip_limit=clip_limit, tile_grid_size=tile_grid_size
    )
    out.name = "enhanced"
    out.attrs = append_history(
        {k: v for k, v in frames.attrs.items() if k in ("source", "channel_order", "history")},
        f"CLAHE on HSV value, clip_limit={clip_limit}, tile_grid_size={list(tile_grid_size)}",
    )
    out.attrs["long_name"] = "frames after CLAHE on the HSV value channel"
    return out


def _check_clahe(
    clip_limit: float, tile_grid_size: Sequence[int]
) -> tuple[float, tuple[int, int]]:
    if (
        isinstance(clip_limit, bool)
        or not isinstance(clip_limit, int | float)
        or not (np.isfinite(clip_limit) and clip_limit > 0)
    ):
        raise ConfigError(
            f"clahe clip_limit needs a positive number, but got {clip_limit!r}. "
            "Use clip_limit: 2.0 (the lesson's)."
        )
    try:
        tiles = tuple(int(v) for v in tile_grid_size)
        ok = len(tiles) == 2 and all(
            t >= 1 and t <= 256 and not isinstance(v, bool) and float(v) == t
            for t, v in zip(tiles, tile_grid_size, strict=True)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"clahe tile_grid_size needs two whole numbers from 1 to 256, but got "
            f"{tile_grid_size!r}. Use tile_grid_size: [8, 8] (the lesson's)."
        )
    return float(clip_limit), tiles


def to_color_space(frames: xr.DataArray, color_space: ColorSpace = "bgr") -> xr.DataArray:
    """Express RGB frames in the colour space used for clustering.

    Parameters
    ----------
    frames : xarray.DataArray
        uint8 RGB frames with dims ``(..., channel)``.
    color_space : {"bgr", "rgb", "hsv", "lab"}, default "bgr"
        ``bgr`` reverses the channels (the lesson clusters OpenCV's BGR pixels); ``hsv`` and
        ``lab`` are OpenCV's 8-bit conversions (H in 0-179; L, a, b scaled to 0-255).

    Returns
    -------
    xarray.DataArray
        uint8 features named ``features`` with the same dims; ``attrs["color_space"]`` records
        the space.

    Notes
    -----
    Lazy: elementwise per chunk.
    """
    _check_color_space(color_space)
    _check_frames(frames, "to_color_space")
    out = _apply_frames(_convert_frames, frames, code_name=_TO_SPACE.get(color_space))
    out.name = "features"
    out.attrs = {
        "long_name": f"pixel features in {color_space} space",
        "color_space": color_space,
        "history": frames.attrs.get("history", ""),
    }
    return out


def to_rgb(pixels: np.ndarray, color_space: ColorSpace) -> np.ndarray:
    """Convert uint8 pixels ``(..., 3)`` from ``color_space`` back to RGB (numpy only)."""
    _check_color_space(color_space)
    return _convert_frames(np.asarray(pixels, dtype=np.uint8), _FROM_SPACE.get(color_space))


def preprocess(
    frames: xr.DataArray,
    *,
    rows: Sequence[int | None] | None = None,
    cols: Sequence[int | None] | None = None,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    color_space: ColorSpace = "bgr",
) -> xr.DataArray:
    """Crop, enhance and convert frames into clustering features, as in the lesson.

    Equivalent to ``to_color_space(enhance(crop(frames, ...), ...), color_space)``.

    Parameters
    ----------
    frames : xarray.DataArray
        uint8 RGB frames with dims ``(time, y, x, channel)``.
    rows, cols, clip_limit, tile_grid_size, color_space
        See :func:`crop`, :func:`enhance` and :func:`to_color_space`.

    Returns
    -------
    xarray.DataArray
        uint8 features ``(time, y, x, channel)``.

    Notes
    -----
    Lazy: one fused task chain per time chunk.
    """
    cropped = crop(frames, rows=rows, cols=cols)
    enhanced = enhance(cropped, clip_limit=clip_limit, tile_grid_size=tile_grid_size)
    return to_color_space(enhanced, color_space)


def _preprocess_block(
    block: np.ndarray,
    ys: slice,
    xs: slice,
    clip_limit: float,
    tile_grid_size: tuple[int, int],
    color_space: str,
) -> np.ndarray:
    """Numpy kernel of :func:`preprocess` for a block of RGB frames ``(t, y, x, 3)``."""
    enhanced = _clahe_frames(np.ascontiguousarray(block[:, ys, xs]), clip_limit, tile_grid_size)
    return _convert_frames(enhanced, _TO_SPACE.get(color_space))
