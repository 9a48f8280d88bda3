"""Run configuration: strict YAML into frozen dataclasses that mirror it.

Each section of the YAML file is a frozen dataclass whose fields are its keys; a key's
default is declared once, on its field, and its value is checked on construction by the
same function the library uses for that setting (:mod:`sediment_xr._validate`), so a
``Config`` built in Python is checked like one read from YAML.  Errors name the config key
(``config key ingest.resize needs ...``).  Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sediment_xr import _validate as check
from sediment_xr import _yaml
from sediment_xr._fs import check_storage_options, is_url, local_path
from sediment_xr._redact import redact
from sediment_xr._yaml import apply_overrides
from sediment_xr.coverage import check_classes
from sediment_xr.exceptions import ConfigError, setting
from sediment_xr.quality import QUALITY_DEFAULTS
from sediment_xr.recordings import check_window
from sediment_xr.timeaxis import check_time_options, parse_frame_interval, parse_start_time

__all__ = [
    "CONFIG_KEYS",
    "ClaheConfig",
    "ClusterConfig",
    "Config",
    "CropConfig",
    "DaskConfig",
    "IngestConfig",
    "PreprocessConfig",
    "ReportConfig",
    "apply_overrides",
    "changed_keys",
    "config_from_dict",
    "dump_config",
    "load_config",
    "redacted_dict",
    "reword",
    "stage_settings",
]

_MAX_CONFIG_BYTES = 1_000_000
# dask.memory_limit per worker: an idle worker process alone uses about 250 MiB here; below
# 1 GiB dask pauses or restarts workers for ever instead of failing.
_MIN_MEMORY_LIMIT = 2**30
_MAX_MEMORY_LIMIT = 2**50  # 1 PiB


def _key(default: Any, checker: Any = None, *, secret: bool = False) -> Any:
    """A config key: its default and the check its value goes through.

    A ``secret`` key (storage options: credentials) is left out of the config's ``repr``, so
    a notebook that shows a config does not save its credentials.
    """
    metadata = {"check": checker} if checker else {}
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def _section_of(f: dataclasses.Field) -> type | None:
    """The section class of a field that holds a section (its default factory), or None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and issubclass(factory, _Section) else None


def reword(err: BaseException) -> str:
    """An error or warning's message with its settings named as config keys."""
    text = err.reworded(CONFIG_KEYS) if hasattr(err, "reworded") else str(err)
    first, _, rest = text.partition(" ")
    keys = CONFIG_KEYS.values()
    named = first in keys or any(first.startswith(f"{key}.") for key in keys)
    return f"config key {text}" if named and rest.startswith("needs ") else text


class _Section:
    """A config section: checks and normalises its keys when it is made."""

    def __post_init__(self) -> None:
        try:
            for f in dataclasses.fields(self):
                checker = f.metadata.get("check")
                if checker is not None:
                    object.__setattr__(self, f.name, checker(getattr(self, f.name), f.name))
            self._check_together()
        except ConfigError as err:
            raise ConfigError(reword(err), settings=err.settings) from None

    def _check_together(self) -> None:
        """Checks of several keys at once."""


def _start_time(value: Any, name: str) -> str | None:
    if isinstance(value, dt.datetime | dt.date):  # YAML turns bare timestamps into datetimes
        value = value.isoformat()
    value = check.check_text(value, name, "2022-06-01")
    if value is not None:
        parse_start_time(value, name)
    return value


def _frame_interval(value: Any, name: str) -> str | None:
    if value is None:
        return None
    parse_frame_interval(value, name)
    return value if isinstance(value, str) else str(value)


def _window(value: Any, name: str) -> tuple[Any, Any] | None:
    if check_window(value, name) is None:
        return None
    return tuple(v if isinstance(v, str | int | float) else str(v) for v in value)


@dataclasses.dataclass(frozen=True)
class IngestConfig(_Section):
    """How frames are read: sampling rate, size, time axis, chunking and whether to keep them.

    ``window`` takes, from each of many recordings (a folder, glob or list of videos), only
    the frames from its first offset to its second after the recording's start, e.g.
    ``["00:05:00", "00:05:10"]`` (:func:`sediment_xr.open_recordings`).

    ``store_frames`` keeps the decoded frames of the analysed window in ``cube.zarr`` (off by
    default: measured, they take several times the size of an H.264 video and writing them
    costs more than decoding them again; the frames stay available lazily through
    :func:`sediment_xr.open_frames` and :func:`sediment_xr.crop`).  ``chunk_frames`` None is
    automatic (:func:`sediment_xr.frames.auto_chunk_frames`).
    """

    fps: float | None = _key(None, check.check_fps)
    resize: tuple[int, int] | None = _key(None, check.check_resize)
    start_time: str | None = _key(None, _start_time)
    frame_interval: str | None = _key(None, _frame_interval)
    window: tuple[Any, Any] | None = _key(None, _window)
    chunk_frames: int | None = _key(None, check.check_chunk_frames)
    store_frames: bool = _key(False, check.check_bool)

    def _check_together(self) -> None:
        check_time_options(self.start_time, self.frame_interval)


@dataclasses.dataclass(frozen=True)
class CropConfig(_Section):
    """The analysed window: rows and columns, Python slice semantics (the lesson's bottom 400)."""

    rows: tuple[int | None, int | None] | None = _key((-400, None), check.check_crop_bounds)
    cols: tuple[int | None, int | None] | None = _key(None, check.check_crop_bounds)


@dataclasses.dataclass(frozen=True)
class ClaheConfig(_Section):
    """CLAHE on the HSV value (the lesson's settings)."""

    clip_limit: float = _key(2.0, check.check_clip_limit)
    tile_grid_size: tuple[int, int] = _key((8, 8), check.check_tile_grid_size)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig(_Section):
    """Crop, light correction (``flat_field``; the lesson's ``clahe``; ``none``), colour space.

    ``clahe`` holds the CLAHE settings, used with ``illumination: clahe`` only.
    """

    crop: CropConfig = dataclasses.field(default_factory=CropConfig)
    illumination: str = _key("flat_field", check.check_illumination)
    clahe: ClaheConfig = dataclasses.field(default_factory=ClaheConfig)
    color_space: str = _key("bgr", check.check_color_space)


def _model_path(value: Any, name: str) -> str | None:
    return check.check_text(value, name, "results/shr_frames/model.json")


@dataclasses.dataclass(frozen=True)
class ClusterConfig(_Section):
    """MiniBatch KMeans on a pixel sample spread over the series.

    ``model`` is the path or URL of a ``model.json`` from an earlier run of the same camera:
    it is applied as it is, and no new model is fitted. ``reference`` is one too, but only
    numbers the clusters of the new fit: each gets the number of the reference cluster it
    matches (Hungarian matching of centres), so ``classes`` keep their meaning across runs.
    ``n_refits`` bootstrap refits measure how stable the clusters are (0: none).
    ``median_filter`` smooths each frame's labels (see :func:`sediment_xr.label`). 12
    clusters by default: on planted-truth scenes 4 clusters left a mixed pale cluster
    (pebbles and dim mat) and biased the slope by 5-6 %; with 8, one seed in three had a
    cluster half mat, half pebbles, and a bias of 1.2-1.6 pp; 12 kept every seed within
    0.7 pp and the slope within 3 % (benchmarks/accuracy.md).
    """

    n_clusters: int = _key(12, check.check_n_clusters)
    sample_size: int = _key(200_000, check.check_sample_size)
    random_state: int = _key(0, check.check_random_state)
    max_frames: int = _key(240, check.check_max_frames)
    model: str | None = _key(None, _model_path)
    reference: str | None = _key(None, _model_path)
    n_refits: int = _key(4, lambda v, n: check.check_int(v, n, low=0, high=50, example=4))
    median_filter: int = _key(3, check.check_median_filter)


def _memory_limit(value: Any, name: str) -> str:
    """``auto`` or a size such as ``4GiB`` (a plain number is bytes), 1 GiB to 1 PiB."""
    from dask.utils import parse_bytes

    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    need = "a size such as 4GiB"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise check.bad_value(name, need, value, "4GiB")
    try:
        size = parse_bytes(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, OverflowError) as err:
        raise check.bad_value(name, need, value, "4GiB") from err
    if isinstance(value, float) and not math.isfinite(value):
        raise check.bad_value(name, need, value, "4GiB")
    if not _MIN_MEMORY_LIMIT <= size <= _MAX_MEMORY_LIMIT:
        raise check.bad_value(name, "a size from 1GiB to 1PiB per worker", value, "4GiB")
    return value.strip() if isinstance(value, str) else str(int(size))


@dataclasses.dataclass(frozen=True)
class DaskConfig(_Section):
    """Where to compute: an existing scheduler, or an embedded LocalCluster."""

    scheduler: str | None = _key(None, check.check_scheduler)
    n_workers: int = _key(2, lambda v, n: check.check_int(v, n, low=1, high=512, example=2))
    threads_per_worker: int = _key(
        1, lambda v, n: check.check_int(v, n, low=1, high=256, example=1)
    )
    memory_limit: str = _key("4GiB", _memory_limit)
    retries: int = _key(3, lambda v, n: check.check_int(v, n, low=0, high=100, example=3))


def _png_frames(value: Any, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise check.bad_value(name, "a list of frame positions", value, [0, 10])
    return tuple(check.check_int(v, name, low=0, high=10**7, example=[0, 10]) for v in value)


def _example_frame(value: Any, name: str) -> int | None:
    return None if value is None else check.check_int(value, name, low=0, high=10**7)


def _share(value: Any, name: str) -> float:
    return check.check_number(value, name, high=1.0, example=0.2)


def _ratio(value: Any, name: str) -> float:
    return check.check_number(value, name, high=10.0, example=0.5)


@dataclasses.dataclass(frozen=True)
class QualityConfig(_Section):
    """Thresholds of the frame quality flags (see :mod:`sediment_xr.quality`).

    A frame is ``dark`` when its light is below ``dark`` times the reference light,
    ``overexposed`` when more than ``overexposed`` of its pixels are saturated, ``turbid``
    when its contrast is below ``turbid`` times the reference's, ``moved`` when its
    correlation with the scene is below ``moved``, and ``occluded`` when more than
    ``occluded`` of its blocks changed. Trends and summaries use the ``ok`` frames only,
    unless ``include_flagged`` is true.
    """

    dark: float = _key(QUALITY_DEFAULTS["dark"], _ratio)
    overexposed: float = _key(QUALITY_DEFAULTS["overexposed"], _share)
    turbid: float = _key(QUALITY_DEFAULTS["turbid"], _ratio)
    moved: float = _key(QUALITY_DEFAULTS["moved"], _share)
    occluded: float = _key(QUALITY_DEFAULTS["occluded"], _share)
    include_flagged: bool = _key(False, check.check_bool)

    def thresholds(self) -> dict[str, float]:
        """The thresholds by flag name."""
        return {k: getattr(self, k) for k in QUALITY_DEFAULTS}


@dataclasses.dataclass(frozen=True)
class ReportConfig(_Section):
    """What is drawn and written for the analyst besides the tables."""

    html: bool = _key(True, check.check_bool)
    video: bool = _key(True, check.check_bool)
    video_fps: int = _key(10, lambda v, n: check.check_int(v, n, low=1, high=240, example=10))
    png_frames: tuple[int, ...] = _key((), _png_frames)
    example_frame: int | None = _key(None, _example_frame)


def _path(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        example = f"path/to/{name}"
        raise check.bad_value(
            name, "a path or URL", value, example, fix=f"Add e.g. {setting(name, example)}."
        )
    return local_path(value)  # file:// and local:// are local paths, with their protections


def _input(value: Any, name: str) -> str | tuple[str, ...]:
    """One path or URL, or a list of them (many recordings, one series)."""
    if isinstance(value, list | tuple):
        if not value:
            example = ["a.mov", "b.mov"]
            raise check.bad_value(
                name,
                "a path or URL, or a list of recordings",
                value,
                example,
                fix=f"Add e.g. {setting(name, example)}.",
            )
        return tuple(_path(v, name) for v in value)
    return _path(value, name)


def _classes(value: Any, name: str) -> dict[str, tuple[int, ...]] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # YAML reads a class named 7 as a number
        value = {str(k) if check.is_whole(k) else k: v for k, v in value.items()}
    checked = check_classes(value, None, name)
    return {k: tuple(v) for k, v in checked.items()}


def _side_options(value: Any, name: str) -> dict[str, Any] | None:
    return None if value is None else check_storage_options(value, name)


def _run_name(value: Any, name: str) -> str | None:
    return check.check_text(value, name, "shr_2022")


@dataclasses.dataclass(frozen=True)
class Config(_Section):
    """A whole run of ``sediment-xr run``: one field per top-level key of the YAML file.

    ``name`` names the run in ``cover.parquet`` (the ``run`` column) and in its STAC Item;
    by default it is the output folder's name. ``storage_options`` (fsspec options, e.g.
    credentials and endpoint) serve the input and the output; ``input_storage_options`` and
    ``output_storage_options`` replace them for one side (e.g. a public bucket read with
    ``anon: true`` and a private one written with credentials).  ``input`` is a path or URL
    (a video, a folder or glob of stills or of recordings), or a list of recordings.
    """

    input: str | tuple[str, ...] = _key(None, _input)
    output: str = _key(None, _path)
    name: str | None = _key(None, _run_name)
    storage_options: Mapping[str, Any] = _key(None, check_storage_options, secret=True)
    input_storage_options: Mapping[str, Any] | None = _key(None, _side_options, secret=True)
    output_storage_options: Mapping[str, Any] | None = _key(None, _side_options, secret=True)
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    classes: Mapping[str, tuple[int, ...]] | None = _key(None, _classes)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    dask: DaskConfig = dataclasses.field(default_factory=DaskConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)

    def _check_together(self) -> None:
        if self.classes:
            check_classes(self.classes, self.cluster.n_clusters)
        if self.cluster.model and self.cluster.reference:
            raise ConfigError(
                "cluster.model and cluster.reference are both set, but a model is applied as "
                "it is (its numbers stay). Keep cluster.model to apply it, or "
                "cluster.reference to fit a new model numbered after it."
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data, in the file's layout."""
        return _plain(self)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input's paths or URLs: the one input, or each recording of a list."""
        return self.input if isinstance(self.input, tuple) else (self.input,)

    @property
    def input_label(self) -> str:
        """The input as messages and attributes show it (a list: its count and first file)."""
        if isinstance(self.input, str):
            return self.input
        return f"{len(self.input)} recordings ({self.input[0]}, ...)"

    @property
    def input_options(self) -> dict[str, Any]:
        """The fsspec options of the input (and of ``cluster.model``)."""
        options = self.input_storage_options
        return dict(self.storage_options if options is None else options)

    @property
    def output_options(self) -> dict[str, Any]:
        """The fsspec options of the output folder."""
        options = self.output_storage_options
        return dict(self.storage_options if options is None else options)

    @property
    def run_name(self) -> str:
        """``name``, or the output folder's name (of a URL: without user-info or query)."""
        folder = self.output
        shown = redact(folder)
        if shown != folder:  # a URL with credentials or a signature: not in the name
            folder = shown.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
        return self.name or os.path.basename(folder.rstrip("/\\")) or "run"

    def fingerprint(self, stage: str, *extra: Any) -> str:
        """Hash of what a stage depends on (:func:`stage_settings`), plus ``extra`` values."""
        stages = stage_settings(self.to_dict())
        if stage not in stages:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(stages)}")
        parts = [stages[stage], *extra]
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings of config data."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = []
        for key in sorted(set(old) | set(new)):
            keys += changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return keys
    return [prefix.rstrip(".")] if old != new else []


def stage_settings(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What each stored stage depends on, from config data (:meth:`Config.to_dict`).

    ``cube`` (the frames, the grid of the labels and the time axis): the input, the ingest
    keys but ``store_frames``, and the crop. ``model``: that plus the rest of preprocessing
    and clustering. Classes, the report, ``store_frames`` and the Dask settings are in
    neither: changing them never refits.
    """
    # Values as they are meant, not as they are spelt; chunk_frames is left out (the run
    # adds the resolved number of frames per chunk).
    ingest = {
        k: v
        for k, v in dict(data.get("ingest") or {}).items()
        if k not in ("store_frames", "chunk_frames")
    }
    if ingest.get("frame_interval") is not None:
        ingest["frame_interval"] = str(parse_frame_interval(ingest["frame_interval"]))
    if ingest.get("start_time") is not None:
        ingest["start_time"] = parse_start_time(ingest["start_time"]).isoformat()
    if ingest.get("window") is None:  # not there: the fingerprints of earlier runs stay
        ingest.pop("window", None)
    else:
        ingest["window"] = [str(t) for t in check_window(ingest["window"])]
    preprocess = dict(data.get("preprocess") or {})
    cube = {
        "input": data.get("input"),
        "ingest": ingest,
        "preprocess": {"crop": preprocess.get("crop")},
    }
    return {
        "cube": cube,
        "model": {**cube, "preprocess": preprocess, "cluster": data.get("cluster")},
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, IngestConfig):
            out["chunk_frames"] = value.chunk_frames or "auto"
        return out
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _keys_of(cls: type, prefix: str = "") -> dict[str, str]:
    keys: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        section = _section_of(f)
        keys |= _keys_of(section, f"{prefix}{f.name}.") if section else {f.name: prefix + f.name}
    return keys


#: Config key of every setting, by its name in the Python API (``resize``: ``ingest.resize``).
CONFIG_KEYS: dict[str, str] = _keys_of(Config)


def _build(cls: type, data: Any, path: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{path}." if path else ""
    if data is None and path:
        data = {}
    if not isinstance(data, Mapping):
        if path:
            raise ConfigError(
                f"config key {path} needs a mapping of keys ({', '.join(names)}), but got "
                f"{data!r}. Indent its keys under '{path.rsplit('.', 1)[-1]}:'."
            )
        raise ConfigError(
            f"a config needs a mapping of keys ({', '.join(names)}), but got "
            f"{type(data).__name__}. Start from configs/shr_lesson.yaml."
        )
    for key in data:
        if key not in names:
            raise ConfigError(
                f"unknown config key {prefix}{key}; valid keys here are: "
                f"{', '.join(prefix + n for n in names)}. Fix the spelling or remove it."
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        section = _section_of(f)
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = _build(section, value, prefix + f.name) if section else value
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], *, base_dir: str | Path | None = None) -> Config:
    """Check plain data (as read from YAML) and make a :class:`Config`.

    Relative local paths (``input``, ``output``, ``cluster.model`` and ``reference``) are
    taken relative to ``base_dir`` (the config file's folder) when it is given.
    """
    config = _build(Config, data, "")
    which = ("input", "output", "model", "reference")
    return _with_paths(config, base_dir, which) if base_dir else config


def _resolve(path: str | tuple[str, ...], base_dir: str | Path | None) -> Any:
    if isinstance(path, tuple):  # a list of recordings
        return tuple(_resolve(p, base_dir) for p in path)
    path = os.path.expanduser(path)
    if base_dir is None or is_url(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(str(base_dir), path))


def _with_paths(config: Config, base: str | Path | None, which: Sequence[str]) -> Config:
    changes: dict[str, Any] = {
        k: _resolve(getattr(config, k), base) for k in which if k in ("input", "output")
    }
    paths = {
        key: _resolve(getattr(config.cluster, key), base)
        for key in ("model", "reference")
        if key in which and getattr(config.cluster, key)
    }
    if paths:
        changes["cluster"] = dataclasses.replace(config.cluster, **paths)
    return dataclasses.replace(config, **changes) if changes else config


def load_config(
    path: str | Path, overrides: Sequence[str] = (), *, defaults: Mapping[str, Any] | None = None
) -> Config:
    """Read, override and check a YAML config file.

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
        Paths written in the file are relative to the file; paths given in ``overrides``
        are relative to the working directory.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"config file {p} is a folder. Give the path of a YAML file in it, e.g. "
            "configs/shr_lesson.yaml."
        )
    if not p.is_file():
        what = (
            "is not a regular file (a FIFO, device or socket)" if p.exists() else "does not exist"
        )
        raise ConfigError(
            f"config file {p} {what}. Give the path of a YAML file, e.g. configs/shr_lesson.yaml."
        )
    with p.open("rb") as handle:  # at most the limit: the file may grow after a check
        raw = handle.read(_MAX_CONFIG_BYTES + 1)
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {p} holds more than {_MAX_CONFIG_BYTES} bytes; a config is a few "
            "lines of YAML. Check the path."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {p} is not UTF-8 text. Give a YAML file.") from err
    data = _yaml.parse(text, str(p))
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{p} needs a mapping of config keys at the top, but got a "
            f"{type(data).__name__}. Start from configs/shr_lesson.yaml."
        )
    overridden = {o.split("=", 1)[0].strip() for o in overrides}
    in_file = [k for k in ("input", "output") if k in data and k not in overridden]
    cluster = data.get("cluster")
    for key in ("model", "reference"):
        if isinstance(cluster, Mapping) and key in cluster and f"cluster.{key}" not in overridden:
            in_file.append(key)
    config = config_from_dict(apply_overrides({**(defaults or {}), **data}, overrides))
    return _with_paths(config, p.resolve().parent, in_file)


def redacted_dict(config: Config) -> dict[str, Any]:
    """:meth:`Config.to_dict` without secrets: what is written and shown of a config.

    Every value of the three ``*storage_options`` (and of any ``headers``) is ``***``, keys
    kept, but for a few harmless ones (``anon: true``, the host of ``endpoint_url``...), and
    the URLs (``input``, ``output``, ``cluster.model``, ``cluster.reference``) lose their
    user-info and query values: see :mod:`sediment_xr._redact`.
    """
    return redact(config.to_dict())


def dump_config(config: Config) -> str:
    """The resolved config as YAML text, without secrets (:func:`redacted_dict`)."""
    return _yaml.dump(redacted_dict(config))
