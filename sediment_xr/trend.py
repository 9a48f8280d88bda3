"""Linear trends of cover over real time (per day) and over frame index (statsmodels OLS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr.exceptions import InputError

__all__ = ["TREND_COLUMNS", "fit_trends"]

#: Columns of ``trend.csv`` and of :func:`fit_trends`'s table.
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


def _ols(x: np.ndarray, y: np.ndarray):
    import statsmodels.api as sm

    return sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()


def fit_trends(series: xr.DataArray | xr.Dataset, *, alpha: float = 0.05) -> pd.DataFrame:
    """Fit ordinary least squares of each cover series on time and on frame index.

    Parameters
    ----------
    series : xarray.DataArray or xarray.Dataset
        Cover ``(time, name)`` where the second dim holds the series (``cluster`` or
        ``class``), or a Dataset of such arrays (all series are fitted). Must have a
        ``time`` coordinate of datetime64 and may have a ``frame`` coordinate (frame index;
        positions are used otherwise).
    alpha : float, default 0.05
        ``1 - alpha`` is the level of the confidence interval of the per-day slope.

    Returns
    -------
    pandas.DataFrame
        One row per series with :data:`TREND_COLUMNS`: the slope per day and per frame (in
        percentage points), the intercept (cover at the first frame's time, from the per-day
        fit), R², p-value and confidence interval of the per-day slope, and the number of
        frames used (frames with NaN cover are left out).

    Notes
    -----
    Computes: loads the (small) cover series.
    """
    if isinstance(series, xr.Dataset):
        tables = [fit_trends(series[v], alpha=alpha) for v in series.data_vars]
        return pd.concat(tables, ignore_index=True)
    if "time" not in series.dims or series.ndim != 2:
        raise InputError(
            f"fit_trends needs cover with dims (time, cluster) or (time, class), but got "
            f"{series.dims}."
        )
    other = next(d for d in series.dims if d != "time")
    series = series.transpose("time", other).load()
    times = pd.DatetimeIndex(series["time"].values)
    days = ((times - times[0]) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    frames = (
        np.asarray(series["frame"].values, dtype=np.float64)
        if "frame" in series.coords
        else np.arange(series.sizes["time"], dtype=np.float64)
    )
    names = [_series_name(other, v) for v in series[other].values]
    rows = []
    for j, name in enumerate(names):
        y = np.asarray(series.values[:, j], dtype=np.float64)
        ok = np.isfinite(y)
        row = dict.fromkeys(TREND_COLUMNS, np.nan)
        row["name"] = name
        row["n"] = int(ok.sum())
        if ok.sum() >= 3 and np.ptp(days[ok]) > 0:
            fit_day = _ols(days[ok], y[ok])
            fit_frame = _ols(frames[ok], y[ok])
            low, high = fit_day.conf_int(alpha=alpha)[1]
            row.update(
                slope_per_day=float(fit_day.params[1]),
                slope_per_frame=float(fit_frame.params[1]),
                intercept=float(fit_day.params[0]),
                r2=float(fit_day.rsquared),
                p_value=float(fit_day.pvalues[1]),
                ci_low=float(low),
                ci_high=float(high),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TREND_COLUMNS))


def _series_name(dim: str, value) -> str:
    if dim == "cluster":
        return f"cluster_{int(value)}"
    return str(value)
