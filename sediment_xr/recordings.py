"""Open many recordings (video files named by their start times) as one lazy series.

Observatory cameras leave archives of many video files, each named by the time it starts, e.g.
the CamHD recordings ``CAMHDA301-20220101T000000Z.mov`` (several a day, about 14 minutes each,
each repeating the same camera choreography).  :func:`open_recordings` makes one series of
them: each file is probed as :func:`~sediment_xr.open_video` probes a video (its packet index
and first frame), its start time comes from its name
(:func:`~sediment_xr.timeaxis.parse_timestamp_from_name`) or else from its container's
``creation_time``, and its frames are timed by that start plus their stream time.  The files
are put in time order; their frames must not overlap in time.  Each chunk of frames is decoded
by its own task (:func:`sediment_xr.decode.decode_chunk`, which opens its file), so the series
stays lazy and runs on distributed workers; a chunk that spans two files decodes the part of each
in turn.
"""

from __future__ import annotations

import bisect
import glob
import itertools
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr import _validate as check
from sediment_xr._fs import (
    basename,
    check_storage_options,
    has_glob,
    is_url,
    list_fresh,
    local_or_url,
    storage_errors,
    url_to_fs,
    without_query,
)
from sediment_xr._provenance import call_repr, history_line
from sediment_xr.decode import decode_chunk
from sediment_xr.exceptions import (
    NAMED,
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRWarning,
    setting,
)
from sediment_xr.frames import (
    Window,
    auto_chunk_frames,
    check_pixels,
    decoded,
    frames_array,
)
from sediment_xr.timeaxis import offset_times, parse_creation_time, parse_timestamp_from_name
from sediment_xr.video import (
    VideoProbe,
    check_fps_for_video,
    check_video_file,
    probe_video,
    sample_indices,
    stream_offsets_ns,
)

__all__ = [
    "FILE_ATTRS",
    "VIDEO_EXTENSIONS",
    "check_window",
    "decode_parts",
    "list_recordings",
    "open_recordings",
]

#: Names of video files taken from a folder or a glob pattern (any case).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".avi",
    ".m4v",
    ".mkv",
    ".mov",
    ".mp4",
    ".mpeg",
    ".mpg",
    ".mts",
    ".ts",
    ".webm",
)
#: Attributes of the ``file`` coordinate.
FILE_ATTRS: dict[str, Any] = {
    "long_name": "recording the frame comes from (file name, or URL)",
}
_NAME_EXAMPLE = "CAMHDA301-20220101T000000Z.mov"
_WINDOW_EXAMPLE = ["00:05:00", "00:05:10"]


@dataclass(frozen=True)
class _Recording:
    """One probed file: where it is, what it is called, when it starts and its frames."""

    target: str
    name: str
    start: pd.Timestamp
    from_name: bool
    probe: VideoProbe

    @property
    def end(self) -> pd.Timestamp:
        """Time of its last frame."""
        last = (self.probe.pts[-1] - self.probe.pts[0]) * self.probe.time_base
        return self.start + pd.Timedelta(round(last * 10**9), unit="ns")


def list_recordings(
    source: str, storage_options: Mapping[str, Any] | None = None
) -> list[str] | None:
    """The video files of a folder or glob pattern, or None if it holds no video file.

    Parameters
    ----------
    source : str
        A folder or a glob pattern, a local path or an fsspec URL.
    storage_options : mapping, optional
        fsspec options for URLs.

    Returns
    -------
    list of str or None
        Local paths or full URLs of the files whose names end in :data:`VIDEO_EXTENSIONS`
        (hidden and ``._`` files skipped), unsorted; None when there are none, or when there
        are images too (then the input is a folder of stills), or when `source` is neither a
        folder nor a pattern.
    """
    from sediment_xr.stills import IMAGE_EXTENSIONS

    names = _folder_files(source, dict(storage_options or {}))
    if names is None:
        return None
    visible = [n for n in names if not basename(n).startswith(".")]
    videos = [n for n in visible if basename(n).lower().endswith(VIDEO_EXTENSIONS)]
    images = [n for n in visible if basename(n).lower().endswith(IMAGE_EXTENSIONS)]
    return videos if videos and not images else None


def _folder_files(source: str, storage_options: dict[str, Any]) -> list[str] | None:
    """Files of a folder or glob pattern (None if `source` is neither, or does not exist)."""
    from sediment_xr.stills import IMAGE_EXTENSIONS

    pattern = has_glob(source)
    if is_url(source):
        fs, path = url_to_fs(source, storage_options)
        with storage_errors(source):
            if pattern:
                entries = fs.glob(path, detail=True)
                names = [n for n, info in entries.items() if info.get("type") != "directory"]
            elif basename(path).lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS):
                return None  # a file: not asked (over http that would read it whole)
            else:
                try:
                    entries = list_fresh(fs, path)
                except (FileNotFoundError, NotADirectoryError):
                    return None
                names = [e["name"] for e in entries if e.get("type") == "file"]
                if [n.rstrip("/") for n in names] == [path.rstrip("/")]:
                    return None  # fs.ls of a file lists the file itself
        return [fs.unstrip_protocol(n) for n in names]
    expanded = os.path.expanduser(source)
    if pattern:
        return [
            os.path.abspath(p) for p in glob.glob(expanded, recursive=True) if os.path.isfile(p)
        ]
    if not os.path.isdir(expanded):
        return None
    with os.scandir(expanded) as entries:
        return [os.path.abspath(e.path) for e in entries if e.is_file()]


def check_window(value: Any, name: str = "window") -> tuple[pd.Timedelta, pd.Timedelta] | None:
    """Parse a time window inside each recording: ``[start, end]`` offsets from its start.

    Parameters
    ----------
    value : sequence of two durations, or None
        Each a duration such as ``"00:05:00"``, ``"5min"`` or a number of seconds (YAML reads
        an unquoted ``00:05:00`` as 300 seconds).
    name : str, default "window"
        The setting's name in messages.

    Returns
    -------
    (pandas.Timedelta, pandas.Timedelta) or None
        Start (included) and end (excluded), with ``0 <= start < end``.

    Raises
    ------
    ConfigError
        If `value` is not two durations, a duration is negative, or the end is not after the
        start.
    """
    if value is None:
        return None
    example = _WINDOW_EXAMPLE
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise check.bad_value(name, "two offsets from each recording's start", value, example)
    start, end = (_offset(v, name, value) for v in value)
    if end <= start:
        raise check.bad_value(
            name, "an end after its start", list(value), example, fix=_fix(name, example)
        )
    return start, end


def _offset(value: Any, name: str, whole: Any) -> pd.Timedelta:
    """One offset of a window (a duration, or seconds), checked not negative."""
    need = "two offsets from each recording's start, like '00:05:00' (hours:minutes:seconds)"
    try:
        if check.is_whole(value) or isinstance(value, float):
            offset = pd.Timedelta(seconds=float(value))
        elif isinstance(value, str):
            offset = pd.Timedelta(value)
        else:
            raise ValueError("not a duration")
    except (ValueError, TypeError, OverflowError) as err:
        raise check.bad_value(name, need, whole, _WINDOW_EXAMPLE) from err
    if pd.isna(offset) or offset < pd.Timedelta(0):
        raise check.bad_value(name, need + " and not negative", whole, _WINDOW_EXAMPLE)
    return offset.as_unit("ns")


def _fix(name: str, example: Any) -> str:
    return f"Use e.g. {setting(name, example)}."


def open_recordings(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    fps: float | None = None,
    window: Sequence[Any] | None = None,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open many recordings, each named by its start time, as one lazy series of frames.

    Parameters
    ----------
    sources : str, os.PathLike or sequence of them
        A folder or glob pattern of video files, or a list of video files; local paths or
        fsspec URLs.  Each file's start time is the timestamp in its name (the CamHD pattern
        ``CAMHDA301-20220101T000000Z.mov``, or the stills' patterns of
        :func:`~sediment_xr.timeaxis.parse_timestamp_from_name`), else its container's
        ``creation_time``.
    fps : float, optional
        Sample each recording at this rate (as :func:`~sediment_xr.open_video` does), from
        the start of its window.  Default: every frame.
    window : (start, end), optional
        Take only the frames from `start` (included) to `end` (excluded) after each
        recording's first frame, e.g. ``("00:05:00", "00:05:10")``: recordings that repeat
        one camera choreography give the same view at the same offsets.  Recordings without a
        frame in it are left out, with a warning.  Default: all of each recording.
    resize : int or (int, int), optional
        Output size (see :func:`~sediment_xr.open_video`).  Needed when the recordings'
        frames differ in size.
    chunk_frames : int, optional
        Frames per dask chunk along ``time`` (all chunks but the last the same size, as the
        run's stores need; a chunk that spans two files decodes each file's part in turn,
        :func:`decode_parts`).  Default: :func:`~sediment_xr.frames.auto_chunk_frames`.
    storage_options : mapping, optional
        Passed to :func:`fsspec.open` for URLs.

    Returns
    -------
    xarray.DataArray
        The frames (see :mod:`sediment_xr.frames`) in time order, with a ``file``
        coordinate along ``time`` (the file's base name, or its URL) and ``frame`` the
        frame's index in its file.  ``time`` is the file's start plus the frame's stream time
        (counted from the file's first frame).

    Raises
    ------
    InputNotFoundError
        If a file does not exist, or a folder or pattern holds no video file.
    InputError
        If a file cannot be opened as :func:`~sediment_xr.open_video` would refuse it (one
        damaged file refuses the series, naming it), has no start time in its name or
        container, if two files start at the same time or a file's frames run past the next
        file's start, or if the files' frames differ in size and `resize` is not given.
    ConfigError
        If `fps`, `window`, `resize` or `chunk_frames` is invalid, or `window` holds a frame
        of no recording.

    Notes
    -----
    Opening probes every file in the client, as :func:`~sediment_xr.open_video` probes one
    video: it reads each file's packet index (every packet is read, none decoded beyond the
    first frames), so it reads each file's bytes once. Frames that fail to decode inside a
    good file are skipped as in a single video (pixels 0, ``frame_status`` undecodable).
    """
    fps = check.check_fps(fps)
    span = check_window(window)
    out_size = check.check_resize(resize)
    chunk_frames = check.check_chunk_frames(chunk_frames)
    options = check_storage_options(storage_options)
    label, files = _recording_files(sources, options)

    recordings = sorted(
        (_open_one(name, options) for name in files), key=lambda r: (r.start, r.name)
    )
    _check_no_overlap(recordings)
    height, width = _frame_size(recordings, out_size)
    out_w, out_h = out_size if out_size is not None else (width, height)
    check_pixels(label, out_w, out_h, "resized frames")
    chunk_frames = chunk_frames or auto_chunk_frames(out_w, out_h)

    picked = [(r, _wanted_indices(r, fps, span)) for r in recordings]
    _check_window_has_frames(label, picked, span, window)
    picked = [(r, indices) for r, indices in picked if indices]

    def task_of(chunk: Sequence[tuple[int, int]], frame_window: Any) -> Any:
        parts = [
            (picked[k][0].target, [p for _, p in group], picked[k][0].probe)
            for k, group in itertools.groupby(chunk, key=lambda item: item[0])
        ]
        if len(parts) == 1:  # the common case: the task of a single video's chunk
            target, pts, probe = parts[0]
            return dask.delayed(decode_chunk, pure=True, nout=2)(
                target,
                pts,
                frame_size=probe.frame_size,
                out_size=out_size,
                storage_options=options,
                turns=probe.turns,
                window=frame_window,
            )
        plain = [(t, pts, probe.frame_size, probe.turns) for t, pts, probe in parts]
        return dask.delayed(decode_parts, pure=True, nout=2)(
            plain, out_size=out_size, storage_options=options, window=frame_window
        )

    flat = [(k, rec.probe.pts[i]) for k, (rec, indices) in enumerate(picked) for i in indices]
    chunks = [flat[b : b + chunk_frames] for b in range(0, len(flat), chunk_frames)]
    data, status = decoded(task_of, chunks, out_h, out_w)

    times = np.concatenate([_times(rec, indices) for rec, indices in picked])
    numbers = np.concatenate([np.asarray(indices, dtype=np.int64) for _, indices in picked])
    names = np.array([rec.name for rec, indices in picked for _ in indices], dtype=object)
    call = call_repr(
        "sediment_xr.open_recordings",
        label,
        fps=fps,
        window=None if window is None else [str(v) for v in window],
        resize=resize,
        chunk_frames=chunk_frames,
    )
    attrs = {
        "long_name": "video frames",
        "source": label,
        "source_files": [without_query(r.target) for r in recordings],
        "channel_order": "RGB",
        "history": history_line(call),
    }
    frames = frames_array(data, status, times, numbers, _time_source(recordings), attrs)
    return frames.assign_coords(file=("time", names, dict(FILE_ATTRS)))


def decode_parts(
    parts: Sequence[tuple[str, Sequence[int], tuple[int, int], int]],
    *,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    window: Window | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a chunk whose frames come from several files (the dask task of such a chunk).

    Parameters
    ----------
    parts : sequence of (source, wanted_pts, frame_size, turns)
        Each file's frames in the chunk, in order, as :func:`~sediment_xr.decode.decode_chunk`
        takes them.
    out_size, storage_options, window
        As for :func:`~sediment_xr.decode.decode_chunk`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The frames ``(time, y, x, channel)`` and their ``frame_status``, in order.
    """
    frames, status = [], []
    for source, pts, frame_size, turns in parts:
        data, flags = decode_chunk(
            source,
            pts,
            frame_size=frame_size,
            out_size=out_size,
            storage_options=storage_options,
            turns=turns,
            window=window,
        )
        frames.append(data)
        status.append(flags)
    return np.concatenate(frames), np.concatenate(status)


def _recording_files(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], options: dict[str, Any]
) -> tuple[str, list[str]]:
    """The input as shown in messages, and its video files (local paths or URLs)."""
    if isinstance(sources, str | os.PathLike):
        label = os.fspath(sources)
        files = list_recordings(label, options)
        if files is None:
            raise InputNotFoundError(
                f"no video files found in {label} (looked for names ending in "
                f"{', '.join(VIDEO_EXTENSIONS)}, any case, skipping hidden files, and no "
                "images beside them); a series of recordings needs a folder, a glob pattern or "
                "a list of video files. Check the folder or the pattern."
            )
        return without_query(label) or label, [local_or_url(f) for f in files]
    if not isinstance(sources, Sequence) or not sources:
        raise InputError(
            f"open_recordings needs a folder, a glob pattern or a list of video files, but "
            f"got {sources!r}. Give e.g. open_recordings(['a.mov', 'b.mov'])."
        )
    files = []
    for item in sources:
        if not isinstance(item, str | os.PathLike) or not os.fspath(item):
            raise InputError(
                f"a list of recordings needs a path or URL string for each file, but got "
                f"{item!r} ({type(item).__name__}). Give e.g. ['a.mov', 'b.mov']."
            )
        files.append(local_or_url(os.path.expanduser(os.fspath(item))))
    seen = [f for f, n in zip(files, range(len(files)), strict=True) if files.index(f) != n]
    if seen:
        raise InputError(
            f"{seen[0]} is given twice in the list of recordings; each recording is one part "
            "of the series. Remove the repeat."
        )
    return f"{len(files)} recordings ({without_query(files[0])}, ...)", files


def _open_one(target: str, options: dict[str, Any]) -> _Recording:
    """Probe one file (as :func:`~sediment_xr.open_video` does) and find when it starts."""
    check_video_file(target, options)
    probe = probe_video(target, options)
    name = basename(target) if not is_url(target) else (without_query(target) or target)
    stamp = parse_timestamp_from_name(target)
    if stamp is not None:
        return _Recording(target, name, stamp, True, probe)
    created = parse_creation_time(probe.creation_time)
    if created is None:
        raise InputError(
            f"{target} has no start time in its name nor a creation_time in its container; a "
            "recording of a series needs its start time. Rename it with its start time in "
            f"UTC, like {_NAME_EXAMPLE}."
        )
    return _Recording(target, name, created, False, probe)


def _check_no_overlap(recordings: Sequence[_Recording]) -> None:
    """Raise if two recordings start together or one's frames run past the next's start."""
    for a, b in itertools.pairwise(recordings):
        if a.start == b.start:
            raise InputError(
                f"{a.target} and {b.target} both start at {a.start.isoformat()}; a series of "
                "recordings needs one recording per time. Remove the duplicate or rename it "
                "with its own start time."
            )
        if a.end >= b.start:
            raise InputError(
                f"{a.target} runs to {a.end.isoformat()}, past the start of {b.target} "
                f"({b.start.isoformat()}); a series of recordings needs each to end before "
                "the next starts. Check the start times in their names, or remove the "
                "overlapping one."
            )


def _frame_size(recordings: Sequence[_Recording], out_size: Any) -> tuple[int, int]:
    """The frames' (height, width): every file's, when `resize` does not set it."""
    first = recordings[0]
    if out_size is None:
        for rec in recordings[1:]:
            if rec.probe.frame_size != first.probe.frame_size:
                (h1, w1), (h2, w2) = first.probe.frame_size, rec.probe.frame_size
                raise InputError(
                    f"{rec.target} has frames of {w2}x{h2} pixels but {first.target} of "
                    f"{w1}x{h1}; the recordings of a series must share one size. Resize them "
                    f"all with {setting('resize', (w1, h1))}.",
                    settings=[("resize", (w1, h1)), ("resize", NAMED)],
                )
    return first.probe.frame_size


def _wanted_indices(
    rec: _Recording, fps: float | None, span: tuple[pd.Timedelta, pd.Timedelta] | None
) -> list[int]:
    """Indices of the frames taken from one recording (its window, sampled at `fps`)."""
    pts, time_base = rec.probe.pts, rec.probe.time_base
    if fps is not None:
        check_fps_for_video(rec.target, fps, pts, time_base)
    step = None if fps is None else Fraction(fps).limit_denominator(1_000_000)
    if span is None:
        return list(range(len(pts))) if step is None else sample_indices(pts, time_base, step)
    times = [(p - pts[0]) * time_base for p in pts]
    low, high = (Fraction(int(t.value), 10**9) for t in span)
    if step is None:
        return [i for i, t in enumerate(times) if low <= t < high]
    count = math.ceil((min(high, times[-1] + Fraction(1, 10**9)) - low) * step)
    targets = [low + Fraction(i) / step for i in range(max(count, 0))]
    return [bisect.bisect_right(times, t) - 1 for t in targets]


def _check_window_has_frames(
    label: str,
    picked: Sequence[tuple[_Recording, list[int]]],
    span: tuple[pd.Timedelta, pd.Timedelta] | None,
    window: Any,
) -> None:
    """Raise if the window holds a frame of no recording; warn of recordings it misses."""
    if span is None:
        return
    missed = [rec for rec, indices in picked if not indices]
    if len(missed) < len(picked):
        if missed:
            warnings.warn(
                SedimentXRWarning(
                    f"{len(missed)} of the {len(picked)} recordings of {label} have no frame "
                    f"in {setting('window', list(window))} (e.g. {missed[0].name}, which "
                    f"ends {_ends(missed[0])} after its start); they are left out. Give a "
                    "window that they all hold to keep them.",
                    settings=[("window", NAMED)],
                ),
                stacklevel=4,
            )
        return
    longest = max(picked, key=lambda p: p[0].end - p[0].start)[0]
    raise ConfigError(
        f"{setting('window', list(window))} holds no frame of the {len(picked)} recordings of "
        f"{label} (the longest, {longest.name}, ends {_ends(longest)} after its start); a "
        f"window must lie inside the recordings. Use e.g. "
        f"{setting('window', ['00:00:00', _clock(longest.end - longest.start)])}.",
        settings=[("window", NAMED), ("window", list(window))],
    )


def _ends(rec: _Recording) -> str:
    return _clock(rec.end - rec.start)


def _clock(delta: pd.Timedelta) -> str:
    """A duration as ``HH:MM:SS`` (fractions of a second kept)."""
    seconds = delta.total_seconds()
    whole = int(seconds)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    frac = round(seconds - whole, 6)
    return text + (f"{frac:.6f}".rstrip("0")[1:] if frac else "")


def _times(rec: _Recording, indices: Sequence[int]) -> np.ndarray:
    """Times of the chosen frames of one recording: its start plus their stream time."""
    pts = rec.probe.pts
    wanted = [pts[i] for i in indices]
    offsets = stream_offsets_ns(rec.target, wanted, pts[0], rec.probe.time_base)
    return offset_times(rec.start, offsets, f" of {rec.name}")


def _time_source(recordings: Sequence[_Recording]) -> str:
    """The ``time_source`` of a series: where its files' start times come from."""
    kinds = sorted({"file_name" if r.from_name else "creation_time" for r in recordings})
    return "+".join(kinds) + "+stream"
