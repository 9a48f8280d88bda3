"""Preprocessing: crop, contrast-limited equalisation (CLAHE) of the HSV value, colour space.

Every function takes and returns a lazy ``(time, y, x, channel)`` DataArray (numpy in gives
numpy out, dask in gives dask out).  The kernels work on whole frames, so the spatial dims
are core dimensions and the data stay chunked along ``time`` only: :func:`preprocess` is one
blockwise map over the time chunks.

The crop is data, not a guess: the ``y`` and ``x`` coordinates keep the original pixel
positions, and the ``crop_rows``, ``crop_cols`` and ``frame_shape`` attributes record the
window in the original frame (rows and columns as ``[start, stop)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from sediment_xr import _validate as check
from sediment_xr._blockwise import apply_per_chunk
from sediment_xr._provenance import append_history
from sediment_xr._validate import COLOR_SPACES
from sediment_xr.exceptions import InputError, setting
from sediment_xr.frames import decoded_window, whole

__all__ = [
    "COLOR_SPACES",
    "crop",
    "crop_slice",
    "enhance",
    "preprocess",
    "to_color_space",
    "to_rgb",
]

ColorSpace = Literal["bgr", "rgb", "hsv", "lab"]
_FRAME_DIMS = ("y", "x", "channel")
_TO_SPACE = {"bgr": "COLOR_RGB2BGR", "hsv": "COLOR_RGB2HSV", "lab": "COLOR_RGB2LAB"}
_FROM_SPACE = {"bgr": "COLOR_BGR2RGB", "hsv": "COLOR_HSV2RGB", "lab": "COLOR_LAB2RGB"}
#: Attributes that describe the analysed window; carried from frames to labels and cover.
WINDOW_ATTRS = ("crop_rows", "crop_cols", "frame_shape")


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


def crop_slice(bounds: Sequence[int | None] | None, size: int, name: str) -> slice:
    """``[start, stop]`` (Python slice semantics) as a slice that selects something.

    Parameters
    ----------
    bounds : [start, stop] or None
        Negative values count from the end; None leaves that end open (None: everything).
    size : int
        Length of the axis.
    name : {"rows", "cols"}
        The setting, for messages.

    Returns
    -------
    slice
        ``slice(start, stop)`` with non-negative bounds.
    """
    bounds = check.check_crop_bounds(bounds, name)
    start, stop, _ = slice(*(bounds or (None, None))).indices(size)
    if stop <= start:
        shown = [None, None] if bounds is None else list(bounds)
        raise InputError(
            f"crop needs {name} inside the frame ({size} {name}), but got "
            f"{setting(name, shown)}, which selects nothing. Use e.g. "
            f"{setting(name, [-400, None])}.",
            settings=[(name, shown), (name, [-400, None])],
        )
    return slice(start, stop)


def _window(coord: xr.DataArray, part: slice) -> list[int]:
    values = np.asarray(coord.values)[part]
    return [int(values[0]), int(values[-1]) + 1]


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
        The cropped frames. The ``y`` and ``x`` coordinates keep the original pixel positions;
        ``crop_rows`` and ``crop_cols`` (``[start, stop)`` in the original frame) and
        ``frame_shape`` (its ``[height, width]``) are recorded as attributes.

    Notes
    -----
    Lazy: positional indexing only. Frames straight from an opener (:func:`open_video`,
    :func:`open_images`) are then decoded window-only: each chunk's task keeps just the
    window of every frame (the same pixels as slicing, without copying the rest).
    """
    _check_frames(frames, "crop")
    ys = crop_slice(rows, frames.sizes["y"], "rows")
    xs = crop_slice(cols, frames.sizes["x"], "cols")
    out = decoded_window(frames, ys, xs)
    if out is None:
        out = frames.isel(y=ys, x=xs)
    shape = frames.attrs.get("frame_shape") or [
        int(frames["y"].values.max()) + 1,
        int(frames["x"].values.max()) + 1,
    ]
    attrs = append_history(frames.attrs, f"crop rows={rows!r} cols={cols!r}")
    attrs |= {
        "crop_rows": _window(frames["y"], ys),
        "crop_cols": _window(frames["x"], xs),
        "frame_shape": [int(v) for v in shape],
    }
    out.attrs = attrs
    return out


def _clahe_frames(
    block: np.ndarray,
    clip_limit: float,
    tile_grid_size: Sequence[int],
    back: str = "COLOR_HSV2RGB",
) -> np.ndarray:
    """CLAHE on the HSV value of RGB uint8 frames ``(..., y, x, 3)``.

    Returns the frames converted back from HSV with the OpenCV code ``back`` (RGB by
    default). Every frame goes through the same few buffers and into one output array: no
    allocation per frame (which costs page faults where freed memory goes back to the
    system at once, as in Dask workers).
    """
    import cv2

    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(tile_grid_size))
    flat = block.reshape((-1, *block.shape[-3:]))
    out = np.empty(flat.shape, dtype=np.uint8)
    height, width = flat.shape[1:3]
    hsv = np.empty((height, width, 3), dtype=np.uint8)
    value = np.empty((height, width), dtype=np.uint8)
    equalised = np.empty((height, width), dtype=np.uint8)
    code = getattr(cv2, back)
    for i, rgb in enumerate(flat):
        cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV, dst=hsv)
        cv2.extractChannel(hsv, 2, dst=value)
        clahe.apply(value, dst=equalised)
        cv2.insertChannel(equalised, hsv, 2)
        cv2.cvtColor(hsv, code, dst=out[i])
    return out.reshape(block.shape)


def _convert_frames(block: np.ndarray, color_space: str, inverse: bool = False) -> np.ndarray:
    """RGB uint8 pixels ``(..., 3)`` into ``color_space`` (or back, with ``inverse``)."""
    code = (_FROM_SPACE if inverse else _TO_SPACE).get(color_space)
    if code is None:
        return block.copy()
    import cv2

    flat = np.ascontiguousarray(block.reshape(-1, 1, 3))
    return cv2.cvtColor(flat, getattr(cv2, code)).reshape(block.shape)


def _apply_frames(func, frames: xr.DataArray, **kwargs: Any) -> xr.DataArray:
    """Apply a whole-frame uint8 kernel lazily (numpy in -> numpy out, dask in -> dask out)."""
    if frames.chunks is not None:
        frames = whole(frames, _FRAME_DIMS)
    return apply_per_chunk(
        func,
        frames,
        kwargs=kwargs,
        input_core_dims=[_FRAME_DIMS],
        output_core_dims=_FRAME_DIMS,
        dtype=np.uint8,
        keep_attrs=True,  # the coordinates' attrs; the caller sets the array's own
    ).transpose(*frames.dims)


def _window_attrs(frames: xr.DataArray) -> dict[str, Any]:
    return {k: frames.attrs[k] for k in WINDOW_ATTRS if k in frames.attrs}


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
    clip_limit = check.check_clip_limit(clip_limit)
    tile_grid_size = check.check_tile_grid_size(tile_grid_size)
    out = _apply_frames(
        _clahe_frames, frames, clip_limit=clip_limit, tile_grid_size=tile_grid_size
    )
    out.name = "enhanced"
    attrs = {k: v for k, v in frames.attrs.items() if k in ("source", "channel_order", "history")}
    out.attrs = append_history(
        attrs | _window_attrs(frames),
        f"CLAHE on HSV value, clip_limit={clip_limit}, tile_grid_size={list(tile_grid_size)}",
    )
    out.attrs["long_name"] = "frames after CLAHE on the HSV value channel"
    return out


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
    color_space = check.check_color_space(color_space)
    _check_frames(frames, "to_color_space")
    out = _apply_frames(_convert_frames, frames, color_space=color_space)
    out.name = "features"
    out.attrs = {
        "long_name": f"pixel features in {color_space} space",
        "color_space": color_space,
        **_window_attrs(frames),
        "history": frames.attrs.get("history", ""),
    }
    return out


def to_rgb(pixels: np.ndarray, color_space: ColorSpace) -> np.ndarray:
    """Convert uint8 pixels ``(..., 3)`` from ``color_space`` back to RGB (numpy only)."""
    color_space = check.check_color_space(color_space)
    return _convert_frames(np.asarray(pixels, dtype=np.uint8), color_space, inverse=True)


def _illumination_name(illumination: Any) -> str:
    from sediment_xr.illumination import Illumination

    if illumination is None or isinstance(illumination, Illumination):
        return "flat_field"
    return check.check_illumination(illumination)


def _preprocess_frames(
    block: np.ndarray,
    light: Any,
    clip_limit: float,
    tile_grid_size: Sequence[int],
    color_space: str,
) -> np.ndarray:
    """Kernel of :func:`preprocess`: light correction (or CLAHE), then the colour space."""
    from sediment_xr.illumination import Illumination, correct_frames

    direct = color_space in ("bgr", "rgb")
    if isinstance(light, Illumination):
        rgb = correct_frames(block, light, reverse=color_space == "bgr")
        return rgb if direct else _convert_frames(rgb, color_space)
    if light == "none":
        return _convert_frames(block, color_space)
    # CLAHE: BGR and RGB come straight from HSV (the same pixels as through RGB, one step less)
    if direct:
        back = "COLOR_HSV2BGR" if color_space == "bgr" else "COLOR_HSV2RGB"
        return _clahe_frames(block, clip_limit, tile_grid_size, back)
    return _convert_frames(_clahe_frames(block, clip_limit, tile_grid_size), color_space)


def preprocess(
    frames: xr.DataArray,
    *,
    rows: Sequence[int | None] | None = None,
    cols: Sequence[int | None] | None = None,
    illumination: Any = None,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    color_space: ColorSpace = "bgr",
) -> xr.DataArray:
    """Crop, correct the light and convert frames into clustering features.

    Parameters
    ----------
    frames : xarray.DataArray
        uint8 RGB frames with dims ``(time, y, x, channel)``.
    rows, cols
        The analysed window, see :func:`crop`.
    illumination : Illumination, "flat_field", "clahe" or "none", optional
        How the light is made even (see :mod:`sediment_xr.illumination`):

        - an :class:`~sediment_xr.illumination.Illumination` (from
          :func:`~sediment_xr.fit_illumination` on the cropped frames): divide each frame by
          the lamps' field and by its own gain against the reference light. Lazy.
        - ``None`` or ``"flat_field"`` (the default): the same, with the light fitted now
          on up to 240 frames spread over the series (this computes them).
        - ``"clahe"``: the lesson's CLAHE on the HSV value (``clip_limit``,
          ``tile_grid_size``). Not the default: it equalises each tile's histogram, so the
          colours move with the mat being measured (``benchmarks/accuracy.md``).
        - ``"none"``: the pixels as decoded.
    clip_limit, tile_grid_size
        CLAHE settings (``illumination="clahe"`` only), see :func:`enhance`.
    color_space : {"bgr", "rgb", "hsv", "lab"}, default "bgr"
        See :func:`to_color_space`.

    Returns
    -------
    xarray.DataArray
        uint8 features ``(time, y, x, channel)`` named ``features``, on the crop's grid (the
        original pixel coordinates; the window in ``crop_rows``/``crop_cols``). The
        ``frame_status`` coordinate of the frames, if any, is kept. ``attrs["illumination"]``
        names the method.

    Notes
    -----
    Lazy (one task per time chunk), except that ``illumination="flat_field"`` first
    computes the light from a sample of frames.
    """
    from sediment_xr.illumination import Illumination, fit_illumination, sample_light

    method = _illumination_name(illumination)
    clip_limit = check.check_clip_limit(clip_limit)
    tile_grid_size = check.check_tile_grid_size(tile_grid_size)
    color_space = check.check_color_space(color_space)
    cropped = crop(frames, rows=rows, cols=cols)
    light: Any = illumination
    if method == "flat_field" and not isinstance(illumination, Illumination):
        light = fit_illumination(sample_light(cropped))
    out = _apply_frames(
        _preprocess_frames,
        cropped,
        light=light if method == "flat_field" else method,
        clip_limit=clip_limit,
        tile_grid_size=tile_grid_size,
        color_space=color_space,
    )
    out.name = "features"
    if method == "clahe":
        how = (
            f"CLAHE on HSV value (clip_limit={clip_limit}, tile_grid_size={list(tile_grid_size)})"
        )
    elif method == "flat_field":
        how = "light divided by the lamps' field and each frame's gain"
    else:
        how = "no light correction"
    attrs = {
        "long_name": f"pixel features in {color_space} space",
        "color_space": color_space,
        **_window_attrs(cropped),
        "illumination": method,
    }
    if method == "clahe":
        attrs |= {"clip_limit": clip_limit, "tile_grid_size": list(tile_grid_size)}
    attrs["history"] = cropped.attrs.get("history", "")
    out.attrs = append_history(attrs, f"{how}, features in {color_space}")
    return out
