"""Trends of cover on real time and on frame index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
import xarray as xr

import sediment_xr as sx
from sediment_xr.changes import CHANGE_COLUMNS
from sediment_xr.trend import (
    HAC_COLUMNS,
    TREND_COLUMNS,
    newey_west_lags,
    summary_statistics,
    trend_dataset,
    trend_summaries,
)


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
    assert list(table.columns) == [*TREND_COLUMNS, *HAC_COLUMNS, *CHANGE_COLUMNS]
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


def autocorrelated(n=120, seed=0):
    """AR(1) noise (phi = 0.8) around a small trend: plain OLS errors are too small."""
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.8 * e[i - 1] + rng.normal(0, 1)
    return 22 - 0.01 * np.arange(n) + e


def test_hac_standard_errors_agree_with_statsmodels_and_exceed_plain_ones():
    y = autocorrelated()
    row = sx.fit_trends(series(y[:, None], freq="1D")).iloc[0]
    days = np.arange(len(y), dtype=float)
    lags = newey_west_lags(len(y))
    assert lags == 4
    hac = sm.OLS(y, sm.add_constant(days)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    np.testing.assert_allclose(row["se_hac"], hac.bse[1])
    np.testing.assert_allclose(row["p_value_hac"], hac.pvalues[1])
    np.testing.assert_allclose([row["ci_low_hac"], row["ci_high_hac"]], hac.conf_int()[1])
    assert row["hac_maxlags"] == lags
    assert row["se_hac"] > 1.5 * row["se"]  # autocorrelation makes plain errors too small
    from statsmodels.stats.stattools import durbin_watson

    resid = sm.OLS(y, sm.add_constant(days)).fit().resid
    np.testing.assert_allclose(row["durbin_watson"], durbin_watson(resid))
    assert row["durbin_watson"] < 1.0  # positive autocorrelation


def test_white_noise_has_durbin_watson_near_two():
    rng = np.random.default_rng(1)
    row = sx.fit_trends(series(rng.normal(0, 1, (400, 1)), freq="1D")).iloc[0]
    assert 1.6 < row["durbin_watson"] < 2.4  # sd of DW for n=400 is about 0.1


def test_trend_dataset_and_residuals_in_time_order():
    y = autocorrelated(60)
    s = series(np.stack([y, 100 - y], axis=1), freq="1D")
    ds = trend_dataset(s)
    table = sx.fit_trends(s).set_index("name")
    assert list(ds["name"].values) == ["bio", "bg"]
    np.testing.assert_allclose(ds["slope_per_day"].values, table["slope_per_day"].values)
    np.testing.assert_allclose(ds["fitted"] + ds["residual"], s.values)
    assert ds["slope_per_day"].attrs["units"] == "percent day-1"
    np.testing.assert_array_equal(ds["time"].values, s["time"].values)


def test_summary_statistics_are_the_lessons_describe():
    y = np.array([[1.0, 99.0], [2.0, 98.0], [3.0, 97.0], [10.0, 90.0]])
    stats = summary_statistics(series(y))
    assert list(stats.index) == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    np.testing.assert_allclose(stats.loc["mean", "bio"], 4.0)
    np.testing.assert_allclose(stats.loc["50%", "bg"], 97.5)


def test_trend_summaries_hold_plain_and_hac_tables():
    text = trend_summaries(series(autocorrelated(50)[:, None], freq="1D"))
    assert "=== bio: percent cover ~ days since" in text
    assert "OLS Regression Results" in text
    assert "HAC" in text
    assert "Durbin-Watson" in text
