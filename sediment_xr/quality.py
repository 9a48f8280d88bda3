"""Frame quality: measures of each frame against the scene, and the flags they give.

Each analysed frame is measured against the model's light and scene (see
:class:`~sediment_xr.illumination.Illumination`) by five numbers, stored in the cube as
``quality_measure (time, measure)``:

``light``
    The frame's light relative to the reference (1: as usual; lights off: ~0.05).
``saturated``
    Share of pixels with a channel at 250 or more (a flash, a lamp too close).
``contrast``
    Spread of the frame's block brightness (after the light correction) relative to the
    reference's: a cloud of sediment or a fouled lens flattens it.
``correlation``
    Correlation of the frame's block brightness with what the scene should look like at the
    frame's time (the scene's slow change, such as mat growth, included): a bumped camera
    sees another place.
``changed``
    Share of blocks whose brightness differs from the scene's by more than a third (a factor
    e^0.3): a fish or a tether in front of the camera.

The flags follow from thresholds (the ``quality`` section of the config), checked in this
order: ``undecodable``, ``dark``, ``overexposed``, ``turbid``, ``moved``, ``occluded``, else
``ok``. The defaults were measured on :func:`sediment_xr.testing.realistic_series` scenes
(4 seeds, 60 frames, lamp ageing and 30 % event frames; ``benchmarks/accuracy.md``): good
frames had light 0.79-1.25, saturated <= 0.022, contrast >= 0.88, correlation >= 0.84 and
changed <= 0.0044; bad frames lay outside the thresholds below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._blockwise import apply_per_chunk
from sediment_xr.frames import FRAME_UNDECODABLE, whole
from sediment_xr.illumination import Illumination, gain_of

__all__ = [
    "FLAGS",
    "MEASURES",
    "QUALITY_DEFAULTS",
    "flag_frames",
    "frame_measures",
    "quality_attrs",
]

#: The measures of :func:`frame_measures`, in order.
MEASURES = ("light", "saturated", "contrast", "correlation", "changed")
#: Frame quality flags, by value (``frame_quality``), in the order they are checked.
FLAGS = ("ok", "dark", "overexposed", "turbid", "moved", "occluded", "undecodable")
#: Default thresholds (the ``quality`` section of the config).
QUALITY_DEFAULTS: dict[str, float] = {
    "dark": 0.4,  # light below: lights off or failing
    "overexposed": 0.2,  # saturated share above
    "turbid": 0.65,  # contrast below
    "moved": 0.7,  # correlation below
    "occluded": 0.012,  # changed share above
}
#: A block has changed when its log brightness differs from the scene's by more than this.
CHANGED_LOG = 0.3
_LUMA = np.array([0.299, 0.587, 0.114])


def _scene_at(light: Illumination, times: np.ndarray) -> np.ndarray:
    """Expected log block brightness ``(t, rows, cols)`` of the scene at ``times``."""
    start, stop = (np.datetime64(t) for t in light.time_range)
    span = max((stop - start) / np.timedelta64(1, "s"), 1e-9)
    s = ((np.asarray(times, dtype="datetime64[ns]") - start) / np.timedelta64(1, "s")) / span
    s = np.clip(s, -0.5, 1.5)  # a model applied beyond its series: the trend is not stretched
    return light.scene[0][None] + light.scene[1][None] * s[:, None, None]


def _measure_block(
    block: np.ndarray, times: np.ndarray, status: np.ndarray | None, light: Illumination
) -> np.ndarray:
    """Kernel: the :data:`MEASURES` of uint8 RGB frames ``(t, y, x, 3)``; NaN if undecodable."""
    from sediment_xr._kernels import block_means

    out = np.full((block.shape[0], len(MEASURES)), np.nan, dtype=np.float32)
    inv_blocks = light.inverse()[1]
    ref = np.log(np.maximum(light.reference @ _LUMA, 0.5))
    ref_spread = float(ref.std()) or 1.0
    dated = np.issubdtype(np.asarray(times).dtype, np.datetime64)
    scenes = _scene_at(light, times) if light.scene is not None and dated else None
    for i, frame in enumerate(block):
        if status is not None and status[i] == FRAME_UNDECODABLE:
            continue
        raw, saturated = block_means(frame, light.block, saturated=True)
        gains = gain_of(raw * inv_blocks, light.reference)
        means = raw * inv_blocks / gains
        seen = np.log(np.maximum(means @ _LUMA, 0.5))
        expected = scenes[i] if scenes is not None else ref
        a, b = (seen - seen.mean()).ravel(), (expected - expected.mean()).ravel()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum())) or 1.0
        out[i] = (
            float(gains @ _LUMA),
            saturated,
            float(seen.std()) / ref_spread,
            float((a * b).sum()) / denom,
            float((np.abs(seen - expected) > CHANGED_LOG).mean()),
        )
    return out


def frame_measures(window: xr.DataArray, light: Illumination) -> xr.DataArray:
    """Quality measures of each frame of the analysed window (see the module docstring).

    Parameters
    ----------
    window : xarray.DataArray
        uint8 RGB frames ``(time, y, x, channel)`` of the analysed window (as cropped, before
        any light correction).
    light : Illumination
        The model's light (``ClusterModel.illumination``).

    Returns
    -------
    xarray.DataArray
        float32 ``(time, measure)`` named ``quality_measure``; NaN for undecodable frames.

    Notes
    -----
    Lazy: one task per time chunk.
    """
    if window.chunks is not None:
        window = whole(window, ("y", "x", "channel"))
    args = [window, window["time"]]
    core = [["y", "x", "channel"], []]
    has_status = "frame_status" in window.coords
    if has_status:
        args.append(window["frame_status"])
        core.append([])

    def kernel(block, times, *rest):
        return _measure_block(block, times, rest[0] if has_status else None, light)

    out = apply_per_chunk(
        kernel,
        *args,
        input_core_dims=core,
        output_core_dims=["measure"],
        dtype=np.float32,
        output_sizes={"measure": len(MEASURES)},
    )
    out = out.assign_coords(
        measure=("measure", np.array(MEASURES, object), {"long_name": "quality measure"})
    )
    out.name = "quality_measure"
    out.attrs = {
        "long_name": "frame quality measures against the model's light and scene",
        "units": "1",
        "comment": "light: gain against the reference light; saturated: share of pixels at "
        "250+; contrast: spread of block brightness against the reference's; correlation: "
        "with the scene expected at the frame's time; changed: share of blocks off the "
        f"scene by more than a factor e^{CHANGED_LOG}",
    }
    return out


def flag_frames(
    measures: xr.DataArray,
    status: xr.DataArray | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> xr.DataArray:
    """Quality flag of each frame from its measures (see :data:`FLAGS`).

    Parameters
    ----------
    measures : xarray.DataArray
        ``(time, measure)`` from :func:`frame_measures`.
    status : xarray.DataArray, optional
        ``frame_status`` of the frames (undecodable frames are flagged so).
    thresholds : mapping, optional
        Overrides of :data:`QUALITY_DEFAULTS`.

    Returns
    -------
    xarray.DataArray
        int8 ``(time,)`` named ``frame_quality``, a CF flag variable.
    """
    limits = {**QUALITY_DEFAULTS, **(thresholds or {})}
    m = {
        name: np.asarray(measures.sel(measure=name).values, dtype=np.float64) for name in MEASURES
    }
    tests = {
        "dark": m["light"] < limits["dark"],
        "overexposed": m["saturated"] > limits["overexposed"],
        "turbid": m["contrast"] < limits["turbid"],
        "moved": m["correlation"] < limits["moved"],
        "occluded": m["changed"] > limits["occluded"],
    }
    flags = np.zeros(measures.sizes["time"], dtype=np.int8)
    for name in reversed(FLAGS[1:-1]):  # the first test that holds wins
        flags[tests[name]] = FLAGS.index(name)
    unknown = ~np.isfinite(m["light"])
    if status is not None:
        unknown |= np.asarray(status.values) == FRAME_UNDECODABLE
    flags[unknown] = FLAGS.index("undecodable")
    return xr.DataArray(
        flags,
        dims=["time"],
        coords={
            k: v for k, v in measures.coords.items() if k != "measure" and "measure" not in v.dims
        },
        name="frame_quality",
        attrs=quality_attrs(limits),
    )


def quality_attrs(limits: Mapping[str, float]) -> dict[str, Any]:
    """CF flag attributes of ``frame_quality``, with the thresholds used."""
    return {
        "long_name": "frame quality flag",
        "flag_values": list(range(len(FLAGS))),
        "flag_meanings": " ".join(FLAGS),
        "comment": "thresholds: " + ", ".join(f"{k} {v:g}" for k, v in limits.items()),
    }


def flag_names(flags: xr.DataArray | np.ndarray) -> pd.Index:
    """The flag meaning of each value (``ok``, ``dark`` ...)."""
    return pd.Index(np.asarray(FLAGS, dtype=object)[np.asarray(flags, dtype=np.int64)])
