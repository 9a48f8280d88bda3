"""The time axis of a series: start times, intervals, timestamps in file names.

Times are naive UTC ``datetime64[ns]``.  A time that ``datetime64[ns]`` cannot hold (before
1677 or after 2262) is refused rather than wrapped around, and so is one in the months next to
those limits: the series' times are kept to the years 1678 to 2261 (:data:`FIRST_TIME` to
:data:`END_TIME`), so that the analysis has room to bin and resample them (a series ending in
April 2262 made the trend's resampling overflow).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd

from sediment_xr._fs import basename
from sediment_xr.exceptions import NAMED, ConfigError, setting

__all__ = [
    "END_TIME",
    "FIRST_TIME",
    "TIME_EXAMPLE",
    "check_time_options",
    "check_times",
    "naive_utc",
    "offset_times",
    "parse_creation_time",
    "parse_frame_interval",
    "parse_start_time",
    "parse_timestamp_from_name",
    "regular_times",
]

# YYYYMMDDTHHMMSS, optional fractional seconds, optional Z or _UTC (OOI camera names).
_STAMP_RE = re.compile(
    r"(?<!\d)(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:[.,](\d{1,9}))?(?:Z|_UTC)?(?!\d)"
)
_INT64 = np.iinfo(np.int64)
#: The earliest time of a frame (datetime64[ns] starts on 1677-09-21).
FIRST_TIME = pd.Timestamp("1678-01-01T00:00:00")
#: Frames are before this time (datetime64[ns] ends on 2262-04-11).
END_TIME = pd.Timestamp("2262-01-01T00:00:00")
_SPAN = "1678 to 2261"
#: The settings a message suggests for a time-lapse without times.
TIME_EXAMPLE = (("start_time", "2022-06-01"), ("frame_interval", "17h"))


def parse_frame_interval(
    value: str | dt.timedelta | np.timedelta64 | pd.Timedelta, name: str = "frame_interval"
) -> pd.Timedelta:
    """Parse the time between two frames.

    Parameters
    ----------
    value : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta
        A duration with a unit, e.g. ``"1h"``, ``"17h"``, ``"30min"`` or
        ``datetime.timedelta(hours=1)``.
    name : str, default "frame_interval"
        The setting's name in messages.

    Returns
    -------
    pandas.Timedelta
        The interval, with nanosecond resolution.

    Raises
    ------
    ConfigError
        If `value` is a bare number (no unit), cannot be parsed, or is zero or negative.
    """
    need = "a positive duration with a unit, like '1h', '17h' or '30min'"
    settings = [(name, NAMED), (name, "1h")]
    # numpy's timedelta64 is a number type too, but it has a unit
    number = isinstance(value, bool | int | float | np.number)
    if (number and not isinstance(value, np.timedelta64)) or (
        isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+(\.\d*)?\s*", value)
    ):
        raise ConfigError(
            f"{name} needs {need}, but got {value!r} (a number without unit). Use e.g. "
            f"{setting(name, f'{value}h'.strip())}.",
            settings=[(name, NAMED), (name, f"{value}h".strip())],
        )
    try:
        interval = pd.Timedelta(value).as_unit("ns")
    except (OverflowError, pd.errors.OutOfBoundsTimedelta, pd.errors.OutOfBoundsDatetime) as err:
        raise ConfigError(
            f"{name} needs {need} of at most about 292 years (what datetime64[ns] can hold), "
            f"but got {value!r}. Use e.g. {setting(name, '1h')}.",
            settings=settings,
        ) from err
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"{name} needs {need}, but got {value!r}. Use e.g. {setting(name, '1h')}.",
            settings=settings,
        ) from err
    if pd.isna(interval) or interval <= pd.Timedelta(0):
        raise ConfigError(
            f"{name} needs {need}, but got {value!r}, which is not positive. Use e.g. "
            f"{setting(name, '1h')}.",
            settings=settings,
        )
    return interval.as_unit("ns")


def naive_utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """A timestamp as naive UTC with nanosecond resolution."""
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ns")


def parse_start_time(value: Any, name: str = "start_time") -> pd.Timestamp:
    """A date-time (UTC, or with a time zone) as a naive UTC timestamp."""
    try:
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError("not a time")
        stamp = naive_utc(stamp)
        if not FIRST_TIME <= stamp < END_TIME:
            raise ValueError("out of range")
        return stamp
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(
            f"{name} needs a date-time (UTC, or with a time zone) from {_SPAN}, but got "
            f"{value!r}. Use e.g. {setting(name, '2022-06-01T00:00:00Z')}.",
            settings=[(name, NAMED), (name, "2022-06-01T00:00:00Z")],
        ) from err


def check_time_options(
    start_time: Any, frame_interval: Any
) -> tuple[pd.Timestamp | None, pd.Timedelta | None]:
    """Parse ``start_time`` and ``frame_interval``; an interval needs a start."""
    interval = None if frame_interval is None else parse_frame_interval(frame_interval)
    start = None if start_time is None else parse_start_time(start_time)
    if interval is not None and start is None:
        example = "2022-06-01"
        raise ConfigError(
            f"{setting('frame_interval', frame_interval)} needs start_time (the UTC time of "
            f"the first frame), but start_time is not given; give both, e.g. "
            f"{setting('start_time', example)} and {setting('frame_interval', frame_interval)}.",
            settings=[
                ("frame_interval", frame_interval),
                ("start_time", example),
                ("start_time", NAMED),
            ],
        )
    return start, interval


def parse_timestamp_from_name(name: str) -> pd.Timestamp | None:
    """Find a ``YYYYMMDDTHHMMSS`` timestamp in a file name.

    Recognises the OOI camera pattern ``CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg`` and
    similar names: optional fractional seconds (``.123``), optional ``Z`` or ``_UTC``.  Times
    are taken as UTC.  Only the last path component is searched; the first valid timestamp
    in it is used.

    Parameters
    ----------
    name : str
        File name or path.

    Returns
    -------
    pandas.Timestamp or None
        Naive (UTC) timestamp with nanosecond resolution, or None if the name holds no valid
        timestamp.

    Examples
    --------
    >>> parse_timestamp_from_name("CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg")
    Timestamp('2021-08-24 03:16:18')
    >>> parse_timestamp_from_name("frame_0006.png") is None
    True
    """
    for match in _STAMP_RE.finditer(basename(name)):
        year, month, day, hour, minute, second, frac = match.groups()
        nanos = int((frac or "").ljust(9, "0"))
        try:
            stamp = pd.Timestamp(
                year=int(year),
                month=int(month),
                day=int(day),
                hour=int(hour),
                minute=int(minute),
                second=int(second),
            ).as_unit("ns")
        except (ValueError, OverflowError):
            continue
        return stamp + pd.Timedelta(nanos, unit="ns")
    return None


def parse_creation_time(value: str | None) -> pd.Timestamp | None:
    """Container ``creation_time`` metadata as naive UTC, or None if absent or unparseable."""
    if not value:
        return None
    try:
        stamp = naive_utc(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return None
    # Muxers write 1904-01-01 or 1970-01-01 when the recording time was unknown.
    return None if pd.isna(stamp) or stamp.year < 1971 else stamp


def offset_times(start: pd.Timestamp, offsets_ns: np.ndarray, what: str = "") -> np.ndarray:
    """``start`` plus integer nanosecond offsets, refused outside the years 1678 to 2261."""
    base = int(start.as_unit("ns").value)
    offsets = np.asarray(offsets_ns, dtype=np.int64)
    if len(offsets):
        first = base + int(offsets.min())
        last = base + int(offsets.max())
        if first < FIRST_TIME.value or last >= END_TIME.value:
            raise ConfigError(
                f"the times of the frames{what} run past what datetime64[ns] can hold with "
                f"room for the analysis (the years {_SPAN}): {len(offsets)} frames from "
                f"{start.isoformat()}{_ending(last)}. Check start_time and frame_interval.",
                settings=[("start_time", NAMED), ("frame_interval", NAMED)],
            )
    return np.datetime64(base, "ns") + offsets.astype("timedelta64[ns]")


def check_times(times: np.ndarray, what: str) -> np.ndarray:
    """Times (``datetime64[ns]``) refused unless all are in the years 1678 to 2261."""
    values = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    if len(values) and (values.min() < FIRST_TIME.value or values.max() >= END_TIME.value):
        outside = values[(values < FIRST_TIME.value) | (values >= END_TIME.value)][0]
        raise ConfigError(
            f"{what} gives times outside the years {_SPAN} (e.g. "
            f"{pd.Timestamp(int(outside)).isoformat()}), which datetime64[ns] cannot hold with "
            "room for the analysis. Give start_time and frame_interval instead, e.g. "
            f"{setting(*TIME_EXAMPLE[0])} and {setting(*TIME_EXAMPLE[1])}.",
            settings=[*TIME_EXAMPLE, ("start_time", NAMED), ("frame_interval", NAMED)],
        )
    return times


def _ending(last_ns: int) -> str:
    """``", the last at <time>"`` where datetime64[ns] can show it, else ``""``."""
    if last_ns > _INT64.max:
        return ""
    return f", the last at {pd.Timestamp(last_ns).isoformat()}"


def regular_times(start: pd.Timestamp, interval: pd.Timedelta, count: int) -> np.ndarray:
    """``start + k * interval`` for ``k = 0 .. count - 1``, refused where it would overflow."""
    step = int(interval.as_unit("ns").value)
    if count and step * (count - 1) > _INT64.max:
        raise ConfigError(
            f"the times of the frames run past what datetime64[ns] can hold (the years "
            f"{_SPAN}): {count} frames {interval} apart from {start.isoformat()}. Check "
            "start_time and frame_interval.",
            settings=[("start_time", NAMED), ("frame_interval", NAMED)],
        )
    return offset_times(start, np.arange(count, dtype=np.int64) * np.int64(step))
