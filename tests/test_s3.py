"""Output on a real S3-compatible server (moto) on 127.0.0.1 equals a local run."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import moto_s3

from sediment_xr import pipeline
from sediment_xr.config import (
    ClusterConfig,
    Config,
    CropConfig,
    IngestConfig,
    PreprocessConfig,
    ReportConfig,
)
from sediment_xr.store import Output
from sediment_xr.testing import write_video


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 (free port) with an empty bucket; stopped afterwards."""
    with moto_s3("sediment-xr-test") as (fs, options):
        yield fs, options


def crop_rows(series) -> int:
    return int(series.attrs["crop_rows"])


def test_output_on_s3_equals_a_local_run(s3, small_series, tmp_path):
    fs, options = s3
    video = write_video(small_series["frames"], tmp_path / "series.mp4", crf=20)
    local = Config(
        input=str(video),
        output=str(tmp_path / "local"),
        ingest=IngestConfig(
            start_time="2022-06-01", frame_interval="17h", chunk_frames=4, store_frames=True
        ),
        preprocess=PreprocessConfig(
            crop=CropConfig(rows=(-small_series.attrs["crop_rows"], None))
        ),
        cluster=ClusterConfig(n_clusters=4),
        classes={"sediment": (0, 1, 2), "mat": (3,)},
        report=ReportConfig(html=False, video=True),
    )
    remote = dataclasses.replace(
        local, output="s3://sediment-xr-test/run", storage_options=options
    )
    a = pipeline.run(local, progress=False)
    b = pipeline.run(remote, progress=False)
    # CSVs read back from the bucket equal the local files
    for name in ("cover.csv", "trend.csv", "clusters.json", "model.json"):
        assert fs.cat(f"sediment-xr-test/run/{name}") == (tmp_path / "local" / name).read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_csv(io.BytesIO(fs.cat("sediment-xr-test/run/cover.csv"))), a.cover
    )
    pd.testing.assert_frame_equal(a.trend, b.trend)
    # the store read back from the bucket equals the local store
    cube = xr.open_zarr(
        "s3://sediment-xr-test/run/cube.zarr",
        storage_options=options,
        zarr_format=3,
        consolidated=False,
    )
    ref = Output(local.output).open_cube()
    for var in ("frames", "labels", "cover"):
        np.testing.assert_array_equal(cube[var].values, ref[var].values)
    assert cube.attrs["sediment_xr_complete"] is True
    assert fs.exists("sediment-xr-test/run/segmented.mp4")
    # rerun against the bucket: everything is found, nothing recomputed
    assert pipeline.run(remote, progress=False).computed == ()


@pytest.mark.distributed
def test_input_and_output_on_s3_from_aws_environment_on_worker_processes(
    s3, small_series, tmp_path, monkeypatch
):
    """Video in the bucket, output in the bucket, credentials and endpoint only from the usual
    AWS environment variables, computed by two worker processes; the local copy of the video
    is deleted first, so no task can lean on a path of the client's disk."""
    from distributed import Client, LocalCluster

    fs, options = s3
    video = write_video(small_series["frames"], tmp_path / "series.mp4", crf=20)
    local = Config(
        input=str(video),
        output=str(tmp_path / "local"),
        ingest=IngestConfig(start_time="2022-06-01", frame_interval="17h", chunk_frames=4),
        preprocess=PreprocessConfig(
            crop=CropConfig(rows=(-small_series.attrs["crop_rows"], None))
        ),
        cluster=ClusterConfig(n_clusters=4),
        classes={"sediment": (0, 1, 2), "mat": (3,)},
        report=ReportConfig(html=False, video=False),
    )
    expected = pipeline.run(local, progress=False)
    fs.put(str(video), "sediment-xr-test/in/series.mp4")
    video.unlink()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["client_kwargs"]["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    remote = dataclasses.replace(
        local,
        input="s3://sediment-xr-test/in/series.mp4",
        output="s3://sediment-xr-test/env-run",
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster),
    ):
        result = pipeline.run(remote, progress=False)
    pd.testing.assert_frame_equal(result.cover, expected.cover)
    assert (
        fs.cat("sediment-xr-test/env-run/cover.csv")
        == (tmp_path / "local" / "cover.csv").read_bytes()
    )
    cube = Output(remote.output).open_cube()
    ref = Output(local.output).open_cube()
    assert "frames" not in cube  # not stored (the default)
    for var in ("labels", "cover", "frame_status"):
        np.testing.assert_array_equal(cube[var].values, ref[var].values)


def test_input_and_output_each_with_their_own_storage_options(s3, small_series, tmp_path):
    """The shared storage_options point nowhere; each side's own options are used instead,
    the output's are kept by RunResult.open(), and no secret is written."""
    fs, options = s3
    video = write_video(small_series["frames"], tmp_path / "series.mp4", crf=20)
    fs.put(str(video), "sediment-xr-test/public/series.mp4")
    writer = {**options, "secret": "writer-s3cr3t-not-to-be-written"}
    config = Config(
        input="s3://sediment-xr-test/public/series.mp4",
        output="s3://sediment-xr-test/split-run",
        storage_options={"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}},  # closed
        input_storage_options=options,
        output_storage_options=writer,
        ingest=IngestConfig(start_time="2022-06-01", frame_interval="17h", chunk_frames=4),
        report=ReportConfig(html=False, video=False),
    )
    result = pipeline.run(config, progress=False)
    assert result.storage_options == writer
    cube = result.open()  # through the output's options
    assert cube.sizes["time"] == small_series.sizes["time"]
    np.testing.assert_allclose(
        cube["cover"].values, result.cover.filter(like="cluster_").values, atol=1e-6
    )
    for path in fs.find("sediment-xr-test/split-run"):
        assert b"writer-s3cr3t" not in fs.cat(path), path


def test_one_writer_lock_on_s3(s3):
    import json

    from sediment_xr.exceptions import OutputError
    from sediment_xr.lock import OutputLock

    fs, options = s3
    out = Output("s3://sediment-xr-test/locked", options)
    with OutputLock(out, heartbeat=0) as lock:
        assert json.loads(fs.cat("sediment-xr-test/locked/.sediment_xr/lock"))["token"] == (
            lock.token
        )
        with pytest.raises(OutputError, match="being written by another sediment-xr run"):
            OutputLock(Output(out.url, options), heartbeat=0).acquire()
    assert not fs.exists("sediment-xr-test/locked/.sediment_xr/lock")
    # A lock whose owner on another machine is silent (watched for 0.5 s here) is taken over.
    old = "2026-01-01T00:00:00+00:00"
    stale = {"host": "hub-node-7", "pid": 12, "token": "t", "started": old, "heartbeat": old}
    fs.pipe("sediment-xr-test/locked/.sediment_xr/lock", json.dumps(stale).encode())
    with OutputLock(Output(out.url, options), heartbeat=0, stale_seconds=0.5) as lock:
        assert "heartbeat did not advance" in lock.taken_over
