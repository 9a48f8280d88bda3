"""Open a sequence of still images (a folder or a glob, local or remote) as lazy frames.

Opening lists the files, reads each image's size from its header and decodes the first image
once; each chunk of images is read and decoded by its own task
(:func:`sediment_xr.decode.read_chunk`).

Remote folders (an ``http(s)://`` directory listing, an ``s3://`` or ``gs://`` prefix) are
listed with one call; their headers are read by dask tasks on the active scheduler (the
workers of a distributed cluster), not one by one by the client.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import itertools
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import dask
import dask.base
import dask.threaded
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from sediment_xr import _validate as check
from sediment_xr._fs import (
    basename,
    check_storage_options,
    file_size,
    has_glob,
    is_url,
    list_fresh,
    missing_bucket,
    open_binary,
    parent,
    read_bytes,
    short,
    storage_errors,
    url_to_fs,
)
from sediment_xr._provenance import call_repr, history_line
from sediment_xr.decode import decode_image, orientation, read_chunk
from sediment_xr.exceptions import (
    NAMED,
    ConfigError,
    InputError,
    InputNotFoundError,
    SedimentXRError,
    setting,
)
from sediment_xr.frames import (
    Window,
    as_source,
    auto_chunk_frames,
    check_pixels,
    decoded,
    frames_array,
    too_many_pixels,
)
from sediment_xr.timeaxis import (
    TIME_EXAMPLE,
    check_time_options,
    check_times,
    offset_times,
    parse_timestamp_from_name,
    regular_times,
)

__all__ = ["IMAGE_EXTENSIONS", "open_images"]

#: File name endings (lower case) that :func:`open_images` takes from a folder or glob.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Headers of URLs: files per probing task, threads of the client's own threaded scheduler,
# threads inside each task (reading a header is mostly waiting for the storage).
_PROBE_FILES = 64
_HEADER_THREADS = 16
_TASK_THREADS = 8
# Images tried from the start of the input for one that decodes, when opening.
_FIRST_IMAGE_TRIES = 16


def open_images(
    folder_or_glob: str | os.PathLike[str],
    *,
    resize: int | tuple[int, int] | None = None,
    chunk_frames: int | None = None,
    start_time: str | dt.datetime | np.datetime64 | pd.Timestamp | None = None,
    frame_interval: str | dt.timedelta | np.timedelta64 | pd.Timedelta | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Open a sequence of still images as a lazy ``(time, y, x, channel)`` array.

    Parameters
    ----------
    folder_or_glob : str or os.PathLike
        A folder (local path or fsspec URL, e.g. an ``s3://bucket/cam/2021/`` prefix or an
        ``https://host/cam/2021/08/24/`` directory listing), or a glob pattern such as
        ``"stills/*.jpg"`` or ``"s3://bucket/cam/2021*/*.jpg"``.  Only files ending in
        .png, .jpg, .jpeg, .tif or .tiff (any case) are taken; hidden files and AppleDouble
        ``._*`` files are skipped.  Of an http(s) index page, only the links to files one
        name below the page are taken (not parent, sort-order ``?C=M;O=A``, sub-folder,
        query or other-host links).
    resize : int or (int, int), optional
        Output size: an int for a square, or ``(width, height)``, with
        ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``.  Needed when images differ in
        size.  Default: the images' size.
    chunk_frames : int, optional
        Images per dask chunk along ``time``. Default:
        :func:`~sediment_xr.frames.auto_chunk_frames`.
    start_time : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        UTC time of the first image.  With timestamped names and no `frame_interval`, times
        become ``start_time`` + the time elapsed since the first name's timestamp.
    frame_interval : str, datetime.timedelta, numpy.timedelta64 or pandas.Timedelta, optional
        Time between consecutive images, e.g. ``"17h"``; time is then
        ``start_time + k * frame_interval``.  Needs `start_time`.
    storage_options : mapping, optional
        Passed to fsspec for URLs (e.g. ``{"anon": True}``).

    Returns
    -------
    xarray.DataArray
        The frames (see :mod:`sediment_xr.frames`); ``frame`` is the 0-based position in the
        sorted sequence, and the ordered file list is the ``source_files`` attribute.

    Raises
    ------
    InputNotFoundError
        If the folder (or index page) does not exist or holds no image files.
    InputError
        If only some names hold a timestamp, two names hold the same timestamp, an image
        header cannot be read, an image is over
        :data:`~sediment_xr.frames.MAX_FRAME_PIXELS`, none of the first images decodes, or
        images differ in size and `resize` is not given.
    StorageError
        If the file system or object store refuses access or times out.
    ConfigError
        If names hold no timestamps and `start_time`/`frame_interval` are missing, or an
        option is invalid.

    Notes
    -----
    Lazy: opening lists the files, reads each image's size from its header and decodes the
    first image once.  A folder URL is listed with one call each time it is opened (never
    from an earlier listing).  The headers of URLs are read by dask tasks of 64 files,
    computed together on the active scheduler: with a ``distributed.Client``, by its
    workers, so that the client only lists the folder and reads the first image whatever
    the number of images; the tasks make the same checks and raise the same errors as a
    local read.

    Order and time: if every name holds a timestamp like ``..._20210824T031618_UTC.jpg``,
    images are sorted by it and it is the time.  If none does, names are sorted naturally
    (``frame_2`` before ``frame_10``) and time needs `start_time` and `frame_interval`.
    Images are shown as a viewer shows them: the EXIF orientation tag (JPEG, PNG, TIFF) is
    applied, to the size read from the header and to the pixels alike, so a crop's "bottom
    rows" are the bottom of the picture as seen.  Grey images become three equal channels,
    alpha is dropped and 16-bit images are scaled to 8 bits (``value >> 8``).  An image whose
    header reads but whose data does not decode is skipped (pixels 0, ``frame_status``
    undecodable).
    """
    source = as_source(folder_or_glob, "open_images", "stills/*.jpg")
    out_size = check.check_resize(resize)
    chunk_frames = check.check_chunk_frames(chunk_frames)
    options = check_storage_options(storage_options)
    start, interval = check_time_options(start_time, frame_interval)

    files, stamps = _order_images(_list_images(source, options))
    times, time_source = _image_times(files, stamps, start, interval)
    sizes, rotated = _image_sizes(files, options)
    width, height = sizes[0]
    if out_size is None:
        for name, size in zip(files, sizes, strict=True):
            if size != sizes[0]:
                shown = " (as shown, after EXIF rotation)" if {name, files[0]} & rotated else ""
                raise InputError(
                    f"{name} is {size[0]}x{size[1]} pixels but {files[0]} is "
                    f"{width}x{height}{shown}; the images of a series need one size. Resize "
                    f"them all to one size with {setting('resize', (width, height))}.",
                    settings=[("resize", (width, height))],
                )
    out_w, out_h = out_size if out_size is not None else (width, height)
    check_pixels(source, out_w, out_h, "resized frames")
    _first_decodable_image(files, options)
    chunk_frames = chunk_frames or auto_chunk_frames(out_w, out_h)

    def task_of(chunk: Sequence[str], window: Window | None) -> Any:
        return dask.delayed(read_chunk, pure=True, nout=2)(
            chunk,
            frame_size=(height, width),
            out_size=out_size,
            storage_options=options,
            window=window,
        )

    chunks = [files[b : b + chunk_frames] for b in range(0, len(files), chunk_frames)]
    data, status = decoded(task_of, chunks, out_h, out_w)

    call = call_repr(
        "sediment_xr.open_images",
        source,
        resize=resize,
        chunk_frames=chunk_frames,
        start_time=start_time,
        frame_interval=frame_interval,
    )
    attrs = {
        "long_name": "image frames",
        "source": source,
        "source_files": list(files),
        "channel_order": "RGB",
        "history": history_line(f"{call} ({len(files)} files)"),
    }
    return frames_array(
        data,
        status,
        times,
        np.arange(len(files), dtype=np.int64),
        time_source,
        attrs,
    )


def _image_times(
    files: list[str],
    stamps: list[pd.Timestamp] | None,
    start: pd.Timestamp | None,
    interval: pd.Timedelta | None,
) -> tuple[np.ndarray, str]:
    """Times of the images and where they come from (see :func:`open_images`)."""
    if interval is not None:
        return regular_times(start, interval, len(files)), "frame_interval"
    if stamps is None:
        raise ConfigError(
            f"{files[0]} has no timestamp in its name (like ..._20210824T031618_UTC.jpg); give "
            f"start_time and frame_interval, e.g. {setting(*TIME_EXAMPLE[0])} and "
            f"{setting(*TIME_EXAMPLE[1])}.",
            settings=[*TIME_EXAMPLE, ("start_time", NAMED), ("frame_interval", NAMED)],
        )
    stamp_ns = np.array([s.value for s in stamps], dtype=np.int64)
    if start is not None:
        return offset_times(start, stamp_ns - stamp_ns[0]), "start_time+filename"
    times = check_times(stamp_ns.astype("datetime64[ns]"), f"{files[0]} (and its series)")
    return times, "filename"


def _first_decodable_image(files: Sequence[str], storage_options: Mapping[str, Any]) -> None:
    """Raise unless one of the first images decodes (decoding stops at the first that does)."""
    errors: list[str] = []
    tries = files[:_FIRST_IMAGE_TRIES]
    for name in tries:
        with storage_errors(name):
            raw = read_bytes(name, storage_options)
        if decode_image(raw) is not None:
            return
        errors.append(f"{basename(name)}, {len(raw)} bytes")
    which = f"its {len(tries)} images" if len(tries) == len(files) else f"the first {len(tries)}"
    raise InputError(
        f"none of {which} can be decoded as an image by OpenCV ({errors[0]}); a still-image "
        "input needs readable PNG/JPEG/TIFF files. Check or replace them."
    )


def _not_a_folder(source: str) -> str:
    return (
        f"{source} is a single file, but a still-image input is a folder or a glob pattern of "
        f"images. Give its folder, or a pattern such as '{parent(source)}/*.jpg'."
    )


def _list_images(source: str, storage_options: dict[str, Any]) -> list[str]:
    """List image files of a folder or glob pattern, as local paths or full URLs.

    A folder URL is listed with one call (one GET of an ``http(s)://`` index page, one
    listing of an object-store prefix), never file by file.
    """
    if is_url(source):
        candidates = _list_url(source, storage_options)
    elif has_glob(source):
        matches = glob.glob(os.path.expanduser(source), recursive=True)
        candidates = [os.path.abspath(p) for p in matches if os.path.isfile(p)]
    else:
        expanded = os.path.expanduser(source)
        if not os.path.exists(expanded):
            raise InputNotFoundError(
                f"{source} does not exist; a still-image input is a folder or a glob "
                f"pattern of images. Check the path (working directory: {os.getcwd()})."
            )
        if not os.path.isdir(expanded):
            raise InputError(_not_a_folder(source))
        with os.scandir(expanded) as entries:
            candidates = [os.path.abspath(e.path) for e in entries if e.is_file()]
    files = [
        name
        for name in candidates
        if not basename(name).startswith(".") and basename(name).lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not files:
        raise InputNotFoundError(
            f"no image files found in {source} (looked for names ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case, skipping hidden and ._ files); a "
            "still-image input needs at least one image. Check the folder or the glob pattern."
        )
    return files


def _list_url(source: str, storage_options: dict[str, Any]) -> list[str]:
    """The file URLs of a folder URL or glob pattern URL, from one listing."""
    fs, path = url_to_fs(source, storage_options)
    web = _is_http(source)
    with storage_errors(source):
        if has_glob(source):
            entries = fs.glob(path, detail=True)
            names = [n for n, info in entries.items() if info.get("type") != "directory"]
            return [fs.unstrip_protocol(n) for n in names]
        if web and basename(path).lower().endswith(IMAGE_EXTENSIONS) and fs.exists(path):
            raise InputError(_not_a_folder(source))
        try:
            entries = list_fresh(fs, path)  # not one an earlier call cached
        except (FileNotFoundError, NotADirectoryError) as err:
            raise InputNotFoundError(
                f"{source} does not exist{missing_bucket(source, fs, path)}; a still-image "
                "input is a folder or a glob pattern of images. Check the URL and "
                "storage_options."
            ) from err
    if web:
        return _index_files(path, entries)
    files = [e for e in entries if e.get("type") == "file"]
    if len(entries) == 1 and files and files[0]["name"].rstrip("/") == path.rstrip("/"):
        raise InputError(_not_a_folder(source))  # fs.ls of a file lists the file itself
    return [fs.unstrip_protocol(e["name"]) for e in files]


def _is_http(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _index_files(url: str, entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The files of an http(s) index page's links (fsspec's ``HTTPFileSystem.ls``).

    fsspec keeps every link under the page's URL: relative links joined to it, absolute
    ones (``/cam/x.jpg``, ``https://host/cam/x.jpg``) when they lead under it; it drops
    ``../`` only. Kept here: the page's own files, i.e. links one name below the page,
    without a query or fragment, with their names unquoted (``a%20b.jpg`` is the file
    ``a b.jpg``, as in a local copy; fsspec quotes it again to read it). Left out:
    sort-order links (``?C=M;O=A``), sub-folders, parent links, links elsewhere and query
    strings.
    """
    base = url.split("?", 1)[0].split("#", 1)[0].rstrip("/") + "/"
    files = []
    for entry in entries:
        name = str(entry["name"])
        rest = name[len(base) :] if name.startswith(base) else ""
        if not rest or any(char in rest for char in "/?#"):
            continue
        rest = unquote(rest)  # the file's own name (index pages quote ``a b.jpg`` a%20b.jpg)
        if not any(char in rest for char in "/?#") and rest not in (".", ".."):
            files.append(base + rest)
    return sorted(set(files))


def _natural_key(name: str) -> tuple[list[Any], str]:
    """Sort key: digit runs compare as numbers (``frame_2`` before ``frame_10``)."""
    parts = re.split(r"(\d+)", name)
    return ([int(p) if p.isdigit() else p.lower() for p in parts], name)


def _order_images(files: list[str]) -> tuple[list[str], list[pd.Timestamp] | None]:
    """Sort by name timestamps if all names have one, else naturally (stamps then None)."""
    files = sorted(files, key=_natural_key)
    stamps = [parse_timestamp_from_name(name) for name in files]
    missing = [name for name, stamp in zip(files, stamps, strict=True) if stamp is None]
    if len(missing) == len(files):
        return files, None
    if missing:
        example = next(name for name, stamp in zip(files, stamps, strict=True) if stamp)
        raise InputError(
            f"{missing[0]} has no timestamp in its name, but {len(files) - len(missing)} of "
            f"{len(files)} files do (like {basename(example)}); a still-image input needs a "
            "timestamp in every name or in none. Move the odd files out or use a glob "
            "pattern that excludes them."
        )
    pairs = sorted(zip(stamps, files, strict=True), key=lambda p: (p[0], _natural_key(p[1])))
    for (stamp_a, name_a), (stamp_b, name_b) in itertools.pairwise(pairs):
        if stamp_a == stamp_b:
            raise InputError(
                f"{name_a} and {name_b} have the same timestamp ({stamp_a.isoformat()}) in "
                "their names; a still-image input needs one image per time. Remove or rename "
                "one."
            )
    return [name for _, name in pairs], [stamp for stamp, _ in pairs]


def _image_sizes(
    files: list[str], storage_options: dict[str, Any]
) -> tuple[list[tuple[int, int]], set[str]]:
    """``(width, height)`` of every image as shown, from the headers; the names rotated.

    Local files are read here. URLs are read by dask tasks of :data:`_PROBE_FILES` files
    each, computed together on the active scheduler (the workers of a distributed cluster),
    so the client makes no request per file; the tasks run the same checks and raise the
    same errors as a local read.
    """
    if any(is_url(name) for name in files):
        tasks = [
            dask.delayed(_probe_headers, pure=True)(files[b : b + _PROBE_FILES], storage_options)
            for b in range(0, len(files), _PROBE_FILES)
        ]
        threaded = dask.base.get_scheduler(collections=tasks) in (None, dask.threaded.get)
        extra = {"scheduler": "threads", "num_workers": _HEADER_THREADS} if threaded else {}
        probed = [item for chunk in dask.compute(*tasks, **extra) for item in chunk]
    else:
        probed = _probe_headers(files, storage_options)
    sizes = [(width, height) for width, height, _ in probed]
    rotated = {name for name, (_, _, turned) in zip(files, probed, strict=True) if turned}
    return sizes, rotated


def _probe_headers(
    files: Sequence[str], storage_options: Mapping[str, Any]
) -> list[tuple[int, int, bool]]:
    """Dask task: ``(width, height, turned)`` of images as shown, read from their headers.

    URLs are read by a few threads at once (their time is the storage's latency).
    """
    # Pillow warns from 89 megapixels; the limit here is MAX_FRAME_PIXELS, checked below.
    with _no_bomb_warning():
        if any(is_url(name) for name in files) and len(files) > 1:
            with ThreadPoolExecutor(max_workers=_TASK_THREADS) as pool:
                return list(pool.map(lambda name: _header_size(name, storage_options), files))
        return [_header_size(name, storage_options) for name in files]


def _header_size(name: str, storage_options: Mapping[str, Any]) -> tuple[int, int, bool]:
    """``(width, height, turned)`` of one image as shown; InputError when it cannot be read.

    ``turned``: the image has an EXIF orientation other than 1; one of 5 to 8 turns it a
    quarter, so width and height swap.
    """
    try:
        with (
            storage_errors(name),
            open_binary(name, storage_options) as handle,
            Image.open(handle) as image,
        ):
            width, height = int(image.size[0]), int(image.size[1])
            turn = orientation(image)
    except SedimentXRError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(too_many_pixels(name, short(err))) from err
    except Exception as err:
        if file_size(name, storage_options) == 0:
            raise InputError(
                f"{name} is empty (0 bytes); a still-image input needs image files with "
                "data. Remove it or copy it again."
            ) from err
        raise InputError(
            f"{name} is not a readable image ({short(err)}); a still-image input needs "
            "PNG/JPEG/TIFF files. Remove or replace this file."
        ) from err
    if turn in (5, 6, 7, 8):
        width, height = height, width
    check_pixels(name, width, height)
    return width, height, turn != 1


@contextlib.contextmanager
def _no_bomb_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
