"""Done-when of the accuracy issue, on small versions of the realistic planted-truth scenes.

The default config (only the crop and the time axis given) runs on an H.264 video of
:func:`sediment_xr.testing.realistic_series`: a steady-light scene, and an ageing-lamp scene
with injected events. Clusters are named as an analyst names them (each after what most of its
pixels are), the run is repeated with those classes (only the tables are recomputed), and the
mat cover, its trend, its 95 % intervals and the frame flags are checked against the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.config import Config, CropConfig, IngestConfig, PreprocessConfig
from sediment_xr.evaluate import match_clusters
from sediment_xr.testing import realistic_series, write_video

EVENTS = {"dark": [4], "moved": [9], "occluded": [13, 21], "turbid": [17], "overexposed": [19]}
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


def test_intervals_bracket_the_cover(run):
    """The intervals are there and bracket each good frame's cover.

    Whether they hold the *true* cover on 90 % of good frames is not asserted: measured, it
    held on all six scenes of `benchmarks/accuracy.py --h264`, but on these two scenes it
    ranged from 4 % to 100 % with the encoder's thread count (x264 output), so it is not yet
    a property of the method (issue 11 stays open on it).
    """
    _, result = run
    cube = result.open()
    good = cube["frame_quality"].values == 0
    mat = cube["class_cover"].sel({"class": "mat"}).values
    low = cube["class_cover_low"].sel({"class": "mat"}).values
    high = cube["class_cover_high"].sel({"class": "mat"}).values
    assert ((low <= mat + 1e-9) & (mat <= high + 1e-9))[good].all()
    assert 0 < (high - low)[good].mean() < 4.0  # informative, not everything
    for name in ("cover_low", "cover_high", "class_cover_low", "class_cover_high"):
        assert cube[name].attrs["units"] == "percent"


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
