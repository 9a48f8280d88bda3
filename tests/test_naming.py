"""Naming clusters and merging them into classes: YAML, pixel samples, the notebook form."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import sediment_xr as sx
from sediment_xr.config import config_from_dict
from sediment_xr.naming import EMPTY_SAMPLE_RGB, classes_yaml, cluster_samples, naming_widget

CLUSTERS = [
    {"id": 0, "name": "cluster_0", "center_rgb": [20, 30, 22], "share_percent": 40.0},
    {"id": 1, "name": "cluster_1", "center_rgb": [40, 55, 38], "share_percent": 30.0},
    {"id": 2, "name": "cluster_2", "center_rgb": [60, 80, 55], "share_percent": 10.0},
    {"id": 3, "name": "<b>mat</b>", "center_rgb": [210, 230, 215], "share_percent": 20.0},
]


def test_classes_yaml_merges_equal_names():
    text = classes_yaml(["bg", "bg", "bio", "bio"])
    assert text == "classes:\n  bg: [0, 1]\n  bio: [2, 3]\n"


def test_classes_yaml_round_trips_into_a_config(tmp_path):
    names = ["sediment", "mat & clams", "yes", "sediment", "1"]
    loaded = yaml.safe_load(classes_yaml(names))
    assert loaded == {"classes": {"sediment": [0, 3], "mat & clams": [1], "yes": [2], "1": [4]}}
    config = config_from_dict(
        {
            "input": "frames",
            "output": "out",
            "cluster": {"n_clusters": 5},
            "classes": loaded["classes"],
        },
        base_dir=tmp_path,
    )
    assert config.classes == {"sediment": (0, 3), "mat & clams": (1,), "yes": (2,), "1": (4,)}


def test_classes_yaml_rejects_empty_names():
    with pytest.raises(sx.ConfigError, match="cluster 1 needs a name"):
        classes_yaml(["bg", "  ", "bio"])
    with pytest.raises(sx.ConfigError, match="one name per cluster"):
        classes_yaml("bg")


def test_cluster_samples_only_take_pixels_of_their_cluster():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 3, size=(40, 50)).astype(np.int8)  # cluster 3: no pixels
    labels[0, 0] = 2
    frame = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    samples = cluster_samples(labels, frame, 4, size=6, seed=1)
    assert len(samples) == 4
    for cluster, sample in enumerate(samples[:3]):
        assert sample.shape == (6, 6, 3) and sample.dtype == np.uint8
        allowed = {tuple(p) for p in frame[labels == cluster]}
        assert {tuple(p) for p in sample.reshape(-1, 3)} <= allowed
        assert len({tuple(p) for p in sample.reshape(-1, 3)}) > 1
    assert (samples[3] == np.array(EMPTY_SAMPLE_RGB, np.uint8)).all()
    # Deterministic for a seed.
    again = cluster_samples(labels, frame, 4, size=6, seed=1)
    assert all((a == b).all() for a, b in zip(samples, again, strict=True))


def test_cluster_samples_with_few_pixels_repeat_them():
    labels = np.zeros((5, 5), np.int64)
    labels[2, 2] = 1
    frame = np.zeros((5, 5, 3), np.uint8)
    frame[2, 2] = (200, 10, 30)
    sample = cluster_samples(labels, frame, 2, size=3)[1]
    assert (sample == (200, 10, 30)).all()


def test_cluster_samples_checks_shapes():
    with pytest.raises(sx.InputError, match=r"labels' shape \(4, 4, 3\)"):
        cluster_samples(np.zeros((4, 4), int), np.zeros((5, 4, 3), np.uint8), 2)


def test_naming_widget_saves_merged_classes(tmp_path):
    path = tmp_path / "classes.yaml"
    samples = [np.full((8, 8, 3), c["center_rgb"], np.uint8) for c in CLUSTERS]
    widget = naming_widget(CLUSTERS, samples, path=path)
    assert [box.value for box in widget.inputs] == [c["name"] for c in CLUSTERS]
    assert widget.yaml is None and not path.exists()

    for box, name in zip(widget.inputs, ["bg", "bg", "bio", "bio"], strict=True):
        box.value = name
    widget.save_button.clicks += 1  # what a click in the browser does

    expected = "classes:\n  bg: [0, 1]\n  bio: [2, 3]\n"
    assert widget.yaml == expected
    assert widget.yaml_pane.object == expected and widget.yaml_pane.visible
    assert path.read_text(encoding="utf-8") == expected
    assert widget.classes == {"bg": [0, 1], "bio": [2, 3]}
    assert widget.status.alert_type == "success"
    assert "2 classes" in widget.status.object

    # Renaming again and saving through the Python API rewrites the file.
    widget.inputs[3].value = "mat"
    assert widget.save() == "classes:\n  bg: [0, 1]\n  bio: [2]\n  mat: [3]\n"
    assert yaml.safe_load(path.read_text())["classes"]["mat"] == [3]


def test_naming_widget_reports_empty_name_without_writing(tmp_path):
    path = tmp_path / "classes.yaml"
    widget = naming_widget(CLUSTERS, path=path)
    widget.inputs[2].value = ""
    widget.save_button.clicks += 1
    assert widget.status.alert_type == "danger"
    assert "cluster 2 needs a name" in widget.status.object
    assert widget.yaml is None and not path.exists()


def test_naming_widget_is_a_panel_layout():
    pn = pytest.importorskip("panel")
    widget = naming_widget(CLUSTERS)
    assert isinstance(pn.panel(widget), pn.Column)
    model = widget.layout.get_root()  # builds the Bokeh models as the browser would get them
    assert model is not None
    # Names are only the text boxes' values, never HTML: the swatches carry colours only.
    html_panes = [p for p in widget.layout.select(pn.pane.HTML) if "<b>mat" in str(p.object)]
    assert not html_panes
    assert widget.inputs[3].value == "<b>mat</b>"


def test_naming_widget_checks_samples():
    with pytest.raises(sx.InputError, match="one sample per cluster"):
        naming_widget(CLUSTERS, [np.zeros((8, 8, 3), np.uint8)])
