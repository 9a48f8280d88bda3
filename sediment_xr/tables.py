"""The run's tables: ``cover.csv``, ``cover.parquet``, ``clusters.json``, ``trend_summary.txt``.

Also the trend table as cube variables (:func:`trend_variables`).

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

__all__ = [
    "TREND_ROLE",
    "clusters_summary",
    "cover_long",
    "cover_table",
    "summary_text",
    "trend_variables",
]

#: ``sediment_xr_role`` attribute of the cube's trend variables (replaced on every run).
TREND_ROLE = "trend"


def cover_table(cover: xr.DataArray, class_cover: xr.DataArray | None = None) -> pd.DataFrame:
    """``cover.csv``: ``time`` (ISO 8601), ``frame``, ``cluster_0 ...``, then the classes.

    With a ``file`` coordinate (many recordings, :func:`sediment_xr.open_recordings`), a
    ``file`` column follows ``frame``.  Times are to the second, or as fine as needed to show
    every time exactly (frames of a recording a fraction of a second apart).

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)`` with a ``frame`` coordinate (and maybe ``file``).
    class_cover : xarray.DataArray, optional
        Percent cover ``(time, class)``.

    Returns
    -------
    pandas.DataFrame
        One row per frame, percent (NaN for frames that could not be decoded).
    """
    times = pd.DatetimeIndex(cover["time"].values)
    frames = cover["frame"].values if "frame" in cover.coords else np.arange(len(times))
    table = pd.DataFrame({"time": _iso_times(times), "frame": np.asarray(frames, np.int64)})
    if "file" in cover.coords:
        table["file"] = np.asarray(cover["file"].values, dtype=object)
    values = np.asarray(cover.transpose("time", "cluster").values)
    for i in range(cover.sizes["cluster"]):
        table[f"cluster_{i}"] = values[:, i]
    if class_cover is not None:
        classes = np.asarray(class_cover.transpose("time", "class").values)
        for j, name in enumerate(class_cover["class"].values):
            table[str(name)] = classes[:, j]
    return table


def _iso_times(times: pd.DatetimeIndex) -> np.ndarray:
    """ISO 8601 times to the second, or to the finest unit that shows them all exactly."""
    values = np.asarray(times.values, dtype="datetime64[ns]")
    parts = values.astype(np.int64) % 10**9
    for unit, step in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if not (parts % step).any():
            return np.datetime_as_string(values, unit=unit)
    return np.datetime_as_string(values, unit="ns")


def cover_long(
    cover: xr.DataArray,
    class_cover: xr.DataArray | None = None,
    *,
    run: str,
    quality: Sequence[str] | None = None,
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
    quality : sequence of str, optional
        Each frame's quality flag (``ok`` for good frames); ``ok`` for every frame if absent.

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``time`` (datetime64 without a time zone, in UTC as in the cube),
        ``frame``, ``file`` (only with a ``file`` coordinate: many recordings), ``kind``
        (``cluster`` or ``class``), ``name`` (``cluster_0``..., or the class), ``cover``
        (percent) and ``quality``.
    """
    times = pd.DatetimeIndex(cover["time"].values)
    frames = np.asarray(cover["frame"].values if "frame" in cover.coords else range(len(times)))
    flags = np.asarray(["ok"] * len(times) if quality is None else list(quality), dtype=object)
    parts = []
    for kind, series, dim in (("cluster", cover, "cluster"), ("class", class_cover, "class")):
        if series is None:
            continue
        values = np.asarray(series.transpose("time", dim).values, dtype=np.float64)
        names = [_series_name(dim, v) for v in series[dim].values]
        n = len(names)
        columns = {
            "run": pd.Series([run] * values.size, dtype="string"),
            "time": np.repeat(times.values, n),
            "frame": np.repeat(frames.astype(np.int64), n),
        }
        if "file" in cover.coords:
            columns["file"] = pd.Series(np.repeat(cover["file"].values, n), dtype="string")
        parts.append(
            pd.DataFrame(
                {
                    **columns,
                    "kind": pd.Series([kind] * values.size, dtype="string"),
                    "name": pd.Series(np.tile(names, len(times)), dtype="string"),
                    "cover": values.ravel(),
                    "quality": pd.Series(np.repeat(flags, n), dtype="string"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _series_name(dim: str, value: object) -> str:
    return f"cluster_{int(value)}" if dim == "cluster" else str(value)


def clusters_summary(
    model: ClusterModel, cover: xr.DataArray, classes: Mapping[str, Sequence[int]] | None
) -> dict[str, Any]:
    """``clusters.json``: each cluster's id, class name, colour, mean share and stability.

    ``stability_pp`` is how much the cluster's share of the sample moves between bootstrap
    refits (standard deviation, percentage points; see
    :func:`sediment_xr.cluster.refit_stability`), ``center_shift`` how far its centre moves
    (RMS, feature units); both null without refits.
    """
    stability = model.stability or {}
    spread = stability.get("cover_spread") or [None] * model.n_clusters
    shift = stability.get("center_shift") or [None] * model.n_clusters
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
                "stability_pp": spread[i],
                "center_shift": shift[i],
            }
            for i in range(model.n_clusters)
        ],
        "color_space": model.color_space,
        "n_clusters": model.n_clusters,
        "random_state": model.random_state,
        "sample_size": model.sample_size,
        "n_refits": stability.get("n_refits", 0),
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


def trend_variables(
    trend: pd.DataFrame, n_clusters: int, classes: Sequence[str] = ()
) -> dict[str, xr.DataArray]:
    """The trend table as cube variables, indexed by ``cluster`` and by ``class``.

    Parameters
    ----------
    trend : pandas.DataFrame
        :func:`sediment_xr.fit_trends` of the cover ``(time, cluster)`` then of the class
        cover: its first ``n_clusters`` rows are the clusters', the next the classes'.
    n_clusters : int
        Number of clusters.
    classes : sequence of str
        The class names, in the order of their rows.

    Returns
    -------
    dict of str to xarray.DataArray
        ``cluster_trend (cluster, statistic)`` and ``class_trend (class, statistic)``
        (float64; every numeric column of the table, ``statistic`` naming the column), and
        ``cluster_<column>``/``class_<column>`` for date columns (e.g. a break time).
    """
    if len(trend) != n_clusters + len(classes):
        raise ValueError(
            f"the trend table has {len(trend)} rows, but {n_clusters} clusters and "
            f"{len(classes)} classes were given"
        )
    numeric = [c for c in trend.columns if c != "name" and pd.api.types.is_numeric_dtype(trend[c])]
    dates = [c for c in trend.columns if pd.api.types.is_datetime64_any_dtype(trend[c])]
    statistic = xr.DataArray(
        np.array(numeric, dtype=object),
        dims="statistic",
        attrs={"long_name": "statistic of the fit (a column of trend.csv)"},
    )
    out: dict[str, xr.DataArray] = {}
    parts = (("cluster", np.arange(n_clusters), trend.iloc[:n_clusters]),)
    if len(classes):
        names = np.array(list(classes), dtype=object)
        parts += (("class", names, trend.iloc[n_clusters:]),)
    for dim, index, rows in parts:
        out[f"{dim}_trend"] = xr.DataArray(
            rows[numeric].to_numpy(dtype=np.float64),
            dims=(dim, "statistic"),
            coords={dim: index, "statistic": statistic},
            attrs={
                "long_name": f"trend statistics of each {dim}'s percent cover (trend.csv)",
                "comment": "OLS of percent cover on days since the first frame; slopes in "
                "percent day-1 or percent frame-1, HAC = Newey-West standard errors",
                "sediment_xr_role": TREND_ROLE,
            },
        )
        for column in dates:
            out[f"{dim}_{column}"] = xr.DataArray(
                rows[column].to_numpy(dtype="datetime64[ns]"),
                dims=dim,
                coords={dim: index},
                attrs={
                    "long_name": f"{column} of each {dim}'s cover",
                    "sediment_xr_role": TREND_ROLE,
                },
            )
    return out
