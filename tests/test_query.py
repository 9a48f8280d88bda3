"""The README's xarray recipes for asking questions of the stored cover, on a real run.

A 120-frame still series 18 h apart (1 January to 31 March 2022) with mat growing by a
known amount is run through the pipeline; the stored cube is then queried the xarray way
(``sel``, ``resample``, seasons) and checked against the planted truth and against the same
question asked of ``cover.csv`` with pandas.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sediment_xr import pipeline
from sediment_xr.config import ClusterConfig, Config, CropConfig, IngestConfig
from sediment_xr.testing import synthetic_series, write_images


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    series = synthetic_series(
        120,
        size=256,
        start_cover=10.0,
        slope=0.2,
        start_time="2022-01-01T00:00:00",
        frame_interval="18h",
        seed=3,
    )
    write_images(series["frames"], root / "stills")
    defaults = Config(input="x", output="y")
    config = Config(
        input=str(root / "stills"),
        output=str(root / "out"),
        ingest=IngestConfig(chunk_frames=32),
        preprocess=dataclasses.replace(
            defaults.preprocess,
            crop=CropConfig(rows=(-series.attrs["crop_rows"], None)),
            illumination="clahe",  # lesson mode: synthetic_series paints its mat unlit
        ),
        cluster=ClusterConfig(n_clusters=4, median_filter=0),
        classes={"sediment": (0, 1, 2), "mat": (3,)},
    )
    pipeline.run(config, progress=False)
    cube = xr.open_zarr(Path(config.output) / "cube.zarr", zarr_format=3, consolidated=False)
    table = pd.read_csv(Path(config.output) / "cover.csv", parse_dates=["time"], index_col="time")
    truth = series["true_cover"].to_series()
    return cube, table, truth


def test_time_is_real_and_sel_by_dates(stored):
    cube, table, truth = stored
    mat = cube.class_cover.sel({"class": "mat"})
    assert np.issubdtype(mat["time"].dtype, np.datetime64)
    february = mat.sel(time=slice("2022-02-01", "2022-02-28"))
    expected = table.loc["2022-02-01":"2022-02-28", "mat"]
    assert february.sizes["time"] == len(expected) == 37  # 28 days at 18 h
    np.testing.assert_allclose(february.values, expected.to_numpy(), atol=1e-5)
    np.testing.assert_allclose(february.values, truth.loc["2022-02"].to_numpy(), atol=2.0)
    # One month by partial-date string; the nearest frame to a clock time.
    assert mat.sel(time="2022-03").sizes["time"] == len(table.loc["2022-03"])
    nearest = mat.sel(time="2022-01-10T10:00", method="nearest")
    assert pd.Timestamp(nearest["time"].values) == pd.Timestamp("2022-01-10T18:00")  # not 00:00


def test_daily_means_by_resample(stored):
    cube, table, truth = stored
    daily = cube.class_cover.sel({"class": "mat"}).resample(time="1D").mean()
    expected = table["mat"].resample("1D").mean()
    assert daily.sizes["time"] == len(expected) == 90  # 1 January to 31 March
    np.testing.assert_allclose(daily.values, expected.to_numpy(), atol=1e-5)
    np.testing.assert_allclose(daily.values, truth.resample("1D").mean().to_numpy(), atol=2.0)
    # Cluster cover resamples the same way, per cluster, and still sums to 100 %.
    weekly = cube.cover.resample(time="7D").mean()
    np.testing.assert_allclose(weekly.sum("cluster").values, 100.0, atol=1e-3)


def test_cover_of_a_class_over_a_season(stored):
    cube, table, truth = stored
    mat = cube.class_cover.sel({"class": "mat"})
    seasons = mat.groupby("time.season").mean()
    winter = float(seasons.sel(season="DJF"))
    spring = float(mat.sel(time=mat["time"].dt.season == "MAM").mean())
    assert spring == pytest.approx(float(seasons.sel(season="MAM")))
    months = table.index.month
    assert winter == pytest.approx(table.loc[months.isin([12, 1, 2]), "mat"].mean(), abs=1e-5)
    assert spring == pytest.approx(table.loc[months.isin([3, 4, 5]), "mat"].mean(), abs=1e-5)
    true_months = truth.index.month
    assert winter == pytest.approx(truth[true_months.isin([12, 1, 2])].mean(), abs=2.0)
    assert spring == pytest.approx(truth[true_months.isin([3, 4, 5])].mean(), abs=2.0)
    assert spring > winter + 8  # the mat planted to grow 0.2 pp per frame
