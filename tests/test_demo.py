"""`sediment-xr demo` end to end, as a user runs it (real entry point, real LocalCluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


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
    assert (cover["mat"] - truth["true_mat_percent"]).abs().max() < 2.0
    trend = pd.read_csv(results / "trend.csv").set_index("name")
    assert trend.loc["mat", "slope_per_day"] > 0
    assert "mat cover trend" in proc.stdout
    names = [c["name"] for c in json.loads((results / "clusters.json").read_text())["clusters"]]
    assert names == ["sediment", "sediment", "sediment", "mat"]
