"""Trends of cover over real time (per day) and over frame index, honest about autocorrelation.

For every cluster and class: ordinary least squares of cover on days since the first frame
and on frame index (statsmodels), with R², p-value and confidence interval of the per-day
slope; the Durbin-Watson statistic of the residuals in time order; and Newey-West (HAC)
standard errors beside the plain ones, because a time-lapse series is autocorrelated and plain
OLS standard errors then understate the uncertainty.  :func:`fit_trends` appends the
change-point and seasonal columns of :func:`sediment_xr.changes.change_table`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr.exceptions import InputError

#: A length of time: a pandas offset alias of fixed length (``"365D"``, ``"1D"``, ``"1h"``),
#: a ``pandas.Timedelta``, ``datetime.timedelta`` or ``numpy.timedelta64``.
TimeLength = str | pd.Timedelta | timedelta | np.timedelta64

__all__ = [
    "HAC_COLUMNS",
    "TREND_COLUMNS",
    "fit_trends",
    "iter_series",
    "summary_statistics",
    "trend_dataset",
    "trend_summaries",
]

#: The first columns of ``trend.csv`` (other tools read them; keep these names).
TREND_COLUMNS = (
    "name",
    "slope_per_day",
    "slope_per_frame",
    "intercept",
    "r2",
    "p_value",
    "ci_low",
    "ci_high",
    "n",
)
#: Columns after :data:`TREND_COLUMNS`: plain and HAC standard errors of the per-day slope,
#: HAC p-value and confidence interval, the HAC lag length and Durbin-Watson.
HAC_COLUMNS = (
    "se",
    "se_hac",
    "p_value_hac",
    "ci_low_hac",
    "ci_high_hac",
    "hac_maxlags",
    "durbin_watson",
)


def newey_west_lags(n: int) -> int:
    """Newey-West's rule of thumb for the HAC lag length: ``floor(4 (n / 100) ** (2 / 9))``."""
    return math.floor(4 * (n / 100) ** (2 / 9)) if n > 0 else 0


@dataclasses.dataclass
class _Fit:
    name: str
    times: pd.DatetimeIndex
    days: np.ndarray
    frames: np.ndarray
    y: np.ndarray
    day: object  # statsmodels results, plain
    hac: object  # same model, HAC covariance
    frame: object  # OLS on frame index


def _as_2d(series: xr.DataArray) -> tuple[xr.DataArray, str]:
    if "time" not in series.dims or series.ndim != 2:
        raise InputError(
            f"trends need cover with dims (time, cluster) or (time, class), but got "
            f"{series.dims}. Pass sediment_xr.cover(...) or merge_classes(...)."
        )
    other = next(d for d in series.dims if d != "time")
    return series.transpose("time", other).load(), other


def _series_name(dim: str, value) -> str:
    return f"cluster_{int(value)}" if dim == "cluster" else str(value)


def iter_series(
    series: xr.DataArray | xr.Dataset,
) -> Iterator[tuple[str, pd.DatetimeIndex, np.ndarray, np.ndarray]]:
    """Every cover series, one at a time, in the order of the rows of :func:`fit_trends`.

    Parameters
    ----------
    series : xarray.DataArray or xarray.Dataset
        Cover ``(time, cluster)`` or ``(time, class)``, or a Dataset of such arrays.

    Yields
    ------
    name : str
        ``cluster_<i>`` for a cluster, the class name for a class.
    times : pandas.DatetimeIndex
        Time of every frame, NaN frames included.
    frames : numpy.ndarray
        Frame index (float64) of every frame: the ``frame`` coordinate, else positions.
    values : numpy.ndarray
        Percent cover (float64) of every frame; NaN where a frame has no cover.

    Notes
    -----
    Computes: loads the (small) cover series.
    """
    if isinstance(series, xr.Dataset):
        for var in series.data_vars:
            yield from iter_series(series[var])
        return
    series, other = _as_2d(series)
    times = pd.DatetimeIndex(series["time"].values)
    frames = (
        np.asarray(series["frame"].values, dtype=np.float64)
        if "frame" in series.coords
        else np.arange(series.sizes["time"], dtype=np.float64)
    )
    for j, value in enumerate(series[other].values):
        yield _series_name(other, value), times, frames, series.values[:, j].astype(np.float64)


def _iter_fits(series: xr.DataArray | xr.Dataset, hac_maxlags: int | None) -> Iterator[_Fit]:
    """Fit every series; yields a _Fit (with None fits where fewer than 3 frames)."""
    import statsmodels.api as sm

    for name, times_all, frames_all, y_all in iter_series(series):
        days_all = ((times_all - times_all[0]) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
        ok = np.isfinite(y_all)
        days, frames, y = days_all[ok], frames_all[ok], y_all[ok]
        fit = _Fit(name, times_all[ok], days, frames, y, None, None, None)
        if ok.sum() >= 3 and np.ptp(days) > 0:
            x_day = sm.add_constant(days, has_constant="add")
            model = sm.OLS(y, x_day)
            fit.day = model.fit()
            lags = newey_west_lags(len(y)) if hac_maxlags is None else int(hac_maxlags)
            fit.hac = model.fit(cov_type="HAC", cov_kwds={"maxlags": lags})
            fit.frame = sm.OLS(y, sm.add_constant(frames, has_constant="add")).fit()
        yield fit


def _row(fit: _Fit, alpha: float) -> dict:
    from statsmodels.stats.stattools import durbin_watson

    row = dict.fromkeys((*TREND_COLUMNS, *HAC_COLUMNS), np.nan)
    row["name"] = fit.name
    row["n"] = len(fit.y)
    if fit.day is None:
        return row
    low, high = fit.day.conf_int(alpha=alpha)[1]
    low_hac, high_hac = fit.hac.conf_int(alpha=alpha)[1]
    row.update(
        slope_per_day=float(fit.day.params[1]),
        slope_per_frame=float(fit.frame.params[1]),
        intercept=float(fit.day.params[0]),
        r2=float(fit.day.rsquared),
        p_value=float(fit.day.pvalues[1]),
        ci_low=float(low),
        ci_high=float(high),
        se=float(fit.day.bse[1]),
        se_hac=float(fit.hac.bse[1]),
        p_value_hac=float(fit.hac.pvalues[1]),
        ci_low_hac=float(low_hac),
        ci_high_hac=float(high_hac),
        hac_maxlags=int(fit.hac.cov_kwds["maxlags"]),
        durbin_watson=float(durbin_watson(fit.day.resid)),
    )
    return row


def fit_trends(
    series: xr.DataArray | xr.Dataset,
    *,
    alpha: float = 0.05,
    hac_maxlags: int | None = None,
    min_size: int | None = None,
    period: TimeLength = "365D",
    resample: TimeLength = "5D",
    max_gap: TimeLength | None = None,
) -> pd.DataFrame:
    """Fit ordinary least squares of each cover series on time and on frame index.

    Parameters
    ----------
    series : xarray.DataArray or xarray.Dataset
        Cover ``(time, cluster)`` or ``(time, class)``, or a Dataset of such arrays (all are
        fitted). Needs a datetime64 ``time`` coordinate; a ``frame`` coordinate gives the
        frame index (positions otherwise).
    alpha : float, default 0.05
        ``1 - alpha`` is the level of the confidence intervals of the per-day slope.
    hac_maxlags : int, optional
        Lags of the Newey-West (HAC) covariance; by default ``floor(4 (n / 100) ** (2/9))``.
        Also the lags of the autocorrelation-robust CUSUM p-value.
    min_size, period, resample, max_gap
        Passed to :func:`sediment_xr.changes.change_table`: the smallest segment of the
        mean-shift break, and the seasonal cycle's length, resampling step and longest
        interpolated gap.

    Returns
    -------
    pandas.DataFrame
        One row per series: :data:`TREND_COLUMNS` (slope per day and per frame in percentage
        points, intercept = cover at the first frame's time, R², p-value and CI of the
        per-day slope, frames used) then :data:`HAC_COLUMNS`, then
        :data:`sediment_xr.changes.CHANGE_COLUMNS` (CUSUM test of stability, the best single
        mean-shift break, the seasonal amplitude). Frames with NaN cover are left out;
        series with fewer than 3 frames get NaN statistics (fewer than 8: NaN change-point
        columns). ``break_time`` is datetime64 (NaT where none): read ``trend.csv`` back with
        ``pandas.read_csv(path, parse_dates=["break_time"])``.

    Notes
    -----
    Computes: loads the (small) cover series.
    """
    from sediment_xr.changes import CHANGE_COLUMNS, change_table

    changes = change_table(  # checks its options before any fit
        series,
        min_size=min_size,
        hac_maxlags=hac_maxlags,
        period=period,
        resample=resample,
        max_gap=max_gap,
    )
    rows = [_row(fit, alpha) for fit in _iter_fits(series, hac_maxlags)]
    table = pd.DataFrame(rows, columns=[*TREND_COLUMNS, *HAC_COLUMNS])
    table["n"] = table["n"].astype(np.int64)
    if table["name"].tolist() != changes["name"].tolist():  # pragma: no cover - one iterator
        raise RuntimeError("fit_trends: trend and change-point rows are out of step")
    for column in CHANGE_COLUMNS:
        table[column] = changes[column].to_numpy()
    return table


def trend_dataset(
    series: xr.DataArray | xr.Dataset, *, alpha: float = 0.05, hac_maxlags: int | None = None
) -> xr.Dataset:
    """Trend statistics, fitted lines and residuals as an xarray Dataset (for notebooks).

    Returns
    -------
    xarray.Dataset
        Every column of :func:`fit_trends` (with its default options) as a variable along
        ``name``, plus ``fitted`` and ``residual`` ``(time, name)`` of the per-day fit, in
        time order.
    """
    fits = list(_iter_fits(series, hac_maxlags))
    table = fit_trends(series, alpha=alpha, hac_maxlags=hac_maxlags).set_index("name")
    ds = xr.Dataset.from_dataframe(table)
    times = pd.DatetimeIndex(sorted(set().union(*[set(f.times) for f in fits]))) if fits else []
    fitted = np.full((len(times), len(fits)), np.nan)
    resid = np.full_like(fitted, np.nan)
    position = {t: i for i, t in enumerate(times)}
    for j, fit in enumerate(fits):
        if fit.day is None:
            continue
        rows = [position[t] for t in fit.times]
        fitted[rows, j] = fit.day.fittedvalues
        resid[rows, j] = fit.day.resid
    ds["fitted"] = (("time", "name"), fitted, {"long_name": "OLS fit on time", "units": "percent"})
    ds["residual"] = (
        ("time", "name"),
        resid,
        {"long_name": "residual of the OLS fit on time, in time order", "units": "percent"},
    )
    ds = ds.assign_coords(time=np.asarray(times, dtype="datetime64[ns]"))
    units = {
        "slope_per_day": "percent day-1",
        "slope_per_frame": "percent frame-1",
        "intercept": "percent",
        "se": "percent day-1",
        "se_hac": "percent day-1",
        "cover_before": "percent",
        "cover_after": "percent",
        "shift": "percent",
        "seasonal_amplitude": "percent",
    }
    for var, unit in units.items():
        ds[var].attrs["units"] = unit
    ds.attrs["comment"] = (
        "OLS of percent cover on days since the first frame; HAC = Newey-West standard errors; "
        "change-point and seasonal columns: see sediment_xr.changes.change_table"
    )
    return ds


def summary_statistics(series: xr.DataArray | xr.Dataset) -> pd.DataFrame:
    """Count, mean, std, min, quartiles and max of every series (the lesson's ``describe``)."""
    if isinstance(series, xr.Dataset):
        parts = [summary_statistics(series[v]) for v in series.data_vars]
        return pd.concat(parts, axis=1)
    series, other = _as_2d(series)
    frame = pd.DataFrame(
        series.values, columns=[_series_name(other, v) for v in series[other].values]
    )
    return frame.describe()


def trend_summaries(series: xr.DataArray | xr.Dataset, *, hac_maxlags: int | None = None) -> str:
    """The full statsmodels summaries (plain and HAC) of every per-day fit, as text."""
    import warnings

    blocks = []
    for fit in _iter_fits(series, hac_maxlags):
        title = (
            f"=== {fit.name}: percent cover ~ days since {fit.times[0] if len(fit.times) else '-'}"
        )
        if fit.day is None:
            blocks.append(f"{title}\nfewer than 3 frames with cover: no fit\n")
            continue
        names = {"yname": fit.name, "xname": ["intercept", "days"]}
        with warnings.catch_warnings():
            # statsmodels warns that its normality tests need >= 8 frames; the tables say so.
            warnings.simplefilter("ignore")
            plain, robust = fit.day.summary(**names), fit.hac.summary(**names)
        blocks.append(
            f"{title} (ordinary least squares)\n{plain}\n\n"
            f"{title} (Newey-West HAC standard errors, maxlags="
            f"{fit.hac.cov_kwds['maxlags']})\n{robust}\n"
        )
    return "\n\n".join(blocks)
