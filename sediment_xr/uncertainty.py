"""How sure each frame's cover is: pixels near a cluster boundary, and the model's spread.

A pixel whose distances to its two nearest centres differ by less than a margin could
belong to either: with ``margin = MARGIN_RMS x`` the model's RMS distance of pixels to their
centre, the cover of cluster ``i`` in a frame lies between

- **low**: its pixels minus those near a boundary with another cluster, and
- **high**: its pixels plus the other clusters' pixels near a boundary with it,

and for a class the same with the class's clusters together (boundaries inside a class do
not count). With a median filter of the labels, the interval starts from the lower (upper)
of the cover before and after the filter. When the model carries bootstrap refits
(``ClusterModel.stability``), the spread of the cover between refits is added in quadrature
on both sides.

The margin was calibrated on :func:`sediment_xr.testing.realistic_series` scenes at the
camera's resolution (1024 x 1024, steady and ageing lamp, default config): with
``MARGIN_RMS = 1.25`` the interval held the true mat cover on every good frame, 1.2-1.7 pp
wide. It holds what the pixels say: a cluster that is half mat and half pebbles in truth is
named one or the other, and that error is not in the interval. At half the resolution
(512 x 512, smaller structures, more mixed pixels) 6 of 8 scenes were held on 90 % or more
of their frames, and 2 were biased beyond their intervals by 0.4-0.6 pp
(``benchmarks/accuracy.md``). Not calibrated yet: on two other scenes the coverage moved from
100 % to 4 % when only the video encoder's thread count changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dask
import numpy as np
import xarray as xr

from sediment_xr.frames import FRAME_UNDECODABLE, whole
from sediment_xr.model import ClusterModel

__all__ = ["MARGIN_RMS", "boundary_pixels", "class_interval", "cover_interval", "margin_of"]

#: The margin of a boundary pixel, in units of the model's RMS distance to the centres.
MARGIN_RMS = 1.25


def margin_of(model: ClusterModel) -> float:
    """The boundary margin of a model, in its feature units."""
    inertia = model.inertia if np.isfinite(model.inertia) else 0.0
    return MARGIN_RMS * float(np.sqrt(max(inertia, 0.0)))


def _boundary_block(block, *extra, centers, margin, has_status):
    from sediment_xr._kernels import boundary_counts

    status = extra[0] if has_status else None
    lut = extra[-1] if len(extra) > has_status else None
    k = len(centers)
    flat = block.reshape((-1, *block.shape[-3:]))
    out = np.zeros((flat.shape[0], k, k), dtype=np.int32)
    for i, frame in enumerate(flat):
        if status is not None and np.asarray(status).reshape(-1)[i] == FRAME_UNDECODABLE:
            continue
        out[i] = boundary_counts(frame, centers, margin, lut)
    return out.reshape((*block.shape[:-3], k, k))


def boundary_pixels(features: xr.DataArray, model: ClusterModel) -> xr.DataArray:
    """Pixels of each frame near a boundary between two clusters.

    Parameters
    ----------
    features : xarray.DataArray
        uint8 features ``(time, y, x, channel)`` in the model's colour space.
    model : ClusterModel

    Returns
    -------
    xarray.DataArray
        int32 ``(time, cluster, partner)`` named ``boundary_pixels``: pixels labelled
        ``cluster`` within the margin (:func:`margin_of`) of ``partner``'s centre; on the
        diagonal, all pixels labelled ``cluster`` (before any median filter).

    Notes
    -----
    Lazy: one task per time chunk (with large inputs, one task that builds the lookup
    tables, shared by all chunks).
    """
    import dask.array as da

    from sediment_xr._kernels import LUT_MIN_PIXELS, build_partner_lut

    centers, margin, k = model.centers_array, margin_of(model), model.n_clusters
    lazy = features.chunks is not None
    if lazy:
        features = whole(features, ("y", "x", "channel"))
    args, core = [features], [["y", "x", "channel"]]
    status = features.coords["frame_status"] if "frame_status" in features.coords else None
    if status is not None:
        args.append(status)
        core.append([])
    if features.size // 3 >= LUT_MIN_PIXELS and k < 128:  # a table of every colour's pair
        if lazy:
            task = dask.delayed(build_partner_lut, pure=True)(centers, margin)
            table = da.from_delayed(
                task, shape=(256**3,), dtype=np.int16, meta=np.empty(0, np.int16)
            )
        else:
            table = build_partner_lut(centers, margin)
        args.append(xr.DataArray(table, dims=["color"]))
        core.append(["color"])
    out = xr.apply_ufunc(
        _boundary_block,
        *args,
        kwargs={"centers": centers, "margin": margin, "has_status": status is not None},
        input_core_dims=core,
        output_core_dims=[["cluster", "partner"]],
        dask="parallelized",
        output_dtypes=[np.int32],
        dask_gufunc_kwargs={"output_sizes": {"cluster": k, "partner": k}},
    )
    out = out.assign_coords(
        cluster=("cluster", np.arange(k), {"long_name": "cluster id (0 = darkest centre)"}),
        partner=("partner", np.arange(k), {"long_name": "id of the cluster across the boundary"}),
    )
    out.name = "boundary_pixels"
    out.attrs = {
        "long_name": "pixels near the boundary between two clusters",
        "units": "1",
        "comment": f"pixels labelled cluster whose distance to partner's centre exceeds the "
        f"distance to their own by less than {margin:.3g} ({MARGIN_RMS:g} x the RMS "
        "distance of the sample to its centres); on the diagonal, all pixels labelled cluster "
        "(before the median filter)",
    }
    return out


def _spread(model: ClusterModel, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Standard deviation (percentage points) of each group's sample cover between refits."""
    refits = (model.stability or {}).get("refit_cover")
    if not refits:
        return np.zeros(len(groups))
    refits = np.asarray(refits, dtype=np.float64)
    return np.array([refits[:, list(g)].sum(axis=1).std(ddof=1) for g in groups])


def _interval(cover, boundary, groups, spread, name, pixels):
    counts = np.asarray(boundary.transpose("time", "cluster", "partner").values, np.float64)
    percent = np.asarray(cover.transpose("time", ...).values, np.float64)
    k = counts.shape[1]
    members = np.zeros((len(groups), k), dtype=bool)
    for g, ids in enumerate(groups):
        members[g, list(ids)] = True
    scale = 100.0 / float(pixels)  # a group's cover is its pixels / pixels * 100
    diagonal = np.einsum("tii->ti", counts)
    plain = diagonal @ members.T.astype(np.float64) * scale  # before any median filter
    off = counts - np.einsum("ti,ij->tij", diagonal, np.eye(k))
    leave = np.einsum("tij,gi,gj->tg", off, members, ~members) * scale
    join = np.einsum("tij,gi,gj->tg", off, ~members, members) * scale
    z = 1.959963984540054 * np.asarray(spread)[None, :]
    undecoded = ~np.isfinite(percent)
    low = np.fmin(percent, plain) - np.sqrt(leave**2 + z**2)
    high = np.fmax(percent, plain) + np.sqrt(join**2 + z**2)
    low[undecoded], high[undecoded] = np.nan, np.nan
    coords = {c: v for c, v in cover.coords.items()}
    attrs = {
        "units": "percent",
        "standard_name": "area_fraction",
        "comment": "95 % interval: pixels near a cluster boundary (margin calibrated on planted "
        "truth) and the spread between bootstrap refits, see sediment_xr.uncertainty",
    }
    lo = xr.DataArray(np.clip(low, 0, 100), dims=cover.dims, coords=coords, name=f"{name}_low")
    hi = xr.DataArray(np.clip(high, 0, 100), dims=cover.dims, coords=coords, name=f"{name}_high")
    lo.attrs = {**attrs, "long_name": f"lower end of the 95 % interval of {name}"}
    hi.attrs = {**attrs, "long_name": f"upper end of the 95 % interval of {name}"}
    return lo, hi


def cover_interval(
    cover: xr.DataArray, boundary: xr.DataArray, model: ClusterModel, pixels: int
) -> tuple[xr.DataArray, xr.DataArray]:
    """95 % interval ``(cover_low, cover_high)`` of each frame's cluster cover.

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)``.
    boundary : xarray.DataArray
        :func:`boundary_pixels` of the same frames.
    model : ClusterModel
        The model that labelled them (its bootstrap spread, if any, is added).
    pixels : int
        Analysed pixels per frame.

    Returns
    -------
    tuple of xarray.DataArray
        ``cover_low`` and ``cover_high``, percent, clipped to 0-100.
    """
    groups = [[i] for i in range(model.n_clusters)]
    return _interval(cover, boundary, groups, _spread(model, groups), "cover", pixels)


def class_interval(
    class_cover: xr.DataArray,
    boundary: xr.DataArray,
    model: ClusterModel,
    classes: Mapping[str, Sequence[int]],
    pixels: int,
) -> tuple[xr.DataArray, xr.DataArray]:
    """95 % interval of each frame's class cover, as :func:`cover_interval` for classes."""
    groups = [list(ids) for ids in classes.values()]
    spread = _spread(model, groups)
    return _interval(class_cover, boundary, groups, spread, "class_cover", pixels)
