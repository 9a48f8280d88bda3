"""Shared fixtures: real SHR frames and synthetic series with known cover."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import xarray as xr

import sediment_xr as sx
from sediment_xr.testing import sample_frames_dir, synthetic_series

LESSON = {"rows": [-400, None], "illumination": "clahe", "color_space": "bgr"}


@pytest.fixture(scope="session")
def shr_frames() -> xr.DataArray:
    """The four bundled real SHR frames, in memory (numpy-backed)."""
    frames = sx.open_images(
        sample_frames_dir(), start_time="2022-01-01", frame_interval="17h", chunk_frames=2
    )
    return frames.load()


@pytest.fixture(scope="session")
def shr_features(shr_frames) -> xr.DataArray:
    """Lesson preprocessing of the SHR frames (numpy)."""
    return sx.preprocess(shr_frames, **LESSON)


@pytest.fixture(scope="session")
def small_series() -> xr.Dataset:
    """A 12-frame 256 x 256 synthetic series with a planted mat trend."""
    return synthetic_series(12, size=256, start_cover=20.0, slope=0.5, seed=1)


@pytest.fixture(scope="session")
def shr_model(shr_features):
    sample = sx.sample_pixels(shr_features, sample_size=100_000, random_state=0)
    return sx.fit_kmeans(sample, n_clusters=4, random_state=0, color_space="bgr")


def as_dask(da: xr.DataArray, chunk: int = 2) -> xr.DataArray:
    return da.chunk({"time": chunk})


def rng_labels(shape, k, seed=0, no_data_fraction=0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=shape).astype(np.int8)
    labels[rng.random(shape) < no_data_fraction] = sx.NO_DATA
    return labels


def assert_identical_except_history(a: xr.DataArray, b: xr.DataArray) -> None:
    """Identical values, coords and attrs; ``history`` lines carry a clock time, so not it."""
    a, b = a.copy(), b.copy()
    for obj in (a, b):
        obj.attrs.pop("history", None)
    xr.testing.assert_identical(a, b)


@contextlib.contextmanager
def moto_s3(bucket: str, **options: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A real S3 API (a moto server) on 127.0.0.1, on a free port, with an empty `bucket`.

    Yields an s3fs filesystem on it and the storage options that reach it (`options` added
    to them); the server is stopped on exit. Skips the test without s3fs.
    """
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # no request log lines on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        reach = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
            **options,
        }
        fs = s3fs.S3FileSystem(**reach)
        fs.mkdir(bucket)
        yield fs, reach
    finally:
        server.stop()
        quiet.setLevel(level)
