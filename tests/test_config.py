"""Tests of sediment_xr.config: strict YAML into a validated, frozen Config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from sediment_xr.config import (
    ClusterConfig,
    Config,
    DaskConfig,
    IngestConfig,
    PreprocessConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)
from sediment_xr.exceptions import ConfigError, SedimentXRError
from sediment_xr.testing import sample_frames_dir

CONFIGS = Path(__file__).parents[1] / "configs"
MINIMAL = {"input": "video.mkv", "output": "out"}
HEAD = "input: video.mkv\noutput: out\n"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def with_section(**sections) -> dict:
    return {**MINIMAL, **sections}


# --------------------------------------------------------------------------------------------
# defaults and the bundled config
def test_defaults_are_the_measured_best():
    config = config_from_dict(MINIMAL)
    assert config.input == "video.mkv"
    assert config.output == "out"
    assert config.ingest == IngestConfig(
        fps=None,
        resize=None,
        start_time=None,
        frame_interval=None,
        chunk_frames=None,  # auto
        store_frames=False,
    )
    assert config.preprocess.crop.rows == (-400, None)
    assert config.preprocess.crop.cols is None
    # flat field, 12 clusters, a 3 x 3 median: what measured best on planted truth
    # (benchmarks/accuracy.md); the lesson's CLAHE settings stay for illumination: clahe
    assert config.preprocess.illumination == "flat_field"
    assert config.preprocess.clahe.clip_limit == 2.0
    assert config.preprocess.clahe.tile_grid_size == (8, 8)
    assert config.preprocess.color_space == "bgr"
    assert config.cluster == ClusterConfig(
        n_clusters=12,
        sample_size=200_000,
        random_state=0,
        max_frames=240,
        n_refits=4,
        median_filter=3,
    )
    assert config.quality.include_flagged is False
    assert config.classes is None
    assert dict(config.storage_options) == {}
    assert config.dask == DaskConfig(
        scheduler=None, n_workers=2, threads_per_worker=1, memory_limit="4GiB"
    )


def test_parsed_defaults_equal_dataclass_defaults():
    assert config_from_dict(MINIMAL) == Config(input="video.mkv", output="out")
    assert PreprocessConfig().crop.rows == (-400, None)


def test_empty_sections_mean_defaults(tmp_path):
    path = write(tmp_path, HEAD + "ingest:\npreprocess:\n  crop:\n  clahe:\ncluster:\ndask:\n")
    assert load_config(path) == Config(
        input=str(tmp_path / "video.mkv"), output=str(tmp_path / "out")
    )


def test_config_is_frozen():
    config = config_from_dict(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.input = "other.mkv"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cluster.n_clusters = 5  # type: ignore[misc]


def test_bundled_shr_frames_config_loads():
    config = load_config(CONFIGS / "shr_frames.yaml")
    # `input: ../sediment_xr/data/shr_frames` is relative to the config file, not the cwd.
    assert Path(config.input).is_absolute()
    assert Path(config.input).resolve() == sample_frames_dir().resolve()
    assert len(list(Path(config.input).glob("frame_*.png"))) == 4
    assert Path(config.output) == (CONFIGS.parent / "results" / "shr_frames").resolve()
    assert config.ingest.start_time == "2022-01-01T00:00:00"
    assert config.ingest.frame_interval == "17h"
    assert config.ingest.chunk_frames == 2
    assert config.preprocess.crop.rows == (-400, None)
    assert config.preprocess.crop.cols is None  # [null, null]: the whole width
    assert config.preprocess.clahe.clip_limit == 2.0
    assert config.preprocess.clahe.tile_grid_size == (8, 8)
    assert config.preprocess.color_space == "bgr"
    assert config.cluster.n_clusters == 4
    assert config.cluster.sample_size == 200_000
    assert dict(config.classes) == {"bg": (0, 1), "bio": (2, 3)}


def test_bundled_config_does_not_depend_on_cwd(tmp_path, monkeypatch):
    expected = load_config(CONFIGS / "shr_frames.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(CONFIGS / "shr_frames.yaml") == expected


# --------------------------------------------------------------------------------------------
# paths
def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    path = write(folder, "input: ../data/video.mkv\noutput: ../results/run1\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    base = folder.resolve()
    assert config.input == str(base.parent / "data" / "video.mkv")
    assert config.output == str(base.parent / "results" / "run1")


def test_set_paths_are_relative_to_cwd_and_not_re_resolved(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    path = write(folder, "input: video.mkv\noutput: out\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, ["input=other/video.mkv"])
    assert config.input == "other/video.mkv"
    # the path still written in the file is resolved against the file
    assert config.output == str(folder.resolve() / "out")
    config = load_config(path, ["output=elsewhere"])
    assert config.output == "elsewhere"
    assert config.input == str(folder.resolve() / "video.mkv")


def test_absolute_paths_and_urls_are_kept(tmp_path):
    absolute = tmp_path / "data" / "video.mkv"
    path = write(tmp_path / "c", f"input: {absolute}\noutput: s3://bucket/results/run1\n")
    config = load_config(path)
    assert config.input == str(absolute)
    assert config.output == "s3://bucket/results/run1"


def test_config_from_dict_base_dir(tmp_path):
    config = config_from_dict(MINIMAL, base_dir=tmp_path)
    assert config.input == str(tmp_path / "video.mkv")
    assert config.output == str(tmp_path / "out")
    assert config_from_dict(MINIMAL).input == "video.mkv"


def test_defaults_argument_fills_missing_keys_only(tmp_path):
    path = write(tmp_path, "input: video.mkv\ncluster:\n  n_clusters: 3\n")
    config = load_config(path, defaults={"output": "default_out", "cluster": {"n_clusters": 6}})
    assert config.output == "default_out"
    assert config.cluster.n_clusters == 3  # the file wins over the defaults
    config = load_config(path, ["cluster.n_clusters=7"], defaults={"output": "o"})
    assert config.cluster.n_clusters == 7  # overrides win over the file


# --------------------------------------------------------------------------------------------
# frame_interval
@pytest.mark.parametrize("value", ["1h", "17h", "30min", "1 day", "1h30min"])
def test_frame_interval_accepts_durations(value):
    config = config_from_dict(
        with_section(ingest={"start_time": "2022-06-01", "frame_interval": value})
    )
    assert config.ingest.frame_interval == value
    assert config.ingest.start_time == "2022-06-01"


@pytest.mark.parametrize("value", ["17", "17.5", "-1h", "0h", "0min", "abc", 17, 1.5])
def test_frame_interval_rejects_bad_durations(value):
    with pytest.raises(ConfigError, match=r"config key ingest\.frame_interval needs .*duration"):
        config_from_dict(with_section(ingest={"frame_interval": value}))


def test_frame_interval_from_yaml(tmp_path):
    good = write(tmp_path, HEAD + "ingest:\n  start_time: '2022-06-01'\n  frame_interval: 17h\n")
    assert load_config(good).ingest.frame_interval == "17h"
    bad = write(tmp_path, HEAD + "ingest:\n  frame_interval: 17\n", name="bad.yaml")
    with pytest.raises(ConfigError, match=r"ingest\.frame_interval .*with a unit.*17h"):
        load_config(bad)


@pytest.mark.parametrize("value", ["", "nan", "NaT"])
def test_frame_interval_rejects_not_a_time(value):
    with pytest.raises(ConfigError, match=r"ingest\.frame_interval"):
        config_from_dict(with_section(ingest={"frame_interval": value}))


# --------------------------------------------------------------------------------------------
# strict keys
TOP_KEYS = (
    "input, output, name, storage_options, input_storage_options, output_storage_options, "
    "ingest, preprocess, cluster, classes, quality, dask, report"
)


def test_unknown_top_level_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, HEAD + "clusters:\n  n_clusters: 4\n")
    with pytest.raises(
        ConfigError,
        match=re.escape(f"unknown config key clusters; valid keys here are: {TOP_KEYS}"),
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "unknown", "valid"),
    [
        (
            "cluster:\n  n_cluster: 5\n",
            "cluster.n_cluster",
            "cluster.n_clusters, cluster.sample_size, cluster.random_state, cluster.max_frames, "
            "cluster.model, cluster.reference, cluster.n_refits, cluster.median_filter",
        ),
        (
            "preprocess:\n  crop:\n    row: [-200, null]\n",
            "preprocess.crop.row",
            "preprocess.crop.rows, preprocess.crop.cols",
        ),
        (
            "preprocess:\n  clahe:\n    cliplimit: 2\n",
            "preprocess.clahe.cliplimit",
            "preprocess.clahe.clip_limit, preprocess.clahe.tile_grid_size",
        ),
        (
            "preprocess:\n  rows: [-200, null]\n",
            "preprocess.rows",
            "preprocess.crop, preprocess.illumination, preprocess.clahe, preprocess.color_space",
        ),
        (
            "ingest:\n  interval: 1h\n",
            "ingest.interval",
            "ingest.fps, ingest.resize, ingest.start_time, ingest.frame_interval, "
            "ingest.window, ingest.chunk_frames, ingest.store_frames",
        ),
        (
            "dask:\n  workers: 4\n",
            "dask.workers",
            "dask.scheduler, dask.n_workers, dask.threads_per_worker, dask.memory_limit, "
            "dask.retries",
        ),
    ],
)
def test_unknown_nested_key_lists_valid_keys(tmp_path, text, unknown, valid):
    path = write(tmp_path, HEAD + text)
    with pytest.raises(
        ConfigError,
        match=re.escape(f"unknown config key {unknown}; valid keys here are: {valid}."),
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("cluster: 4\n", "cluster"),
        ("ingest: [1, 2]\n", "ingest"),
        ("preprocess:\n  crop: -400\n", "preprocess.crop"),
    ],
)
def test_section_that_is_not_a_mapping(tmp_path, text, key):
    path = write(tmp_path, HEAD + text)
    with pytest.raises(ConfigError, match=rf"config key {re.escape(key)} needs a mapping of keys"):
        load_config(path)


# --------------------------------------------------------------------------------------------
# wrong types and values
BAD_VALUES = [
    ("ingest:\n  store_frames: 'yes'\n", "ingest.store_frames needs true or false, but got 'yes'"),
    ("cluster:\n  n_clusters: 1\n", "cluster.n_clusters needs a whole number from 2 to 100"),
    ("cluster:\n  n_clusters: 0\n", "cluster.n_clusters needs a whole number from 2 to 100"),
    ("cluster:\n  n_clusters: -3\n", "cluster.n_clusters needs a whole number from 2 to 100"),
    ("cluster:\n  n_clusters: 1000\n", "cluster.n_clusters needs a whole number from 2 to 100"),
    ("cluster:\n  n_clusters: 2.5\n", "cluster.n_clusters needs a whole number, but got 2.5"),
    ("cluster:\n  n_clusters: four\n", "cluster.n_clusters needs a whole number, but got 'four'"),
    ("cluster:\n  n_clusters: true\n", "cluster.n_clusters needs a whole number, but got True"),
    ("cluster:\n  n_clusters: null\n", "cluster.n_clusters needs a whole number, but got None"),
    ("cluster:\n  sample_size: .nan\n", "cluster.sample_size needs a whole number, but got nan"),
    ("cluster:\n  sample_size: -5\n", "cluster.sample_size needs a whole number from 100 to"),
    ("cluster:\n  sample_size: 1000000000000\n", "cluster.sample_size needs a whole number from"),
    ("cluster:\n  sample_size: 1.0e+12\n", "cluster.sample_size needs a whole number, but got"),
    ("cluster:\n  random_state: -1\n", "cluster.random_state needs a whole number from 0 to"),
    ("cluster:\n  max_frames: 0\n", "cluster.max_frames needs a whole number from 1 to"),
    (
        "preprocess:\n  clahe:\n    clip_limit: -1\n",
        "preprocess.clahe.clip_limit needs a positive finite number, but got -1",
    ),
    (
        "preprocess:\n  clahe:\n    clip_limit: 0\n",
        "preprocess.clahe.clip_limit needs a positive finite number",
    ),
    (
        "preprocess:\n  clahe:\n    clip_limit: .nan\n",
        "preprocess.clahe.clip_limit needs a positive finite number, but got nan",
    ),
    (
        "preprocess:\n  clahe:\n    clip_limit: .inf\n",
        "preprocess.clahe.clip_limit needs a positive finite number, but got inf",
    ),
    (
        "preprocess:\n  clahe:\n    clip_limit: x\n",
        "preprocess.clahe.clip_limit needs a positive number, but got 'x'",
    ),
    (
        "preprocess:\n  clahe:\n    tile_grid_size: [8]\n",
        "preprocess.clahe.tile_grid_size needs two whole numbers, but got [8]",
    ),
    (
        "preprocess:\n  clahe:\n    tile_grid_size: 8\n",
        "preprocess.clahe.tile_grid_size needs two whole numbers, but got 8",
    ),
    (
        "preprocess:\n  clahe:\n    tile_grid_size: [0, 8]\n",
        "preprocess.clahe.tile_grid_size needs a whole number from 1 to 256, but got 0",
    ),
    (
        "preprocess:\n  crop:\n    rows: abc\n",
        "preprocess.crop.rows needs two values [start, stop], but got 'abc'",
    ),
    (
        "preprocess:\n  crop:\n    rows: [1, 2, 3]\n",
        "preprocess.crop.rows needs two values [start, stop], but got [1, 2, 3]",
    ),
    (
        "preprocess:\n  crop:\n    cols: [a, 2]\n",
        "preprocess.crop.cols needs two whole numbers or null",
    ),
    (
        "preprocess:\n  crop:\n    rows: [1.5, null]\n",
        "preprocess.crop.rows needs two whole numbers or null",
    ),
    (
        "preprocess:\n  color_space: xyz\n",
        "preprocess.color_space needs one of bgr, rgb, hsv, lab, but got 'xyz'",
    ),
    ("classes: [bio, bg]\n", "classes needs a mapping of class name to cluster ids"),
    ("classes: {}\n", "classes needs a mapping of class name to cluster ids"),
    ("classes:\n  bio: abc\n", "classes.bio needs a list of cluster ids, but got 'abc'"),
    ("classes:\n  bio: []\n", "classes.bio needs a list of cluster ids, but got []"),
    ("classes:\n  bio: true\n", "classes.bio needs a list of cluster ids, but got True"),
    ("classes:\n  bio: [2, -1]\n", "classes.bio needs cluster ids of 0 or more, but got -1"),
    ("classes:\n  bio: [true]\n", "classes.bio needs whole-number cluster ids, but got True"),
    ("classes:\n  bio: [2.0]\n", "classes.bio needs whole-number cluster ids, but got 2.0"),
    ("ingest:\n  fps: 0\n", "ingest.fps needs a positive finite number, but got 0"),
    ("ingest:\n  fps: ten\n", "ingest.fps needs a positive number, but got 'ten'"),
    ("ingest:\n  resize: 0\n", "ingest.resize needs a size in pixels from 1 to 16384"),
    ("ingest:\n  resize: [64, 48, 3]\n", "ingest.resize needs a size in pixels from 1 to 16384"),
    ("ingest:\n  chunk_frames: 0\n", "ingest.chunk_frames needs a whole number from 1 to 4096"),
    ("ingest:\n  start_time: ''\n", "ingest.start_time needs text"),
    ("dask:\n  n_workers: 0\n", "dask.n_workers needs a whole number from 1 to 512"),
    ("dask:\n  memory_limit: [4]\n", "dask.memory_limit needs a size"),
    ("storage_options: [anon]\n", "storage_options needs a mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES)
def test_bad_value_names_the_key(tmp_path, text, message):
    path = write(tmp_path, HEAD + text)
    with pytest.raises(ConfigError, match=re.escape(f"config key {message}")) as info:
        load_config(path)
    # every message ends with how to fix it
    assert re.search(r"\. (Use|Add|Indent)\b", str(info.value))


@pytest.mark.parametrize("key", ["input", "output"])
@pytest.mark.parametrize("value", [None, "", "  ", 3, ["a.mkv"]])
def test_missing_or_bad_input_output(key, value):
    if key == "input" and value == ["a.mkv"]:
        value = []  # a list of recordings is an input; an empty one is not
    data = dict(MINIMAL)
    if value is None:
        del data[key]
    else:
        data[key] = value
    with pytest.raises(ConfigError, match=rf"config key {key} needs a path or URL.*Add e\.g\."):
        config_from_dict(data)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError, match="n_clusters"):
        config_from_dict(with_section(cluster={"n_clusters": 1}))
    assert issubclass(ConfigError, SedimentXRError)


def test_valid_values_are_normalised():
    config = config_from_dict(
        with_section(
            ingest={"fps": 5, "resize": [64, 48], "chunk_frames": 3},
            preprocess={
                "crop": {"rows": [-32, None], "cols": [None, 60]},
                "clahe": {"clip_limit": 3, "tile_grid_size": [4, 2]},
                "color_space": "lab",
            },
            classes={"bio": 3, 7: [0, 1]},
        )
    )
    assert config.ingest.fps == 5.0
    assert isinstance(config.ingest.fps, float)
    assert config.ingest.resize == (64, 48)
    assert config.preprocess.crop.rows == (-32, None)
    assert config.preprocess.crop.cols == (None, 60)
    assert config.preprocess.clahe.clip_limit == 3.0
    assert config.preprocess.clahe.tile_grid_size == (4, 2)
    assert dict(config.classes) == {"bio": (3,), "7": (0, 1)}
    assert config_from_dict(with_section(ingest={"resize": 64})).ingest.resize == (64, 64)


@pytest.mark.parametrize(
    "classes", [{"bio": [2, 7]}, {"bio": [2, 3], "bg": [3]}], ids=["out-of-range", "overlap"]
)
def test_classes_checked_against_n_clusters(classes):
    with pytest.raises(ConfigError, match="classes"):
        config_from_dict(with_section(cluster={"n_clusters": 4}, classes=classes))


# --------------------------------------------------------------------------------------------
# YAML problems
def test_broken_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "input: [unclosed")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML at line 1, column \d+"):
        load_config(path)


def test_bad_indentation_names_the_line(tmp_path):
    path = write(tmp_path, "input: video.mkv\n\toutput: out\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2.*indent with spaces"):
        load_config(path)


def test_yaml_alias_is_refused(tmp_path):
    path = write(tmp_path, "a: &a [1,2]\nb: [*a, *a]\n")
    with pytest.raises(ConfigError, match=r"uses a YAML alias \(\*a\).*anchors and aliases"):
        load_config(path)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = write(tmp_path, HEAD + "\n".join(levels) + "\n")
    with pytest.raises(ConfigError, match="alias"):
        load_config(path)


def test_yaml_alias_in_set_is_refused():
    with pytest.raises(ConfigError, match="alias"):
        apply_overrides(MINIMAL, ["classes={a: &x [1], b: *x}"])


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("input: a.mkv\noutput: out\ninput: b.mkv\n", "input", 3),
        (
            "input: a.mkv\noutput: out\ncluster:\n  n_clusters: 3\n  n_clusters: 5\n",
            "n_clusters",
            5,
        ),
    ],
)
def test_duplicate_key_is_refused(tmp_path, text, key, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"config key '{key}' appears twice \(line {line}\)"):
        load_config(path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("hello\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"needs a mapping of config keys at the top.*a {kind}"):
        load_config(path)


def test_config_from_dict_needs_a_mapping():
    with pytest.raises(ConfigError, match=r"needs a mapping of keys \(input, output"):
        config_from_dict(["input", "output"])  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "# just a comment\n"])
def test_empty_file_asks_for_input(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="config key input needs a path or URL, but got None"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_folder_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file"):
        load_config(tmp_path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"config\.yaml is not UTF-8 text"):
        load_config(path)


def test_nul_character_is_refused(tmp_path):
    path = write(tmp_path, "input: a\x00b\noutput: out\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_huge_file_is_refused(tmp_path):
    path = write(tmp_path, HEAD + "#" * 1_100_000 + "\n")
    with pytest.raises(ConfigError, match=r"bytes; a config is a few lines of YAML"):
        load_config(path)


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path, "input: !!python/object/apply:os.getcwd []\noutput: out\n")
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        load_config(path)


# --------------------------------------------------------------------------------------------
# --set overrides
def test_apply_overrides_sets_nested_values_without_changing_the_input():
    data = {**MINIMAL, "cluster": {"n_clusters": 4, "sample_size": 1000}}
    out = apply_overrides(data, ["cluster.n_clusters=5"])
    assert out["cluster"] == {"n_clusters": 5, "sample_size": 1000}
    assert data["cluster"]["n_clusters"] == 4
    assert config_from_dict(out).cluster.n_clusters == 5


def test_apply_overrides_creates_sections():
    out = apply_overrides(MINIMAL, ["preprocess.crop.rows=[-200,null]"])
    assert out["preprocess"] == {"crop": {"rows": [-200, None]}}
    assert config_from_dict(out).preprocess.crop.rows == (-200, None)


def test_apply_overrides_mapping_value():
    out = apply_overrides(MINIMAL, ["classes={bio: [2,3]}"])
    assert out["classes"] == {"bio": [2, 3]}
    assert dict(config_from_dict(out).classes) == {"bio": (2, 3)}


def test_apply_overrides_in_order_and_values_parsed_as_yaml():
    out = apply_overrides(
        MINIMAL,
        [
            "cluster.n_clusters=5",
            "cluster.n_clusters=6",
            "ingest.fps=2.5",
            "ingest.start_time='2022-06-01'",
            "ingest.frame_interval=1h",
            "ingest.resize=",
            "output=a=b",
        ],
    )
    assert out["cluster"]["n_clusters"] == 6
    assert out["ingest"] == {
        "fps": 2.5,
        "start_time": "2022-06-01",
        "frame_interval": "1h",
        "resize": None,
    }
    assert out["output"] == "a=b"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nonsense", "--set needs section.key=value, but got 'nonsense'"),
        ("=5", "--set needs a key like cluster.n_clusters, but got ''"),
        (".n_clusters=5", "--set needs a key like cluster.n_clusters"),
        ("cluster..n_clusters=5", "--set needs a key like cluster.n_clusters"),
        ("cluster.n_clusters=[", "--set cluster.n_clusters is not valid YAML"),
    ],
)
def test_apply_overrides_bad_form(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(MINIMAL, [override])


def test_load_config_with_overrides(tmp_path):
    path = write(tmp_path, HEAD + "cluster:\n  n_clusters: 4\n")
    config = load_config(
        path,
        ["cluster.n_clusters=5", "preprocess.crop.rows=[-200,null]", "classes={bio: [2,3]}"],
    )
    assert config.cluster.n_clusters == 5
    assert config.preprocess.crop.rows == (-200, None)
    assert dict(config.classes) == {"bio": (2, 3)}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cluster.n_clusters=1", "config key cluster.n_clusters needs a whole number from 2"),
        ("cluster.n_cluster=5", "unknown config key cluster.n_cluster; valid keys here are"),
        ("nonsense", "--set needs section.key=value"),
    ],
)
def test_load_config_validates_overrides(tmp_path, override, message):
    path = write(tmp_path, HEAD)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, [override])


# --------------------------------------------------------------------------------------------
# to_dict, fingerprints, dump_config
FULL = {
    "input": "/data/video.mkv",
    "output": "/results/run1",
    "storage_options": {"anon": True},
    "ingest": {
        "fps": 2,
        "resize": [64, 48],
        "start_time": "2022-06-01T00:00:00",
        "frame_interval": "17h",
        "chunk_frames": 3,
        "store_frames": True,
    },
    "preprocess": {
        "crop": {"rows": [-32, None], "cols": [None, 60]},
        "clahe": {"clip_limit": 3.5, "tile_grid_size": [4, 2]},
        "color_space": "lab",
    },
    "cluster": {"n_clusters": 5, "sample_size": 1000, "random_state": 7, "max_frames": 12},
    "classes": {"bio": [3, 4], "bg": [0, 1, 2]},
    "dask": {
        "scheduler": "tcp://127.0.0.1:8786",
        "n_workers": 3,
        "threads_per_worker": 2,
        "memory_limit": "1GiB",
        "retries": 1,
    },
}


def test_to_dict_is_the_file_layout():
    config = config_from_dict(FULL)
    data = config.to_dict()
    assert data["ingest"] == {**FULL["ingest"], "fps": 2.0, "window": None}
    assert data["preprocess"] == {
        "crop": {"rows": [-32, None], "cols": [None, 60]},
        "illumination": "flat_field",
        "clahe": {"clip_limit": 3.5, "tile_grid_size": [4, 2]},
        "color_space": "lab",
    }
    assert data["cluster"] == {
        **FULL["cluster"],
        "model": None,
        "reference": None,
        "n_refits": 4,
        "median_filter": 3,
    }
    assert data["classes"] == FULL["classes"]
    assert data["dask"] == FULL["dask"]
    assert data["storage_options"] == {"anon": True}
    # the file layout is itself a valid config
    assert config_from_dict(data) == config


def _changed(path: str, value) -> Config:
    data = yaml.safe_load(yaml.safe_dump(FULL))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return config_from_dict(data)


def test_fingerprint_is_stable_and_short():
    a, b = config_from_dict(FULL), config_from_dict(FULL)
    for stage in ("cube", "model"):
        assert a.fingerprint(stage) == b.fingerprint(stage)
        assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint(stage))
    assert a.fingerprint("cube") != a.fingerprint("model")
    assert a.fingerprint("cube", "files", 32) != a.fingerprint("cube", "other files", 32)


def test_fingerprint_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'label'; stages are cube, model"):
        config_from_dict(FULL).fingerprint("label")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("classes", {"bio": [0, 1, 2, 3, 4]}),
        ("classes", None),
        ("dask.n_workers", 8),
        ("dask.scheduler", None),
        ("dask.memory_limit", "16GiB"),
        ("dask", None),
        ("ingest.store_frames", False),
        ("report", {"html": False, "video": False}),
    ],
)
def test_fingerprints_ignore_classes_dask_report_and_store_frames(path, value):
    """Changing these never refits nor relabels."""
    base, changed = config_from_dict(FULL), _changed(path, value)
    assert changed != base
    assert changed.fingerprint("cube") == base.fingerprint("cube")
    assert changed.fingerprint("model") == base.fingerprint("model")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("cluster.n_clusters", 6),
        ("cluster.sample_size", 2000),
        ("cluster.random_state", 8),
        ("cluster.max_frames", 24),
        ("preprocess.clahe.clip_limit", 2.0),
        ("preprocess.color_space", "bgr"),
    ],
)
def test_model_settings_change_only_the_model_fingerprint(path, value):
    base, changed = config_from_dict(FULL), _changed(path, value)
    assert changed.fingerprint("cube") == base.fingerprint("cube")
    assert changed.fingerprint("model") != base.fingerprint("model")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ingest.fps", 5),
        ("ingest.resize", 64),
        ("ingest.start_time", "2023-01-01T00:00:00"),
        ("ingest.frame_interval", "1h"),
        ("input", "/data/other.mkv"),
        ("preprocess.crop.rows", [-16, None]),  # the grid of the labels
    ],
)
def test_ingest_and_crop_settings_change_both_fingerprints(path, value):
    base, changed = config_from_dict(FULL), _changed(path, value)
    assert changed.fingerprint("cube") != base.fingerprint("cube")
    assert changed.fingerprint("model") != base.fingerprint("model")


def test_output_is_in_no_fingerprint():
    base, changed = config_from_dict(FULL), _changed("output", "/results/run2")
    assert changed.fingerprint("cube") == base.fingerprint("cube")
    assert changed.fingerprint("model") == base.fingerprint("model")


@pytest.mark.parametrize(
    "data",
    [MINIMAL, FULL, with_section(classes={"x": 1}, ingest={"resize": 64})],
    ids=["minimal", "full", "short-forms"],
)
def test_dump_config_round_trips(data):
    config = config_from_dict(data)
    text = dump_config(config)
    assert config_from_dict(yaml.safe_load(text)) == config
    assert dump_config(config_from_dict(yaml.safe_load(text))) == text


def test_dump_config_round_trips_through_load_config(tmp_path):
    config = load_config(CONFIGS / "shr_frames.yaml")
    path = write(tmp_path, dump_config(config), name="resolved.yaml")
    assert load_config(path) == config
    assert config_from_dict(yaml.safe_load(path.read_text())) == config


def test_dump_config_keeps_the_time_a_string(tmp_path):
    config = config_from_dict(FULL)
    text = dump_config(config)
    assert yaml.safe_load(text)["ingest"]["start_time"] == "2022-06-01T00:00:00"
    assert "17h" in text


def test_unquoted_start_time_equals_quoted(tmp_path):
    bare = write(tmp_path, HEAD + "ingest:\n  start_time: 2022-06-01T00:00:00\n", "bare.yaml")
    quoted = write(tmp_path, HEAD + "ingest:\n  start_time: '2022-06-01T00:00:00'\n", "q.yaml")
    assert load_config(quoted).ingest.start_time == "2022-06-01T00:00:00"
    assert load_config(bare).fingerprint("cube") == load_config(quoted).fingerprint("cube")


# --------------------------------------------------------------------------------------------
# dask.memory_limit
@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("4GiB", "4GiB"),
        ("1500 MB", "1500 MB"),
        ("auto", "auto"),
        (2**31, "2147483648"),
        (4e9, "4000000000"),
    ],
)
def test_memory_limit_accepts_sizes(value, stored):
    config = config_from_dict(with_section(dask={"memory_limit": value}))
    assert config.dask.memory_limit == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4 gigs", "needs a size such as 4GiB, but got '4 gigs'"),
        ("-1GB", "needs a size from 1GiB to 1PiB per worker, but got '-1GB'"),
        ("4kB", "needs a size from 1GiB to 1PiB per worker"),
        (0, "needs a size from 1GiB to 1PiB per worker, but got 0"),
        (10**30, "needs a size from 1GiB to 1PiB per worker"),
        (float("nan"), "needs a size such as 4GiB, but got nan"),
        (float("inf"), "needs a size such as 4GiB, but got inf"),
        (True, "needs a size such as 4GiB, but got True"),
        (None, "needs a size such as 4GiB, but got None"),
        ([4], "needs a size such as 4GiB, but got [4]"),
    ],
)
def test_memory_limit_rejects(value, message):
    with pytest.raises(ConfigError, match=re.escape(f"config key dask.memory_limit {message}")):
        config_from_dict(with_section(dask={"memory_limit": value}))


def test_in_process_scheduler_names_are_accepted():
    config = config_from_dict(with_section(dask={"scheduler": "synchronous"}))
    assert config.dask.scheduler == "synchronous"


@pytest.mark.parametrize("value", ["auto", None])
def test_chunk_frames_auto(value):
    config = config_from_dict({**MINIMAL, "ingest": {"chunk_frames": value}})
    assert config.ingest.chunk_frames is None
    assert config.to_dict()["ingest"]["chunk_frames"] == "auto"
    assert config_from_dict(config.to_dict()) == config
    assert config.fingerprint("cube") == config_from_dict(MINIMAL).fingerprint("cube")


def test_chunk_frames_words_other_than_auto_are_refused():
    with pytest.raises(ConfigError, match=r"ingest.chunk_frames needs a whole number.*auto"):
        config_from_dict({**MINIMAL, "ingest": {"chunk_frames": "many"}})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ingest.frame_interval", "1020min"),  # 17h
        ("ingest.start_time", "2022-06-01T02:00:00+02:00"),  # the same instant
        ("ingest.chunk_frames", "auto"),  # the run adds the resolved number of frames
        ("preprocess.crop.cols", None),  # [null, 60] below is another crop; null is all
    ],
)
def test_fingerprints_follow_meanings_not_spellings(path, value):
    base = config_from_dict(FULL)
    changed = _changed(path, value)
    if path == "preprocess.crop.cols":  # compare [null, null] with null instead
        base = _changed(path, [None, None])
    assert changed.fingerprint("cube", 3) == base.fingerprint("cube", 3)
    assert changed.fingerprint("model", 3) == base.fingerprint("model", 3)


def test_rewording_keeps_the_suggested_values_intact():
    with pytest.raises(ConfigError) as info:
        config_from_dict(with_section(cluster={"model": 5}))
    assert str(info.value) == (
        "config key cluster.model needs text, but got 5. "
        "Use e.g. cluster.model: 'results/shr_frames/model.json'."
    )


def test_input_and_output_storage_options_replace_the_shared_ones(tmp_path):
    """A public input read anonymously, a private output written with credentials."""
    text = (
        "input: s3://public/video.mp4\noutput: s3://private/run\n"
        "storage_options: {endpoint_url: 'http://127.0.0.1:9'}\n"
        "input_storage_options: {anon: true}\n"
        "output_storage_options: {key: AKIAEXAMPLE, secret: topsecret}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.input_options == {"anon": True}
    assert config.output_options == {"key": "AKIAEXAMPLE", "secret": "topsecret"}
    shared = load_config(
        write(tmp_path, "input: s3://b/v.mp4\noutput: s3://b/run\nstorage_options: {anon: true}\n")
    )
    assert shared.input_options == shared.output_options == {"anon": True}
    dumped = dump_config(config)
    assert "topsecret" not in dumped and "AKIAEXAMPLE" not in dumped
    with pytest.raises(ConfigError, match="input_storage_options needs a mapping"):
        load_config(write(tmp_path, "input: a.mp4\noutput: out\ninput_storage_options: anon\n"))


def test_a_shown_config_or_result_does_not_show_credentials():
    """repr() of a config (what a notebook cell shows and saves) leaves storage options out."""
    from sediment_xr.pipeline import RunResult
    from sediment_xr.store import Output

    options = {"key": "AKIAEXAMPLE", "secret": "topsecret"}
    config = config_from_dict(
        {
            "input": "s3://b/v.mp4",
            "output": "s3://b/run",
            "storage_options": options,
            "output_storage_options": options,
        }
    )
    assert "topsecret" not in repr(config) and "AKIAEXAMPLE" not in repr(config)
    assert "topsecret" not in repr(Output("s3://b/run", options))
    fields = {f.name: f.repr for f in dataclasses.fields(RunResult)}
    assert fields["storage_options"] is False


def test_model_and_reference_together_are_refused():
    with pytest.raises(ConfigError, match=r"cluster\.model and cluster\.reference are both set"):
        config_from_dict({**MINIMAL, "cluster": {"model": "a.json", "reference": "b.json"}})


def test_a_class_named_like_a_column_is_refused():
    with pytest.raises(ConfigError, match=r"names other than the columns of cover\.csv"):
        config_from_dict({**MINIMAL, "classes": {"quality": [0], "mat": [1]}})
