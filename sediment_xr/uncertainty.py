"""How sure each frame's cover is: pixels near a cluster boundary, mixed clusters, the refits.

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

A class has one more term, its **mixing** (:func:`class_mixing`): a class is a set of whole
clusters, so a cluster that is partly one class and partly the other (pale pebbles and the
soft edges of mat in one colour cluster) is counted wholly one way, in every frame: a
systematic error the pixels of a frame do not show. Its size is taken from the clusters
themselves: each cluster's *mixed share* is the share of its pixels, over the whole series,
within the margin of a cluster on the other side of the class; the clusters of the class
could hold that share of pixels that are not the class (cover too high), the other clusters
that share of the class (cover too low). Which side a scene's naming errs on is not known,
so both sums are added in quadrature, as one term on both ends of the interval. The share
is used as it is (no scale factor). The cover of a single cluster has no mixing term: it is
what its centre takes, not a claim about what lies on the seafloor.

Measured on :func:`sediment_xr.testing.realistic_series` (``benchmarks/accuracy.md``,
"Intervals that hold a mixed cluster"): without the mixing term the class intervals held the
true mat cover on 0-100 % of a scene's good frames (a half-mat cluster biased some scenes
0.4-1.2 pp); with it, on calibration, validation and held-out seeds (512 x 512 MJPEG steady
and ageing, 1024 x 1024 H.264 with either x264 thread setting), every scene was held on at
least 90 % of its good frames. The price is width: the class intervals are 1.1-5.9 pp wide
(wider on H.264, whose chroma smearing puts more clusters on the class boundary) where they
were 0.7-3.5 pp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dask
import numpy as np
import xarray as xr

from sediment_xr._blockwise import apply_per_chunk
from sediment_xr.frames import FRAME_UNDECODABLE, whole
from sediment_xr.model import ClusterModel

__all__ = [
    "MARGIN_RMS",
    "boundary_pixels",
    "class_interval",
    "class_mixing",
    "cover_interval",
    "margin_of",
]

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
    out = apply_per_chunk(
        _boundary_block,
        *args,
        kwargs={"centers": centers, "margin": margin, "has_status": status is not None},
        input_core_dims=core,
        output_core_dims=["cluster", "partner"],
        dtype=np.int32,
        output_sizes={"cluster": k, "partner": k},
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


def _members(groups: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """Boolean ``(group, cluster)``: which clusters each group is made of."""
    members = np.zeros((len(groups), k), dtype=bool)
    for g, ids in enumerate(groups):
        members[g, list(ids)] = True
    return members


def _mixed_share(total: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Share ``(group, cluster)`` of each cluster's pixels near the other side of a group.

    ``total`` is the boundary counts ``(cluster, partner)`` summed over frames. For a cluster
    of the group, its pixels within the margin of a cluster outside it; for a cluster
    outside, those within the margin of one of the group's. A pixel near two such partners
    counts twice (as in the boundary terms of the interval); the share is clipped to 1.
    """
    own = np.diag(total).astype(np.float64)
    off = total - np.diag(own)
    across = np.where(members[:, :, None] != members[:, None, :], off[None, :, :], 0.0).sum(axis=2)
    return np.clip(across / np.maximum(own, 1.0)[None, :], 0.0, 1.0) * (own > 0)[None, :]


def _mixing(counts: np.ndarray, members: np.ndarray, scale: float) -> np.ndarray:
    """Mixing term ``(time, group)`` in percentage points (see :func:`class_mixing`)."""
    share = _mixed_share(counts.sum(axis=0), members)
    cluster_cover = np.einsum("tii->ti", counts) * scale  # before any median filter
    inside = np.einsum("ti,gi->tg", cluster_cover, share * members)
    outside = np.einsum("ti,gi->tg", cluster_cover, share * ~members)
    return np.hypot(inside, outside)


def _counts(boundary: xr.DataArray) -> np.ndarray:
    return np.asarray(boundary.transpose("time", "cluster", "partner").values, np.float64)


def class_mixing(
    boundary: xr.DataArray, classes: Mapping[str, Sequence[int]], pixels: int
) -> xr.DataArray:
    """How far each frame's class cover may be off because a cluster mixes two classes.

    Each cluster's mixed share (the share of its pixels, over all the frames given, within
    the boundary margin of a cluster on the other side of the class) times its cover in
    the frame, summed over the class's clusters (its cover could be too high) and over the
    other clusters (too low); the two sums added in quadrature.

    Parameters
    ----------
    boundary : xarray.DataArray
        :func:`boundary_pixels` of the frames (all of a series: the share is pooled).
    classes : mapping of str to sequence of int
        Class name to cluster ids.
    pixels : int
        Analysed pixels per frame.

    Returns
    -------
    xarray.DataArray
        float64 ``(time, class)``, percentage points, named ``class_mixing``.
    """
    counts = _counts(boundary)
    members = _members([list(ids) for ids in classes.values()], counts.shape[1])
    mixing = _mixing(counts, members, 100.0 / float(pixels))
    names = np.array(list(classes), dtype=object)
    return xr.DataArray(
        mixing,
        dims=("time", "class"),
        coords={"time": boundary["time"].values, "class": names},
        name="class_mixing",
        attrs={"units": "percent", "long_name": "class cover error a mixed cluster can cause"},
    )


def _interval(cover, boundary, groups, spread, name, pixels, mixing=False):
    counts = _counts(boundary)
    percent = np.asarray(cover.transpose("time", ...).values, np.float64)
    k = counts.shape[1]
    members = _members(groups, k)
    scale = 100.0 / float(pixels)  # a group's cover is its pixels / pixels * 100
    diagonal = np.einsum("tii->ti", counts)
    plain = diagonal @ members.T.astype(np.float64) * scale  # before any median filter
    off = counts - np.einsum("ti,ij->tij", diagonal, np.eye(k))
    leave = np.einsum("tij,gi,gj->tg", off, members, ~members) * scale
    join = np.einsum("tij,gi,gj->tg", off, ~members, members) * scale
    z = 1.959963984540054 * np.asarray(spread)[None, :]
    mix = _mixing(counts, members, scale) if mixing else np.zeros_like(leave)
    undecoded = ~np.isfinite(percent)
    low = np.fmin(percent, plain) - np.sqrt(leave**2 + z**2 + mix**2)
    high = np.fmax(percent, plain) + np.sqrt(join**2 + z**2 + mix**2)
    low[undecoded], high[undecoded] = np.nan, np.nan
    coords = {c: v for c, v in cover.coords.items()}
    attrs = {
        "units": "percent",
        "standard_name": "area_fraction",
        "comment": "95 % interval: pixels near a cluster boundary (margin calibrated on planted "
        "truth), the spread between bootstrap refits"
        + (", and the mixing of classes within clusters" if mixing else "")
        + ", see sediment_xr.uncertainty",
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
    *,
    mixing: bool = True,
) -> tuple[xr.DataArray, xr.DataArray]:
    """95 % interval of each frame's class cover.

    As :func:`cover_interval` for the classes' clusters together, with the classes' mixing
    (:func:`class_mixing`) added in quadrature on both sides. The mixing is pooled over the
    frames of ``boundary``: give all the frames of the series. ``mixing=False`` leaves it
    out (the interval of the pixels alone, as before issue 11; benchmarks compare the two).
    """
    groups = [list(ids) for ids in classes.values()]
    spread = _spread(model, groups)
    return _interval(class_cover, boundary, groups, spread, "class_cover", pixels, mixing=mixing)
