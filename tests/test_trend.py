"""Trends of cover on real time and on frame index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
import xarray as xr

import sediment_xr as sx
from sediment_xr.trend import TREND_COLUMNS


def series(values: np.ndarray, freq: str = "17h") -> xr.DataArray:
    n = values.shape[0]
    return xr.DataArray(
        values,
        dims=("time", "class"),
        coords={
            "time": pd.date_range("2022-06-01", periods=n, freq=freq),
            "frame": ("time", np.arange(n) * 2),
            "class": ["bio", "bg"][: values.shape[1]],
        },
    )


def test_exact_line_is_recovered():
    n = 20
    per_frame = 0.3
    bio = 20 + per_frame * np.arange(n)
    table = sx.fit_trends(series(np.stack([bio, 100 - bio], axis=1)))
    assert list(table.columns) == list(TREND_COLUMNS)
    row = table.set_index("name").loc["bio"]
    # 17 h per position; frame coordinate advances by 2 per position
    np.testing.assert_allclose(row["slope_per_day"], per_frame * 24 / 17)
    np.testing.assert_allclose(row["slope_per_frame"], per_frame / 2)
    np.testing.assert_allclose(row["intercept"], 20.0)
    np.testing.assert_allclose(row["r2"], 1.0)
    assert row["n"] == n
    assert table.set_index("name").loc["bg", "slope_per_day"] < 0


def test_agrees_with_direct_statsmodels():
    rng = np.random.default_rng(0)
    y = 22 - 0.01 * np.arange(50) + rng.normal(0, 1, 50)
    s = series(y[:, None], freq="1D")
    row = sx.fit_trends(s).iloc[0]
    days = np.arange(50, dtype=float)
    fit = sm.OLS(y, sm.add_constant(days)).fit()
    np.testing.assert_allclose(row["slope_per_day"], fit.params[1])
    np.testing.assert_allclose(row["r2"], fit.rsquared)
    np.testing.assert_allclose(row["p_value"], fit.pvalues[1])
    np.testing.assert_allclose([row["ci_low"], row["ci_high"]], fit.conf_int()[1])


def test_nan_frames_are_left_out_and_short_series_give_nan():
    y = np.array([1.0, np.nan, 3.0, 4.0, 5.0])
    row = sx.fit_trends(series(y[:, None], freq="1D")).iloc[0]
    assert row["n"] == 4
    short = sx.fit_trends(series(np.array([[1.0], [2.0]]))).iloc[0]
    assert np.isnan(short["slope_per_day"])
    assert short["n"] == 2
