"""Tests of sediment_xr.evaluate: scores against known answers, real human masks, the CLI.

The real masks are three SUIM test samples (tests/data/suim, MIT, see its README): people
drew them, so a perfect prediction, a known corruption and a KMeans clustering can be scored
against real pixel truth.  The generated data are synthetic_series frames, whose mat pixels
are found exactly by brightness (their cover equals the planted true cover).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from PIL import Image

import sediment_xr as sx
from sediment_xr.cli import main
from sediment_xr.evaluate import (
    TABLE_COLUMNS,
    crop_reference,
    evaluate_cover,
    evaluate_labels,
    evaluate_points,
    evaluate_run,
    frame_number,
    match_clusters,
    read_mask,
    read_points,
    summary_text,
)
from sediment_xr.exceptions import ConfigError, InputError, InputNotFoundError
from sediment_xr.testing import synthetic_series, write_video

SUIM_DIR = Path(__file__).parent / "data" / "suim"
SUIM = {
    "water": 0,
    "diver": 1,
    "plant": 2,
    "wreck": 3,
    "robot": 4,
    "reef": 5,
    "fish": 6,
    "floor": 7,
}
NAMES = list(SUIM)
STEMS = ["d_r_598_", "f_r_1965_", "n_l_12_"]  # sorted, as open_images orders them
ERROR = "sediment-xr: error: "
QUICK = ["--scheduler", "synchronous", "--quiet"]


def suim_masks() -> np.ndarray:
    return np.stack(
        [read_mask(SUIM_DIR / "masks" / f"{s}.png", SUIM, threshold=128) for s in STEMS]
    )


def identity_classes(names=NAMES) -> dict[str, list[int]]:
    return {name: [i] for i, name in enumerate(names)}


def value(table: pd.DataFrame, metric: str, cls: str = "", name: str = "all") -> float:
    row = table[(table["name"] == name) & (table["metric"] == metric) & (table["class"] == cls)]
    assert len(row) == 1, (metric, cls, name)
    return float(row["value"].iloc[0])


# --------------------------------------------------------------------------------------------
# reading references
def test_read_mask_suim_code_matches_the_colour_code():
    path = SUIM_DIR / "masks" / "n_l_12_.png"
    mask = read_mask(path, SUIM, threshold=128)
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    code = (rgb[..., 0] >= 128) * 4 + (rgb[..., 1] >= 128) * 2 + (rgb[..., 2] >= 128)
    assert mask.dtype == np.int16 and mask.shape == (480, 640)
    np.testing.assert_array_equal(mask, code)
    # counted once from the file: water, divers, wrecks, reefs
    assert np.bincount(mask.ravel(), minlength=8).tolist() == [
        164864,
        47154,
        0,
        9661,
        0,
        85521,
        0,
        0,
    ]


def test_read_mask_colours_merge_and_leave_the_rest_unlabelled():
    path = SUIM_DIR / "masks" / "n_l_12_.png"
    # black is water; blue (divers) and cyan (wrecks) merged; magenta (reefs) unmapped
    mask = read_mask(path, {"water": [0, 0, 0], "people": [[0, 0, 255], [0, 255, 255]]})
    code = read_mask(path, SUIM, threshold=128)
    np.testing.assert_array_equal(mask == 0, code == 0)
    np.testing.assert_array_equal(mask == 1, (code == 1) | (code == 3))
    np.testing.assert_array_equal(mask == -1, code == 5)


def test_read_mask_rgba_and_palette(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[1:3, 2:5] = [255, 0, 255]
    alpha = np.full((4, 6, 1), 200, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(tmp_path / "a.png")
    mask = read_mask(tmp_path / "a.png", {"bg": [0, 0, 0], "reef": [255, 0, 255]})
    np.testing.assert_array_equal(mask, (rgb[..., 0] == 255).astype(int))
    palette = Image.fromarray((rgb[..., 0] == 255).astype(np.uint8) * 3, "L").convert("P")
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png", {"bg": 0, "reef": 3}), mask)


def test_read_mask_single_channel(tmp_path):
    grey = np.zeros((4, 6), np.uint8)
    grey[1:3, 2:5] = 255
    grey[0, 0] = 7
    Image.fromarray(grey).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", {"bg": 0, "mat": [255]})
    expected = np.where(grey == 255, 1, 0)
    expected[0, 0] = -1
    np.testing.assert_array_equal(mask, expected)


def test_read_mask_three_codes_are_codes_of_a_coded_mask():
    path = SUIM_DIR / "masks" / "n_l_12_.png"
    mask = read_mask(path, {"water": [0, 7, 0], "reef": 5}, threshold=128)
    assert np.bincount(mask.ravel() + 1).tolist() == [480 * 640 - 164864 - 85521, 164864, 85521]


@pytest.mark.parametrize(
    ("mapping", "threshold", "error", "words"),
    [
        ({"water": 0}, None, ConfigError, ["an RGB mask", "'water'", "threshold=128"]),
        ({"a": 0, "b": [5, 0]}, 128, ConfigError, ["value 0 to two classes ('a' and 'b')"]),
        ({"a": [250, 250, 250]}, None, InputError, ["no pixel of a class", "[0, 0, 0]"]),
        ({}, 128, ConfigError, ["class names with their mask values"]),
        ({"a": 0}, 300, ConfigError, ["threshold needs a whole number from 1 to 255"]),
    ],
)
def test_read_mask_refuses_a_mapping_that_does_not_fit(mapping, threshold, error, words):
    with pytest.raises(error) as info:
        read_mask(SUIM_DIR / "masks" / "n_l_12_.png", mapping, threshold=threshold)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_read_mask_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_mask(tmp_path / "nope.png", {"a": 0})


def test_frame_number_rule():
    assert [frame_number(n) for n in ["frame_000012.png", "Frame-3.png", "7.png"]] == [12, 3, 7]
    assert frame_number("dive_12.png") is None and frame_number("frames_1.png") is None


def write_points(path: Path, rows: list[list], header="Name,Row,Column,Label") -> Path:
    lines = [header] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_points(tmp_path):
    path = write_points(
        tmp_path / "p.csv",
        [["a.jpg", 3, 4, "SAND"], ["b.jpg", 0, 10, "MAT"]],
        "name,ROW,Column,label",
    )
    points = read_points(path)
    assert list(points.columns) == ["name", "row", "column", "label"]
    assert points["row"].tolist() == [3, 0] and points["label"].tolist() == ["SAND", "MAT"]


@pytest.mark.parametrize(
    ("header", "rows", "words"),
    [
        (
            "Name,Row,Label",
            [["a.jpg", 1, "X"]],
            ["needs columns Name, Row, Column and Label", "Column"],
        ),
        (
            "Name,Row,Column,Label",
            [["a.jpg", 1, 2, "X"], ["a.jpg", 1.5, 2, "X"]],
            ["line 3", "'1.5'"],
        ),
        ("Name,Row,Column,Label", [["a.jpg", -1, 2, "X"]], ["line 2", "'-1'"]),
        ("Name,Row,Column,Label", [["a.jpg", 1, 2, ""]], ["line 2", "empty Label"]),
        ("Name,Row,Column,Label", [], ["no points"]),
    ],
)
def test_read_points_refuses_bad_csv(tmp_path, header, rows, words):
    path = write_points(tmp_path / "bad.csv", rows, header)
    with pytest.raises(InputError) as info:
        read_points(path)
    message = str(info.value)
    assert "\n" not in message and "bad.csv" in message
    for word in words:
        assert word in message, message


# --------------------------------------------------------------------------------------------
# scoring against the real masks
def test_perfect_prediction_scores_one():
    refs = suim_masks()
    table = evaluate_labels(
        refs.astype(np.int8), refs, class_names=NAMES, classes=identity_classes()
    )
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert value(table, "pixel_accuracy") == 1.0 and value(table, "mean_iou") == 1.0
    present = [n for i, n in enumerate(NAMES) if (refs == i).any()]
    assert present == ["water", "diver", "wreck", "reef", "fish"]
    for name in present:
        assert value(table, "iou", name) == 1.0
        assert value(table, "cover_mae", name) == 0.0
    for name in set(NAMES) - set(present):  # in neither: no IoU
        assert np.isnan(value(table, "iou", name))
    frames = table[table["name"] != "all"]
    assert sorted(frames["frame"].unique()) == [0, 1, 2]
    assert (frames.loc[frames["metric"] == "pixel_accuracy", "n"] == 480 * 640).all()


def test_known_corruption_gives_the_exact_scores():
    refs = suim_masks()
    pred = refs.copy()
    pred[2, :100, :200] = 5  # frame 2 (n_l_12_): the top-left block called reef
    pred[0, 300:, :] = -1  # frame 0: bottom rows not labelled (no data): not scored
    reference = refs.copy()
    reference[1, :, :50] = -1  # frame 1: left columns unlabelled in the reference
    table = evaluate_labels(
        pred.astype(np.int8), reference, class_names=NAMES, classes=identity_classes()
    )
    block = refs[2, :100, :200]
    wrong = int((block != 5).sum())
    assert wrong > 0
    n2 = 480 * 640
    assert value(table, "pixel_accuracy", name="frame_2") == pytest.approx(
        1 - wrong / n2, abs=1e-15
    )
    # reef in frame 2: true = reef pixels, predicted = those plus the wrong block pixels
    true_reef = int((refs[2] == 5).sum())
    assert value(table, "iou", "reef", name="frame_2") == pytest.approx(
        true_reef / (true_reef + wrong), abs=1e-15
    )
    assert value(table, "cover_error", "reef", name="frame_2") == pytest.approx(
        100 * wrong / n2, abs=1e-12
    )
    water_lost = int((block == 0).sum())
    true_water = int((refs[2] == 0).sum())
    assert value(table, "iou", "water", name="frame_2") == pytest.approx(
        (true_water - water_lost) / true_water, abs=1e-15
    )
    # frames 0 and 1: what is left out is not scored, the rest is right
    assert value(table, "pixel_accuracy", name="frame_0") == 1.0
    assert table.query("name == 'frame_0' and metric == 'pixel_accuracy'")["n"].item() == 300 * 640
    assert table.query("name == 'frame_1' and metric == 'pixel_accuracy'")["n"].item() == 480 * 590
    # pooled over every scored pixel
    scored = 300 * 640 + 480 * 590 + n2
    assert value(table, "pixel_accuracy") == pytest.approx(1 - wrong / scored, abs=1e-15)
    assert value(table, "cover_mae", "reef") == pytest.approx(100 * wrong / n2 / 3, abs=1e-12)


def test_clusters_and_reference_classes_outside_classes_count_as_wrong():
    refs = suim_masks()[2:]  # n_l_12_: water, diver, wreck, reef
    pred = refs.astype(np.int8)
    # the reference's divers (1) are not a class; cluster 3 (the wrecks) is in no class
    classes = {"water": [0], "reef": [5], "diver_cluster": [1]}
    table = evaluate_labels(pred, refs, class_names=NAMES, classes=classes)
    n_diver, n_wreck = int((refs == 1).sum()), int((refs == 3).sum())
    assert value(table, "pixel_accuracy") == pytest.approx(1 - (n_diver + n_wreck) / refs.size)
    assert value(table, "iou", "diver") == 0.0 and value(table, "iou", "wreck") == 0.0
    assert value(table, "iou", "diver_cluster") == 0.0  # predicted, never in the reference
    assert value(table, "cover_pred", "diver_cluster", name="frame_0") == pytest.approx(
        100 * n_diver / refs.size
    )
    assert value(table, "iou", "reef") == 1.0


def test_crop_reference_uses_the_labels_window():
    refs = suim_masks()
    window = refs[:, 100:400, 40:600]
    labels = xr.DataArray(
        window.astype(np.int8),
        dims=("time", "y", "x"),
        attrs={"crop_rows": [100, 400], "crop_cols": [40, 600], "frame_shape": [480, 640]},
    )
    np.testing.assert_array_equal(crop_reference(refs, labels), window)
    table = evaluate_labels(labels, refs, class_names=NAMES, classes=identity_classes())
    assert value(table, "pixel_accuracy") == 1.0
    assert table["n"].iloc[0] == 300 * 560
    with pytest.raises(InputError, match=r"the reference is 320x240 pixels .* frames are 640x480"):
        crop_reference(refs[:, ::2, ::2], labels)
    # resize: a half-size reference is scaled up (nearest) before cropping
    half = refs[:, ::2, ::2]
    np.testing.assert_array_equal(
        crop_reference(half, labels, resize=True),
        np.repeat(np.repeat(half, 2, 1), 2, 2)[:, 100:400, 40:600],
    )


@pytest.fixture(scope="module")
def suim_labels() -> xr.DataArray:
    """The three SUIM photos clustered with the package's public API (4 clusters)."""
    frames = sx.open_images(SUIM_DIR / "images", start_time="2022-01-01", frame_interval="1h")
    assert [Path(f).stem for f in frames.attrs["source_files"]] == STEMS
    features = sx.preprocess(frames)
    sample = sx.sample_pixels(features, sample_size=20_000, random_state=0)
    model = sx.fit_kmeans(sample, n_clusters=4, random_state=0)
    return sx.label(features, model).compute()


def test_kmeans_on_real_photos_beats_the_majority_class(suim_labels):
    refs = suim_masks()
    classes = match_clusters(suim_labels, refs, class_names=NAMES)
    assert sorted(c for ids in classes.values() for c in ids) == [0, 1, 2, 3]
    assert "water" in classes  # most of every photo is water
    table = evaluate_labels(suim_labels, refs, class_names=NAMES)
    assert (table["match"] == "majority").all()
    assert table.attrs["classes"] == classes
    baseline = np.bincount(refs.ravel()).max() / refs.size  # always "water": 0.573
    accuracy = value(table, "pixel_accuracy")  # measured 0.709
    assert baseline + 0.05 < accuracy < 1
    # the same numbers with the classes given
    again = evaluate_labels(suim_labels, refs, class_names=NAMES, classes=classes)
    assert value(again, "pixel_accuracy") == accuracy
    assert "pixel accuracy" in summary_text(table) and "by majority" in summary_text(table)


def test_points_from_the_masks_score_as_the_pixels_there(suim_labels, tmp_path):
    refs = suim_masks()
    rng = np.random.default_rng(3)
    n = 200
    t = rng.integers(0, 3, n)
    rows, cols = rng.integers(0, 480, n), rng.integers(0, 640, n)
    path = write_points(
        tmp_path / "points.csv",
        [
            [f"{STEMS[a]}.jpg", r, c, NAMES[refs[a, r, c]]]
            for a, r, c in zip(t, rows, cols, strict=True)
        ],
    )
    points = read_points(path)
    points["frame"] = [STEMS.index(Path(name).stem) for name in points["name"]]
    classes = match_clusters(suim_labels, refs, class_names=NAMES)
    table = evaluate_points(suim_labels, points, classes=classes)
    lookup = {c: NAMES.index(name) for name, ids in classes.items() for c in ids}
    predicted = np.array(
        [lookup[int(suim_labels.values[a, r, c])] for a, r, c in zip(t, rows, cols, strict=True)]
    )
    truth = refs[t, rows, cols]
    assert value(table, "point_accuracy") == pytest.approx((predicted == truth).mean(), abs=1e-15)
    for a in range(3):
        here = t == a
        assert value(table, "point_accuracy", name=f"{STEMS[a]}.jpg") == pytest.approx(
            (predicted[here] == truth[here]).mean(), abs=1e-15
        )
        assert value(table, "points_not_scored", name=f"{STEMS[a]}.jpg") == 0
    water = truth == 0
    assert value(table, "agreement", "water") == pytest.approx(
        (predicted[water] == 0).mean(), abs=1e-15
    )
    with pytest.raises(InputError, match=r"point 1 of .* is outside the 640x480 frames"):
        evaluate_points(suim_labels, points.assign(row=points["row"] + 480), classes=classes)
    with pytest.raises(InputError, match="needs integer labels, but got dtype float64"):
        evaluate_points(suim_labels.astype(float), points, classes=classes)
    with pytest.raises(InputError, match="needs at least one point"):
        evaluate_points(suim_labels, points.iloc[:0], classes=classes)
    # labels that are no class count as wrong
    other = evaluate_points(suim_labels, points, classes={"bg": [0, 1], "bio": [2, 3]})
    assert value(other, "point_accuracy") == 0.0


# --------------------------------------------------------------------------------------------
# generated data with a known answer
@pytest.fixture(scope="module")
def series() -> xr.Dataset:
    return synthetic_series(6, size=128, start_cover=20.0, slope=4.0, seed=2)


def mat_masks(series: xr.Dataset) -> np.ndarray:
    """The planted mat of each frame (1) in its analysed strip, sediment (0) elsewhere.

    Mat is white (about 214, 236, 222) and the sediment there is darkened below 110, so the
    brightness splits them exactly: the masks' cover is the planted true cover.
    """
    strip = series.attrs["crop_rows"]
    frames = series["frames"].values.astype(float)
    masks = (frames.mean(axis=-1) > 160).astype(np.int16)
    masks[:, :-strip] = -1  # outside the analysed strip: unlabelled
    cover = 100 * (masks == 1).sum(axis=(1, 2)) / (masks >= 0).sum(axis=(1, 2))
    np.testing.assert_allclose(cover, series["true_cover"].values, atol=1e-9)
    return masks


def test_synthetic_series_mat_found_by_clustering(series):
    masks = mat_masks(series)
    features = sx.preprocess(
        series["frames"], rows=[-series.attrs["crop_rows"], None], illumination="clahe"
    )
    model = sx.fit_kmeans(
        sx.sample_pixels(features, sample_size=5000, random_state=0), n_clusters=3, random_state=0
    )
    labels = sx.label(features, model)
    table = evaluate_labels(labels, masks, class_names=["sediment", "mat"])
    assert table.attrs["classes"]["mat"] == [2]  # the brightest cluster
    # the planted mat is far brighter than the darkened sediment: every pixel is found
    assert value(table, "pixel_accuracy") == 1.0 and value(table, "iou", "mat") == 1.0
    assert value(table, "cover_mae", "mat") == 0.0
    # cover from the package against the planted cover: the same error
    bio = sx.merge_classes(sx.cover(labels), table.attrs["classes"]).sel({"class": "mat"})
    cover = evaluate_cover(bio, series["true_cover"])
    assert value(cover, "cover_mae", "true_cover") == pytest.approx(
        value(table, "cover_mae", "mat"), abs=1e-9
    )
    assert value(cover, "slope_true", "true_cover") == pytest.approx(4.0 * 24 / 17)  # pp/day
    assert value(cover, "slope_ratio", "true_cover") == pytest.approx(1.0)


def test_evaluate_cover_known_offsets(series):
    truth = series["true_cover"]
    table = evaluate_cover(truth + 2.0, truth)
    assert value(table, "cover_bias", "true_cover") == pytest.approx(2.0)
    assert value(table, "cover_mae", "true_cover") == pytest.approx(2.0)
    assert value(table, "slope_ratio", "true_cover") == pytest.approx(1.0)
    doubled = evaluate_cover(truth * 2, truth)
    assert value(doubled, "slope_ratio", "true_cover") == pytest.approx(2.0)
    rows = doubled[doubled["metric"] == "cover_error"]
    np.testing.assert_allclose(rows["value"], truth.values)
    assert rows["frame"].tolist() == list(range(6))
    assert (rows["time"].to_numpy() == truth["time"].values).all()
    # pandas and class tables, matched by class name; no times: by position
    df = pd.DataFrame({"mat": truth.values, "bg": 100 - truth.values})
    both = evaluate_cover(df + 1, df)
    assert value(both, "cover_bias", "bg") == pytest.approx(1.0)
    with pytest.raises(InputError, match="class 'bg' is not in the cover"):
        evaluate_cover(df[["mat"]].assign(x=1), df)
    with pytest.raises(InputError, match="one reference value per frame"):
        evaluate_cover(np.ones(4), np.ones(5))


# --------------------------------------------------------------------------------------------
# a finished run, through evaluate_run() and the command line
def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code, out, err, words):
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@pytest.fixture(scope="module")
def stills_run(tmp_path_factory) -> Path:
    """A finished run on the three SUIM photos, resized to half and cropped, with classes."""
    root = tmp_path_factory.mktemp("suim_run")
    shutil.copytree(SUIM_DIR / "images", root / "images")
    config = {
        "input": str(root / "images"),
        "output": str(root / "out"),
        "ingest": {
            "start_time": "2022-01-01T00:00:00",
            "frame_interval": "1h",
            "resize": [320, 240],
        },
        "preprocess": {"crop": {"rows": [40, None]}},
        "cluster": {"n_clusters": 4, "sample_size": 5000},
        "classes": {"water": [1, 2, 3], "reef": [0]},
        "report": {"html": False, "video": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(root / "config.yaml"), *QUICK]) == 0
    return root / "out"


def write_mapping(path: Path, classes: dict, threshold: int | None = 128) -> Path:
    data = (
        {"classes": classes} if threshold is None else {"threshold": threshold, "classes": classes}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_evaluate_a_run_with_masks_through_the_cli(stills_run, tmp_path, capsys, monkeypatch):
    mapping = write_mapping(tmp_path / "suim.yaml", {"water": 0, "reef": 5})
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        [
            "evaluate",
            str(stills_run),
            "--masks",
            str(SUIM_DIR / "masks"),
            "--mapping",
            str(mapping),
        ],
        capsys,
    )
    assert code == 0, err
    assert err == ""
    assert out.splitlines()[0].startswith("pixel accuracy ") and "by names" in out
    assert out.splitlines()[-1] == "table: evaluation.csv"
    table = pd.read_csv(tmp_path / "evaluation.csv", keep_default_na=False)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert sorted(set(table["name"])) == sorted([f"{s}.png" for s in STEMS] + ["all"])
    assert (table["match"] == "names").all()
    # one path: the CLI's table is evaluate_run()'s
    same = evaluate_run(
        str(stills_run), masks=SUIM_DIR / "masks", mapping={"water": 0, "reef": 5}, threshold=128
    )
    np.testing.assert_allclose(table["value"].replace("", np.nan).astype(float), same["value"])
    # the window: 200 of 240 rows (crop 40:), 320 columns; only water and reef pixels scored
    masks = suim_masks()[:, ::2, ::2][:, 40:]
    scored = np.isin(masks, [0, 5]).sum(axis=(1, 2))
    frames = same[(same["metric"] == "pixel_accuracy") & (same["name"] != "all")]
    assert frames["n"].tolist() == scored.tolist()
    assert not list(stills_run.glob("evaluation*"))  # nothing written into the run's folder


def test_evaluate_cli_table_to_stdout_and_plain_mapping(stills_run, tmp_path, capsys):
    """A mapping file may be the classes alone; --table - writes the CSV to stdout."""
    mapping = tmp_path / "plain.yaml"
    mapping.write_text("water: [0]\nreef: 5\n")
    argv = ["evaluate", str(stills_run), "--masks", str(SUIM_DIR / "masks")]
    code, out, err = run_cli(
        [*argv, "--mapping", str(mapping), "--threshold", "128", "--table", "-"], capsys
    )
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 38
    assert err.startswith("pixel accuracy ")
    same = evaluate_run(
        str(stills_run), masks=SUIM_DIR / "masks", mapping={"water": 0, "reef": 5}, threshold=128
    )
    np.testing.assert_allclose(table["value"], same["value"])


def test_evaluate_a_run_with_points(stills_run, tmp_path, capsys):
    refs = suim_masks()
    rng = np.random.default_rng(5)
    rows = []
    for a, stem in enumerate(STEMS):
        for r, c in zip(rng.integers(0, 480, 30), rng.integers(0, 640, 30), strict=True):
            rows.append([f"{stem}.jpg", r, c, {0: "W", 5: "R"}.get(int(refs[a, r, c]), "OTHER")])
    points = write_points(tmp_path / "points.csv", rows)
    mapping = write_mapping(tmp_path / "codes.yaml", {"water": "W", "reef": ["R"]}, None)
    table_path = tmp_path / "points_table.csv"
    code, out, err = run_cli(
        [
            "evaluate",
            str(stills_run),
            "--points",
            str(points),
            "--mapping",
            str(mapping),
            "--table",
            str(table_path),
        ],
        capsys,
    )
    assert code == 0, err
    assert "point accuracy" in out
    table = pd.read_csv(table_path)
    mapped = [r for r in rows if r[3] != "OTHER"]
    # original rows 0-79 are above the crop (rows 40: of the half-size frame): not scored
    scored = sum(1 for r in mapped if r[1] >= 80)
    assert table.query("name == 'all' and metric == 'point_accuracy'")["n"].item() == scored
    not_scored = table.query("metric == 'points_not_scored'")["value"].sum()
    assert not_scored == len(mapped) - scored


def test_evaluate_a_video_run_matches_frame_numbers(series, tmp_path, capsys):
    video = write_video(series["frames"], tmp_path / "mat.mkv", codec="ffv1")
    config = {
        "input": str(video),
        "output": str(tmp_path / "out"),
        "ingest": {"start_time": "2022-06-01T00:00:00", "frame_interval": "17h"},
        # lesson mode: synthetic_series paints its mat without the frame's light
        "preprocess": {
            "crop": {"rows": [-series.attrs["crop_rows"], None]},
            "illumination": "clahe",
        },
        "cluster": {"n_clusters": 3, "sample_size": 5000, "median_filter": 0},
        "classes": {"sediment": [0, 1], "mat": [2]},
        "report": {"html": False, "video": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "config.yaml"), *QUICK]) == 0
    capsys.readouterr()
    masks = mat_masks(series)
    (tmp_path / "masks").mkdir()
    for t in (1, 4):  # unlabelled (above the strip) is grey 128: in no class
        Image.fromarray(np.where(masks[t] < 0, 128, masks[t] * 255).astype(np.uint8)).save(
            tmp_path / "masks" / f"frame_{t:06d}.png"
        )
    table = evaluate_run(
        str(tmp_path / "out"), masks=tmp_path / "masks", mapping={"sediment": 0, "mat": 255}
    )
    frames = table[table["name"] != "all"]
    assert sorted(frames["frame"].unique()) == [1, 4]
    assert frames["time"].min() == pd.Timestamp("2022-06-01T17:00:00")
    assert value(table, "pixel_accuracy") == 1.0  # through the lossless video too
    truth = series["true_cover"].values
    assert value(table, "cover_true", "mat", name="frame_000004.png") == pytest.approx(truth[4])
    (tmp_path / "masks" / "frame_000009.png").write_bytes(
        (tmp_path / "masks" / "frame_000001.png").read_bytes()
    )
    code, out, err = run_cli(
        [
            "evaluate",
            str(tmp_path / "out"),
            "--masks",
            str(tmp_path / "masks"),
            "--mapping",
            str(write_mapping(tmp_path / "m.yaml", {"mat": 255}, None)),
        ],
        capsys,
    )
    assert_refused(
        code, out, err, ["mask frame_000009.png matches no frame", "frame_<N>", "0 to 5"]
    )


def bad_mask(folder: Path) -> Path:
    """A mask named after a still but a quarter of its size."""
    folder.mkdir()
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(folder / "n_l_12_.png")
    return folder


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing_mapping", ["--masks needs --mapping", "Give --mapping"]),
        ("size_mismatch", ["mask n_l_12_.png is 160x120 pixels", "its image is 640x480"]),
        (
            "unknown_class",
            ["class 'fish'", "not a class of the run ('reef', 'water')", "--match majority"],
        ),
        ("bad_csv", ["needs columns Name, Row, Column and Label", "Column"]),
        (
            "unknown_image",
            ["image 'elsewhere.jpg' of points file p.csv matches no frame", "d_r_598_"],
        ),
        (
            "point_outside",
            ["point 1 of n_l_12_.jpg (row 480, column 3) is outside its 640x480 image"],
        ),
        ("mapping_not_yaml", ["m.yaml is not valid YAML"]),
        ("no_run", ["there are no results in", "sediment-xr run"]),
    ],
)
def test_evaluate_cli_refuses_bad_input(stills_run, tmp_path, capsys, case, words):
    out = str(stills_run)
    masks = ["--masks", str(SUIM_DIR / "masks")]
    suim = ["--mapping", str(write_mapping(tmp_path / "suim.yaml", {"water": 0, "reef": 5}))]
    argv = {
        "missing_mapping": lambda: [*masks],
        "size_mismatch": lambda: ["--masks", str(bad_mask(tmp_path / "small")), *suim],
        "unknown_class": lambda: [
            *masks,
            "--mapping",
            str(write_mapping(tmp_path / "u.yaml", {"water": 0, "fish": 6})),
        ],
        "bad_csv": lambda: [
            "--points",
            str(write_points(tmp_path / "p.csv", [["a.jpg", 1, "W"]], "Name,Row,Label")),
        ],
        "unknown_image": lambda: [
            "--points",
            str(write_points(tmp_path / "p.csv", [["elsewhere.jpg", 1, 2, "water"]])),
        ],
        "point_outside": lambda: [
            "--points",
            str(write_points(tmp_path / "p.csv", [["n_l_12_.jpg", 480, 3, "water"]])),
        ],
        "mapping_not_yaml": lambda: [*masks, "--mapping", str(tmp_path / "m.yaml")],
        "no_run": lambda: [*masks, *suim],
    }[case]()
    if case == "mapping_not_yaml":
        (tmp_path / "m.yaml").write_text("classes: [water: 0\n")
    if case == "no_run":
        out = str(tmp_path)
    code, stdout, err = run_cli(
        ["evaluate", out, *argv, "--table", str(tmp_path / "t.csv")], capsys
    )
    assert_refused(code, stdout, err, words)
    assert not (tmp_path / "t.csv").exists()


def test_evaluate_cli_debug_shows_the_traceback(stills_run, tmp_path):
    with pytest.raises(ConfigError, match="--masks needs --mapping"):
        main(["evaluate", str(stills_run), "--masks", str(SUIM_DIR / "masks"), "--debug"])


def test_evaluate_needs_one_reference(stills_run):
    with pytest.raises(ConfigError, match=r"either masks .* or points .* but got neither"):
        evaluate_run(str(stills_run))
    with pytest.raises(ConfigError, match="needs a mapping of class names to mask values"):
        evaluate_run(str(stills_run), masks=SUIM_DIR / "masks")


def test_evaluate_a_resized_video_run(series, tmp_path):
    """Full-size masks of a run that halved its frames: resized, then cropped."""
    video = write_video(series["frames"], tmp_path / "mat.mkv", codec="ffv1")
    config = {
        "input": str(video),
        "output": str(tmp_path / "out"),
        "ingest": {"start_time": "2022-06-01T00:00:00", "frame_interval": "17h", "resize": 64},
        "preprocess": {
            "crop": {"rows": [-series.attrs["crop_rows"] // 2, None]},
            "illumination": "clahe",
        },
        "cluster": {"n_clusters": 3, "sample_size": 3000, "median_filter": 0},
        "classes": {"sediment": [0, 1], "mat": [2]},
        "report": {"html": False, "video": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "config.yaml"), *QUICK]) == 0
    masks = mat_masks(series)
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.where(masks[5] < 0, 128, masks[5] * 255).astype(np.uint8)).save(
        tmp_path / "masks" / "frame_5.png"
    )
    mapping = {"sediment": 0, "mat": 255}
    table = evaluate_run(str(tmp_path / "out"), masks=tmp_path / "masks", mapping=mapping)
    # halved frames: only pixels at the mat's edges can differ from the nearest-resized mask
    assert value(table, "pixel_accuracy") > 0.95
    assert table.query("name == 'all' and metric == 'pixel_accuracy'")["n"].item() == 25 * 64
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "masks" / "frame_5.png")
    with pytest.raises(
        InputError, match=r"mask frame_5.png is 64x64 pixels .* its image is 128x128"
    ):
        evaluate_run(str(tmp_path / "out"), masks=tmp_path / "masks", mapping=mapping)
