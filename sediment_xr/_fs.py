"""Files on local disk and object storage (fsspec): opening, listing, failures, signatures.

Every path here is either a local path or an fsspec URL (``s3://``, ``gs://``, ``https://``,
``memory://``, ``file://``...); URLs use ``storage_options``, local paths never do.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import posixpath
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from io import BytesIO
from typing import Any
from urllib.parse import unquote

import fsspec

from sediment_xr.exceptions import (
    NAMED,
    ConfigError,
    InputError,
    OutputError,
    SedimentXRError,
    StorageError,
    setting,
)

__all__ = [
    "OBJECT_STORES",
    "basename",
    "check_storage_options",
    "exclusive_temp",
    "file_size",
    "files_signature",
    "has_glob",
    "inside_folder",
    "is_url",
    "local_or_url",
    "local_path",
    "missing_bucket",
    "open_binary",
    "parent",
    "read_bytes",
    "refuse_outside_link",
    "short",
    "storage_error",
    "storage_errors",
    "url_to_fs",
    "without_query",
    "write_inside",
]

#: URL protocols of object stores (buckets, no real folders).
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: ``file://`` and ``local://``: URLs of the local file system, taken as the paths they name.
_LOCAL_RE = re.compile(r"^(?:file|local)://", re.IGNORECASE)


def is_url(source: str) -> bool:
    """Whether ``source`` is an fsspec URL (``protocol://...``) rather than a local path."""
    return bool(_URL_RE.match(source))


def local_path(source: str) -> str:
    """A ``file://`` or ``local://`` URL as the local path it names; anything else unchanged.

    Such a URL gets every protection of a local path (links, the exclusive lock, the input
    inside the output) only as a path, so it is made one where inputs and outputs are parsed.
    """
    if not _LOCAL_RE.match(source):
        return source
    path = _LOCAL_RE.sub("", source, count=1)
    if re.match(r"^/[A-Za-z]:[/\\]", path):  # file:///C:/data on Windows
        path = path[1:]
    return path or "."


def local_or_url(source: str) -> str:
    """Absolute local path (so worker processes find it), or the URL unchanged."""
    return source if is_url(source) else os.path.abspath(os.path.expanduser(source))


def has_glob(source: str) -> bool:
    """Whether a path or URL is a glob pattern (``?`` is a query mark in http URLs)."""
    magic = "*[" if source.lower().startswith(("http://", "https://")) else "*?["
    return any(char in source for char in magic)


def basename(name: str) -> str:
    """Last component of a path or URL."""
    return name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def parent(name: str) -> str:
    """Folder of a path or URL (``.`` for a bare name)."""
    stripped = name.rstrip("/\\").replace("\\", "/")
    return stripped.rsplit("/", 1)[0] if "/" in stripped else "."


def short(err: BaseException) -> str:
    """An exception as one line of at most 200 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def check_storage_options(storage_options: Any, name: str = "storage_options") -> dict[str, Any]:
    """``storage_options`` as a dict (None is empty); anything but a mapping is refused."""
    if storage_options is None:
        return {}
    if not isinstance(storage_options, Mapping):
        example = {"anon": True}
        raise ConfigError(
            f"{name} needs a mapping of fsspec options, but got "
            f"{type(storage_options).__name__}. Use e.g. {setting(name, example)}.",
            settings=[(name, NAMED), (name, example)],
        )
    return dict(storage_options)


def url_to_fs(source: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec filesystem and path of a URL (local paths: the local filesystem)."""
    options = dict(storage_options or {}) if is_url(source) else {}
    try:
        with storage_errors(source):
            return fsspec.core.url_to_fs(source, **options)
    except SedimentXRError:
        raise
    except (ValueError, ImportError, TypeError) as err:
        raise InputError(
            f"{source} cannot be opened by fsspec ({short(err)}); a URL needs a protocol "
            "fsspec knows with its package installed (s3:// needs s3fs, gs:// needs gcsfs)."
        ) from err


@contextlib.contextmanager
def open_binary(name: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a local path or fsspec URL for binary reading."""
    if is_url(name):
        with fsspec.open(name, "rb", **(storage_options or {})) as handle:
            if name.lower().startswith("memory://"):
                # fsspec's memory filesystem hands every opener the same file object, so
                # concurrent tasks would move each other's position: read a private copy.
                yield BytesIO(handle.getvalue())
            else:
                yield handle
    else:
        with open(name, "rb") as handle:
            yield handle


# Folder URLs listed from the server in the current opening (see :func:`one_listing`).
_LISTED: contextvars.ContextVar[dict[str, list[dict[str, Any]]] | None] = contextvars.ContextVar(
    "listed", default=None
)


@contextlib.contextmanager
def one_listing() -> Iterator[None]:
    """Within: a folder URL is listed from the server once, then from that listing.

    Opening an input may look at its folder twice (recordings or stills?); outside, every
    :func:`list_fresh` asks the server again.
    """
    token = _LISTED.set({}) if _LISTED.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _LISTED.reset(token)


def list_fresh(fs: Any, path: str) -> list[dict[str, Any]]:
    """``fs.ls(path, detail=True)`` from the server, not from an earlier call's cache."""
    listed = _LISTED.get()
    if listed is not None and path in listed:
        return listed[path]
    fs.invalidate_cache(path)
    entries = fs.ls(path, detail=True)
    if listed is not None:
        listed[path] = entries
    return entries


def read_bytes(name: str, storage_options: Mapping[str, Any] | None) -> bytes:
    """The whole content of a file.

    A URL is read with one request (``cat_file``: no HEAD for its size first, as opening a
    file over http does).
    """
    if is_url(name):
        fs, path = fsspec.core.url_to_fs(name, **(storage_options or {}))
        return fs.cat_file(path)
    with open(name, "rb") as handle:
        return handle.read()


def file_size(name: str, storage_options: Mapping[str, Any] | None) -> int | None:
    """Size of a file in bytes, or None when it cannot be asked."""
    try:
        if is_url(name):
            fs, path = fsspec.core.url_to_fs(name, **(storage_options or {}))
            return fs.size(path)
        return os.path.getsize(name)
    except Exception:
        return None


def missing_bucket(source: str, fs: Any, path: str) -> str:
    """`` (there is no bucket b)`` when an object-store URL's bucket does not exist."""
    protocol = source.split("://", 1)[0].lower()
    bucket = path.strip("/").split("/", 1)[0]
    if protocol not in OBJECT_STORES or not bucket or bucket == path.strip("/"):
        return ""
    try:
        fs.invalidate_cache(bucket)
        return "" if fs.exists(bucket) else f": there is no bucket {bucket!r}"
    except Exception:
        return ""


@contextlib.contextmanager
def storage_errors(where: str) -> Iterator[None]:
    """Turn a file system or object store failure (access, time-out) into a StorageError."""
    try:
        yield
    except SedimentXRError:
        raise
    except Exception as err:
        failure = storage_error(err, where)
        if failure is None:
            raise
        raise failure from err


def storage_error(err: BaseException, where: str) -> StorageError | None:
    """A one-line :class:`StorageError` for a failure to reach or access storage.

    Parameters
    ----------
    err : BaseException
        What fsspec or its backend (s3fs/botocore, gcsfs, aiohttp...) raised.
    where : str
        The path or URL being read or written.

    Returns
    -------
    StorageError or None
        None when `err` is not a storage failure (missing files are left to the caller).
    """
    if isinstance(err, SedimentXRError | FileNotFoundError | IsADirectoryError):
        return None
    names = " ".join(cls.__name__ for cls in type(err).__mro__)
    module = type(err).__module__.split(".", 1)[0]
    remote = is_url(where) and not where.lower().startswith(("file://", "memory://"))
    seen = short(err)
    if isinstance(err, TimeoutError) or "Timeout" in names:
        return StorageError(
            f"{where}: the storage did not answer in time ({seen}). Check the network and the "
            "endpoint_url in storage_options; for a slow store give longer time-outs, e.g. "
            "storage_options: {config_kwargs: {connect_timeout: 60, read_timeout: 60}} (S3). "
            "Then run again: finished work is kept."
        )
    if isinstance(err, ConnectionError) or any(
        word in names for word in ("ConnectionError", "ConnectorError", "EndpointConnection")
    ):
        return StorageError(
            f"{where}: could not connect to the storage ({seen}). Check the network, the URL "
            "and the endpoint_url in storage_options, then run again: finished work is kept."
        )
    if isinstance(err, PermissionError) or any(
        word in names for word in ("NoCredentials", "PartialCredentials", "AccessDenied")
    ):
        fix = (
            "Check the credentials in storage_options (e.g. key and secret, a profile, or "
            "anon: true for a public bucket) and the bucket's permissions."
            if remote
            else "Check the file's permissions."
        )
        return StorageError(f"{where} cannot be accessed: permission denied ({seen}). {fix}")
    if remote and module in ("botocore", "aiobotocore", "aiohttp", "google", "gcsfs", "azure"):
        return StorageError(
            f"{where}: the storage answered with an error ({seen}). Check the URL and "
            "storage_options, then run again: finished work is kept."
        )
    return None


def _stamp(info: Mapping[str, Any]) -> str:
    """A file's modification stamp from an fsspec ``info`` (local mtime, S3/GCS dates, ETag)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "ETag", "etag"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


def files_signature(files: Sequence[str], storage_options: Mapping[str, Any] | None) -> str:
    """Hash of the files' names, sizes and modification stamps.

    Folders are listed once each, not asked file by file (object stores).
    """
    fs, _ = url_to_fs(files[0], storage_options)
    paths = [fs._strip_protocol(f) for f in files]
    if len(paths) == 1:
        infos = {paths[0]: fs.info(paths[0])}
    else:
        infos = {}
        for folder in sorted({posixpath.dirname(p) for p in paths}):
            fs.invalidate_cache(folder)
            for info in fs.ls(folder, detail=True):
                name = fs._strip_protocol(info["name"])
                infos[name] = info
                if name.lower().startswith(("http://", "https://")):
                    infos.setdefault(unquote(name), info)  # index pages quote names
    entries = []
    for path in paths:
        info = infos.get(path) or fs.info(path)
        entries.append([posixpath.basename(path), info.get("size"), _stamp(info)])
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()[:16]


def without_query(url: str | None) -> str | None:
    """An HTTP(S) URL without its query (a presigned URL's signature); others unchanged."""
    if url is None or not url.lower().startswith(("http://", "https://")):
        return url
    return url.split("?", 1)[0].split("#", 1)[0]


def inside_folder(root: str, name: str) -> str:
    """The real path a run writes for ``name`` under the local folder ``root``, checked.

    The folders on the way are resolved (links followed); the file's own name is not, so a
    link planted at that name is replaced by the file, never written through.

    Parameters
    ----------
    root : str
        The output folder (local path).
    name : str
        A file of it, relative (``report.html``, ``segmented/frame_000001.png``).

    Returns
    -------
    str
        The resolved folder joined with the file's name.

    Raises
    ------
    OutputError
        When a link on the way leads out of the output folder.
    """
    path = os.path.join(root, name)
    folder = refuse_outside_link(root, os.path.dirname(path))
    return os.path.join(folder, os.path.basename(path))


def refuse_outside_link(root: str, path: str) -> str:
    """The real path of ``path`` (links followed); OutputError when it is outside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise OutputError(
            f"output {root} holds {os.path.relpath(path, root)}, which leads through a "
            f"symbolic link to {real} outside the output folder, and sediment-xr writes only "
            "inside its output folder. Remove the link, or give the folder it points to as "
            "output."
        )
    return real


def exclusive_temp(final: str, suffix: str = "") -> tuple[int, str]:
    """Create a new file with an unpredictable name beside ``final``, for writing.

    Created with ``O_CREAT | O_EXCL`` (and ``O_NOFOLLOW`` where there is one), so it is never
    a file or link that was there before. Returns its descriptor and path (ending with
    ``suffix``, e.g. ``.mp4`` for writers that pick the format by name); rename it onto
    ``final`` when it is complete.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    folder, base = os.path.split(final)
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(8)}.partial{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {final}")  # pragma: no cover


def write_inside(root: str, name: str, data: bytes) -> None:
    """Write a file of a local output folder in one piece, never outside it.

    The bytes go to a new file of unpredictable name in the same folder
    (:func:`exclusive_temp`), which is then renamed onto the file's name: a reader sees the
    old file or the new one, a failed write (a full disk) leaves the old one, and a link at
    the name is replaced, not followed. Folders on the way are checked with
    :func:`inside_folder` before any is created.
    """
    final = inside_folder(root, name)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    fd, tmp = exclusive_temp(final)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, final)
    except BaseException:  # e.g. disk full: the old file stays, and no partial one
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
