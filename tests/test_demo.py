"""`sediment-xr demo` end to end, as a user runs it (real entry point, real LocalCluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm


@pytest.mark.slow
def test_demo_runs_and_prints_its_output_path(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "sediment_xr.cli", "demo", "--output", str(out), "--frames", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    results = Path(last)
    assert results == out.resolve() / "results"
    for name in ("cube.zarr", "cover.csv", "trend.csv", "clusters.json", "config.resolved.yaml"):
        assert (results / name).exists(), name
    cover = pd.read_csv(results / "cover.csv")
    truth = pd.read_csv(out / "input" / "truth_16.csv")
    assert len(cover) == 16
    good = (cover["quality"] == "ok").to_numpy()
    assert (cover["mat"] - truth["true_mat_percent"])[good].abs().max() < 2.0
    trend = pd.read_csv(results / "trend.csv").set_index("name")
    assert trend.loc["mat", "slope_per_day"] > 0
    assert trend.loc["mat", "n"] == good.sum()
    for line in ("mat cover trend", "intervals hold the true cover", "injected events caught"):
        assert line in proc.stdout
    names = [c["name"] for c in json.loads((results / "clusters.json").read_text())["clusters"]]
    assert names[0] == "sediment" and names[-1] == "mat"  # named by what their pixels are

    # Done-when (issue 3): trend.csv is what a direct statsmodels OLS on cover.csv gives.
    # cover.csv holds 6 decimals and trend.csv 8 significant digits, hence the tolerances.
    # Trends use the good frames (quality "ok").
    times = pd.to_datetime(cover["time"])
    days = ((times - times.iloc[0]) / pd.Timedelta(days=1)).to_numpy()[good]
    series = [c for c in cover.columns if c not in ("time", "frame", "quality")]
    assert sorted(series) == sorted(trend.index)
    for name in series:
        fit = sm.OLS(cover[name].to_numpy()[good], sm.add_constant(days)).fit()
        row = trend.loc[name]
        np.testing.assert_allclose(row["slope_per_day"], fit.params[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(row["intercept"], fit.params[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row["r2"], fit.rsquared, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(row["se"], fit.bse[1], rtol=1e-3, atol=1e-7)
        hac = sm.OLS(cover[name].to_numpy()[good], sm.add_constant(days)).fit(
            cov_type="HAC", cov_kwds={"maxlags": int(row["hac_maxlags"])}
        )
        assert np.isfinite(row["se_hac"]) and row["se_hac"] > 0
        np.testing.assert_allclose(row["se_hac"], hac.bse[1], rtol=1e-3, atol=1e-7)

    # Done-when (issue 3): segmented.mp4 decodes to one frame per row of cover.csv.
    with av.open(str(results / "segmented.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = sum(1 for _ in container.decode(stream))
    assert decoded == len(cover) == 16
    assert (results / "report.html").stat().st_size > 0
