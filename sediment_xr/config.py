"""Run configuration: strict YAML into frozen dataclasses.

The library functions take plain keyword arguments; this module turns a YAML file (plus
``--set section.key=value`` overrides) into a validated, frozen :class:`Config` for the CLI
and :func:`sediment_xr.pipeline.run`. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sediment_xr.exceptions import ConfigError

__all__ = [
    "ClusterConfig",
    "Config",
    "DaskConfig",
    "IngestConfig",
    "PreprocessConfig",
    "ReportConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
]

_COLOR_SPACES = ("bgr", "rgb", "hsv", "lab")
_MAX_CONFIG_BYTES = 1_000_000
# dask.memory_limit per worker: an idle worker process alone uses about 250 MiB here; below
# 1 GiB dask pauses or restarts workers for ever instead of failing.
_MIN_MEMORY_LIMIT = 2**30
_MAX_MEMORY_LIMIT = 2**50  # 1 PiB


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """How frames are read: sampling rate, size, time axis, chunking and whether to keep them.

    ``store_frames`` keeps the decoded frames in ``cube.zarr`` (off by default: measured, they
    take ~20 times the size of an H.264 video and writing them costs more than decoding the
    frame again; the frames stay available lazily through :func:`sediment_xr.open_video`).
    ``chunk_frames`` None is automatic (:func:`sediment_xr.io.auto_chunk_frames`).
    """

    fps: float | None = None
    resize: int | tuple[int, int] | None = None
    start_time: str | None = None
    frame_interval: str | None = None
    chunk_frames: int | None = None  # auto: sediment_xr.io.auto_chunk_frames
    store_frames: bool = False


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Crop, CLAHE and colour space (defaults are the lesson's)."""

    rows: tuple[int | None, int | None] | None = (-400, None)
    cols: tuple[int | None, int | None] | None = None
    clip_limit: float = 2.0
    tile_grid_size: tuple[int, int] = (8, 8)
    color_space: str = "bgr"


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """MiniBatch KMeans on a pixel sample spread over the series.

    ``model`` is the path or URL of a ``model.json`` from an earlier run of the same camera:
    it is applied as it is, and no new model is fitted.
    """

    n_clusters: int = 4
    sample_size: int = 200_000
    random_state: int = 0
    max_frames: int = 240
    model: str | None = None


@dataclasses.dataclass(frozen=True)
class DaskConfig:
    """Where to compute: an existing scheduler, or an embedded LocalCluster."""

    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """What is drawn and written for the analyst besides the tables."""

    html: bool = True
    video: bool = True
    video_fps: int = 10
    png_frames: tuple[int, ...] = ()
    example_frame: int | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run of ``sediment-xr run``."""

    input: str
    output: str
    ingest: IngestConfig = IngestConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    cluster: ClusterConfig = ClusterConfig()
    classes: Mapping[str, tuple[int, ...]] | None = None
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dask: DaskConfig = DaskConfig()
    report: ReportConfig = ReportConfig()

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain YAML-able data, in the file layout."""
        pre = self.preprocess
        return {
            "input": self.input,
            "output": self.output,
            "storage_options": dict(self.storage_options),
            "ingest": {
                "fps": self.ingest.fps,
                "resize": _plain(self.ingest.resize),
                "start_time": self.ingest.start_time,
                "frame_interval": self.ingest.frame_interval,
                "chunk_frames": self.ingest.chunk_frames or "auto",
                "store_frames": self.ingest.store_frames,
            },
            "preprocess": {
                "crop": {"rows": _plain(pre.rows), "cols": _plain(pre.cols)},
                "clahe": {
                    "clip_limit": pre.clip_limit,
                    "tile_grid_size": list(pre.tile_grid_size),
                },
                "color_space": pre.color_space,
            },
            "cluster": dataclasses.asdict(self.cluster),
            "classes": None
            if self.classes is None
            else {k: list(v) for k, v in self.classes.items()},
            "dask": dataclasses.asdict(self.dask),
            "report": {
                **dataclasses.asdict(self.report),
                "png_frames": list(self.report.png_frames),
            },
        }

    def fingerprint(self, stage: str) -> str:
        """Hash of everything a stage's stored result depends on.

        ``ingest``: the input and ingest options. ``model``: that plus preprocessing and
        clustering (labels and cluster cover depend on nothing else). Class names and the
        Dask settings are in neither: changing them reuses the stored model and labels.
        """
        data = self.to_dict()
        parts: dict[str, Any] = {"input": data["input"], "ingest": data["ingest"]}
        if stage == "model":
            parts |= {"preprocess": data["preprocess"], "cluster": data["cluster"]}
        elif stage != "ingest":
            raise ValueError(f"unknown stage {stage!r}")
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------------------------
# schema: section -> key -> validator
def _fail(key: str, need: str, value: Any, fix: str) -> ConfigError:
    return ConfigError(f"config key {key} needs {need}, but got {value!r}. {fix}")


def _int(key: str, value: Any, *, low: int, high: int | None = None, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, "a whole number", value, fix)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _fail(key, f"a whole number {span}", value, fix)
    return value


def _number(key: str, value: Any, *, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, "a positive number", value, fix)
    if not math.isfinite(value) or value <= 0 or value > 1e6:
        raise _fail(key, "a positive finite number", value, fix)
    return float(value)


def _optional_str(key: str, value: Any, fix: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "text", value, fix)
    return value


def _bounds(key: str, value: Any) -> tuple[int | None, int | None] | None:
    fix = f"Use e.g. {key.rsplit('.', 1)[-1]}: [-400, null] (null keeps that end open)."
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(key, "two values [start, stop]", value, fix)
    out = []
    for v in value:
        if v is None:
            out.append(None)
        elif isinstance(v, bool) or not isinstance(v, int) or abs(v) > 10**6:
            raise _fail(key, "two whole numbers or null", value, fix)
        else:
            out.append(v)
    return (out[0], out[1])


def _resize(value: Any) -> int | tuple[int, int] | None:
    fix = "Use e.g. resize: 1024 or resize: [1024, 1024] (width, height)."
    if value is None:
        return None
    items = [value] if not isinstance(value, list | tuple) else list(value)
    if len(items) not in (1, 2) or any(
        isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16384 for v in items
    ):
        raise _fail("ingest.resize", "a size in pixels from 1 to 16384", value, fix)
    return items[0] if not isinstance(value, list | tuple) else (items[0], items[-1])


def _time_string(key: str, value: Any, fix: str) -> str | None:
    if value is None:
        return None
    import datetime as dt

    if isinstance(value, dt.datetime | dt.date):  # YAML turns bare timestamps into datetimes
        return value.isoformat()
    return _optional_str(key, value, fix)


def _interval(value: Any) -> str | None:
    fix = "Use a duration with a unit, e.g. frame_interval: 17h, 1h or 30min."
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("ingest.frame_interval", "a duration with a unit", value, fix)
    import pandas as pd

    try:
        delta = pd.Timedelta(value)
    except (ValueError, TypeError) as err:
        raise _fail("ingest.frame_interval", "a duration with a unit", value, fix) from err
    bare_number = value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    if bare_number or pd.isna(delta) or delta <= pd.Timedelta(0):
        raise _fail("ingest.frame_interval", "a positive duration with a unit", value, fix)
    return value


def _classes(value: Any, n_clusters: Any) -> dict[str, tuple[int, ...]] | None:
    fix = "Use e.g. classes: {bio: [2, 3], bg: [0, 1]}."
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise _fail("classes", "a mapping of class name to cluster ids", value, fix)
    out: dict[str, tuple[int, ...]] = {}
    for name, ids in value.items():
        if not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
            raise _fail("classes", "text class names", name, fix)
        ids = [ids] if isinstance(ids, int) and not isinstance(ids, bool) else ids
        if not isinstance(ids, list) or not ids:
            raise _fail(f"classes.{name}", "a list of cluster ids", ids, fix)
        for cid in ids:
            _int(f"classes.{name}", cid, low=0, high=99, fix=fix)
        out[str(name)] = tuple(ids)
    if isinstance(n_clusters, int) and not isinstance(n_clusters, bool) and n_clusters >= 2:
        from sediment_xr.coverage import _check_classes

        _check_classes(out, n_clusters)  # ids within 0..k-1, each cluster in one class
    return out


_TOP_KEYS = (
    "input",
    "output",
    "storage_options",
    "ingest",
    "preprocess",
    "cluster",
    "classes",
    "dask",
    "report",
)
_SECTION_KEYS = {
    "ingest": ("fps", "resize", "start_time", "frame_interval", "chunk_frames", "store_frames"),
    "preprocess": ("crop", "clahe", "color_space"),
    "preprocess.crop": ("rows", "cols"),
    "preprocess.clahe": ("clip_limit", "tile_grid_size"),
    "cluster": ("n_clusters", "sample_size", "random_state", "max_frames", "model"),
    "dask": ("scheduler", "n_workers", "threads_per_worker", "memory_limit"),
    "report": ("html", "video", "video_fps", "png_frames", "example_frame"),
}


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name.rsplit(".", 1)[-1])
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"config key {name} needs a mapping of keys ({', '.join(_SECTION_KEYS[name])}), "
            f"but got {value!r}. Indent its keys under '{name.rsplit('.', 1)[-1]}:'."
        )
    _check_keys(value, _SECTION_KEYS[name], prefix=f"{name}.")
    return dict(value)


def _check_keys(data: Mapping[str, Any], valid: Sequence[str], prefix: str = "") -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(
                f"unknown config key {prefix}{key}; valid keys here are: "
                f"{', '.join(prefix + v for v in valid)}. Fix the spelling or remove it."
            )


def config_from_dict(data: Mapping[str, Any], *, base_dir: str | Path | None = None) -> Config:
    """Validate plain data (as read from YAML) into a :class:`Config`.

    Relative local ``input``/``output`` paths are taken relative to ``base_dir`` (the config
    file's folder) when it is given.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a config needs a mapping of keys ({', '.join(_TOP_KEYS)}), but got "
            f"{type(data).__name__}. Start from configs/shr_lesson.yaml."
        )
    _check_keys(data, _TOP_KEYS)
    for key in ("input", "output"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(key, "a path or URL", data.get(key), f"Add e.g. {key}: path/to/{key}.")
    ing = _section(data, "ingest")
    pre = _section(data, "preprocess")
    crop = _section(pre, "preprocess.crop")
    clahe = _section(pre, "preprocess.clahe")
    clu = _section(data, "cluster")
    dsk = _section(data, "dask")
    rep = _section(data, "report")
    storage = data.get("storage_options") or {}
    if not isinstance(storage, Mapping):
        raise _fail(
            "storage_options", "a mapping", storage, "Use e.g. storage_options: {anon: true}."
        )

    fps = ing.get("fps")
    if fps is not None:
        fps = _number("ingest.fps", fps, fix="Use e.g. fps: 10 (the lesson's), or null for all.")
    color_space = pre.get("color_space", "bgr")
    if color_space not in _COLOR_SPACES:
        raise _fail(
            "preprocess.color_space",
            f"one of {', '.join(_COLOR_SPACES)}",
            color_space,
            "Use color_space: bgr (the lesson's).",
        )
    tiles = clahe.get("tile_grid_size", [8, 8])
    tile_fix = "Use tile_grid_size: [8, 8] (the lesson's)."
    if not isinstance(tiles, list | tuple) or len(tiles) != 2:
        raise _fail("preprocess.clahe.tile_grid_size", "two whole numbers", tiles, tile_fix)
    tiles = tuple(
        _int("preprocess.clahe.tile_grid_size", t, low=1, high=256, fix=tile_fix) for t in tiles
    )
    n_workers_fix = "Use e.g. n_workers: 2."
    scheduler = _optional_str(
        "dask.scheduler",
        dsk.get("scheduler"),
        "Use e.g. scheduler: tcp://host:8786, or synchronous to compute in this process.",
    )
    memory_limit = _memory_limit(dsk.get("memory_limit", "4GiB"))

    inp = _resolve(data["input"], base_dir)
    out = _resolve(data["output"], base_dir)
    return Config(
        input=inp,
        output=out,
        storage_options=dict(storage),
        ingest=IngestConfig(
            fps=fps,
            resize=_resize(ing.get("resize")),
            start_time=_time_string(
                "ingest.start_time", ing.get("start_time"), "Use e.g. start_time: '2022-06-01'."
            ),
            frame_interval=_interval(ing.get("frame_interval")),
            chunk_frames=_chunk_frames(ing.get("chunk_frames", "auto")),
            store_frames=_bool("ingest.store_frames", ing.get("store_frames", False)),
        ),
        preprocess=PreprocessConfig(
            rows=_bounds("preprocess.crop.rows", crop.get("rows", [-400, None])),
            cols=_bounds("preprocess.crop.cols", crop.get("cols")),
            clip_limit=_number(
                "preprocess.clahe.clip_limit",
                clahe.get("clip_limit", 2.0),
                fix="Use clip_limit: 2.0 (the lesson's).",
            ),
            tile_grid_size=tiles,
            color_space=color_space,
        ),
        cluster=ClusterConfig(
            n_clusters=_int(
                "cluster.n_clusters",
                clu.get("n_clusters", 4),
                low=2,
                high=100,
                fix="Use n_clusters: 4 (the lesson's).",
            ),
            sample_size=_int(
                "cluster.sample_size",
                clu.get("sample_size", 200_000),
                low=100,
                high=50_000_000,
                fix="Use e.g. sample_size: 200000.",
            ),
            random_state=_int(
                "cluster.random_state",
                clu.get("random_state", 0),
                low=0,
                high=2**32 - 1,
                fix="Use e.g. random_state: 0.",
            ),
            max_frames=_int(
                "cluster.max_frames",
                clu.get("max_frames", 240),
                low=1,
                high=100_000,
                fix="Use e.g. max_frames: 240.",
            ),
            model=_model_path(clu.get("model"), base_dir),
        ),
        classes=_classes(data.get("classes"), clu.get("n_clusters", 4)),
        dask=DaskConfig(
            scheduler=scheduler,
            n_workers=_int(
                "dask.n_workers", dsk.get("n_workers", 2), low=1, high=512, fix=n_workers_fix
            ),
            threads_per_worker=_int(
                "dask.threads_per_worker",
                dsk.get("threads_per_worker", 1),
                low=1,
                high=256,
                fix="Use e.g. threads_per_worker: 1.",
            ),
            memory_limit=memory_limit,
        ),
        report=_report(rep),
    )


def _memory_limit(value: Any) -> str:
    """``dask.memory_limit``: ``auto`` or a size such as ``4GiB`` (a plain number is bytes)."""
    key, fix = "dask.memory_limit", "Use e.g. memory_limit: 4GiB (per worker), or auto."
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(key, "a size such as 4GiB", value, fix)
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, OverflowError) as err:
        raise _fail(key, "a size such as 4GiB", value, fix) from err
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(key, "a size such as 4GiB", value, fix)
    if not _MIN_MEMORY_LIMIT <= size <= _MAX_MEMORY_LIMIT:
        raise _fail(key, "a size from 1GiB to 1PiB per worker", value, fix)
    return value.strip() if isinstance(value, str) else str(int(size))


def _chunk_frames(value: Any) -> int | None:
    """``auto`` (or null) is None: chosen from the frame size when the input is opened."""
    if value is None or value == "auto":
        return None
    fix = "Use e.g. chunk_frames: 32, or chunk_frames: auto."
    return _int("ingest.chunk_frames", value, low=1, high=4096, fix=fix)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value, f"Use {key.rsplit('.', 1)[-1]}: true.")
    return value


def _report(rep: Mapping[str, Any]) -> ReportConfig:
    frames_fix = "Use e.g. png_frames: [0, 10] (frame positions), or [] for none."
    png = rep.get("png_frames") or []
    if not isinstance(png, list | tuple):
        raise _fail("report.png_frames", "a list of frame positions", png, frames_fix)
    example = rep.get("example_frame")
    return ReportConfig(
        html=_bool("report.html", rep.get("html", True)),
        video=_bool("report.video", rep.get("video", True)),
        video_fps=_int(
            "report.video_fps",
            rep.get("video_fps", 10),
            low=1,
            high=240,
            fix="Use e.g. video_fps: 10.",
        ),
        png_frames=tuple(
            _int("report.png_frames", v, low=0, high=10**7, fix=frames_fix) for v in png
        ),
        example_frame=None
        if example is None
        else _int(
            "report.example_frame",
            example,
            low=0,
            high=10**7,
            fix="Use a frame position, or null for the middle frame.",
        ),
    )


def _model_path(value: Any, base_dir: str | Path | None) -> str | None:
    fix = "Use e.g. model: results/shr_frames/model.json, or leave it out to fit a model."
    value = _optional_str("cluster.model", value, fix)
    return None if value is None else _resolve(value, base_dir)


def _is_url(path: str) -> bool:
    return "://" in path


def _resolve(path: str, base_dir: str | Path | None) -> str:
    path = os.path.expanduser(path)
    if base_dir is None or _is_url(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(str(base_dir), path))


# --------------------------------------------------------------------------------------------
# YAML
class _StrictLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys."""


def _mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"config key {key!r} appears twice (line {key_node.start_mark.line + 1}). "
                "Keep one of them."
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"{source} uses a YAML alias (*{event.anchor}); sediment_xr configs do not "
                    "allow anchors and aliases. Write the values out."
                )
        loader = _StrictLoader(text)  # a SafeLoader: plain data only, never Python objects
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"{source} is not valid YAML{where}: {problem}. Fix the syntax (indent with "
            "spaces, 'key: value')."
        ) from err


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to config data."""
    out = copy.deepcopy(dict(data)) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set needs section.key=value, but got {item!r}. "
                "Use e.g. --set cluster.n_clusters=5."
            )
        dotted, raw = item.split("=", 1)
        keys = [k.strip() for k in dotted.split(".")]
        if not all(keys):
            raise ConfigError(f"--set needs a key like cluster.n_clusters, but got {dotted!r}.")
        value = _parse_yaml(raw, f"--set {dotted}") if raw.strip() else None
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return out


def load_config(
    path: str | Path, overrides: Sequence[str] = (), *, defaults: Mapping[str, Any] | None = None
) -> Config:
    """Read, override and validate a YAML config file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : sequence of str
        ``section.key=value`` strings (``--set``), values parsed as YAML.
    defaults : mapping, optional
        Values used where the file has none (before the overrides).

    Returns
    -------
    Config
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file {p} does not exist. Give the path of a YAML file, e.g. "
            "configs/shr_lesson.yaml."
        )
    if p.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {p} is {p.stat().st_size} bytes; a config is a few lines of YAML "
            f"(at most {_MAX_CONFIG_BYTES} bytes). Check the path."
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {p} is not UTF-8 text. Give a YAML file.") from err
    data = _parse_yaml(text, str(p))
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{p} needs a mapping of config keys at the top, but got a "
            f"{type(data).__name__}. Start from configs/shr_lesson.yaml."
        )
    merged = {**(defaults or {}), **data}
    from_file = {k for k in ("input", "output") if k in data}
    model_from_file = isinstance(data.get("cluster"), Mapping) and "model" in data["cluster"]
    merged = apply_overrides(merged, overrides)
    overridden = {o.split("=", 1)[0].strip() for o in overrides}
    config = config_from_dict(merged, base_dir=None)
    # Paths written in the file are relative to the file; paths given on the command line
    # are relative to the working directory.
    base = p.resolve().parent
    changes = {
        key: _resolve(getattr(config, key), base) for key in from_file if key not in overridden
    }
    if model_from_file and "cluster.model" not in overridden and config.cluster.model:
        changes["cluster"] = dataclasses.replace(
            config.cluster, model=_resolve(config.cluster.model, base)
        )
    return dataclasses.replace(config, **changes) if changes else config


_SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def redact(value: Any) -> Any:
    """Copy of config data with credential-like ``storage_options`` values replaced."""
    if isinstance(value, Mapping):
        return {
            k: "***"
            if any(w in str(k).lower() for w in _SECRET_WORDS) and not isinstance(v, Mapping)
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redacted_dict(config: Config) -> dict[str, Any]:
    """:meth:`Config.to_dict` with credentials in ``storage_options`` replaced by ``***``."""
    data = config.to_dict()
    data["storage_options"] = redact(data["storage_options"])
    return data


def dump_config(config: Config) -> str:
    """Return the resolved config as YAML text (credentials replaced by ``***``)."""
    return yaml.safe_dump(redacted_dict(config), sort_keys=False)
