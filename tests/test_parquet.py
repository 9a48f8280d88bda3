"""cover.parquet: the cover of every run in long form, read as one Dask DataFrame."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.config import ClusterConfig, load_config

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The bundled SHR frames run twice: the lesson's 4 clusters, and 3 clusters."""
    root = tmp_path_factory.mktemp("runs")
    base = load_config(CONFIGS / "shr_frames.yaml", [f"output={root / 'shr_k4'}"])
    first = dataclasses.replace(base, name="shr_k4")
    second = dataclasses.replace(
        base,
        output=str(root / "shr_k3"),
        name="shr_k3",
        cluster=ClusterConfig(n_clusters=3),
        classes={"bg": (0, 1), "bio": (2,)},
    )
    for config in (first, second):
        pipeline.run(config, progress=False)
    return first, second


def test_read_parquet_of_two_runs_tells_them_apart(two_runs):
    """Done-when: both runs' rows, apart by run; each run's class cover equals its cover.csv."""
    paths = [str(Path(c.output) / "cover.parquet") for c in two_runs]
    table = dd.read_parquet(paths)
    assert list(table.columns) == ["run", "time", "frame", "kind", "name", "cover", "quality"]
    rows = table.compute()
    assert sorted(rows["run"].unique()) == ["shr_k3", "shr_k4"]
    for config in two_runs:
        csv = pd.read_csv(Path(config.output) / "cover.csv", parse_dates=["time"])
        mine = rows[(rows["run"] == config.name) & (rows["kind"] == "class")]
        for name in config.classes:
            series = mine[mine["name"] == name].sort_values("time")
            np.testing.assert_array_equal(series["time"].to_numpy(), csv["time"].to_numpy())
            np.testing.assert_allclose(series["cover"], csv[name], atol=1e-4)
        clusters = rows[(rows["run"] == config.name) & (rows["kind"] == "cluster")]
        assert clusters["name"].nunique() == config.cluster.n_clusters
        assert len(mine) == 4 * len(config.classes)


def test_open_cover_takes_output_folders_and_globs(two_runs):
    first, second = two_runs
    by_folder = sx.open_cover([first.output, second.output])
    assert isinstance(by_folder, dd.DataFrame)
    root = Path(first.output).parent
    by_glob = sx.open_cover(str(root / "shr_k*" / "cover.parquet")).compute()
    pd.testing.assert_frame_equal(
        by_folder.compute().sort_values(["run", "kind", "name", "time"], ignore_index=True),
        by_glob.sort_values(["run", "kind", "name", "time"], ignore_index=True),
    )
    mean = by_folder[by_folder["kind"] == "class"].groupby(["run", "name"])["cover"].mean()
    totals = mean.compute().groupby(level="run").sum()
    np.testing.assert_allclose(totals.to_numpy(), 100.0)  # the classes cover every pixel


def test_the_run_is_named_after_the_output_folder_by_default(tmp_path):
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={tmp_path / 'camera_a'}"])
    assert config.name is None and config.run_name == "camera_a"
    pipeline.run(config, progress=False)
    rows = pd.read_parquet(tmp_path / "camera_a" / "cover.parquet")
    assert set(rows["run"]) == {"camera_a"}
