"""Open a video as a lazy ``(time, y, x, channel)`` array (PyAV / FFmpeg).

Opening reads the packet index of the video stream (no decoding; timestamps that go back or
repeat, as in recordings joined by bytes, are refused) and decodes the first frame (its display
matrix, then its size as shown); each chunk of frames is decoded by its own task
(:func:`sediment_xr.decode.decode_chunk`), which opens the video, seeks to the key frame at or
before its first frame and decodes forward, turning each frame as the display matrix says.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import itertools
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import dask
import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr import _validate as check
from sediment_xr._fs import (
    check_storage_options,
    is_url,
    local_or_url,
    missing_bucket,
    short,
    storage_errors,
    url_to_fs,
    without_query,
)
from sediment_xr._provenance import call_repr, history_line
from sediment_xr.decode import av_container, decode_chunk, decode_frames
from sediment_xr.exceptions import (
    NAMED,
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRError,
    SedimentXRWarning,
    setting,
)
from sediment_xr.frames import (
    FRAME_OK,
    Window,
    as_source,
    auto_chunk_frames,
    check_pixels,
    decoded,
    frames_array,
)
from sediment_xr.timeaxis import (
    TIME_EXAMPLE,
    check_time_options,
    offset_times,
    parse_creation_time,
    regular_times,
)

__all__ = [
    "VideoProbe",
    "check_fps_for_video",
    "check_video_file",
    "open_video",
    "probe_video",
    "sample_indices",
    "stream_offsets_ns",
]

_EPOCH = pd.Timestamp("1970-01-01T00:00:00")
#: ``fps`` samples a video at most at this many times the video's own frame rate.
MAX_FPS_FACTOR = 4
# Frames tried from the start of the input for one that decodes, when opening.
_FIRST_FRAME_TRIES = 16


def open_video(
    path_or_url: str | os.PathLike[str],
    *,
    fps: float | None = None,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a video as a lazy ``(time, y, x, channel)`` array of RGB frames.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        Local path, or an fsspec URL (``https://``, ``s3://``, ``gs://``, ``memory://``,
        ``file://``...), of any video FFmpeg can read (MP4/H.264, MKV, AVI...).
    fps : float, optional
        Sample the video at this rate, like moviepy's ``iter_frames(fps=...)``: for target
        times ``i / fps`` (``i = 0, 1, ...`` while not after the last frame), take the last
        frame shown at or before that time.  Frames repeat if `fps` exceeds the video's rate.
        Default: every frame.
    resize : int or (int, int), optional
        Output size: an int for a square, or ``(width, height)``.  Frames are resized with
        ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``.  Default: the video's size.
    chunk_frames : int, optional
        Frames per dask chunk along ``time``. Default:
        :func:`~sediment_xr.frames.auto_chunk_frames` (32 frames of 1024 x 1024).
    start_time : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        UTC time of the first frame.  Time zone aware values are converted to UTC.
    frame_interval : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta, optional
        Time between consecutive *output* frames, e.g. ``"1h"`` or ``"17h"`` for a time-lapse
        recorded at one frame per interval.  Needs `start_time`.
    storage_options : mapping, optional
        Passed to :func:`fsspec.open` for URLs (e.g. ``{"anon": True}``).

    Returns
    -------
    xarray.DataArray
        The frames (see :mod:`sediment_xr.frames`); ``frame`` is the 0-based index of the
        frame in the video.

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    InputError
        If the file is empty, truncated (ends before the duration its header gives), not a
        video FFmpeg can open, has no video stream, uses a codec FFmpeg cannot decode, has
        frames over :data:`~sediment_xr.frames.MAX_FRAME_PIXELS`, timestamps that go back
        or repeat (recordings joined by bytes), or none of its first frames decodes.
    StorageError
        If the file system or object store holding the file refuses access or times out.
    ConfigError
        If `fps`, `resize`, `chunk_frames`, `start_time` or `frame_interval` is invalid, or
        `fps` is over :data:`MAX_FPS_FACTOR` times the video's frame rate.

    Warns
    -----
    SedimentXRWarning
        If the display matrix mirrors the frames or turns them by other than quarter turns
        (not applied).  If `start_time` is given without `frame_interval`: time is then the
        playback time of the video, which is not real time for a time-lapse.  If neither
        `start_time`, `frame_interval` nor the container's ``creation_time`` gives the time:
        time is then the stream time counted from 1970-01-01.

    Notes
    -----
    Lazy: opening reads the packet index (no decoding) and decodes the first frame.  A
    frame that fails to decode is skipped (pixels 0, ``frame_status`` undecodable) and
    decoding goes on.

    Frames are shown as a player shows them: a display matrix that turns them by quarter
    turns (a phone video recorded upright) is applied, before `resize`; one that mirrors them
    or turns them by another angle is not, with a warning.

    Time is, in order of preference: ``start_time + k * frame_interval`` for output frame
    ``k``; ``start_time`` + the frame's presentation time in the stream (counted from the
    first frame); the container's ``creation_time`` + stream time; 1970-01-01 + stream time.
    The choice is stored in the ``time_source`` attribute of ``time``.
    """
    source = as_source(path_or_url, "open_video", "data/camera.mp4")
    fps = check.check_fps(fps)
    out_size = check.check_resize(resize)
    chunk_frames = check.check_chunk_frames(chunk_frames)
    options = check_storage_options(storage_options)
    start, interval = check_time_options(start_time, frame_interval)

    target = local_or_url(source)
    check_video_file(target, options)
    probe = probe_video(target, options)
    if fps is None:
        indices = list(range(len(probe.pts)))
    else:
        step = Fraction(fps).limit_denominator(1_000_000)
        check_fps_for_video(target, fps, probe.pts, probe.time_base)
        indices = sample_indices(probe.pts, probe.time_base, step)
    wanted = [probe.pts[i] for i in indices]
    height, width = probe.frame_size
    out_w, out_h = out_size if out_size is not None else (width, height)
    check_pixels(target, out_w, out_h, "resized frames")
    chunk_frames = chunk_frames or auto_chunk_frames(out_w, out_h)

    def task_of(chunk: Sequence[int], window: Window | None) -> Any:
        return dask.delayed(decode_chunk, pure=True, nout=2)(
            target,
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
            turns=probe.turns,
            window=window,
        )

    chunks = [wanted[b : b + chunk_frames] for b in range(0, len(wanted), chunk_frames)]
    data, status = decoded(task_of, chunks, out_h, out_w)

    if interval is not None:  # the stream's times are not used (nor checked)
        times, time_source = regular_times(start, interval, len(wanted)), "frame_interval"
    else:
        offsets = stream_offsets_ns(target, wanted, probe.pts[0], probe.time_base)
        times, time_source = _video_times(target, start, offsets, probe.creation_time)
    call = call_repr(
        "sediment_xr.open_video",
        source,
        fps=fps,
        resize=resize,
        chunk_frames=chunk_frames,
        start_time=start_time,
        frame_interval=frame_interval,
    )
    attrs = {
        "long_name": "video frames",
        "source": without_query(source),
        "source_files": [without_query(source)],
        "channel_order": "RGB",
        "history": history_line(call),
    }
    return frames_array(
        data,
        status,
        times,
        np.asarray(indices, dtype=np.int64),
        time_source,
        attrs,
    )


def _video_times(
    target: str, start: pd.Timestamp | None, offsets: np.ndarray, creation_time: str | None
) -> tuple[np.ndarray, str]:
    """The frames' times from stream times, and where they come from (see :func:`open_video`).

    Without ``frame_interval``: from ``start_time``, else the container's creation time, else
    1970-01-01.
    """
    if start is not None:
        warnings.warn(
            SedimentXRWarning(
                f"{target}: time is start_time + the video's playback time, because "
                "frame_interval is not given; the playback time of a time-lapse video is not "
                "real time (331 frames may span 8 months). Give frame_interval (the time "
                f"between frames), e.g. {setting('frame_interval', '17h')}.",
                settings=[("start_time", NAMED), ("frame_interval", NAMED), TIME_EXAMPLE[1]],
            ),
            stacklevel=3,
        )
        return offset_times(start, offsets), "start_time+stream"
    created = parse_creation_time(creation_time)
    if created is not None:
        return offset_times(created, offsets), "creation_time+stream"
    warnings.warn(
        SedimentXRWarning(
            f"{target} has no usable creation_time metadata and no start_time was given, so "
            "time is the stream time counted from 1970-01-01T00:00:00. Give start_time (and "
            f"frame_interval for a time-lapse), e.g. {setting(*TIME_EXAMPLE[0])} and "
            f"{setting(*TIME_EXAMPLE[1])}.",
            settings=[*TIME_EXAMPLE, ("start_time", NAMED), ("frame_interval", NAMED)],
        ),
        stacklevel=3,
    )
    return offset_times(_EPOCH, offsets), "epoch+stream"


def check_video_file(source: str, storage_options: dict[str, Any]) -> None:
    """Raise if a video file is missing, a folder or empty."""
    folder = (
        f"{source} is a folder, but a video input is one file. For a folder of still images "
        f"use open_images({source!r}) (in a config: the folder as input)."
    )
    if is_url(source):
        fs, path = url_to_fs(source, storage_options)
        with storage_errors(source):
            if not fs.exists(path):
                raise InputNotFoundError(
                    f"{source} does not exist{missing_bucket(source, fs, path)}; a video input "
                    "needs a video file. Check the URL and storage_options."
                )
            if fs.isdir(path):
                raise InputError(folder)
            size = fs.size(path)
    else:
        if not os.path.exists(source):
            raise InputNotFoundError(
                f"{source} does not exist; a video input needs a video file. Check the path "
                f"(working directory: {os.getcwd()})."
            )
        if os.path.isdir(source):
            raise InputError(folder)
        size = os.path.getsize(source)
    if size == 0:
        raise InputError(
            f"{source} is empty (0 bytes); a video input needs a file with frames. The "
            "download or copy probably failed: fetch the file again."
        )


@dataclass(frozen=True)
class VideoProbe:
    """What opening a video learns of it (:func:`probe_video`).

    ``pts`` are the video stream's presentation timestamps in order, in units of
    ``time_base`` (seconds); ``frame_size`` is ``(height, width)`` as shown; ``turns`` the
    quarter turns the display matrix asks for; ``creation_time`` the container's, as text.
    """

    pts: list[int]
    time_base: Fraction
    frame_size: tuple[int, int]
    creation_time: str | None
    turns: int


def probe_video(source: str, storage_options: dict[str, Any]) -> VideoProbe:
    """Read the video stream's packet index and decode its first frame (client side)."""
    with contextlib.ExitStack() as stack:
        try:
            with storage_errors(source):
                container = stack.enter_context(av_container(source, storage_options))
        except SedimentXRError:
            raise
        except Exception as err:
            raise InputError(
                f"{source} cannot be opened by FFmpeg ({short(err)}); a video input must be "
                "a file FFmpeg can read (MP4/H.264, MKV, AVI...). Check that it is a complete "
                "video and not, e.g., an HTML error page or text saved with a video extension."
            ) from err
        streams = container.streams.video
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(
                f"{source} has no video stream (streams: {', '.join(kinds)}); a video input "
                "needs a video stream. Check that this is the video, not its audio track or "
                "subtitles."
            )
        stream = streams[0]
        if stream.codec_context is None:
            raise InputError(
                f"{source}: its video stream uses a codec this FFmpeg build cannot decode; a "
                "video input needs a codec FFmpeg decodes (H.264, HEVC, MJPEG, FFV1, VP9...). "
                "Re-encode it, e.g. `ffmpeg -i in.avi -c:v libx264 -crf 18 out.mp4`."
            )
        check_pixels(source, stream.codec_context.width, stream.codec_context.height)
        time_base = stream.time_base
        creation = {**stream.metadata, **container.metadata}.get("creation_time")
        try:
            packets = [
                (int(packet.pts), int(packet.duration or 0), packet.dts)
                for packet in container.demux(stream)
                if packet.pts is not None and packet.size > 0 and not packet.is_discard
            ]
        except Exception as err:
            raise InputError(
                f"{source} cannot be read to its end by FFmpeg ({short(err)}); a video input "
                "needs a complete file. The file may be truncated: download or copy it again."
            ) from err
        declared = _declared_duration(container, stream)
        pts = sorted({p for p, _, _ in packets})

    if not pts and declared:
        raise InputError(
            f"{source} is truncated: its header gives {float(declared):.3f} s of video but no "
            "frame is there; a video input needs a complete file. Download or copy it again."
        )
    if not pts:
        raise InputError(
            f"{source} has a video stream but 0 frames; a video input needs at least one "
            "decodable frame. The recording is empty or truncated: check it with ffprobe."
        )
    if time_base is None:
        raise InputError(
            f"{source} has a video stream without a time base; a video input needs frame "
            "timestamps. Re-mux the file, e.g. `ffmpeg -i in -c copy out.mkv`."
        )
    _check_one_timeline(source, packets, len(pts))
    _check_not_truncated(source, [p[:2] for p in packets], pts, Fraction(time_base), declared)
    turns = _display_turns(source, storage_options)
    first = _first_decodable_frame(source, pts, storage_options, turns)
    return VideoProbe(
        pts=pts,
        time_base=Fraction(time_base),
        frame_size=(int(first.shape[0]), int(first.shape[1])),
        creation_time=creation,
        turns=turns,
    )


def _display_matrix(frame: Any) -> bytes:
    """The raw display matrix of a decoded frame's side data (empty when it has none)."""
    side = frame.side_data
    for entry in side:  # PyAV before 19 yields the side data, 19 and later their types
        data = entry if hasattr(entry, "type") else side[entry]
        if getattr(getattr(data, "type", entry), "name", "") == "DISPLAYMATRIX":
            return bytes(data)
    return b""


def _display_turns(source: str, storage_options: Mapping[str, Any] | None) -> int:
    """Quarter turns counter-clockwise that show the frames as the display matrix says.

    A phone held upright records its frames on their side and says in the stream's display
    matrix (side data, the ``rotate`` tag of older tools) how to turn them; players turn
    them, and so does the analysis.  A mirrored matrix, or one that does not turn by quarter
    turns, is not applied: one warning says so.
    """
    frame = _first_frame(source, storage_options)
    if frame is None:
        return 0  # the first frames are checked next, with their own message
    matrix = _display_matrix(frame)
    if len(matrix) < 36:
        return 0
    a, b, _, c, d = np.frombuffer(matrix[:20], dtype="<i4").astype(np.int64)
    degrees = float(frame.rotation)
    turns = round(degrees / 90)
    if a * d - b * c >= 0 and abs(degrees - 90 * turns) < 1:
        return turns % 4
    what = (
        "mirrors the frames" if a * d - b * c < 0 else f"turns the frames by {degrees:g} degrees"
    )
    warnings.warn(
        SedimentXRWarning(
            f"{source}: its display matrix {what}, which is not applied: the frames are "
            "analysed as stored, not as a player shows them. To analyse them as shown, "
            "re-encode the video with FFmpeg, which applies it (`ffmpeg -i in.mp4 out.mp4`)."
        ),
        stacklevel=4,
    )
    return 0


def _check_one_timeline(
    source: str, packets: Sequence[tuple[int, int, int | None]], distinct: int
) -> None:
    """Raise if the timestamps go back or repeat in file order (recordings joined by bytes).

    Frames are told apart and put in order by their timestamps; two recordings joined end to
    end (``cat a.ts b.ts > joined.ts``) start their timestamps again, so frames of the second
    would take the places of the first's (or be sorted in among them) without a word.
    """
    back = next(
        (
            k
            for k, ((_, _, before), (_, _, after)) in enumerate(itertools.pairwise(packets), 1)
            if before is not None and after is not None and after < before
        ),
        None,
    )
    if back is None and distinct == len(packets):
        return
    if back is None:
        first = {}
        for k, (pts, _, _) in enumerate(packets):
            first.setdefault(pts, k)
        back = next(k for k, (pts, _, _) in enumerate(packets) if first[pts] != k)
    raise InputError(
        f"{source}: its timestamps go back or repeat at frame {back + 1} of {len(packets)} (pts "
        f"{packets[back][0]} after {packets[back - 1][0]}), as in recordings joined end to end "
        "(`cat a.ts b.ts`); a video input needs one timeline, or its frames cannot be put in "
        "order. Give each recording on its own, or join them with FFmpeg's concat demuxer, "
        "which makes the timestamps continuous: `ffmpeg -f concat -safe 0 -i list.txt -c copy "
        "joined.mkv`."
    )


def _declared_duration(container: Any, stream: Any) -> Fraction | None:
    """Duration (seconds) the file's header gives for the video stream, or None.

    Only where the header states it: an MP4/MOV track's own duration, or an MKV/WebM
    segment's duration when the video is its only stream.  FFmpeg fills in other durations
    by estimating (from other streams, or the bit rate), which would not show truncation.
    """
    formats = set(container.format.name.split(","))
    if formats & {"mov", "mp4"} and stream.duration and stream.time_base is not None:
        return stream.duration * Fraction(stream.time_base)
    if formats & {"matroska", "webm"} and len(container.streams) == 1 and container.duration:
        return Fraction(container.duration, av.time_base)
    return None


def _check_not_truncated(
    source: str,
    packets: Sequence[tuple[int, int]],
    pts: Sequence[int],
    time_base: Fraction,
    declared: Fraction | None,
) -> None:
    """Raise if the frames end well before the duration the file's header declares.

    A download or copy cut short keeps its header: FFmpeg then reads the frames that are
    there without an error, and the run would look complete with part of the video.
    """
    if declared is None:
        return
    steps = [b - a for a, b in itertools.pairwise(pts) if b > a]
    last_duration = max((d for p, d in packets if p == pts[-1]), default=0)
    step = last_duration or (int(np.median(steps)) if steps else 0)
    if step <= 0:
        return
    found = (pts[-1] - pts[0] + step) * time_base
    # The last frame's duration is exact when the file stores it; otherwise allow for a last
    # frame shown longer than the others.
    slack = Fraction(1, 2) if last_duration else Fraction(3, 2)
    if declared - found > slack * step * time_base:
        raise InputError(
            f"{source} is truncated: its header gives {float(declared):.3f} s of video but its "
            f"{len(pts)} frames end at {float(found):.3f} s; a video input needs a complete "
            "file. Download or copy it again; to analyse only the frames that are there, "
            "re-mux them first: `ffmpeg -i in.mkv -c copy complete.mkv`."
        )


def _first_frame(source: str, storage_options: Mapping[str, Any] | None) -> Any:
    """The first frame of the first few packets that decodes (a PyAV frame), or None."""
    with contextlib.suppress(av.FFmpegError), av_container(source, storage_options) as container:
        stream = container.streams.video[0]
        packets = itertools.islice(container.demux(stream), _FIRST_FRAME_TRIES)
        for packet in itertools.chain(packets, [None]):  # None: flush the decoder
            try:
                decoded = stream.decode(packet)
            except av.FFmpegError:
                continue
            if decoded:
                return decoded[0]
    return None


def _first_decodable_frame(
    source: str, pts: Sequence[int], storage_options: Mapping[str, Any] | None, turns: int
) -> np.ndarray:
    """Decode the first frame, as shown; if it is damaged, the first of the next few."""
    errors: list[str] = []
    for wanted in (list(pts[:1]), list(pts[1:_FIRST_FRAME_TRIES])):
        if not wanted:
            continue
        try:
            frames, status = decode_frames(
                source, wanted, storage_options=storage_options, errors=errors, turns=turns
            )
        except av.FFmpegError as err:
            errors.append(short(err))
            continue
        ok = np.flatnonzero(status == FRAME_OK)
        if ok.size:
            return frames[ok[0]]
    count = min(len(pts), _FIRST_FRAME_TRIES)
    which = f"its {count} frames" if count == len(pts) else f"its first {count} frames"
    seen = f" ({errors[0]})" if errors else ""
    raise InputError(
        f"{source}: none of {which} can be decoded{seen}; a video input needs decodable "
        "frames. The file is damaged or uses a codec this FFmpeg build lacks: check it with "
        "ffprobe, or re-encode it (`ffmpeg -i in -c:v libx264 out.mp4`)."
    )


def check_fps_for_video(source: str, fps: float, pts: Sequence[int], time_base: Fraction) -> None:
    """Raise if `fps` is over :data:`MAX_FPS_FACTOR` times the video's mean frame rate.

    Sampling faster than the video only repeats its frames: the work (and the cube) would
    grow with `fps` for nothing new.
    """
    duration = (pts[-1] - pts[0]) * time_base
    if len(pts) < 2 or duration <= 0:
        return
    rate = (len(pts) - 1) / duration
    if fps <= MAX_FPS_FACTOR * rate:
        return
    own = round(float(rate), 3)
    raise ConfigError(
        f"{setting('fps', fps)} would repeat each of the {len(pts)} frames of {source} about "
        f"{float(fps / rate):.0f} times (the video has {own:g} frames per second); fps samples "
        f"a video at most at {MAX_FPS_FACTOR} times its own rate, since faster only repeats "
        f"frames. Use e.g. {setting('fps', own)}, or leave fps out to take every frame.",
        settings=[("fps", fps), ("fps", own), ("fps", NAMED)],
    )


def sample_indices(pts: Sequence[int], time_base: Fraction, fps: Fraction) -> list[int]:
    """Indices of the frames shown at times ``i / fps`` (moviepy ``iter_frames`` sampling)."""
    times = [(p - pts[0]) * time_base for p in pts]
    count = math.floor(times[-1] * fps) + 1
    return [bisect.bisect_right(times, Fraction(i) / fps) - 1 for i in range(count)]


def stream_offsets_ns(
    source: str, pts: Sequence[int], pts0: int, time_base: Fraction
) -> np.ndarray:
    """Presentation times relative to the first frame, in integer nanoseconds.

    Raises where they span more than datetime64[ns] can hold (about 292 years).
    """
    offsets = [round((p - pts0) * time_base * 10**9) for p in pts]
    if offsets and max(offsets) > np.iinfo(np.int64).max:
        years = max(offsets) / (365.25 * 86400 * 10**9)
        raise InputError(
            f"{source}: its stream times span {years:.3g} years, more than datetime64[ns] can "
            "hold (about 292), so they cannot time its frames. Give the time of the first "
            f"frame and the time between frames instead, e.g. {setting(*TIME_EXAMPLE[0])} "
            f"and {setting(*TIME_EXAMPLE[1])}.",
            settings=[*TIME_EXAMPLE, ("start_time", NAMED), ("frame_interval", NAMED)],
        )
    return np.array(offsets, dtype=np.int64)
