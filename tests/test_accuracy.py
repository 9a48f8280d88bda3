"""Done-when of the accuracy issue, on small versions of the realistic planted-truth scenes.

The default config (only the crop and the time axis given) runs on an H.264 video of
:func:`sediment_xr.testing.realistic_series`: a steady-light scene, and an ageing-lamp scene
with injected events. Clusters are named as an analyst names them (each after what most of its
pixels are), the run is repeated with those classes (only the tables are recomputed), and the
mat cover, its trend, its 95 % intervals and the frame flags are checked against the truth.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.cluster import refit_stability
from sediment_xr.config import Config, CropConfig, IngestConfig, PreprocessConfig
from sediment_xr.evaluate import match_clusters
from sediment_xr.testing import realistic_series, write_video
from sediment_xr.uncertainty import boundary_pixels, class_interval, class_mixing

EVENTS = {"dark": [4], "moved": [9], "occluded": [13, 21], "turbid": [17], "overexposed": [19]}
#: Mean width (pp) the mat intervals stay under. Measured with the mixing term: 2.3-5.4 on
#: these scenes (either x264 thread setting), 4.4-5.9 on `benchmarks/accuracy.py --h264`'s.
WIDTH_PP = 6.0
SCENES = {
    "steady": {"seed": 21},
    "ageing_with_events": {"seed": 22, "lamp_ageing": 0.3, "events": EVENTS},
}


@pytest.fixture(scope="module", params=sorted(SCENES))
def run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    scene = realistic_series(24, **SCENES[request.param])  # 1024 x 1024, as the camera
    video = write_video(scene["frames"], root / "scene.mp4", crf=18)
    config = Config(
        input=str(video),
        output=str(root / "out"),
        ingest=IngestConfig(start_time="2022-06-01", frame_interval="17h", chunk_frames=6),
        preprocess=PreprocessConfig(crop=CropConfig(rows=(-scene.attrs["crop_rows"], None))),
    )
    first = pipeline.run(config, progress=False)
    classes = match_clusters(
        first.open()["labels"], scene["mask"].values, class_names=["sediment", "mat"]
    )
    named = pipeline.run(
        Config(**{**config.__dict__, "classes": {k: tuple(v) for k, v in classes.items()}}),
        progress=False,
    )
    assert named.computed == ()  # naming the classes recomputes only the tables
    return scene, named


def test_mat_cover_and_trend_match_the_planted_truth(run):
    scene, result = run
    good = result.cover["quality"].to_numpy() == "ok"
    true = scene["true_cover"].values
    mat = result.cover["mat"].to_numpy()
    assert np.abs(mat - true)[good].mean() <= 1.0
    planted = np.polyfit(np.arange(len(true))[good], true[good], 1)[0] * 24 / 17  # per day
    fitted = result.trend.set_index("name").loc["mat"]
    assert abs(fitted["slope_per_day"] / planted - 1) <= 0.05, fitted["slope_per_day"] / planted
    assert fitted["n"] == good.sum()  # trend.csv: n is the frames the fit used


def _mat_interval(cube):
    good = cube["frame_quality"].values == 0
    low = cube["class_cover_low"].sel({"class": "mat"}).values
    high = cube["class_cover_high"].sel({"class": "mat"}).values
    return good, low, high


def test_intervals_bracket_the_cover(run):
    """The intervals are there, bracket each good frame's cover and say something."""
    _, result = run
    cube = result.open()
    good, low, high = _mat_interval(cube)
    mat = cube["class_cover"].sel({"class": "mat"}).values
    assert ((low <= mat + 1e-9) & (mat <= high + 1e-9))[good].all()
    assert 0 < (high - low)[good].mean() < WIDTH_PP  # informative, not everything
    for name in ("cover_low", "cover_high", "class_cover_low", "class_cover_high"):
        assert cube[name].attrs["units"] == "percent"


def test_intervals_hold_the_true_cover(run):
    """Weakness: a cluster half mat, half pebbles, named one way, biased the cover beyond
    intervals built from the pixels alone (4 % and 33 % of these frames held, one x264 thread).

    The class intervals carry the mixing term of such clusters (issue 11): they hold the
    true mat cover on at least 90 % of the good frames.
    """
    scene, result = run
    good, low, high = _mat_interval(result.open())
    true = scene["true_cover"].values
    held = (true >= low - 1e-9) & (true <= high + 1e-9)
    assert held[good].mean() >= 0.9, (held[good].mean(), (high - low)[good].mean())


def _half_mat_scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A steady 512 x 512 scene fitted with the default method: true, mat, low and high."""
    scene = realistic_series(36, size=512, seed=seed)
    window = sx.crop(scene["frames"], rows=[-scene.attrs["crop_rows"], None])
    light = sx.fit_illumination(window)
    features = sx.preprocess(window, illumination=light)
    sample = sx.sample_pixels(features, sample_size=200_000)
    model = sx.fit_kmeans(sample, n_clusters=12, illumination=light)
    model = dataclasses.replace(model, stability=refit_stability(sample, model))
    labels = sx.label(features, model, median_filter=3).compute()
    classes = match_clusters(labels, scene["mask"].values, class_names=["sediment", "mat"])
    cover = sx.merge_classes(sx.cover(labels), classes)
    boundary = boundary_pixels(features, model).compute()
    pixels = labels.sizes["y"] * labels.sizes["x"]
    low, high = class_interval(cover, boundary, model, classes, pixels)
    return (
        scene["true_cover"].values,
        cover.sel({"class": "mat"}).values,
        low.sel({"class": "mat"}).values,
        high.sel({"class": "mat"}).values,
    )


def test_class_interval_holds_a_scene_with_a_half_mat_cluster():
    """Weakness: the interval held what the pixels say, not a cluster's naming.

    Some steady scenes get a cluster about half mat named sediment: their mat cover is
    0.5-1 pp low on every frame, and the interval of the pixels alone held none of their
    frames. With the classes' mixing term it holds them.  Which seeds give such a cluster
    depends on scikit-learn's version (seed 15 with 1.7, not 1.6), so three are tried; at
    least one must be that hard case, and every one that is must be held.
    """
    hard = 0
    for seed in (15, 17, 21):
        true, mat, low, high = _half_mat_scene(seed)
        if (mat - true).mean() >= -0.5:
            continue  # no half-mat cluster named sediment here
        hard += 1
        assert ((true >= low) & (true <= high)).mean() >= 0.9, seed
        assert (high - low).mean() < WIDTH_PP, seed
    assert hard, "none of the scenes has the half-mat cluster this test is about"


def test_flags_catch_bad_frames_and_spare_good_ones(run):
    scene, result = run
    flagged = result.cover["quality"].to_numpy() != "ok"
    bad = scene["event"].values != "ok"
    if bad.any():
        assert flagged[bad].mean() >= 0.9
        assert list(result.cover["quality"][bad]) == list(scene["event"].values[bad])
    assert flagged[~bad].mean() <= 0.05
    cube = result.open()
    assert cube["frame_quality"].attrs["flag_meanings"].split()[0] == "ok"


def test_clusters_json_reports_stability(run):
    _, result = run
    stability = result.model.stability
    assert stability["n_refits"] == 4
    assert len(stability["cover_spread"]) == result.model.n_clusters
    spread = pd.Series(stability["cover_spread"])
    assert (spread >= 0).all() and spread.max() < 5.0  # percentage points
    assert sx.ClusterModel.load(f"{result.output}/model.json").stability == stability
    clusters = json.loads(Path(result.output, "clusters.json").read_text())
    assert [c["stability_pp"] for c in clusters["clusters"]] == stability["cover_spread"]
    assert clusters["n_refits"] == 4


def test_mixing_is_each_boundary_clusters_share_of_its_cover():
    """Weakness: a class's interval had no term for a cluster that holds two classes.

    Three clusters, classes ``sand = [0, 1]`` and ``mat = [2]``: cluster 1 has 40 of its 100
    pixels near mat's centre, cluster 2 has 10 of its 50 near cluster 1's, cluster 0 borders
    only cluster 1 (inside its class). The mixing is ``hypot(0.2 x 25 %, 0.4 x 50 %)`` for both
    classes, whatever the frame, and nothing for a class that borders no other.
    """
    frame = np.array([[50, 20, 0], [30, 100, 40], [0, 10, 50]])
    counts = np.stack([frame, frame])
    boundary = xr.DataArray(counts, dims=("time", "cluster", "partner"), coords={"time": [0, 1]})
    mixing = class_mixing(boundary, {"sand": [0, 1], "mat": [2]}, pixels=200)
    np.testing.assert_allclose(mixing.values, np.hypot(0.2 * 25.0, 0.4 * 50.0))
    assert mixing.attrs["units"] == "percent"
    alone = class_mixing(boundary, {"all": [0, 1, 2]}, pixels=200)
    np.testing.assert_array_equal(alone.values, 0.0)
