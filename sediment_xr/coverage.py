"""Percent cover per frame and cluster, and merging clusters into named classes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from sediment_xr._blockwise import apply_per_chunk
from sediment_xr._provenance import append_history
from sediment_xr.exceptions import NAMED, ConfigError, InputError, setting
from sediment_xr.frames import whole

__all__ = [
    "CLASS_ATTRS",
    "check_classes",
    "classes_from_names",
    "cover",
    "merge_classes",
]


def _count_frames(block: np.ndarray, n_clusters: int) -> np.ndarray:
    """Pixels per cluster of int labels ``(..., y, x)``; returns int64 ``(..., n_clusters)``.

    No-data pixels (< 0) and labels >= ``n_clusters`` are not counted.
    """
    from sediment_xr._kernels import count_labels

    lead = block.shape[:-2]
    flat = block.reshape(-1, block.shape[-2] * block.shape[-1])
    return count_labels(flat, n_clusters).reshape((*lead, n_clusters))


def _n_clusters_of(labels: xr.DataArray) -> int:
    values = labels.attrs.get("flag_values")
    if values is None:
        raise InputError(
            "cover needs n_clusters or labels with CF flag_values (as made by "
            "sediment_xr.label), but the labels have no flag_values. Pass n_clusters=..."
        )
    return int(max(values)) + 1


def _percent(counts: np.ndarray) -> np.ndarray:
    """Percent of each row's total, along the last axis (NaN for a row without pixels)."""
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * counts / total, np.nan)


def _cover_frames(block: np.ndarray, n_clusters: int) -> np.ndarray:
    """Kernel of :func:`cover`: percent of each frame's analysed pixels in each cluster."""
    return _percent(_count_frames(block, n_clusters))


_COVER_ATTRS = {
    "long_name": "percent cover of each cluster in the analysed area",
    "standard_name": "area_fraction",
    "units": "percent",
    "valid_min": 0.0,
    "valid_max": 100.0,
    "cell_methods": "time: point area: mean (comment: percent of the analysed pixels)",
    "comment": "the share of the analysed pixels; an area fraction of the seafloor for a "
    "camera looking straight down, weighted towards the near field for an oblique one",
}
_CLUSTER_ATTRS = {"long_name": "cluster id (0 = darkest centre)"}
#: Attributes of the ``class`` coordinate of class cover.
CLASS_ATTRS = {"long_name": "class name (merged clusters)"}


def cover(labels: xr.DataArray, *, n_clusters: int | None = None) -> xr.DataArray:
    """Percent of each frame's analysed pixels in each cluster.

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels ``(time, y, x)`` (``-1`` = no data, not counted).
    n_clusters : int, optional
        Number of clusters; by default read from the labels' ``flag_values``.

    Returns
    -------
    xarray.DataArray
        float64 ``(time, cluster)`` named ``cover`` with ``units: percent``; each frame's row
        sums to 100 (NaN for a frame without analysed pixels).

    Notes
    -----
    Lazy: one task per time chunk counts each frame's labels and divides by its analysed
    pixels.
    """
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"cover needs integer labels, but got dtype {labels.dtype}. Use sediment_xr.label."
        )
    if n_clusters is None:
        n_clusters = _n_clusters_of(labels)
    if labels.chunks is not None:
        labels = whole(labels, ("y", "x"))
    out = apply_per_chunk(
        _cover_frames,
        labels,
        kwargs={"n_clusters": int(n_clusters)},
        input_core_dims=[["y", "x"]],
        output_core_dims=["cluster"],
        dtype=np.float64,
        output_sizes={"cluster": int(n_clusters)},
        keep_attrs=True,  # the coordinates' attrs; the array's own are set below
    )
    out = out.assign_coords(cluster=("cluster", np.arange(n_clusters), _CLUSTER_ATTRS))
    out.name = "cover"
    history = {"history": labels.attrs.get("history", "")}
    out.attrs = {**_COVER_ATTRS, **append_history(history, "percent cover per frame and cluster")}
    return out


def check_classes(
    classes: Mapping[str, Sequence[int]], n_clusters: int | None, name: str = "classes"
) -> dict[str, list[int]]:
    """Check a ``classes`` mapping: class name to the cluster ids it merges.

    Ids must lie in ``0 .. n_clusters - 1`` (only checked to be non-negative when
    ``n_clusters`` is None) and each cluster may be in one class only.
    """
    example = {"bio": [2, 3], "bg": [0, 1]}
    use = f"Use e.g. {setting(name, example)}."
    settings = [(name, NAMED), (name, example)]
    if not isinstance(classes, Mapping) or not classes:
        raise ConfigError(
            f"{name} needs a mapping of class name to cluster ids, but got {classes!r}. {use}",
            settings=settings,
        )
    seen: dict[int, str] = {}
    out: dict[str, list[int]] = {}
    for label, ids in classes.items():
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(
                f"{name} needs non-empty text names, but got {label!r}. {use}", settings=settings
            )
        if label in ("time", "frame", "file", "quality") or re.fullmatch(r"cluster_\d+", label):
            raise ConfigError(
                f"{name} needs names other than the columns of cover.csv (time, frame, file, "
                f"quality, cluster_0, cluster_1, ...), but got {label!r}. Rename it, e.g. "
                f"{label}_class.",
                settings=settings,
            )
        if isinstance(ids, int | np.integer) and not isinstance(ids, bool):
            ids = [ids]
        if isinstance(ids, str) or not isinstance(ids, Sequence) or not ids:
            raise ConfigError(
                f"{name}.{label} needs a list of cluster ids, but got {ids!r}. Use e.g. "
                f"{setting(name, {label: [0, 1]})}.",
                settings=[(name, {label: [0, 1]})],
            )
        span = "0 or more" if n_clusters is None else f"from 0 to {n_clusters - 1}"
        for cid in ids:
            if isinstance(cid, bool) or not isinstance(cid, int | np.integer):
                raise ConfigError(
                    f"{name}.{label} needs whole-number cluster ids, but got {cid!r}. "
                    f"Use ids {span}."
                )
            if cid < 0 or (n_clusters is not None and cid >= n_clusters):
                if n_clusters is None:
                    raise ConfigError(
                        f"{name}.{label} needs cluster ids of 0 or more, but got {cid}. "
                        f"Use ids {span}."
                    )
                raise ConfigError(
                    f"{name}.{label} names cluster {cid}, but there are {n_clusters} clusters "
                    f"(ids 0 to {n_clusters - 1}). Use ids from 0 to {n_clusters - 1}."
                )
            if int(cid) in seen:
                raise ConfigError(
                    f"cluster {cid} is in two classes ({seen[int(cid)]!r} and {label!r}). "
                    "Put each cluster in one class."
                )
            seen[int(cid)] = label
        out[label] = [int(c) for c in ids]
    return out


def merge_classes(cover: xr.DataArray, classes: Mapping[str, Sequence[int]]) -> xr.DataArray:
    """Sum cluster cover into named classes (the lesson's rename-and-merge step).

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)``.
    classes : mapping of str to list of int
        Class name to the cluster ids it merges, e.g. ``{"bio": [2, 3], "bg": [0, 1]}``.
        A cluster may be in at most one class; clusters in no class are left out.

    Returns
    -------
    xarray.DataArray
        Percent cover ``(time, class)`` named ``class_cover``.

    Notes
    -----
    Lazy: a weighted sum over the cluster dimension.
    """
    if "cluster" not in cover.dims:
        raise InputError(
            f"merge_classes needs cover with a 'cluster' dim, but got dims {cover.dims}."
        )
    checked = check_classes(classes, cover.sizes["cluster"])
    names = list(checked)
    matrix = np.zeros((cover.sizes["cluster"], len(names)))
    for j, name in enumerate(names):
        matrix[checked[name], j] = 1.0
    weights = xr.DataArray(matrix, dims=("cluster", "class"), coords={"class": names})
    out = xr.dot(cover, weights, dim="cluster")
    out = out.transpose(*[("class" if d == "cluster" else d) for d in cover.dims])
    out = out.assign_coords({"class": ("class", out["class"].values, dict(CLASS_ATTRS))})
    out.name = "class_cover"
    out.attrs = {
        "long_name": "percent cover of each class (merged clusters)",
        "standard_name": "area_fraction",
        "units": "percent",
        "valid_min": 0.0,
        "valid_max": 100.0,
        "cell_methods": _COVER_ATTRS["cell_methods"],
        "comment": _COVER_ATTRS["comment"],
        "classes": str({k: v for k, v in checked.items()}),
    }
    return out


def classes_from_names(names: Sequence[str]) -> dict[str, list[int]]:
    """Turn one name per cluster into a ``classes`` mapping; equal names merge.

    >>> classes_from_names(["bg", "bg", "bio", "bio"])
    {'bg': [0, 1], 'bio': [2, 3]}
    """
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        key = str(name).strip()
        if not key:
            raise ConfigError(f"cluster {i} needs a name, but got an empty one.")
        out.setdefault(key, []).append(i)
    return out
