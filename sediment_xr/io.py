"""Open any input as frames: a video (:mod:`sediment_xr.video`) or stills (:mod:`~.stills`).

:func:`open_frames` decides which from the input itself: a glob pattern, an image file name
or a folder is a sequence of stills; anything else is a video.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._fs import has_glob, is_url, storage_errors, url_to_fs
from sediment_xr.exceptions import NAMED, ConfigError
from sediment_xr.stills import IMAGE_EXTENSIONS, open_images
from sediment_xr.video import open_video

__all__ = ["is_stills", "open_frames"]


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
    source: str | os.PathLike[str],
    *,
    fps: float | None = None,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a video, or a folder or glob of stills, as lazy frames.

    Parameters
    ----------
    source : str or os.PathLike
        A video file, a folder of stills or a glob pattern; a local path or an fsspec URL.
    fps, resize, chunk_frames, start_time, frame_interval, storage_options
        See :func:`~sediment_xr.open_video` and :func:`~sediment_xr.open_images` (``fps``
        samples a video and is refused for stills).

    Returns
    -------
    xarray.DataArray
        The frames (see :mod:`sediment_xr.frames`).

    Notes
    -----
    Lazy: see the opener's notes.
    """
    source = os.fspath(source) if isinstance(source, os.PathLike) else source
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
