"""Percent cover and class merging: known answers, numpy vs dask, properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import assert_identical_except_history, rng_labels
from hypothesis import given, settings
from hypothesis import strategies as st

import sediment_xr as sx
from sediment_xr.cluster import flag_attrs
from sediment_xr.exceptions import ConfigError, InputError
from sediment_xr.testing import raise_if_dask_computes


def labels_da(values: np.ndarray, k: int) -> xr.DataArray:
    time = pd.date_range("2022-01-01", periods=values.shape[0], freq="17h")
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords={"time": time}, attrs=flag_attrs(k)
    )


def test_cover_known_answer():
    # frame 0: 6 of cluster 0, 2 of cluster 1; frame 1: half no-data, rest cluster 2
    values = np.array(
        [
            [[0, 0, 0, 0], [0, 0, 1, 1]],
            [[-1, -1, -1, -1], [2, 2, 2, 2]],
        ],
        dtype=np.int8,
    )
    cov = sx.cover(labels_da(values, 3))
    np.testing.assert_allclose(cov.values, [[75.0, 25.0, 0.0], [0.0, 0.0, 100.0]])
    assert cov.dims == ("time", "cluster")
    assert cov.attrs["units"] == "percent"
    assert "flag_values" not in cov.attrs  # attrs are built fresh, not leaked from labels
    np.testing.assert_array_equal(cov.cluster.values, [0, 1, 2])


def test_frame_without_analysed_pixels_is_nan():
    values = np.full((1, 2, 2), -1, dtype=np.int8)
    assert np.isnan(sx.cover(labels_da(values, 2)).values).all()


def test_cover_numpy_equals_dask_and_is_lazy():
    lab = labels_da(rng_labels((7, 20, 30), 4), 4)
    with raise_if_dask_computes():
        lazy = sx.cover(lab.chunk({"time": 3}))
    assert lazy.chunks == ((3, 3, 1), (4,))
    assert_identical_except_history(lazy.compute(), sx.cover(lab))


@settings(max_examples=25, deadline=None)
@given(
    n_time=st.integers(1, 9),
    k=st.integers(2, 6),
    chunk=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_any_time_chunking_gives_the_same_cover_and_rows_sum_to_100(n_time, k, chunk, seed):
    lab = labels_da(rng_labels((n_time, 6, 5), k, seed=seed, no_data_fraction=0.3), k)
    expected = sx.cover(lab)
    got = sx.cover(lab.chunk({"time": chunk})).compute()
    assert_identical_except_history(got, expected)
    sums = expected.sum("cluster", skipna=False).values
    valid = np.isfinite(sums)
    np.testing.assert_allclose(sums[valid], 100.0)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 8), seed=st.integers(0, 2**16), data=st.data())
def test_merging_keeps_totals(k, seed, data):
    lab = labels_da(rng_labels((3, 8, 8), k, seed=seed, no_data_fraction=0.0), k)
    cov = sx.cover(lab)
    names = data.draw(st.lists(st.sampled_from(["bio", "bg", "clam"]), min_size=k, max_size=k))
    classes = sx.classes_from_names(names)
    merged = sx.merge_classes(cov, classes)
    np.testing.assert_allclose(merged.sum("class").values, 100.0)
    for name, ids in classes.items():
        np.testing.assert_allclose(
            merged.sel({"class": name}), cov.isel(cluster=ids).sum("cluster")
        )


def test_merge_classes_lesson_example():
    cov = xr.DataArray(
        [[43.0, 33.0, 16.0, 8.0]], dims=("time", "cluster"), coords={"cluster": range(4)}
    )
    merged = sx.merge_classes(cov, {"bio": [2, 3], "bg": [0, 1]})
    assert list(merged["class"].values) == ["bio", "bg"]
    np.testing.assert_allclose(merged.values, [[24.0, 76.0]])
    assert merged.attrs["units"] == "percent"


def test_classes_from_names_merges_equal_names():
    assert sx.classes_from_names(["bg", "bio", "bio", "bg"]) == {"bg": [0, 3], "bio": [1, 2]}
    with pytest.raises(ConfigError, match="cluster 1 needs a name"):
        sx.classes_from_names(["bg", " "])


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"bio": [4]}, "there are 4 clusters"),
        ({"bio": [1], "bg": [1]}, "cluster 1 is in two classes"),
        ({"bio": "1"}, "needs a list of cluster ids"),
        ({"bio": [1.5]}, "whole-number cluster ids"),
        ({}, "needs a mapping"),
    ],
)
def test_bad_classes(classes, message):
    cov = xr.DataArray(np.full((1, 4), 25.0), dims=("time", "cluster"))
    with pytest.raises(ConfigError, match=message):
        sx.merge_classes(cov, classes)


def test_cover_needs_integer_labels():
    with pytest.raises(InputError, match="integer labels"):
        sx.cover(xr.DataArray(np.zeros((1, 2, 2)), dims=("time", "y", "x")), n_clusters=2)
    with pytest.raises(InputError, match="flag_values"):
        sx.cover(xr.DataArray(np.zeros((1, 2, 2), np.int8), dims=("time", "y", "x")))


@pytest.mark.parametrize("name", ["time", "frame", "cluster_0", "cluster_12"])
def test_class_names_that_clash_with_cover_csv_columns_are_refused(name):
    with pytest.raises(
        sx.ConfigError, match=rf"names other than the columns of cover.csv .*'{name}'"
    ):
        sx.merge_classes(
            xr.DataArray(np.full((2, 3), 100 / 3), dims=("time", "cluster")), {name: [0]}
        )
