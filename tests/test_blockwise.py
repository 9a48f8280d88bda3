"""Per-chunk kernels read their blocks in place: no copy of a window of frames per kernel."""

from __future__ import annotations

import dask
import dask.array.core
import numpy as np
import pytest
import xarray as xr

import sediment_xr as sx
from sediment_xr._blockwise import apply_per_chunk
from sediment_xr.quality import frame_measures
from sediment_xr.testing import realistic_series
from sediment_xr.uncertainty import boundary_pixels


@pytest.fixture
def copies(monkeypatch):
    """Bytes that dask's ``concatenate3`` copied, by shape, while the fixture is used."""
    seen: dict[tuple[int, ...], int] = {}
    original = dask.array.core.concatenate3

    def counting(arrays):
        out = original(arrays)
        seen[out.shape] = seen.get(out.shape, 0) + out.nbytes
        return out

    monkeypatch.setattr(dask.array.core, "concatenate3", counting)
    return seen


def test_kernels_of_a_run_copy_no_frames(copies):
    """Weakness: ``apply_ufunc(dask="parallelized")`` copied every input block (a window of
    frames per kernel, a 32 MiB colour table per chunk): about 5 % of a worker's time."""
    scene = realistic_series(12, size=160, seed=2)
    window = sx.crop(scene["frames"].chunk({"time": 4}), rows=[-64, None])
    light = sx.fit_illumination(window)
    features = sx.preprocess(window, illumination=light)
    sample = sx.sample_pixels(features, sample_size=5_000)
    model = sx.fit_kmeans(sample, n_clusters=4, illumination=light)
    copies.clear()  # the fit's own sample is gathered by design
    labels = sx.label(features, model, median_filter=3)
    parts = (labels, sx.cover(labels), boundary_pixels(features, model))
    parts += (frame_measures(window, light),)
    kept = dask.persist(*parts, scheduler="synchronous")  # chunks, not assembled
    big = {shape: n for shape, n in copies.items() if n > 16 * 1024}
    assert not big, big
    computed = [part.values for part in kept]
    # and the same values as the kernels on numpy frames
    eager = sx.preprocess(window.compute(), illumination=light)
    np.testing.assert_array_equal(eager.values, features.values)
    np.testing.assert_array_equal(sx.label(eager, model, median_filter=3).values, computed[0])


def test_apply_per_chunk_is_apply_ufunc_on_numpy_and_dask():
    """New core dimensions, a table without time, time-only arguments: one task per chunk."""
    rng = np.random.default_rng(0)
    frames = xr.DataArray(
        rng.integers(0, 255, (6, 4, 5, 3), np.uint8), dims=("time", "y", "x", "c")
    )
    table = xr.DataArray(np.arange(256, dtype=np.int64), dims="color")
    times = xr.DataArray(np.arange(6), dims="time")

    def kernel(block, t, lut):
        return lut[block].sum(axis=(1, 2)) + t[:, None]

    def apply(f, t):
        return apply_per_chunk(
            kernel,
            f,
            t,
            table,
            input_core_dims=[["y", "x", "c"], [], ["color"]],
            output_core_dims=["c"],
            dtype=np.int64,
        )

    eager = apply(frames, times)
    lazy = apply(frames.chunk({"time": 4}), times.chunk({"time": 4}))
    assert lazy.chunks == ((4, 2), (3,))
    assert len(lazy.data.__dask_graph__().layers) >= 1
    xr.testing.assert_identical(lazy.compute(), eager)
    np.testing.assert_array_equal(eager.values, kernel(frames.values, times.values, table.values))
