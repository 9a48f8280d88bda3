"""Checks of settings, shared by the library functions and the YAML config.

Each check takes the value and the setting's name, returns the value in its working form and
raises :class:`~sediment_xr.exceptions.ConfigError` naming the setting (Python spelling,
see :func:`~sediment_xr.exceptions.setting`) with what was needed, what was seen and a fix.
The config calls the same checks and rewords the messages with its own keys, so a setting
has one set of limits wherever it is given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from sediment_xr.exceptions import NAMED, ConfigError, setting

__all__ = [
    "COLOR_SPACES",
    "ILLUMINATIONS",
    "IN_PROCESS_SCHEDULERS",
    "MAX_CLUSTERS",
    "bad_value",
    "check_bool",
    "check_chunk_frames",
    "check_clip_limit",
    "check_color_space",
    "check_crop_bounds",
    "check_fps",
    "check_int",
    "check_max_frames",
    "check_n_clusters",
    "check_random_state",
    "check_resize",
    "check_sample_size",
    "check_scheduler",
    "check_text",
    "check_tile_grid_size",
    "is_whole",
]

#: Colour spaces available for clustering. ``bgr`` is the lesson's (OpenCV channel order).
COLOR_SPACES: tuple[str, ...] = ("bgr", "rgb", "hsv", "lab")
#: Ways to make the light even (see sediment_xr.illumination); the first is the default.
ILLUMINATIONS: tuple[str, ...] = ("flat_field", "clahe", "none")
#: Largest number of clusters (labels are stored as int8).
MAX_CLUSTERS: int = 100
#: Most frames per chunk.
MAX_CHUNK_FRAMES = 4096
#: Largest side of a resized frame, in pixels.
MAX_SIDE = 16384
#: Most frames per second a video is sampled at (more would repeat every frame).
MAX_FPS = 1000.0
#: Scheduler names that compute in this process (no cluster): dask's own schedulers.
IN_PROCESS_SCHEDULERS = ("synchronous", "threads")


def bad_value(name: str, need: str, got: Any, example: Any = NAMED, fix: str = "") -> ConfigError:
    """``ConfigError("<name> needs <need>, but got <got>. Use e.g. <name>=<example>.")``."""
    text = fix or f"Use e.g. {setting(name, example)}."
    return ConfigError(
        f"{name} needs {need}, but got {got!r}. {text}",
        settings=[(name, NAMED), (name, example)],
    )


def is_whole(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(
    value: Any, name: str, *, low: int, high: int | None = None, example: Any = NAMED
) -> int:
    """A whole number within ``[low, high]``."""
    example = low if example is NAMED else example
    if not is_whole(value):
        raise bad_value(name, "a whole number", value, example)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise bad_value(name, f"a whole number {span}", value, example)
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    """True or false."""
    if not isinstance(value, bool | np.bool_):
        raise bad_value(name, "true or false", value, True)
    return bool(value)


def check_text(value: Any, name: str, example: Any) -> str | None:
    """Non-empty text, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_value(name, "text", value, example)
    return value


def check_number(value: Any, name: str, *, high: float, example: Any) -> float:
    """A positive finite number up to ``high``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise bad_value(name, "a positive number", value, example)
    if not math.isfinite(float(value)) or value <= 0:
        raise bad_value(name, "a positive finite number", value, example)
    if value > high:
        raise bad_value(name, f"a positive number of at most {high:g}", value, example)
    return float(value)


def check_n_clusters(value: Any, name: str = "n_clusters") -> int:
    """Number of clusters: 2 to :data:`MAX_CLUSTERS`."""
    return check_int(value, name, low=2, high=MAX_CLUSTERS, example=4)


def check_sample_size(value: Any, name: str = "sample_size") -> int:
    """Pixels in the sample the clusters are fitted on."""
    return check_int(value, name, low=100, high=50_000_000, example=200_000)


def check_max_frames(value: Any, name: str = "max_frames") -> int:
    """Most frames the pixel sample is drawn from."""
    return check_int(value, name, low=1, high=100_000, example=240)


def check_random_state(value: Any, name: str = "random_state") -> int:
    """A seed: 0 to 2**32 - 1."""
    return check_int(value, name, low=0, high=2**32 - 1, example=0)


def check_fps(value: Any, name: str = "fps") -> float | None:
    """Frames per second to sample a video at, or None for every frame."""
    if value is None:
        return None
    return check_number(value, name, high=MAX_FPS, example=10)


def check_resize(value: Any, name: str = "resize") -> tuple[int, int] | None:
    """``(width, height)`` from None, one size (a square) or a pair."""
    if value is None:
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(items) not in (1, 2) or not all(is_whole(v) and 1 <= v <= MAX_SIDE for v in items):
        raise bad_value(
            name,
            f"a size in pixels from 1 to {MAX_SIDE} (one number for a square, or [width, height])",
            value,
            (1024, 1024),
        )
    return (int(items[0]), int(items[-1]))


def check_chunk_frames(value: Any, name: str = "chunk_frames") -> int | None:
    """Frames per chunk; None or ``"auto"`` choose it from the frame size."""
    if value is None or value == "auto":
        return None
    if not is_whole(value) or not 1 <= value <= MAX_CHUNK_FRAMES:
        raise ConfigError(
            f"{name} needs a whole number from 1 to {MAX_CHUNK_FRAMES}, or auto, but got "
            f"{value!r}. Use e.g. {setting(name, 32)}, or {setting(name, 'auto')}.",
            settings=[(name, NAMED), (name, 32), (name, "auto")],
        )
    return int(value)


def check_crop_bounds(value: Any, name: str) -> tuple[int | None, int | None] | None:
    """``[start, stop]`` with Python slice semantics (None: an open end), or None (all)."""
    example = [-400, None]
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise bad_value(name, "two values [start, stop]", value, example)
    if not all(v is None or (is_whole(v) and abs(v) <= 10**6) for v in value):
        raise bad_value(name, "two whole numbers or null", value, example)
    bounds = tuple(None if v is None else int(v) for v in value)
    return None if bounds == (None, None) else bounds  # both mean the whole axis


def check_clip_limit(value: Any, name: str = "clip_limit") -> float:
    """CLAHE contrast limit: a positive finite number."""
    return check_number(value, name, high=1e6, example=2.0)


def check_tile_grid_size(value: Any, name: str = "tile_grid_size") -> tuple[int, int]:
    """CLAHE tiles along (columns, rows): two whole numbers from 1 to 256."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise bad_value(name, "two whole numbers", value, (8, 8))
    return tuple(check_int(v, name, low=1, high=256, example=(8, 8)) for v in value)


def check_scheduler(value: Any, name: str = "scheduler") -> str | None:
    """A Dask scheduler: an address, an in-process scheduler's name, or None.

    Addresses look like ``tcp://host:8786`` or ``host:8786``; ``synchronous`` and ``threads``
    compute in this process; None starts a new local cluster.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not (value in IN_PROCESS_SCHEDULERS or ":" in value):
        raise bad_value(
            name,
            "an address such as tcp://host:8786, or "
            f"{' or '.join(IN_PROCESS_SCHEDULERS)} to compute in this process",
            value,
            "tcp://host:8786",
        )
    return value


def check_median_filter(value: Any, name: str = "median_filter") -> int:
    """0 (none), 3 or 5."""
    if isinstance(value, bool) or value not in (0, 1, 3, 5):
        raise bad_value(name, "0 (none), 3 or 5", value, 3)
    return int(value)


def check_illumination(value: Any, name: str = "illumination") -> str:
    """One of :data:`ILLUMINATIONS`."""
    if value not in ILLUMINATIONS:
        raise bad_value(name, f"one of {', '.join(ILLUMINATIONS)}", value, "flat_field")
    return str(value)


def check_color_space(value: Any, name: str = "color_space") -> str:
    """One of :data:`COLOR_SPACES`."""
    if value not in COLOR_SPACES:
        raise bad_value(name, f"one of {', '.join(COLOR_SPACES)}", value, "bgr")
    return str(value)
