"""Pixel sample, MiniBatch KMeans via dask-ml, the model file, labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import as_dask, assert_identical_except_history
from sklearn.cluster import KMeans

import sediment_xr as sx
from sediment_xr._kernels import label_frames, nearest
from sediment_xr.cluster import SAMPLE_WINDOW, sample_positions
from sediment_xr.exceptions import ConfigError, InputError, ModelError
from sediment_xr.frames import FRAME_UNDECODABLE
from sediment_xr.model import ClusterModel
from sediment_xr.testing import raise_if_dask_computes


def test_sample_is_spread_and_independent_of_chunking(shr_features):
    a = sx.sample_pixels(shr_features, sample_size=1000, random_state=3)
    b = sx.sample_pixels(as_dask(shr_features, 1), sample_size=1000, random_state=3)
    c = sx.sample_pixels(as_dask(shr_features, 3), sample_size=1000, random_state=3)
    assert a.shape == (1000, 3)
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    d = sx.sample_pixels(shr_features, sample_size=1000, random_state=4)
    assert not np.array_equal(a, d)


def test_sample_takes_frames_spread_over_the_series(shr_features):
    """Each frame's pixels come from its own seeded draw: the sample is the concatenation."""
    from sediment_xr.cluster import _draw

    values = shr_features.values

    def draws(frames, count):
        return np.concatenate(
            [_draw(values[[i]], None, np.array([i]), np.array([count]), 0) for i in frames]
        )

    everything = sx.sample_pixels(shr_features, sample_size=1000, random_state=0)
    np.testing.assert_array_equal(everything, draws(range(4), 250))
    # max_frames=2: one window of 2 frames at the middle of the series, 500 pixels each
    two = sx.sample_pixels(shr_features, sample_size=1000, random_state=0, max_frames=2)
    np.testing.assert_array_equal(two, draws((2, 3), 500))


@pytest.mark.parametrize(
    ("n_time", "max_frames", "windows"),
    [
        (10, 240, [(0, 10)]),
        (
            1200,
            240,
            [(64, 96), (256, 288), (416, 448), (576, 608), (768, 800), (928, 960), (1088, 1120)],
        ),
        (100, 40, [(32, 64)]),
        (100, 64, [(0, 32), (64, 96)]),
        (70, 10, [(30, 40)]),
        (33, 32, [(0, 32)]),
    ],
)
def test_sample_positions_are_whole_windows_spread_over_the_series(n_time, max_frames, windows):
    positions = sample_positions(n_time, max_frames)
    expected = np.concatenate([np.arange(a, b) for a, b in windows])
    np.testing.assert_array_equal(positions, expected)
    assert len(positions) <= max(max_frames, min(n_time, SAMPLE_WINDOW))
    assert all(a % min(SAMPLE_WINDOW, max_frames) == 0 for a, _ in windows)


def test_sample_leaves_out_undecodable_frames(shr_features):
    status = np.array([1, 2, 1, 1], np.uint8)
    damaged = shr_features.assign_coords(frame_status=("time", status))
    sample = sx.sample_pixels(damaged, sample_size=1000, random_state=0)
    everything = sx.sample_pixels(shr_features, sample_size=1000, random_state=0)
    assert sample.shape == (750, 3)
    np.testing.assert_array_equal(sample, np.concatenate([everything[:250], everything[500:]]))
    lazy = sx.sample_pixels(as_dask(damaged, 3), sample_size=1000, random_state=0)
    np.testing.assert_array_equal(lazy, sample)


def test_labels_of_undecodable_frames_are_no_data(shr_features, shr_model):
    status = np.array([1, FRAME_UNDECODABLE, 1, 1], np.uint8)
    damaged = shr_features.assign_coords(frame_status=("time", status))
    for features in (damaged, as_dask(damaged, 3)):
        labels = sx.label(features, shr_model)
        assert (labels.isel(time=1) == sx.NO_DATA).all()
        assert (labels.isel(time=[0, 2, 3]) >= 0).all()
        cover = sx.cover(labels)
        assert np.isnan(cover.isel(time=1)).all()
        np.testing.assert_allclose(cover.isel(time=[0, 2, 3]).sum("cluster"), 100.0)


def test_minibatch_cover_within_1pp_of_full_kmeans(shr_features):
    """Done-when: cover from the tuned MiniBatch fit is within 1 pp of KMeans(n_init=10)."""
    sample = sx.sample_pixels(shr_features, sample_size=200_000, random_state=0)
    model = sx.fit_kmeans(sample, n_clusters=4, random_state=0)
    full = KMeans(n_clusters=4, n_init=10, random_state=0).fit(sample.astype(np.float64))
    pixels = shr_features.values.reshape(-1, 3).astype(np.float64)

    def cover_by_brightness(centers):
        idx = nearest(pixels, centers)[0]
        share = np.bincount(idx, minlength=4) / idx.size * 100
        return share[np.argsort(centers.sum(axis=1))]

    ours = cover_by_brightness(model.centers_array)
    reference = cover_by_brightness(full.cluster_centers_)
    assert np.abs(ours - reference).max() < 1.0, (ours, reference)
    # and sklearn's default MiniBatchKMeans is what we had to tune away from (documented)
    assert model.n_epochs > 1


def test_lesson_shares_on_the_four_shr_frames(shr_model, shr_features):
    """Done-when: shares sorted by brightness near the lesson's ~43/33/16/7 %, bio ~23 %."""
    cover = sx.cover(sx.label(shr_features, shr_model)).mean("time").values
    darkest_first = cover  # ids are sorted by brightness, darkest first
    np.testing.assert_allclose(darkest_first, [43, 33, 16, 7], atol=3.0)
    assert abs(darkest_first[2:].sum() - 23) < 3.0


def test_clusters_are_numbered_darkest_first(shr_model):
    luma = shr_model.center_rgb @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) > 0)


def test_fit_is_reproducible(shr_features):
    sample = sx.sample_pixels(shr_features, sample_size=20_000, random_state=5)
    a = sx.fit_kmeans(sample, n_clusters=3, random_state=5)
    b = sx.fit_kmeans(sample, n_clusters=3, random_state=5)
    assert a == b


def test_labels_equal_sklearn_predict(shr_features, shr_model):
    """Done-when: labels equal scikit-learn's predict for the same centres and features."""
    km = KMeans(n_clusters=4, n_init=1, max_iter=1, init=shr_model.centers_array)
    km.fit(shr_model.centers_array)  # fitted object; centres set exactly below
    km.cluster_centers_ = shr_model.centers_array.copy()
    features = shr_features.values
    expected = km.predict(features.reshape(-1, 3).astype(np.float64)).reshape(features.shape[:3])
    ours = sx.label(shr_features, shr_model)
    assert ours.dtype == np.int8
    np.testing.assert_array_equal(ours.values, expected)


def test_label_numpy_equals_dask_and_is_lazy(shr_features, shr_model):
    lazy_in = as_dask(shr_features, 3)
    with raise_if_dask_computes():
        lazy = sx.label(lazy_in, shr_model)
    assert lazy.chunks[0] == (3, 1)
    assert_identical_except_history(lazy.compute(), sx.label(shr_features, shr_model))


@pytest.mark.parametrize("lazy", [False, True])
def test_labels_through_the_lookup_table_equal_the_loop(
    shr_features, shr_model, monkeypatch, lazy
):
    """Large inputs are labelled through a table of the nearest centre of every colour."""
    from sediment_xr import _kernels

    damaged = shr_features.assign_coords(frame_status=("time", np.array([1, 2, 1, 1], np.uint8)))
    features = as_dask(damaged, 3) if lazy else damaged
    loop = sx.label(features, shr_model)
    monkeypatch.setattr(_kernels, "LUT_MIN_PIXELS", 0)
    with raise_if_dask_computes():
        table = sx.label(features, shr_model)
    if lazy:
        assert any("build_lut" in str(key) for key in dict(table.data.dask))
    np.testing.assert_array_equal(table.values, loop.values)
    assert (table.isel(time=1) == sx.NO_DATA).all()


def test_labels_are_a_cf_flag_variable(shr_features, shr_model):
    labels = sx.label(shr_features.isel(time=[0]), shr_model)
    assert labels.attrs["flag_values"] == [-1, 0, 1, 2, 3]
    assert labels.attrs["flag_meanings"] == "no_data cluster_0 cluster_1 cluster_2 cluster_3"
    assert labels.dims == ("time", "y", "x")


def test_label_kernel_known_answer():
    centers = np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 100.0], [250.0, 0.0, 0.0]])
    px = np.array([[[[1, 2, 3], [60, 60, 60], [200, 10, 0], [49, 50, 50]]]], dtype=np.uint8)
    np.testing.assert_array_equal(label_frames(px, centers), [[[0, 1, 2, 0]]])
    from sediment_xr._kernels import build_lut

    np.testing.assert_array_equal(label_frames(px, centers, build_lut(centers)), [[[0, 1, 2, 0]]])


def test_model_json_round_trip_and_tamper_detection(shr_model, tmp_path):
    path = tmp_path / "model.json"
    shr_model.save(path)
    again = ClusterModel.load(path)
    assert again == shr_model
    assert "ClusterModel n_clusters=4" in repr(again)
    data = json.loads(path.read_text())
    data["centers"][0][0] += 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="modified after it was written"):
        ClusterModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ClusterModel.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelError, match="not a sediment_xr cluster model"):
        ClusterModel.load(path)


def test_model_applies_to_another_video_of_the_same_camera(shr_model, small_series):
    """A model saved from one series labels another (same preprocessing)."""
    other = sx.preprocess(small_series.frames, rows=[-100, None])
    labels = sx.label(other, ClusterModel.from_json(shr_model.to_json()))
    cover = sx.cover(labels)
    np.testing.assert_allclose(cover.sum("cluster"), 100.0)


@pytest.mark.parametrize("k", [1, 0, -2, 101, 2.5, "4", True])
def test_bad_n_clusters(k):
    sample = np.random.default_rng(0).integers(0, 255, (500, 3)).astype(np.uint8)
    with pytest.raises(ConfigError, match="n_clusters needs a whole number"):
        sx.fit_kmeans(sample, n_clusters=k)


def test_more_clusters_than_colours():
    sample = np.repeat(np.array([[0, 0, 0], [255, 255, 255]], np.uint8), 100, axis=0)
    with pytest.raises(InputError, match="only 2"):
        sx.fit_kmeans(sample, n_clusters=4)


def test_label_checks_colour_space(shr_features, shr_model):
    other = sx.to_color_space(sx.crop(shr_features.isel(time=[0])), "lab")
    with pytest.raises(ModelError, match="fitted in 'bgr' space"):
        sx.label(other, shr_model)


def test_model_validation():
    with pytest.raises(ModelError, match="finite centres within 0-255"):
        ClusterModel(centers=((0, 0, 0), (300, 0, 0)), color_space="bgr")
    with pytest.raises(ModelError, match="2 to 100 centres"):
        ClusterModel(centers=((0, 0, 0),), color_space="bgr")


def test_accessor_chains_the_plain_functions(shr_frames, shr_model):
    via_accessor = (
        as_dask(shr_frames)
        .sediment.preprocess(rows=[-400, None], color_space="bgr")
        .sediment.label(shr_model)
        .sediment.cover()
    )
    plain = sx.cover(sx.label(sx.preprocess(shr_frames, rows=[-400, None]), shr_model))
    np.testing.assert_array_equal(via_accessor.values, plain.values)
    merged = via_accessor.sediment.merge_classes({"bio": [2, 3]})
    np.testing.assert_allclose(
        merged.sel({"class": "bio"}), plain.isel(cluster=[2, 3]).sum("cluster")
    )


def test_nearest_centre_memory_grows_with_the_pixels_not_the_centres():
    """Weakness (issue 14): the nearest centre of a sample was found through an n x k x 3
    float64 array of differences in the client (1 million pixels and 12 centres: 288 MB).
    Now the labels and distances are all it allocates (16 bytes per pixel), and the labels
    are those of the full distance matrix."""
    import tracemalloc

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (1_000_000, 3), dtype=np.uint8)
    centers = rng.uniform(0, 255, (12, 3))
    nearest(pixels[:10], centers)  # compiled before measuring
    tracemalloc.start()
    try:
        labels, distances = nearest(pixels, centers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * 16 * len(pixels), peak  # old: 24 * 12 bytes per pixel
    part = pixels[:20_000].astype(np.float64)
    squared = ((part[:, None, :] - centers[None]) ** 2).sum(axis=-1)
    np.testing.assert_array_equal(labels[:20_000], squared.argmin(axis=1))
    np.testing.assert_allclose(distances[:20_000], squared.min(axis=1))
