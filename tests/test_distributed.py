"""A real multi-process dask cluster on 127.0.0.1 gives the same labels as in-process."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import cloudpickle
import dask
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.config import ClusterConfig, Config, CropConfig, IngestConfig, PreprocessConfig
from sediment_xr.scheduler import compute_tasks
from sediment_xr.store import Output
from sediment_xr.testing import write_video

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def video(small_series, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "series.mp4"
    return write_video(small_series["frames"], path, codec="libx264", crf=20)


def crop_rows(series) -> int:
    return int(series.attrs["crop_rows"])


def _fails_once(marker: str) -> int:
    """A task that fails on its first attempt (a transient error), then succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise OSError("transient: the first attempt fails")
    return 1


def _retries_rerun_a_failed_task(tmp_path) -> None:
    """compute_tasks' retries run a task that raised again, on the worker processes."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    try:
        task = dask.delayed(_fails_once)(str(tmp_path / "retried"), dask_key_name="retried")
        assert compute_tasks([task], desc="t", progress=False, retries=1) == [1]
        task = dask.delayed(_fails_once)(str(tmp_path / "not-retried"), dask_key_name="not")
        with pytest.raises(OSError, match="transient"):
            compute_tasks([task], desc="t", progress=False, retries=0)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_labels_on_two_worker_processes_equal_in_process(video, small_series, tmp_path, caplog):
    """Done-when: labels on a LocalCluster with 2 worker processes equal in-process ones."""
    config = Config(
        input=str(video),
        output=str(tmp_path / "local"),
        ingest=IngestConfig(start_time="2022-06-01", frame_interval="17h", chunk_frames=4),
        preprocess=PreprocessConfig(
            crop=CropConfig(rows=(-small_series.attrs["crop_rows"], None))
        ),
        cluster=ClusterConfig(n_clusters=4),
        classes={"sediment": (0, 1, 2), "mat": (3,)},
    )
    in_process = pipeline.run(config, progress=False)
    remote = dataclasses.replace(  # and with the frames stored: the same labels
        config,
        output=str(tmp_path / "cluster"),
        ingest=dataclasses.replace(config.ingest, store_frames=True),
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
        caplog.at_level(logging.INFO, logger="sediment_xr"),
    ):
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        assert len(pids) == 2
        on_cluster = pipeline.run(remote, progress=True)
        _retries_rerun_a_failed_task(tmp_path)
    # The notebook's own cluster is named in the log, with its dashboard.
    assert f"dashboard {client.dashboard_link}" in caplog.text
    assert in_process.model == on_cluster.model
    a = Output(config.output).open_cube()
    b = Output(remote.output).open_cube()
    np.testing.assert_array_equal(a["labels"].values, b["labels"].values)
    window = sx.crop(pipeline.check(config), rows=config.preprocess.crop.rows)
    np.testing.assert_array_equal(b["frames"].values, window.values)
    np.testing.assert_array_equal(a["frame_status"].values, b["frame_status"].values)
    pd.testing.assert_frame_equal(in_process.cover, on_cluster.cover)
