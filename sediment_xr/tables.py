"""The run's tables: ``cover.csv``, ``clusters.json`` and ``trend_summary.txt``.

Plain functions from the cover series and the model to pandas tables and text; the
orchestrator writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr.model import ClusterModel
from sediment_xr.trend import summary_statistics, trend_summaries

__all__ = ["clusters_summary", "cover_long", "cover_table", "summary_text"]


def cover_table(cover: xr.DataArray, class_cover: xr.DataArray | None = None) -> pd.DataFrame:
    """``cover.csv``: ``time`` (ISO 8601), ``frame``, ``cluster_0 ...``, then the classes.

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)`` with a ``frame`` coordinate.
    class_cover : xarray.DataArray, optional
        Percent cover ``(time, class)``.

    Returns
    -------
    pandas.DataFrame
        One row per frame, percent (NaN for frames that could not be decoded).
    """
    times = pd.DatetimeIndex(cover["time"].values)
    frames = cover["frame"].values if "frame" in cover.coords else np.arange(len(times))
    table = pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%S"), "frame": np.asarray(frames, np.int64)}
    )
    values = np.asarray(cover.transpose("time", "cluster").values)
    for i in range(cover.sizes["cluster"]):
        table[f"cluster_{i}"] = values[:, i]
    if class_cover is not None:
        classes = np.asarray(class_cover.transpose("time", "class").values)
        for j, name in enumerate(class_cover["class"].values):
            table[str(name)] = classes[:, j]
    return table


def cover_long(
    cover: xr.DataArray, class_cover: xr.DataArray | None = None, *, run: str
) -> pd.DataFrame:
    """``cover.parquet``: the cover in long form, one row per frame and cluster or class.

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)`` with a ``frame`` coordinate.
    class_cover : xarray.DataArray, optional
        Percent cover ``(time, class)``.
    run : str
        The run's name (the ``run`` column), to tell runs apart when many are read together.

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``time`` (datetime64, UTC), ``frame``, ``kind`` (``cluster`` or
        ``class``), ``name`` (``cluster_0``..., or the class) and ``cover`` (percent).
    """
    times = pd.DatetimeIndex(cover["time"].values)
    frames = np.asarray(cover["frame"].values if "frame" in cover.coords else range(len(times)))
    parts = []
    for kind, series, dim in (("cluster", cover, "cluster"), ("class", class_cover, "class")):
        if series is None:
            continue
        values = np.asarray(series.transpose("time", dim).values, dtype=np.float64)
        names = [_series_name(dim, v) for v in series[dim].values]
        n = len(names)
        parts.append(
            pd.DataFrame(
                {
                    "run": pd.Series([run] * values.size, dtype="string"),
                    "time": np.repeat(times.values, n),
                    "frame": np.repeat(frames.astype(np.int64), n),
                    "kind": pd.Series([kind] * values.size, dtype="string"),
                    "name": pd.Series(np.tile(names, len(times)), dtype="string"),
                    "cover": values.ravel(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _series_name(dim: str, value: object) -> str:
    return f"cluster_{int(value)}" if dim == "cluster" else str(value)


def clusters_summary(
    model: ClusterModel, cover: xr.DataArray, classes: Mapping[str, Sequence[int]] | None
) -> dict[str, Any]:
    """``clusters.json``: each cluster's id, class name, colour and mean share of the cover."""
    names = {i: f"cluster_{i}" for i in range(model.n_clusters)}
    for name, ids in (classes or {}).items():
        for i in ids:
            names[int(i)] = name
    values = np.asarray(cover.transpose("time", "cluster").values)
    share = (
        np.nanmean(values, axis=0) if np.isfinite(values).any() else np.full(len(names), np.nan)
    )
    return {
        "clusters": [
            {
                "id": i,
                "name": names[i],
                "center_rgb": [int(v) for v in model.center_rgb[i]],
                "share_percent": round(float(share[i]), 4),
            }
            for i in range(model.n_clusters)
        ],
        "color_space": model.color_space,
        "n_clusters": model.n_clusters,
        "random_state": model.random_state,
        "sample_size": model.sample_size,
    }


def summary_text(series: xr.Dataset, trend: pd.DataFrame) -> str:
    """``trend_summary.txt``: summary statistics, the trend table and statsmodels summaries."""
    with pd.option_context("display.width", 160, "display.max_columns", 50):
        stats = summary_statistics(series).round(4).to_string()
        table = trend.set_index("name").to_string(float_format=lambda v: f"{v:.6g}")
    return (
        "Percent cover: summary statistics per cluster and class\n\n"
        f"{stats}\n\n"
        "Trends (slope per day; HAC = Newey-West standard errors, robust to autocorrelation)\n\n"
        f"{table}\n\n"
        f"{trend_summaries(series)}\n"
    )
