"""Analysis beyond a line: change-points and seasonal cycles of cover, one series at a time.

Two questions a straight line does not answer:

- **Did the cover change abruptly?**  The OLS-residual CUSUM test of structural stability
  (Ploberger and Krämer 1992; :func:`statsmodels.stats.diagnostic.breaks_cusumolsresid`) on
  the residuals of cover ~ days, the model of :func:`sediment_xr.fit_trends`, gives the
  evidence.  The best single mean-shift split (least squares break date, as in Bai 1994)
  gives the location: where two segment means fit best.  A split is found in *every* series,
  a smooth trend included, so the split is only a location; the p-value is the evidence.
- **Is there a seasonal cycle?**  STL (:class:`statsmodels.tsa.seasonal.STL`) of the
  cover's means per resampling step (5 days by default: 73 per year), when the series
  covers at least two full periods (a year by default).

Only one break is located.  Several breaks (PELT, binary segmentation, e.g. with the
``ruptures`` package on ``cover.csv``) need a penalty chosen by the user and give no
p-value; they are left to the analyst.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._validate import bad_value, check_int
from sediment_xr.trend import TimeLength, iter_series, newey_west_lags

__all__ = [
    "CHANGE_COLUMNS",
    "MIN_FRAMES",
    "change_table",
    "seasonal_decomposition",
]

#: Columns of :func:`change_table` after ``name`` (also the last columns of ``trend.csv``).
CHANGE_COLUMNS = (
    "cusum_stat",
    "cusum_p_value",
    "cusum_p_value_hac",
    "break_time",
    "break_frame",
    "cover_before",
    "cover_after",
    "shift",
    "seasonal_amplitude",
)
#: Fewest frames with cover for a change-point test and a break.
MIN_FRAMES = 8

_PERIOD_EXAMPLE = "365D"
_RESAMPLE_EXAMPLE = "5D"


# --- options ---------------------------------------------------------------------------------


def _time_length(value: object, name: str, example: str) -> pd.Timedelta:
    need = "a fixed positive length of time such as '365D', '1D' or '1h'"
    if isinstance(value, numbers.Number):  # pandas would read a bare number as nanoseconds
        raise bad_value(name, need, value, example)
    try:
        length = pd.Timedelta(value)
    except (TypeError, ValueError):
        raise bad_value(name, need, value, example) from None
    if pd.isna(length) or length <= pd.Timedelta(0):
        raise bad_value(name, need, value, example)
    return length


def _spelled(length: pd.Timedelta) -> str:
    """``'2D'``, ``'36h'``, ``'90min'`` or ``'45s'``: a length as a pandas alias."""
    for unit, alias in (("1D", "D"), ("1h", "h"), ("1min", "min")):
        if length % pd.Timedelta(unit) == pd.Timedelta(0):
            return f"{length // pd.Timedelta(unit)}{alias}"
    return f"{length.total_seconds():g}s"


def _seasonal_options(
    period: TimeLength, resample: TimeLength, max_gap: TimeLength | None
) -> tuple[pd.Timedelta, pd.Timedelta, int, pd.Timedelta]:
    """(step, period, period in steps, longest gap to interpolate), checked."""
    period_length = _time_length(period, "period", _PERIOD_EXAMPLE)
    step = _time_length(resample, "resample", _RESAMPLE_EXAMPLE)
    steps = period_length / step
    if steps < 2 - 1e-9 or abs(steps - round(steps)) > 1e-9 * steps:
        whole = max(2, round(steps))
        raise bad_value(
            "period",
            f"a whole number (at least 2) of resample steps (resample={resample!r})",
            period,
            fix=f"Use e.g. period={_spelled(whole * step)!r}, or a shorter resample step.",
        )
    if max_gap is None:
        gap = period_length / 12
    else:
        gap = _time_length(max_gap, "max_gap", "30D")
    return step, period_length, round(steps), gap


def _min_size(n: int, min_size: int | None) -> int:
    return max(3, math.ceil(0.05 * n)) if min_size is None else min_size


# --- kernels (numpy in, numpy out) ------------------------------------------------------------


def _mean_split(y: np.ndarray, m: int) -> int:
    """The least squares mean-shift split ``k`` of ``y``, with ``m <= k <= n - m``.

    Segment means of ``y[:k]`` and ``y[k:]`` leave the smallest total squared error there
    (the first such ``k`` on ties).
    """
    n = len(y)
    centred = np.cumsum(y - y.mean())  # centred sums keep the difference of large sums exact
    k = np.arange(m, n - m + 1)
    left = centred[k - 1]
    right = centred[-1] - left
    # SSE(k) = sum((y - mean)^2) - left^2 / k - right^2 / (n - k): maximise what is explained
    explained = left**2 / k + right**2 / (n - k)
    return int(k[np.argmax(explained)])


def _long_run_variance(e: np.ndarray, lags: int) -> float:
    """Newey-West (Bartlett kernel) long-run variance of ``e`` (mean zero; sums over n)."""
    n = len(e)
    total = float(e @ e) / n
    for lag in range(1, min(lags, n - 1) + 1):
        total += 2 * (1 - lag / (lags + 1)) * float(e[lag:] @ e[:-lag]) / n
    return total


def _kolmogorov_sf(x: float) -> float:
    """P(sup |Brownian bridge| > x): the distribution statsmodels' CUSUM p-value uses."""
    from scipy.stats import kstwobign  # a dependency of statsmodels

    return float(kstwobign.sf(x))


def _change_kernel(
    days: np.ndarray, y: np.ndarray, m: int, lags: int
) -> tuple[float, float, float, int]:
    """(CUSUM statistic, p-value, autocorrelation-robust p-value, mean-shift split) of y."""
    from statsmodels.stats.diagnostic import breaks_cusumolsresid

    n = len(y)
    x = np.column_stack([np.ones(n), days])
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    k = _mean_split(y, m)
    ssr = float(resid @ resid)
    if not ssr > (1e-10 * max(1.0, float(np.max(np.abs(y))))) ** 2 * n:
        return np.nan, np.nan, np.nan, k  # an exact line: rounding noise is no evidence
    stat, p_value, _ = breaks_cusumolsresid(resid, ddof=2)  # intercept and slope
    # The long-run variance comes from the residuals of the model with the located shift:
    # the residuals of the line alone hold the shift itself, which would inflate it and
    # hide the very break the test looks for.
    xk = np.column_stack([x, np.arange(n) >= k])
    resid_k = y - xk @ np.linalg.lstsq(xk, y, rcond=None)[0]
    long_run = _long_run_variance(resid_k, lags) * n / (n - 3)
    # Only ever more cautious than the plain test: a long-run variance below the residual
    # variance (negative autocorrelation, or a few frames' noise) must not make a smooth
    # series look broken (10 frames of a trend gave p = 0.001 against 0.75 without this).
    scale = min(1.0, math.sqrt(ssr / (n - 2) / long_run)) if long_run > 0 else np.nan
    p_hac = max(_kolmogorov_sf(float(stat) * scale), float(p_value)) if scale > 0 else np.nan
    return float(stat), float(p_value), p_hac, k


def _change_row(
    times: pd.DatetimeIndex,
    frames: np.ndarray,
    y: np.ndarray,
    *,
    min_size: int | None,
    hac_maxlags: int | None,
) -> dict:
    row: dict = dict.fromkeys(CHANGE_COLUMNS, np.nan)
    row["break_time"] = pd.NaT
    ok = np.isfinite(y)
    times, frames, y = times[ok], frames[ok], y[ok]
    n = len(y)
    if n < MIN_FRAMES or np.ptp(y) == 0:
        return row
    days = ((times - times[0]) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    m = _min_size(n, min_size)
    if np.ptp(days) == 0 or n < 2 * m:
        return row
    lags = newey_west_lags(n) if hac_maxlags is None else int(hac_maxlags)
    stat, p_value, p_hac, k = _change_kernel(days, y, m, lags)
    before, after = float(y[:k].mean()), float(y[k:].mean())
    row.update(
        cusum_stat=stat,
        cusum_p_value=p_value,
        cusum_p_value_hac=p_hac,
        break_time=times[k],
        break_frame=float(frames[k]),
        cover_before=before,
        cover_after=after,
        shift=after - before,
    )
    return row


def _decompose(
    times: pd.DatetimeIndex,
    y: np.ndarray,
    *,
    origin: pd.Timestamp,
    step: pd.Timedelta,
    period_steps: int,
    max_gap: pd.Timedelta,
    robust: bool,
) -> pd.DataFrame | None:
    """STL of the means per step over the longest stretch without a long gap, or None."""
    from statsmodels.tsa.seasonal import STL

    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    means = pd.Series(y[ok], index=times[ok]).sort_index().resample(step, origin=origin).mean()
    observed = np.flatnonzero(means.notna().to_numpy())
    # a run of empty bins longer than max_gap ends a stretch; shorter runs are interpolated
    longest_missing = math.floor(max_gap / step)
    cuts = np.flatnonzero(np.diff(observed) - 1 > longest_missing) + 1
    stretches = [(part[0], part[-1] + 1) for part in np.split(observed, cuts)]
    start, stop = max(stretches, key=lambda s: s[1] - s[0])  # the earliest of the longest
    if stop - start < 2 * period_steps:
        return None
    part = means.iloc[start:stop]
    filled = part.isna().to_numpy()
    values = part.interpolate(method="time").to_numpy(dtype=np.float64)
    fit = STL(values, period=period_steps, robust=robust).fit()
    return pd.DataFrame(
        {
            "observed": values,
            "trend": np.asarray(fit.trend),
            "seasonal": np.asarray(fit.seasonal),
            "resid": np.asarray(fit.resid),
            "filled": filled,
        },
        index=part.index,
    )


def _smoothing_window(period_steps: int) -> int:
    """Odd width of the moving average of the mean cycle: about a twelfth of the period."""
    return 2 * (period_steps // 24) + 1


def _mean_cycle(seasonal: np.ndarray, phase: np.ndarray, period_steps: int) -> np.ndarray:
    """The seasonal component averaged per phase, then smoothed by a circular moving average.

    STL's seasonal component is smoothed across cycles but hardly across neighbouring bins,
    so its range grows with the noise; the cycle's range does not.
    """
    counts = np.bincount(phase, minlength=period_steps)
    cycle = np.bincount(phase, weights=seasonal, minlength=period_steps) / counts
    half = _smoothing_window(period_steps) // 2
    if half == 0:
        return cycle
    wrapped = np.concatenate([cycle[-half:], cycle, cycle[:half]])
    return np.convolve(wrapped, np.full(2 * half + 1, 1 / (2 * half + 1)), mode="valid")


# --- public functions -------------------------------------------------------------------------


_ATTRS = {
    "observed": {
        "long_name": "percent cover, mean per resampling bin; short gaps interpolated in time",
        "units": "percent",
    },
    "trend": {"long_name": "STL trend of percent cover", "units": "percent"},
    "seasonal": {"long_name": "STL seasonal component of percent cover", "units": "percent"},
    "resid": {"long_name": "STL residual of percent cover", "units": "percent"},
    "filled": {"long_name": "bin without frames, interpolated linearly in time"},
    "seasonal_cycle": {
        "long_name": "STL seasonal component averaged per phase, circular moving average",
        "units": "percent",
    },
    "seasonal_amplitude": {
        "long_name": "maximum minus minimum of seasonal_cycle",
        "units": "percent",
    },
}


def seasonal_decomposition(
    series: xr.DataArray | xr.Dataset,
    *,
    period: TimeLength = "365D",
    resample: TimeLength = "5D",
    max_gap: TimeLength | None = None,
    robust: bool = False,
) -> xr.Dataset | None:
    """STL decomposition of every cover series into trend, seasonal cycle and residual.

    Parameters
    ----------
    series : xarray.DataArray or xarray.Dataset
        Cover ``(time, cluster)`` or ``(time, class)``, or a Dataset of such arrays, with a
        datetime64 ``time`` coordinate. Frames with NaN cover are left out.
    period : str or timedelta, default "365D"
        Length of the seasonal cycle: a whole number (at least 2) of ``resample`` steps.
        For a daily cycle use e.g. ``period="1D", resample="1h"``.
    resample : str or timedelta, default "5D"
        Cover is averaged over bins of this length (bins start at midnight of the first
        frame's day). Five days give 73 bins a year: STL of 6 series over 850 days took
        0.05 s against 1.3 s with daily bins (one run of the benchmark video's cover), and
        5-day means of a yearly sinusoid keep 99.97 % of its range.
    max_gap : str or timedelta, optional
        Longest run of bins without frames that is filled by linear interpolation in time;
        ``period / 12`` by default (about a month of a year, 2 hours of a day).
    robust : bool, default False
        Robust STL: outlying bins get less weight.

    Returns
    -------
    xarray.Dataset or None
        ``observed``, ``trend``, ``seasonal``, ``resid`` ``(time_bin, name)`` in percent
        (``observed = trend + seasonal + resid``), ``filled`` ``(time_bin, name)`` (the bin
        had no frame and was interpolated), ``seasonal_cycle`` ``(phase, name)``: the mean
        cycle (see Notes), and ``seasonal_amplitude`` ``(name)``: its maximum minus minimum,
        in percentage points (twice the amplitude of a sinusoidal cycle). ``time_bin`` is
        the start of each bin; ``phase`` the time within the cycle; ``name`` as in
        :func:`sediment_xr.fit_trends`. None when no series covers two full periods.

    Notes
    -----
    Computes: loads the (small) cover series.

    A gap longer than ``max_gap`` is never filled: each series is decomposed over its
    longest stretch of bins without such a gap (the earliest, on ties), and is NaN
    elsewhere (``filled`` False). A series is decomposed only when that stretch spans at
    least two periods; otherwise it is all NaN, with NaN amplitude. A series that never
    covers a whole cycle (frames in daylight only, with ``period="1D"``) is therefore not
    decomposed rather than given an invented cycle.

    ``seasonal_amplitude`` is the range of the *mean cycle*, not of ``seasonal``: STL's
    seasonal component is smoothed across cycles but hardly across neighbouring bins, so
    its range grows with the noise (simulated: a yearly sinusoid of amplitude 8 over 3
    years of daily means with noise sd 1 gives a range 27 % too large). The mean cycle is
    ``seasonal`` averaged per phase, then a circular moving average over
    ``2 * (period_steps // 24) + 1`` bins (31 days of a year, 3 hours of a day): in the
    same simulation within 3 %. The moving average flattens a sinusoid's range by 1 %
    (yearly, daily bins) to 2 % (daily, hourly bins), sharper cycles more.
    """
    step, period_length, period_steps, gap = _seasonal_options(period, resample, max_gap)
    items = list(iter_series(series))
    firsts = [times[0] for _, times, _, _ in items if len(times)]
    if not firsts:
        return None
    origin = min(firsts).floor("D")
    parts = [
        _decompose(
            times,
            y,
            origin=origin,
            step=step,
            period_steps=period_steps,
            max_gap=gap,
            robust=robust,
        )
        for _, times, _, y in items
    ]
    done = [p for p in parts if p is not None]
    if not done:
        return None
    grid = pd.date_range(min(p.index[0] for p in done), max(p.index[-1] for p in done), freq=step)
    names = [name for name, _, _, _ in items]
    shape = (len(grid), len(items))
    data = {var: np.full(shape, np.nan) for var in ("observed", "trend", "seasonal", "resid")}
    filled = np.zeros(shape, dtype=bool)
    cycles = np.full((period_steps, len(items)), np.nan)
    for j, part in enumerate(parts):
        if part is None:
            continue
        rows = grid.get_indexer(part.index)
        for var in data:
            data[var][rows, j] = part[var].to_numpy()
        filled[rows, j] = part["filled"].to_numpy()
        phase = np.round((part.index - origin) / step).astype(np.int64) % period_steps
        cycles[:, j] = _mean_cycle(part["seasonal"].to_numpy(), phase, period_steps)
    amplitude = np.ptp(cycles, axis=0)  # NaN for series not decomposed
    dims = ("time_bin", "name")
    ds = xr.Dataset(
        {var: (dims, values, dict(_ATTRS[var])) for var, values in data.items()},
        coords={
            "time_bin": (
                "time_bin",
                np.asarray(grid, dtype="datetime64[ns]"),
                {"standard_name": "time", "long_name": "start of the resampling bin"},
            ),
            "name": ("name", np.array(names, dtype=object)),
            "phase": (
                "phase",
                np.arange(period_steps) * step.to_timedelta64().astype("timedelta64[ns]"),
                {"long_name": f"time within the cycle, counted from {origin.isoformat()}"},
            ),
        },
    )
    ds["seasonal_cycle"] = (("phase", "name"), cycles, dict(_ATTRS["seasonal_cycle"]))
    ds["filled"] = (dims, filled, dict(_ATTRS["filled"]))
    ds["seasonal_amplitude"] = ("name", amplitude, dict(_ATTRS["seasonal_amplitude"]))
    ds.attrs = {
        "comment": (
            "STL (statsmodels) of percent cover averaged per resampling bin, over each "
            "series' longest stretch without a gap longer than max_gap; shorter gaps "
            "interpolated linearly in time"
        ),
        "period": period_length.isoformat(),
        "period_steps": period_steps,
        "resample": step.isoformat(),
        "max_gap": gap.isoformat(),
        "robust": int(bool(robust)),
        "smoothing_window": _smoothing_window(period_steps),
    }
    return ds


def change_table(
    series: xr.DataArray | xr.Dataset,
    *,
    min_size: int | None = None,
    hac_maxlags: int | None = None,
    period: TimeLength = "365D",
    resample: TimeLength = "5D",
    max_gap: TimeLength | None = None,
) -> pd.DataFrame:
    """Change-point test, best single break and seasonal amplitude of every cover series.

    Parameters
    ----------
    series : xarray.DataArray or xarray.Dataset
        Cover ``(time, cluster)`` or ``(time, class)``, or a Dataset of such arrays, with a
        datetime64 ``time`` coordinate; a ``frame`` coordinate gives ``break_frame``
        (positions otherwise). Frames with NaN cover are left out.
    min_size : int, optional
        Fewest frames on each side of the break; ``max(3, ceil(0.05 n))`` by default.
    hac_maxlags : int, optional
        Lags of the long-run variance of ``cusum_p_value_hac``; by default
        ``floor(4 (n / 100) ** (2/9))``, as the HAC columns of :func:`sediment_xr.fit_trends`.
    period, resample, max_gap
        Of the seasonal decomposition, see :func:`seasonal_decomposition`.

    Returns
    -------
    pandas.DataFrame
        One row per series (the rows of :func:`sediment_xr.fit_trends`): ``name`` then
        :data:`CHANGE_COLUMNS`:

        - ``cusum_stat``, ``cusum_p_value``: OLS-residual CUSUM test of stability of
          cover ~ days (statsmodels ``breaks_cusumolsresid``, ``ddof=2``). Small p: the
          line does not describe the whole series (a shift, or a change of slope).
        - ``cusum_p_value_hac``: the same statistic scaled by a Newey-West long-run variance
          instead of the plain variance, for autocorrelated series (see Notes); never
          smaller than ``cusum_p_value``. The report marks a break where it is below 5 %.
        - ``break_time`` (datetime64, NaT where none), ``break_frame``: time and frame of
          the first frame after the best mean-shift split.
        - ``cover_before``, ``cover_after``: mean cover before and after the split
          (percent); ``shift``: after minus before (percentage points).
        - ``seasonal_amplitude``: maximum minus minimum of the STL seasonal component
          (percentage points), NaN when the series covers fewer than two periods.

        Change-point columns are NaN (NaT) for series with fewer than :data:`MIN_FRAMES`
        frames with cover, fewer than ``2 * min_size``, or constant cover; the CUSUM columns
        also for an exact line (no residual to test).

    Notes
    -----
    Computes: loads the (small) cover series.

    *The split is a location, not evidence.* The split minimises the squared error of two
    segment means over every split with ``min_size`` frames each side, so every series has
    one: on a smooth trend it falls near the middle and ``shift`` measures the trend, not a
    step. Read ``break_time`` and ``shift`` as a break only where the CUSUM p-value is
    small. With a strong trend as well as a step, the split is pulled towards the middle.
    The CUSUM test asks whether one line describes the whole series, so a seasonal cycle
    (or any curvature) also gives a small p-value, and the split then falls between high
    and low season: where ``seasonal_amplitude`` is comparable to ``shift``, look at the
    decomposition (:func:`seasonal_decomposition`) before calling it a break.

    *The CUSUM p-values.* ``cusum_p_value`` uses the Brownian-bridge limit and uncorrelated
    errors. With the time trend as a regressor that limit makes the test conservative
    (simulated: no rejection at the 5 % level in 300 trend-plus-white-noise series each of
    60, 120, 400 and 500 frames): a small p-value is strong evidence, a large one only weak
    evidence of stability. Positively autocorrelated cover (Durbin-Watson well below 2)
    makes it far too small (simulated AR(1), phi = 0.8: 20 %, 47 % and 73 % of stable
    series of 60, 120 and 400 frames rejected at 5 %). ``cusum_p_value_hac`` divides by the
    long-run variance of the residuals of the line plus the located shift (Bartlett kernel,
    ``hac_maxlags`` lags) instead: in a simulation of 200 series each (AR(1), phi = 0.8,
    on a 5 percentage-point trend) it rejects 9 %, 6 % and 4 % of stable series of 60, 120
    and 400 frames, and still finds a step as large as the noise's long-run standard
    deviation in 47 %, 59 % and 98 % of series (the plain p-value: 63 %, 94 %, 100 %).
    Prefer it when ``durbin_watson`` is low. Where the long-run variance comes out below
    the plain variance (negative autocorrelation, or the noise of a few frames: 10 frames of
    a smooth trend gave 0.001 against a plain 0.75), the plain variance is kept, so this
    p-value is never the smaller of the two.
    """
    if min_size is not None:
        check_int(min_size, "min_size", low=1, example=5)
    if hac_maxlags is not None:
        check_int(hac_maxlags, "hac_maxlags", low=0, example=4)
    _seasonal_options(period, resample, max_gap)  # checked before any computing
    items = list(iter_series(series))
    rows = [
        {"name": name} | _change_row(times, frames, y, min_size=min_size, hac_maxlags=hac_maxlags)
        for name, times, frames, y in items
    ]
    table = pd.DataFrame(rows, columns=["name", *CHANGE_COLUMNS])
    table["break_time"] = pd.to_datetime(table["break_time"]).astype("datetime64[ns]")
    for column in CHANGE_COLUMNS:
        if column != "break_time":
            table[column] = table[column].astype(np.float64)
    decomposition = seasonal_decomposition(
        series, period=period, resample=resample, max_gap=max_gap
    )
    if decomposition is not None:
        table["seasonal_amplitude"] = decomposition["seasonal_amplitude"].to_numpy()
    return table
