"""Open any input as frames: a video, stills or many recordings.

The openers are :mod:`sediment_xr.video`, :mod:`~.stills` and :mod:`~.recordings`.

:func:`open_frames` decides which from the input itself: a list of files, or a folder or glob
pattern of video files only, is a series of recordings; another glob pattern, an image file
name or a folder is a sequence of stills; anything else is a video.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._fs import has_glob, is_url, one_listing, storage_errors, url_to_fs
from sediment_xr.exceptions import NAMED, ConfigError, setting
from sediment_xr.recordings import list_recordings, open_recordings
from sediment_xr.stills import IMAGE_EXTENSIONS, open_images
from sediment_xr.video import open_video

__all__ = ["is_recordings", "is_stills", "open_frames"]


def is_recordings(
    source: str | Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> bool:
    """Whether an input is a series of recordings.

    That is a list of files, or a folder or glob pattern holding video files and no images
    (:func:`~sediment_xr.recordings.list_recordings`).
    """
    if not isinstance(source, str):
        return True
    if not has_glob(source) and source.lower().endswith(IMAGE_EXTENSIONS):
        return False
    return list_recordings(source, storage_options) is not None


def is_stills(source: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether an input is a sequence of stills (a glob, an image name or a folder).

    A URL ending in ``/`` (an ``http(s)://`` index page, an object-store prefix) is a folder
    without asking the server; other URLs are asked (an index page with links is a folder).
    """
    if has_glob(source) or source.lower().endswith(IMAGE_EXTENSIONS):
        return True
    if is_url(source) and source.endswith("/"):
        return True
    if is_url(source):
        fs, path = url_to_fs(source, storage_options)
        with storage_errors(source):  # e.g. an index page the server fails to give (500)
            return fs.isdir(path)
    return os.path.isdir(os.path.expanduser(source))


def open_frames(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    fps: float | None = None,
    window: Sequence[Any] | None = None,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a video, a folder or glob of stills, or many recordings as lazy frames.

    Parameters
    ----------
    source : str, os.PathLike or a list of them
        A video file, a folder or glob pattern of stills, or many recordings: a folder or
        glob pattern of video files, or a list of video files; local paths or fsspec URLs.
    fps, resize, chunk_frames, start_time, frame_interval, storage_options
        See :func:`~sediment_xr.open_video` and :func:`~sediment_xr.open_images` (``fps``
        samples a video and is refused for stills).
    window : (start, end), optional
        A time window inside each recording (:func:`~sediment_xr.open_recordings`); only
        for many recordings.

    Returns
    -------
    xarray.DataArray
        The frames (see :mod:`sediment_xr.frames`).

    Notes
    -----
    Lazy: see the opener's notes.
    """
    source = os.fspath(source) if isinstance(source, os.PathLike) else source
    with one_listing():  # a folder URL is asked once: recordings or stills?
        return _open(
            source, fps, window, resize, chunk_frames, start_time, frame_interval, storage_options
        )


def _open(
    source: Any,
    fps: float | None,
    window: Sequence[Any] | None,
    resize: Any,
    chunk_frames: int | None,
    start_time: Any,
    frame_interval: Any,
    storage_options: Mapping[str, Any] | None,
) -> xr.DataArray:
    if is_recordings(source, storage_options):
        _no_single_times(source, start_time, frame_interval)
        return open_recordings(
            source,
            fps=fps,
            window=window,
            resize=resize,
            chunk_frames=chunk_frames,
            storage_options=storage_options,
        )
    if window is not None:
        raise ConfigError(
            f"{setting('window', list(window))} samples each of many recordings, but "
            f"{source} is one video or a folder of stills. Remove window, or give the video "
            "as a list of one recording.",
            settings=[("window", NAMED), ("window", list(window))],
        )
    common = {
        "resize": resize,
        "chunk_frames": chunk_frames,
        "start_time": start_time,
        "frame_interval": frame_interval,
        "storage_options": storage_options,
    }
    if isinstance(source, str) and is_stills(source, storage_options):
        if fps is not None:
            raise ConfigError(
                f"fps samples a video, but {source} is a folder of stills. Remove fps (use "
                "frame_interval for the time between stills).",
                settings=[("fps", NAMED), ("frame_interval", NAMED)],
            )
        return open_images(source, **common)
    return open_video(source, fps=fps, **common)


def _no_single_times(source: Any, start_time: Any, frame_interval: Any) -> None:
    """Refuse start_time or frame_interval for recordings: their names time them."""
    given = [n for n, v in (("start_time", start_time), ("frame_interval", frame_interval)) if v]
    if given:
        shown = source if isinstance(source, str) else f"the list of {len(source)} recordings"
        raise ConfigError(
            f"{given[0]} times one video or a sequence of stills, but {shown} is many "
            "recordings, each timed by the start time in its name (or its container) plus "
            f"its stream time. Remove {' and '.join(given)}.",
            settings=[(name, NAMED) for name in given],
        )
