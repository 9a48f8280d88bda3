"""Change-points and seasonal cycles of cover, on generated series with planted truth."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import xarray as xr
from statsmodels.stats.diagnostic import breaks_cusumolsresid

import sediment_xr as sx
from sediment_xr.changes import (
    CHANGE_COLUMNS,
    MIN_FRAMES,
    _mean_split,
    change_table,
    seasonal_decomposition,
)
from sediment_xr.exceptions import ConfigError
from sediment_xr.trend import HAC_COLUMNS, TREND_COLUMNS


def series(
    values: np.ndarray,
    freq: str = "17h",
    *,
    start: str = "2022-06-01",
    names: list[str] | None = None,
    frame_step: int = 2,
) -> xr.DataArray:
    """(time, class) cover; the frame coordinate advances by ``frame_step`` per position."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n, k = values.shape
    return xr.DataArray(
        values,
        dims=("time", "class"),
        coords={
            "time": pd.date_range(start, periods=n, freq=freq),
            "frame": ("time", np.arange(n) * frame_step),
            "class": names or [f"s{j}" for j in range(k)],
        },
    )


def ar1(n: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) noise with innovations of standard deviation ``sd``."""
    e = np.zeros(n)
    shocks = rng.normal(0, sd, n)
    e[0] = shocks[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + shocks[i]
    return e


N, K0 = 200, 130  # frames; the step starts at position K0


def stepped(seed: int, phi: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 30 + 10 * (np.arange(N) >= K0) + ar1(N, phi, 2.0, rng)


# --- change-points ----------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [0.0, 0.5])
def test_a_planted_step_is_located_and_significant(phi):
    seeds = range(10)
    s = series(np.stack([stepped(seed, phi) for seed in seeds], axis=1))
    table = change_table(s)
    assert list(table.columns) == ["name", *CHANGE_COLUMNS]
    position = table["break_frame"] / 2  # frame coordinate = 2 * position
    assert (position - K0).abs().max() <= 3
    assert (table["cusum_p_value"] < 0.01).all()
    assert (table["cusum_p_value_hac"] < 0.01).all()
    np.testing.assert_allclose(table["shift"], 10, atol=1.5)
    assert (table["cover_before"] - 30).abs().max() < 2
    assert (table["cover_after"] - 40).abs().max() < 2
    np.testing.assert_allclose(table["shift"], table["cover_after"] - table["cover_before"])
    # break_time is the time of the first frame after the break
    times = s["time"].to_index()
    expected = times[position.astype(int).to_numpy()]
    np.testing.assert_array_equal(table["break_time"].to_numpy(), expected.to_numpy())
    assert table["break_time"].dtype == "datetime64[ns]"


def test_cusum_is_statsmodels_on_the_residuals_of_cover_on_days():
    y = stepped(0, 0.5)
    row = change_table(series(y)).iloc[0]
    days = np.arange(N) * 17 / 24
    resid = sm.OLS(y, sm.add_constant(days)).fit().resid
    stat, p_value, _ = breaks_cusumolsresid(resid, ddof=2)
    np.testing.assert_allclose(row["cusum_stat"], stat)
    np.testing.assert_allclose(row["cusum_p_value"], p_value)


def test_a_smooth_trend_is_no_break_but_still_has_a_split():
    seeds = range(50)
    rng_noise = [np.random.default_rng(seed).normal(0, 2, N) for seed in seeds]
    s = series(np.stack([20 + 0.1 * np.arange(N) + e for e in rng_noise], axis=1))
    table = change_table(s)
    # the test is conservative with a trend regressor: a stable line is (almost) never flagged
    assert (table["cusum_p_value"] > 0.05).mean() >= 0.95
    assert (table["cusum_p_value_hac"] > 0.05).mean() >= 0.95
    # ... while the mean split is always found, near the middle, and measures the trend
    assert table["break_frame"].notna().all()
    assert ((table["break_frame"] / 2 - N / 2).abs() < 0.25 * N).all()
    np.testing.assert_allclose(table["shift"].median(), 0.1 * N / 2, rtol=0.2)


def test_autocorrelation_robust_p_value_keeps_its_level():
    """AR(1) phi = 0.8: the plain p-value flags many stable series, the HAC one few."""
    n = 120
    rows = [
        20 + 0.05 * np.arange(n) + ar1(n, 0.8, 2.0, np.random.default_rng(s)) for s in range(60)
    ]
    table = change_table(series(np.stack(rows, axis=1)))
    plain = (table["cusum_p_value"] < 0.05).mean()
    robust = (table["cusum_p_value_hac"] < 0.05).mean()
    assert plain > 0.25
    assert robust <= 0.15
    assert robust < plain / 2


def test_mean_split_is_the_least_squares_split():
    rng = np.random.default_rng(3)
    for n, m in [(8, 3), (40, 3), (41, 5)]:
        y = rng.normal(0, 1, n) + 3 * (np.arange(n) >= rng.integers(m, n - m))
        sse = {
            k: ((y[:k] - y[:k].mean()) ** 2).sum() + ((y[k:] - y[k:].mean()) ** 2).sum()
            for k in range(m, n - m + 1)
        }
        assert _mean_split(y, m) == min(sse, key=sse.get)


def test_minimum_segment_size_is_kept():
    y = np.r_[np.full(2, 80.0), np.full(98, 20.0)] + np.random.default_rng(0).normal(0, 1, 100)
    row = change_table(series(y, frame_step=1)).iloc[0]
    assert row["break_frame"] == 5  # max(3, 5 % of 100): the outlying pair cannot be a segment
    row = change_table(series(y, frame_step=1), min_size=2).iloc[0]
    assert row["break_frame"] == 2


def test_nan_frames_are_left_out():
    y = stepped(1, 0.5)
    gappy = y.copy()
    drop = np.random.default_rng(7).choice(N, 30, replace=False)
    gappy[drop] = np.nan
    keep = np.setdiff1d(np.arange(N), drop)
    full = series(gappy)
    dense = full.isel(time=keep)
    a, b = change_table(full).iloc[0], change_table(dense).iloc[0]
    for column in CHANGE_COLUMNS:
        if column == "break_time":
            assert a[column] == b[column]
        elif column != "seasonal_amplitude":
            np.testing.assert_allclose(a[column], b[column], err_msg=column)
    assert abs(a["break_frame"] / 2 - K0) <= 3


def test_too_short_constant_and_exact_series_give_nan_not_errors():
    rng = np.random.default_rng(0)
    values = np.full((12, 4), np.nan)
    values[: MIN_FRAMES - 1, 0] = rng.normal(20, 1, MIN_FRAMES - 1)  # 7 frames: too few
    values[:MIN_FRAMES, 1] = rng.normal(20, 1, MIN_FRAMES)  # 8 frames: enough
    values[:, 2] = 42.0  # constant
    values[:, 3] = 10 + 0.5 * np.arange(12)  # an exact line: no residual to test
    table = change_table(series(values)).set_index("name")
    assert table.loc["s0", list(CHANGE_COLUMNS)].isna().all()
    assert table.loc["s1", ["cusum_p_value", "break_frame", "shift"]].notna().all()
    assert table.loc["s2", list(CHANGE_COLUMNS)].isna().all()
    assert table.loc["s3", ["cusum_stat", "cusum_p_value", "cusum_p_value_hac"]].isna().all()
    assert table.loc["s3", "break_frame"] == 2 * 6  # the middle of a line, a location only
    assert table["break_time"].dtype == "datetime64[ns]"


def test_dataset_input_gives_one_row_per_series_in_fit_trends_order():
    n = 60
    rng = np.random.default_rng(2)
    bio = 30 + 10 * (np.arange(n) >= 40) + rng.normal(0, 1, n)
    clusters = np.stack([bio, 95 - bio - rng.normal(0, 1, n), 5 + rng.normal(0, 1, n)], axis=1)
    time = pd.date_range("2022-06-01", periods=n, freq="17h")
    cover = xr.DataArray(
        clusters, dims=("time", "cluster"), coords={"time": time, "cluster": [0, 1, 2]}
    )
    classes = xr.DataArray(
        np.stack([bio, 100 - bio], axis=1),
        dims=("time", "class"),
        coords={"time": time, "class": ["bio", "bg"]},
    )
    ds = xr.Dataset({"cover": cover, "class_cover": classes})
    table = change_table(ds)
    assert table["name"].tolist() == ["cluster_0", "cluster_1", "cluster_2", "bio", "bg"]
    assert table["name"].tolist() == sx.fit_trends(ds)["name"].tolist()
    pd.testing.assert_frame_equal(
        table.iloc[3:].reset_index(drop=True), change_table(classes).reset_index(drop=True)
    )
    # no frame coordinate: break_frame is the position
    assert table.set_index("name").loc["bio", "break_frame"] == 40
    np.testing.assert_allclose(table.set_index("name").loc["bg", "shift"], -10, atol=1)


# --- seasonal decomposition -------------------------------------------------------------------


def yearly(years: float = 3, *, amplitude: float = 8.0, sd: float = 1.0, seed: int = 0):
    days = int(365 * years)
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    y = 40 + 0.01 * t + amplitude * np.sin(2 * np.pi * t / 365 + 0.3) + rng.normal(0, sd, days)
    return series(y, "1D", start="2020-03-01")


@pytest.mark.parametrize("sd", [0.5, 1.0, 2.0])
def test_a_yearly_cycle_has_amplitude_twice_its_sinusoid(sd):
    amplitude = 8.0
    errors = []
    for seed in range(3):
        s = yearly(amplitude=amplitude, sd=sd, seed=seed)
        row = change_table(s).iloc[0]
        errors.append(row["seasonal_amplitude"] / (2 * amplitude) - 1)
    assert max(abs(e) for e in errors) < 0.05  # measured: within 3.1 % (noise sd up to 2)


def test_decomposition_dataset():
    s = yearly()
    ds = seasonal_decomposition(s, resample="1D")
    assert ds is not None
    assert set(ds.data_vars) == {
        "observed",
        "trend",
        "seasonal",
        "resid",
        "filled",
        "seasonal_cycle",
        "seasonal_amplitude",
    }
    assert ds["seasonal"].dims == ("time_bin", "name")
    assert ds["seasonal_cycle"].dims == ("phase", "name")
    assert ds.sizes["phase"] == 365 and ds.sizes["time_bin"] == 3 * 365
    np.testing.assert_allclose(ds["observed"].values[:, 0], s.values[:, 0])  # daily already
    np.testing.assert_allclose(ds["trend"] + ds["seasonal"] + ds["resid"], ds["observed"])
    for var in ("observed", "trend", "seasonal", "resid", "seasonal_amplitude"):
        assert ds[var].attrs["units"] == "percent"
        assert ds[var].attrs["long_name"]
    assert ds.attrs["period_steps"] == 365
    assert not ds["filled"].any()
    np.testing.assert_allclose(
        ds["seasonal_amplitude"],
        ds["seasonal_cycle"].max("phase") - ds["seasonal_cycle"].min("phase"),
    )
    # the raw range of STL's seasonal component is inflated by noise; the cycle's is not
    assert float(ds["seasonal"].max() - ds["seasonal"].min()) > 1.15 * 16
    # the trend of the decomposition follows the planted 0.01 pp/day
    middle = ds["trend"].isel(time_bin=slice(200, -200), name=0)
    slope = np.polyfit(np.arange(middle.size), middle.values, 1)[0]
    np.testing.assert_allclose(slope, 0.01, atol=0.002)


def test_a_daily_cycle_with_hourly_means():
    t = pd.date_range("2022-06-01", periods=20 * 24 * 6, freq="10min")  # 20 days
    hours = ((t - t[0]) / pd.Timedelta(hours=1)).to_numpy()
    rng = np.random.default_rng(0)
    y = 50 + 5 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1, len(t))
    s = xr.DataArray(y[:, None], dims=("time", "class"), coords={"time": t, "class": ["bio"]})
    assert np.isnan(change_table(s).iloc[0]["seasonal_amplitude"])  # a year by default
    row = change_table(s, period="1D", resample="1h").iloc[0]
    np.testing.assert_allclose(row["seasonal_amplitude"], 10, rtol=0.05)
    ds = seasonal_decomposition(s, period=pd.Timedelta(days=1), resample="1h")
    assert ds.sizes["phase"] == 24 and ds.sizes["time_bin"] == 20 * 24
    np.testing.assert_allclose(float(ds["seasonal_amplitude"][0]), row["seasonal_amplitude"])


def test_six_months_give_no_decomposition_and_no_error():
    s = yearly(0.5)
    assert seasonal_decomposition(s) is None
    row = change_table(s).iloc[0]
    assert np.isnan(row["seasonal_amplitude"])
    assert np.isfinite(row["cusum_p_value"])  # the change-point columns are still there
    assert np.isnan(sx.fit_trends(s).iloc[0]["seasonal_amplitude"])


def test_short_gaps_are_interpolated_and_long_gaps_are_not_filled():
    s = yearly(3).copy()
    s[10:150] = np.nan  # 140 days: longer than max_gap (a twelfth of the year)
    s[600:605] = np.nan  # 5 days: interpolated linearly in time
    ds = seasonal_decomposition(s, resample="1D")
    assert ds is not None
    observed = ds["observed"].isel(name=0).to_series()
    # the 10 days before the long gap are not decomposed: only the longest stretch is
    assert observed.index[0] == s["time"].to_index()[150]
    assert observed.notna().all() and len(observed) == 3 * 365 - 150
    filled = ds["filled"].isel(name=0).to_series()
    assert filled.sum() == 5 and filled.iloc[450:455].all()
    np.testing.assert_allclose(
        observed.iloc[450:455], np.linspace(s.values[599, 0], s.values[605, 0], 7)[1:-1]
    )
    assert abs(float(ds["seasonal_amplitude"][0]) / 16 - 1) < 0.1
    # the same gap in the middle of a 3-year record leaves no stretch of two years
    s = yearly(3).copy()
    s[500:600] = np.nan
    assert seasonal_decomposition(s, resample="1D") is None
    assert seasonal_decomposition(s, resample="1D", max_gap="120D") is not None


def test_series_too_short_for_a_cycle_are_nan_beside_others():
    s = yearly(3)
    values = np.stack([s.values[:, 0], s.values[:, 0]], axis=1)
    values[400:, 1] = np.nan  # the second series has 400 days
    ds = seasonal_decomposition(series(values, "1D", start="2020-03-01"))
    assert np.isfinite(ds["seasonal_amplitude"][0]) and np.isnan(ds["seasonal_amplitude"][1])
    assert ds["seasonal"].isel(name=1).isnull().all()
    assert not ds["filled"].isel(name=1).any()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"period": "1Y"}, r"period needs a fixed positive length of time .* got '1Y'"),
        ({"period": 365}, r"period needs a fixed positive length of time .* got 365"),
        ({"resample": "-1D"}, r"resample needs a fixed positive length"),
        (
            {"period": "36h", "resample": "1D"},
            r"period needs a whole number \(at least 2\) of resample steps \(resample='1D'\), "
            r"but got '36h'. Use e.g. period='2D'",
        ),
        ({"period": "1D", "resample": "1D"}, r"at least 2\) of resample .* Use e.g. period='2D'"),
        ({"period": "25h", "resample": "1h"}, None),
        ({"max_gap": "soon"}, r"max_gap needs a fixed positive length of time"),
        ({"min_size": 0}, r"min_size needs a whole number of at least 1, but got 0"),
    ],
)
def test_bad_options_are_named(options, match):
    if match is None:  # a good option
        assert change_table(yearly(0.1), **options)["seasonal_amplitude"].isna().all()
        return
    with pytest.raises(ConfigError, match=match):
        change_table(yearly(0.1), **options)


def test_bad_dims_are_named():
    with pytest.raises(ValueError, match=r"trends need cover with dims \(time, cluster\)"):
        change_table(xr.DataArray(np.zeros(5), dims="time"))


# --- fit_trends and trend.csv -----------------------------------------------------------------


def test_fit_trends_appends_the_change_columns_and_keeps_the_others():
    y = np.stack([stepped(0, 0.5), 100 - stepped(0, 0.5)], axis=1)
    s = series(y, names=["bio", "bg"])
    table = sx.fit_trends(s)
    assert list(table.columns) == [*TREND_COLUMNS, *HAC_COLUMNS, *CHANGE_COLUMNS]
    assert table["n"].dtype == np.int64
    changes = change_table(s)
    pd.testing.assert_frame_equal(table[["name", *CHANGE_COLUMNS]], changes)
    # the trend columns are still plain OLS on days
    days = np.arange(N) * 17 / 24
    fit = sm.OLS(y[:, 0], sm.add_constant(days)).fit()
    row = table.set_index("name").loc["bio"]
    np.testing.assert_allclose(row["slope_per_day"], fit.params[1])
    np.testing.assert_allclose(row["p_value"], fit.pvalues[1])
    assert row["n"] == N


def test_trend_csv_round_trips():
    n = 60
    rng = np.random.default_rng(4)
    bio = 30 + 10 * (np.arange(n) >= 40) + rng.normal(0, 1, n)
    few = np.full(n, np.nan)
    few[:5] = [1.0, 2.0, 3.0, 2.0, 1.0]  # too few frames: NaN and NaT
    s = series(np.stack([bio, few], axis=1), names=["bio", "few"])
    table = sx.fit_trends(s)
    assert table["break_time"].isna().tolist() == [False, True]
    text = table.to_csv(index=False, float_format="%.8g")  # as the pipeline writes trend.csv
    back = pd.read_csv(io.StringIO(text), parse_dates=["break_time"])
    assert list(back.columns) == list(table.columns)
    assert back["n"].dtype == np.int64
    np.testing.assert_array_equal(
        back["break_time"].to_numpy(dtype="datetime64[ns]"), table["break_time"].to_numpy()
    )
    numbers = [c for c in table.columns if c not in ("name", "break_time")]
    np.testing.assert_allclose(
        back[numbers].to_numpy(dtype=float), table[numbers].to_numpy(dtype=float), rtol=1e-7
    )
    assert back["name"].tolist() == ["bio", "few"]
    # the CSV holds ISO 8601 date and time (space separated), blank for none
    assert ",2022-06-29 08:00:00,80," in text.splitlines()[1]  # frame 40 (coordinate 80)
    assert ",,," in text.splitlines()[2]
