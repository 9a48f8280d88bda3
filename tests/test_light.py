"""The realistic planted-truth scene, the light correction, quality flags, intervals, stability.

Known answers come from :func:`sediment_xr.testing.realistic_series`: the true vignetting, the
planted flicker, the injected events and the true masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from conftest import as_dask

import sediment_xr as sx
from sediment_xr._scene import _vignetting
from sediment_xr.cluster import match_centers, refit_stability
from sediment_xr.exceptions import ModelError
from sediment_xr.illumination import Illumination, half_sample_mode
from sediment_xr.quality import FLAGS, flag_frames, frame_measures
from sediment_xr.testing import EVENTS, raise_if_dask_computes, realistic_series
from sediment_xr.uncertainty import boundary_pixels, class_interval, cover_interval

EVENT_FRAMES = {
    "dark": [3],
    "moved": [7],
    "occluded": [11, 19],
    "turbid": [15],
    "overexposed": [23],
}


@pytest.fixture(scope="module")
def scene() -> xr.Dataset:
    """An ageing-lamp scene with one of each event, 256 x 256 (100 analysed rows)."""
    return realistic_series(28, size=256, lamp_ageing=0.3, events=EVENT_FRAMES, seed=11)


@pytest.fixture(scope="module")
def window(scene) -> xr.DataArray:
    return sx.crop(scene["frames"], rows=[-scene.attrs["crop_rows"], None])


@pytest.fixture(scope="module")
def light(window) -> Illumination:
    return sx.fit_illumination(window)


# -- the generator ---------------------------------------------------------------------------
def test_realistic_series_plants_what_it_says(scene):
    rows = scene.attrs["crop_rows"]
    assert scene["frames"].shape == (28, 256, 256, 3) and scene["frames"].dtype == np.uint8
    assert scene["mask"].shape == (28, rows, 256)
    truth = scene["true_cover"].values
    ok = scene["event"].values == "ok"
    # linear from 12 to 30 % on frames the scene does not move (to a pixel's rounding)
    planted = np.linspace(12, 30, 28)
    np.testing.assert_allclose(truth[ok], planted[ok], atol=100 / scene["mask"][0].size)
    for name, frames in EVENT_FRAMES.items():
        assert list(np.flatnonzero(scene["event"].values == name)) == frames
    assert set(EVENT_FRAMES) == set(EVENTS)
    hidden = scene["mask"].values == -1
    assert hidden[11].any() and not hidden[ok].any()  # an occluder hides pixels
    np.testing.assert_allclose(  # mask and true cover agree (hidden pixels: the scene's)
        100 * (scene["mask"].values[ok] == 1).mean(axis=(1, 2)), truth[ok], atol=1e-9
    )
    # same seed, same scene; another seed, another scene
    again = realistic_series(3, size=128, seed=11)
    np.testing.assert_array_equal(again["frames"], realistic_series(3, size=128, seed=11).frames)
    assert not np.array_equal(again["frames"], realistic_series(3, size=128, seed=12).frames)


def test_realistic_series_is_hard(scene):
    """Pale pebbles and vignetted, textured mat: no brightness threshold splits mat off."""
    rows = scene.attrs["crop_rows"]
    frame = scene["frames"].values[0, -rows:].astype(float) @ [0.299, 0.587, 0.114]
    mat = scene["mask"].values[0] == 1
    errors = [((frame >= t) != mat).mean() for t in range(256)]
    assert min(errors) > 0.01  # at least 1 % of the pixels on the wrong side (measured 1.2 %)


def test_realistic_series_bad_arguments():
    with pytest.raises(ValueError, match="unknown event"):
        realistic_series(4, size=64, events={"eclipse": [1]})
    with pytest.raises(ValueError, match="cover must stay"):
        realistic_series(4, size=64, end_cover=120)


# -- the light ------------------------------------------------------------------------------
def test_half_sample_mode_ignores_one_sided_contamination():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 0.01, 700), rng.uniform(0.3, 0.9, 300)])
    assert abs(half_sample_mode(values)) < 0.004  # measured 0.0036
    assert np.median(values) > 0.005  # the median is pulled (measured 0.0056)


def test_field_follows_the_true_vignetting(scene, light):
    rows = scene.attrs["crop_rows"]
    true = _vignetting((256, 256), 0.35)[-rows:]
    ratio = light.field() / (true / true.mean())
    assert ratio.std() < 0.08, ratio.std()


def test_gains_follow_the_lamp(scene, window, light):
    """Corrected frames keep their brightness across flicker and an ageing lamp."""
    corrected = sx.preprocess(window, illumination=light, color_space="rgb").values
    ok = scene["event"].values == "ok"
    sediment = scene["mask"].values == 0
    level = np.array([corrected[t][sediment[t]].mean() for t in np.flatnonzero(ok)])
    raw = np.array([window.values[t][sediment[t]].mean() for t in np.flatnonzero(ok)])
    assert level.std() / level.mean() < 0.02  # the light's changes are gone
    assert raw.std() / raw.mean() > 0.08  # ... and they were there


def test_illumination_round_trips_and_refuses_damage(light):
    back = Illumination.from_dict(json.loads(json.dumps(light.to_dict())))
    assert back == light
    # exactly the arrays it labels with: a resumed run reads its model back from model.json
    np.testing.assert_array_equal(back.reference, light.reference)
    np.testing.assert_array_equal(back.scene, light.scene)
    broken = light.to_dict() | {"reference": [[1.0, 2.0]]}
    with pytest.raises(ModelError, match="illumination is damaged"):
        Illumination.from_dict(broken)


def test_flat_field_numpy_equals_dask_and_is_lazy(window, light):
    eager = sx.preprocess(window, illumination=light)
    with raise_if_dask_computes():
        lazy = sx.preprocess(as_dask(window, 5), illumination=light)
        measures = frame_measures(as_dask(window, 5), light)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(measures.values, frame_measures(window, light).values)
    assert eager.attrs["illumination"] == "flat_field"


def test_wrong_window_for_the_light_is_refused(window, light):
    with pytest.raises(ModelError, match="fitted on a 100 x 256 window"):
        sx.preprocess(window.isel(x=slice(0, 100)), illumination=light).compute()


# -- quality --------------------------------------------------------------------------------
def test_flags_catch_the_injected_events(scene, window, light):
    flags = flag_frames(frame_measures(window, light))
    names = np.asarray(FLAGS, object)[flags.values]
    for event, frames in EVENT_FRAMES.items():
        assert list(names[frames]) == [event] * len(frames), event
    assert (names[scene["event"].values == "ok"] == "ok").all()
    assert flags.attrs["flag_meanings"].split() == list(FLAGS)


def test_flag_thresholds_are_settings(window, light):
    measures = frame_measures(window, light)
    strict = flag_frames(measures, thresholds={"dark": 5.0})  # every frame is "dark"
    assert set(np.asarray(FLAGS, object)[strict.values]) == {"dark"}


# -- intervals and stability ----------------------------------------------------------------
def test_interval_arithmetic(scene, window, light):
    """Intervals contain the cover; a class of every cluster has nothing to leave or join."""
    features = sx.preprocess(window, illumination=light)
    model = sx.fit_kmeans(sx.sample_pixels(features, sample_size=20_000), n_clusters=8)
    labels = sx.label(features, model, median_filter=3)
    cover = sx.cover(labels)
    boundary = boundary_pixels(features, model)
    pixels = labels.sizes["y"] * labels.sizes["x"]
    # the diagonal counts every pixel by its label before the median filter
    np.testing.assert_array_equal(
        np.einsum("tii->ti", boundary.values).sum(axis=1), np.full(len(cover), pixels)
    )
    low, high = cover_interval(cover, boundary, model, pixels)
    assert (low <= cover + 1e-9).all() and (high >= cover - 1e-9).all()
    assert float((high - low).mean()) > 0
    everything = {"all": list(range(8))}
    low_all, high_all = class_interval(
        sx.merge_classes(cover, everything), boundary, model, everything, pixels
    )
    np.testing.assert_allclose(low_all.values, 100.0)
    np.testing.assert_allclose(high_all.values, 100.0)


def test_refits_are_matched_and_measure_stability():
    rng = np.random.default_rng(3)
    centres = np.array([[30, 60, 40], [90, 120, 80], [160, 180, 150], [230, 240, 230]])
    sample = np.concatenate([rng.normal(c, 6, (5000, 3)) for c in centres]).clip(0, 255)
    sample = sample.astype(np.uint8)
    model = sx.fit_kmeans(sample, n_clusters=4)
    stability = refit_stability(sample, model, n_refits=3, refit_size=8000)
    assert stability["n_refits"] == 3
    spread = np.array(stability["cover_spread"])
    assert spread.shape == (4,) and (spread < 1.0).all()  # well separated: stable
    np.testing.assert_allclose(np.array(stability["refit_cover"]).sum(axis=1), 100.0)
    # Hungarian matching undoes a permutation of the centres
    order = np.array([2, 0, 3, 1])
    assert list(match_centers(model.centers_array[order], model.centers_array)) == [1, 3, 0, 2]
    shuffled = type(model)(centers=model.centers_array[order], color_space="bgr")
    np.testing.assert_array_equal(shuffled.matched_to(model).centers_array, model.centers_array)


def test_median_filter_follows_brightness_not_ids(window, light):
    """Renumbered clusters (cluster.reference) are smoothed as the brightness-ordered ones."""
    features = sx.preprocess(window.isel(time=[0, 1]), illumination=light)
    model = sx.fit_kmeans(sx.sample_pixels(features, sample_size=20_000), n_clusters=6)
    order = np.array([3, 0, 5, 1, 4, 2])  # new cluster i is old cluster order[i]
    renumbered = type(model)(centers=model.centers_array[order], color_space="bgr")
    plain = sx.label(features, model, median_filter=3).values
    shuffled = sx.label(features, renumbered, median_filter=3).values
    np.testing.assert_array_equal(order[shuffled], plain)


def test_light_of_dask_frames_with_a_numpy_status(window):
    status = xr.DataArray(np.ones(window.sizes["time"], np.int8), dims="time")
    frames = as_dask(window, 5).assign_coords(frame_status=status)
    assert sx.fit_illumination(frames) == sx.fit_illumination(window)


@pytest.mark.parametrize(("shape", "size"), [((400, 1024), 32), ((70, 101), 16), ((9, 9), 4)])
def test_compiled_block_means_are_numpy_block_means(shape, size):
    """The compiled block sums (rows summed first, then cut into blocks) give the numpy
    means of whole blocks exactly, partial blocks left out, and the saturated share."""
    from sediment_xr._kernels import block_means
    from sediment_xr.illumination import block_means_of

    rng = np.random.default_rng(size)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    means, saturated = block_means(frame, size, saturated=True)
    np.testing.assert_allclose(means, block_means_of(frame, size), rtol=1e-6)
    whole = frame[: shape[0] // size * size, : shape[1] // size * size]
    assert saturated == pytest.approx((whole.max(axis=-1) >= 250).mean())
    np.testing.assert_array_equal(block_means(frame, size), means)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(400, 1024), (7, 13), (1, 1)])
def test_compiled_light_scaling_is_the_numpy_formula(shape, reverse):
    """The compiled scaling (a row's interleaved values in one run) rounds every value as
    numpy does: float32 value x float32 field, then x float64 gain + 0.5, clamped, truncated;
    BGR is the same values in reversed channel order; a strided output is filled too."""
    from sediment_xr._kernels import scale_pixels

    rng = np.random.default_rng(shape[1])
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    field = rng.uniform(0.6, 2.2, shape).astype(np.float32)
    gains = np.array([1 / 1.07, 1 / 0.93, 1 / 1.21])
    value = (frame.astype(np.float32) * field[..., None]).astype(np.float64) * gains + 0.5
    expected = np.clip(value, 0.0, 255.0).astype(np.uint8)
    if reverse:
        expected = expected[..., ::-1]
    out = np.empty_like(frame)
    np.testing.assert_array_equal(scale_pixels(frame, field, gains, reverse, out), expected)
    strided = np.zeros((shape[0], 2 * shape[1], 3), np.uint8)[:, ::2]
    np.testing.assert_array_equal(scale_pixels(frame, field, gains, reverse, strided), expected)
