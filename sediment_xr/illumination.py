"""Light that does not bias trends: a flat field for the lamps' beam, a gain for each frame.

A camera sees reflectance times light: ``frame = scene x field(y, x) x gain(t, channel)``.
The field is the beam of the lamps (vignetting), fixed to the camera; the gain is the lamps'
flicker and slow ageing (light lost, blue first). Both are estimated so that the very thing
being measured cannot move them:

- the **field** is a smooth surface (a quadratic in the log of the light) fitted to the 10th
  percentile of brightness in blocks of the frame (each frame divided by its own median
  first), its 25th percentile over frames spread across the series. Pale mat, pebbles and
  shells are the bright tail of a block, and mat grows over a block in time, so the low
  percentiles follow the light on the sediment even where mat covers most of a block;
- the **gain** of each frame and channel is the mode (half-sample mode) of the log ratio of
  the frame's block means to a reference (the median of the flat-fielded sample frames). Mat
  that grew, or a fish, changes a minority of the blocks, all in one direction; the mode
  stays on the unchanged majority, where the ratio is the light alone. A median is pulled
  by the changed blocks: as mat grows every frame is darkened a little more, and the slope
  shrinks (measured: x0.96 against x0.99 with the mode).

The lesson's CLAHE does the opposite: it equalises each tile's histogram, so as mat grows
the mapping of every tile moves with it (see ``benchmarks/accuracy.md``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from sediment_xr.exceptions import ModelError

__all__ = [
    "Illumination",
    "block_means_of",
    "block_size",
    "fit_illumination",
    "frame_gains",
    "gain_of",
    "sample_light",
]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Percentile of brightness in a block that follows the light on the sediment ...
FIELD_PERCENTILE = 10
#: ... and its percentile over the frames (each frame's own gain divided out first).
FIELD_TIME_PERCENTILE = 25
#: Smallest gain applied (a frame with the lights off stays dark instead of becoming noise).
MIN_GAIN = 0.05


def block_size(height: int, width: int) -> int:
    """Side of the blocks the light is estimated on: ~25 blocks on the short side, 1-16 px."""
    return int(np.clip(min(height, width) // 25, 1, 16))


def _design(ny: int, nx: int, height: int, width: int, step: float) -> np.ndarray:
    """Quadratic terms of normalised (x, y) at the centres of an ``ny x nx`` grid of cells."""
    y = ((np.arange(ny) + 0.5) * step) / height
    x = ((np.arange(nx) + 0.5) * step) / width
    yy, xx = np.meshgrid(y, x, indexing="ij")
    xx, yy = xx.ravel(), yy.ravel()
    return np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=1)


def _log_field(coefficients: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """The quadratic of :func:`_design` at every pixel centre (float64), by broadcasting."""
    h, w = shape
    c0, cx, cy, cxx, cyy, cxy = coefficients
    y = ((np.arange(h) + 0.5) / h)[:, None]
    x = ((np.arange(w) + 0.5) / w)[None, :]
    return c0 + cx * x + cy * y + cxx * x * x + cyy * y * y + cxy * x * y


# A worker applies one model to every chunk: each task gets its own copy of the model, so the
# field (tens of ms at 1024 x 400) is kept per process, by value, for the last few models.
@functools.lru_cache(maxsize=2)
def _field_of(coefficients: tuple[float, ...], shape: tuple[int, int]) -> np.ndarray:
    """The field: ``exp`` of :func:`_log_field`, float32 (read-only)."""
    field = np.exp(_log_field(coefficients, shape)).astype(np.float32)
    field.flags.writeable = False
    return field


@functools.lru_cache(maxsize=2)
def _inverse_of(
    coefficients: tuple[float, ...], shape: tuple[int, int], block: int
) -> tuple[np.ndarray, np.ndarray]:
    inverse = 1.0 / _field_of(coefficients, shape)
    blocks = block_means_of(inverse, block)[..., None]
    inverse.flags.writeable = False
    blocks.flags.writeable = False
    return inverse, blocks


def _blocks(image: np.ndarray, block: int) -> np.ndarray:
    """``image (h, w, ...)`` cut into whole blocks: ``(h // b, w // b, b * b, ...)``."""
    h, w = image.shape[0] // block, image.shape[1] // block
    cut = image[: h * block, : w * block]
    return (
        cut.reshape(h, block, w, block, *image.shape[2:])
        .swapaxes(1, 2)
        .reshape(h, w, block * block, *image.shape[2:])
    )


def block_means_of(image: np.ndarray, block: int) -> np.ndarray:
    """Means of whole ``block`` x ``block`` blocks of any ``(h, w, ...)`` array (float32)."""
    return _blocks(np.asarray(image, dtype=np.float32), block).mean(axis=2)


def half_sample_mode(values: np.ndarray) -> float:
    """The half-sample mode (Bickel): repeatedly keep the densest half of the values.

    Robust to one-sided contamination of up to half the values. Non-finite values are left
    out; 0 when none is left.
    """
    from sediment_xr._kernels import half_sample_mode as compiled

    return compiled(values)


@dataclasses.dataclass(frozen=True, eq=False)
class Illumination:
    """The light of a camera: a smooth field over the analysed window and a reference.

    Attributes
    ----------
    coefficients : tuple of float
        The log of the field as ``c0 + c1 x + c2 y + c3 x^2 + c4 y^2 + c5 x y`` over the
        window's normalised coordinates (0 to 1), normalised to a mean of 1.
    reference : numpy.ndarray
        float32 ``(rows, cols, 3)`` RGB block means of the flat-fielded sample frames (their
        median over time): what a frame under the reference light looks like.
    block : int
        Side of the blocks in pixels.
    shape : tuple of int
        ``(height, width)`` of the window the field was fitted on.
    scene : numpy.ndarray, optional
        float32 ``(2, rows, cols)``: the log brightness of each block of the corrected
        frames as ``scene[0] + scene[1] * s``, ``s`` the time from ``time_range[0]`` (0) to
        ``time_range[1]`` (1), fitted robustly on the sample frames. What a frame of the
        scene should look like at its time (slow change such as mat growth included): the
        quality measures compare each frame with it.
    time_range : tuple of str, optional
        First and last time of the frames the scene was fitted on (ISO 8601).
    """

    coefficients: tuple[float, ...]
    reference: np.ndarray
    block: int
    shape: tuple[int, int]
    scene: np.ndarray | None = None
    time_range: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        ref = np.asarray(self.reference, dtype=np.float32)
        h, w = (int(v) for v in self.shape)
        ok = (
            len(self.coefficients) == 6
            and np.all(np.isfinite(self.coefficients))
            and ref.ndim == 3
            and ref.shape == (h // int(self.block), w // int(self.block), 3)
            and np.all(np.isfinite(ref))
        )
        if not ok:
            raise ModelError(
                "the model's illumination is damaged (coefficients, reference or shape do not "
                "fit together). Fit a new model: leave out cluster.model, or rerun with "
                "--overwrite."
            )
        # Rounded as model.json stores them: a model read back labels exactly as when fitted.
        ref = np.round(ref, 2).astype(np.float32)
        if self.scene is not None:
            scene = np.round(np.asarray(self.scene, dtype=np.float32), 4).astype(np.float32)
            if scene.shape != (2, *ref.shape[:2]) or not np.all(np.isfinite(scene)):
                ok = False
            object.__setattr__(self, "scene", scene)
            if self.time_range is None or len(self.time_range) != 2:
                ok = False
            else:
                object.__setattr__(self, "time_range", tuple(str(t) for t in self.time_range))
        if not ok:
            raise ModelError(
                "the model's illumination is damaged (its scene does not fit the reference). "
                "Fit a new model: leave out cluster.model, or rerun with --overwrite."
            )
        object.__setattr__(self, "reference", ref)
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
        object.__setattr__(self, "shape", (h, w))
        object.__setattr__(self, "block", int(self.block))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Illumination):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        # the cached field is rebuilt where it is used: tasks carry the small arrays only
        return {k: v for k, v in self.__dict__.items() if k != "_field"}

    def field(self) -> np.ndarray:
        """The field over the whole window, float32 ``(height, width)``, mean 1 (read-only)."""
        return _field_of(tuple(self.coefficients), tuple(self.shape))

    def inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """``1 / field`` and its block means ``(rows, cols, 1)`` (read-only float32)."""
        return _inverse_of(tuple(self.coefficients), tuple(self.shape), self.block)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (values rounded to 4 significant digits)."""
        return {
            "method": "flat_field",
            "coefficients": list(self.coefficients),
            "block": self.block,
            "shape": list(self.shape),
            "reference": np.round(self.reference, 2).tolist(),
            "scene": None if self.scene is None else np.round(self.scene, 4).tolist(),
            "time_range": None if self.time_range is None else list(self.time_range),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Illumination:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                coefficients=tuple(data["coefficients"]),
                reference=np.asarray(data["reference"], dtype=np.float32),
                block=int(data["block"]),
                shape=tuple(data["shape"]),
                scene=None if data.get("scene") is None else np.asarray(data["scene"]),
                time_range=data.get("time_range"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f"the model's illumination is damaged ({err}). Fit a new model: leave out "
                "cluster.model, or rerun with --overwrite."
            ) from err


def _frame_light(block: np.ndarray, size: int, status: np.ndarray | None) -> tuple:
    """Per decodable frame of a chunk: low-percentile brightness and RGB means, per block.

    Also returns which frames of the chunk decoded.
    """
    from sediment_xr._kernels import block_means
    from sediment_xr.frames import FRAME_UNDECODABLE

    lows, means, decoded = [], [], np.ones(len(block), dtype=bool)
    kth = None
    for i, frame in enumerate(block):
        if status is not None and status[i] == FRAME_UNDECODABLE:
            decoded[i] = False
            continue
        luma = _blocks(frame.astype(np.float32) @ _LUMA, size)  # (rows, cols, b * b)
        kth = kth if kth is not None else int(FIELD_PERCENTILE / 100 * (luma.shape[-1] - 1))
        low = np.partition(luma, kth, axis=-1)[..., kth]
        lows.append(100.0 * low / max(float(np.median(low)), 1e-3))  # the frame's gain out
        means.append(block_means(frame, size))
    return lows, means, decoded


def _fit_surface(low: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Robust quadratic fit to the log of a grid of block brightness; outliers left out.

    (A one-sided fit to the lower envelope was tried and measured worse on the planted
    scenes: it follows the darkest sediment, not the light.)
    """
    terms = _design(*low.shape, height, width, float(size))
    z = np.log(np.maximum(low.ravel().astype(np.float64), 1.0))
    keep = np.ones(len(z), dtype=bool)
    coef = np.zeros(6)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(terms[keep], z[keep], rcond=None)
        resid = z - terms @ coef
        spread = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep]))) + 1e-9
        keep = np.abs(resid) < 2.5 * spread
        if keep.sum() < 6:
            break
    coef[0] -= np.log(np.mean(np.exp(_log_field(coef, (height, width)))))  # mean 1
    return coef


def sample_light(window: xr.DataArray, max_frames: int = 240) -> xr.DataArray:
    """The frames of ``window`` the light is fitted on: the pixel sample's frames."""
    from sediment_xr.cluster import sample_positions

    return window.isel(time=sample_positions(window.sizes["time"], max_frames))


def fit_illumination(window: xr.DataArray) -> Illumination:
    """Estimate the lamps' field and a reference light from frames of the analysed window.

    Parameters
    ----------
    window : xarray.DataArray
        uint8 RGB frames ``(time, y, x, channel)`` of the analysed window (cropped), spread
        over the series (e.g. the frames of the pixel sample). Frames whose ``frame_status``
        is ``undecodable`` are left out.

    Returns
    -------
    Illumination

    Notes
    -----
    Computes: one small summary per frame (in parallel when ``window`` is dask-backed).
    """
    height, width = window.sizes["y"], window.sizes["x"]
    size = block_size(height, width)
    data = window.transpose("time", "y", "x", "channel").data
    status = window["frame_status"].data if "frame_status" in window.coords else None
    if isinstance(data, np.ndarray):
        parts = [_frame_light(data, size, None if status is None else np.asarray(status))]
    else:
        blocks = data.rechunk({1: -1, 2: -1, 3: -1}).to_delayed(optimize_graph=False).ravel()
        flags = [None] * len(blocks)
        if status is not None:
            flags = da.asarray(status).rechunk((data.chunks[0],))
            flags = flags.to_delayed(optimize_graph=False).ravel()
        parts = dask.compute(
            *[dask.delayed(_frame_light)(b, size, f) for b, f in zip(blocks, flags, strict=True)]
        )
    lows = [x for low, _, _ in parts for x in low]
    means = [x for _, mean, _ in parts for x in mean]
    decoded = np.concatenate([d for _, _, d in parts])
    if not lows:
        raise ModelError(
            "no frame of the sample can be decoded, so the light cannot be estimated. The "
            "input is damaged: fetch it again or re-encode it."
        )
    # Mat grows over a block in time: its darker moments tell the light on the sediment.
    low = np.percentile(np.stack(lows), FIELD_TIME_PERCENTILE, axis=0)
    coef = _fit_surface(low, height, width, size)
    light = Illumination(
        coefficients=tuple(coef),
        reference=np.zeros((height // size, width // size, 3), np.float32),
        block=size,
        shape=(height, width),
    )
    field_blocks = block_means_of(light.field(), size)[..., None]
    flat = np.stack(means) / field_blocks
    light = dataclasses.replace(light, reference=np.median(flat, axis=0).astype(np.float32))
    times = window["time"].values if "time" in window.coords else None
    if times is None or not np.issubdtype(np.asarray(times).dtype, np.datetime64):
        return light
    return _with_scene(light, flat, np.asarray(times)[decoded])


def _with_scene(light: Illumination, flat: np.ndarray, times: np.ndarray) -> Illumination:
    """Add the scene's slow change: a robust straight line in time of each block's log light."""
    t0, t1 = times.min(), times.max()
    span = max((t1 - t0) / np.timedelta64(1, "s"), 1e-9)
    s = ((times - t0) / np.timedelta64(1, "s")) / span
    gains = np.stack([gain_of(block, light.reference) for block in flat])
    y = np.log(np.maximum((flat / gains[:, None, None, :]) @ _LUMA, 0.5)).reshape(len(s), -1)
    x = np.stack([np.ones_like(s), s], axis=1)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    resid = y - x @ coef
    spread = 1.4826 * np.median(np.abs(resid), axis=0) + 1e-6
    weight = (np.abs(resid) < 3.0 * spread).astype(np.float64)  # frames with events drop out
    for _ in range(2):
        xtwx = np.einsum("ti,tj,tb->bij", x, x, weight) + 1e-9 * np.eye(2)
        xtwy = np.einsum("ti,tb,tb->bi", x, weight, y)
        coef = np.linalg.solve(xtwx, xtwy[..., None])[..., 0].T
        resid = y - x @ coef
        weight = (np.abs(resid) < 3.0 * spread).astype(np.float64)
    rows, cols = light.reference.shape[:2]
    return dataclasses.replace(
        light,
        scene=coef.reshape(2, rows, cols).astype(np.float32),
        time_range=(str(np.datetime_as_string(t0)), str(np.datetime_as_string(t1))),
    )


def gain_of(flat_means: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Gain per channel of flat-fielded block means against the reference (half-sample mode)."""
    ratio = np.log(np.maximum(flat_means, 0.5)) - np.log(np.maximum(reference, 0.5))
    return np.maximum(np.exp([half_sample_mode(ratio[..., c]) for c in range(3)]), MIN_GAIN)


def frame_gains(frame: np.ndarray, inv_blocks: np.ndarray, light: Illumination) -> np.ndarray:
    """Light of one frame relative to the reference, per RGB channel (half-sample mode).

    ``inv_blocks`` is the block means of ``1 / field`` (``(rows, cols, 1)``).
    """
    from sediment_xr._kernels import block_means

    return gain_of(block_means(frame, light.block) * inv_blocks, light.reference)


def correct_frames(block: np.ndarray, light: Illumination, reverse: bool) -> np.ndarray:
    """Kernel: uint8 RGB frames ``(..., y, x, 3)`` divided by the field and their own gain.

    ``reverse`` writes BGR. Every frame goes into one output array.
    """
    flat = block.reshape((-1, *block.shape[-3:]))
    if flat.shape[1:3] != light.shape:
        raise ModelError(
            f"the model's illumination was fitted on a {light.shape[0]} x {light.shape[1]} "
            f"window, but the frames are {flat.shape[1]} x {flat.shape[2]}. Use the crop "
            "the model was fitted with, or fit a new model."
        )
    from sediment_xr._kernels import scale_pixels

    inv_field, inv_blocks = light.inverse()
    out = np.empty(flat.shape, dtype=np.uint8)
    for i, frame in enumerate(flat):
        gains = frame_gains(frame, inv_blocks, light)
        scale_pixels(frame, inv_field, 1.0 / gains, reverse, out[i])
    return out.reshape(block.shape)
