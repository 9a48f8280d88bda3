"""The output folder: a Zarr v3 cube written by region, with per-chunk completion marks.

Layout of an output folder (local path or fsspec URL)::

    cube.zarr/            frames (time, y, x, channel), labels (time, y, x), cover, class_cover
    .sediment_xr/progress/<stage>-<fingerprint>/<chunk>   one empty file per finished chunk

Each chunk task writes its own Zarr chunk(s) and then its mark, so a task that dask runs twice
writes the same bytes twice, and a rerun after a crash skips exactly the finished chunks.
Zarr reads a missing chunk as its fill value, so nothing is trusted without its mark, and the
store's root attribute ``sediment_xr_complete`` is set only after the last output is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from sediment_xr.exceptions import OutputError

__all__ = ["Output"]

STATE_ATTR = "sediment_xr_state"
COMPLETE_ATTR = "sediment_xr_complete"
_ZARR_KW = {"zarr_format": 3, "consolidated": False}


def _is_url(path: str) -> bool:
    return "://" in path


@dataclasses.dataclass(frozen=True)
class Output:
    """An output folder, local or on object storage (fsspec URL + ``storage_options``)."""

    url: str
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def fs(self):
        """The fsspec filesystem of the folder."""
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **self._fs_options())[0]

    @property
    def root(self) -> str:
        """The folder's path inside :attr:`fs`."""
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **self._fs_options())[1].rstrip("/")

    def _fs_options(self) -> dict[str, Any]:
        return dict(self.storage_options) if _is_url(self.url) else {}

    def path(self, *parts: str) -> str:
        """Path of a file of the folder, inside :attr:`fs`."""
        return posixpath.join(self.root, *parts)

    def url_of(self, *parts: str) -> str:
        """Path or URL of a file of the folder, as a user would give it."""
        if _is_url(self.url):
            return posixpath.join(self.url.rstrip("/"), *parts)
        import os

        return os.path.join(self.url, *parts)

    @property
    def store_url(self) -> str:
        """Path or URL of ``cube.zarr``."""
        return self.url_of("cube.zarr")

    def zarr_store(self):
        """A zarr store object for ``cube.zarr`` (works in worker processes too)."""
        import zarr.storage

        if _is_url(self.url):
            return zarr.storage.FsspecStore.from_url(
                self.store_url, storage_options=dict(self.storage_options) or None
            )
        return zarr.storage.LocalStore(self.store_url)

    # -- files ----------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        """Whether a file or folder of the output exists (asking the store, not a cache)."""
        fs = self.fs
        path = self.path(*parts)
        fs.invalidate_cache(path)
        return fs.exists(path)

    def write_text(self, name: str, text: str) -> None:
        """Write a text file of the folder in one piece (temporary name, then rename)."""
        fs = self.fs
        fs.makedirs(self.root, exist_ok=True)
        final = self.path(name)
        if _is_url(self.url):  # object stores write whole objects atomically
            fs.pipe(final, text.encode("utf-8"))
            return
        tmp = self.path(f".{name}.partial")
        try:
            fs.pipe(tmp, text.encode("utf-8"))
            fs.mv(tmp, final)
        except BaseException:  # e.g. disk full: the old file stays, and no partial one
            with contextlib.suppress(Exception):
                fs.rm(tmp)
            raise

    def read_text(self, name: str) -> str:
        """Read a text file of the folder."""
        return self.fs.cat(self.path(name)).decode("utf-8")

    def remove(self, *names: str) -> None:
        """Remove files or folders of the output that exist (only the names given)."""
        fs = self.fs
        for name in names:
            path = self.path(name)
            if fs.exists(path):
                fs.rm(path, recursive=True)

    # -- progress marks -------------------------------------------------------------------
    def progress_dir(self, stage: str, fingerprint: str) -> str:
        """Folder of the finished-chunk marks of a stage run with a given fingerprint."""
        return self.path(".sediment_xr", "progress", f"{stage}-{fingerprint}")

    def done_chunks(self, stage: str, fingerprint: str) -> set[int]:
        """Indices of chunks whose mark exists."""
        fs = self.fs
        folder = self.progress_dir(stage, fingerprint)
        # Marks are written by worker processes: never trust this process's listing cache.
        fs.invalidate_cache(folder)
        if not fs.exists(folder):
            return set()
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)]
        return {int(n) for n in names if n.isdigit()}

    def clear_progress(self, stage: str | None = None) -> None:
        """Forget finished-chunk marks (of one stage, or all)."""
        fs = self.fs
        base = self.path(".sediment_xr", "progress")
        if not fs.exists(base):
            return
        for path in fs.ls(base, detail=False):
            if stage is None or posixpath.basename(path.rstrip("/")).startswith(f"{stage}-"):
                fs.rm(path, recursive=True)

    # -- the cube -------------------------------------------------------------------------
    def open_cube(self) -> xr.Dataset | None:
        """The stored cube, lazily, or None when there is none."""
        if not self.exists("cube.zarr", "zarr.json"):
            return None
        return xr.open_zarr(self.zarr_store(), chunks={}, **_ZARR_KW)

    def state(self) -> dict[str, Any] | None:
        """What the tool recorded in the cube (fingerprints, stage status), or None."""
        import zarr

        if not self.exists("cube.zarr", "zarr.json"):
            return None
        group = zarr.open_group(self.zarr_store(), mode="r", zarr_format=3)
        raw = group.attrs.get(STATE_ATTR)
        if raw is None and self.exists(".sediment_xr"):
            return None  # ours, but its creation was interrupted: start it again
        if raw is None:
            raise OutputError(
                f"{self.store_url} exists but was not written by sediment_xr. "
                "Choose another output folder."
            )
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    def update_attrs(self, **attrs: Any) -> None:
        """Set root attributes of the cube (``state`` dicts are stored as JSON text)."""
        import zarr

        group = zarr.open_group(self.zarr_store(), mode="r+", zarr_format=3)
        group.attrs.update(attrs)  # one write of zarr.json: never half of the attributes

    def set_state(self, state: Mapping[str, Any], *, complete: bool) -> None:
        """Record the run state and whether every output is written."""
        self.update_attrs(
            **{STATE_ATTR: json.dumps(dict(state), sort_keys=True), COMPLETE_ATTR: complete}
        )

    def create_cube(
        self,
        frames: xr.DataArray,
        attrs: Mapping[str, Any],
        *,
        state: Mapping[str, Any],
        store_frames: bool = True,
    ) -> None:
        """Create ``cube.zarr`` with the coordinates of ``frames`` (and its metadata).

        The run ``state`` goes into the same root ``zarr.json`` (marked not complete), so a
        cube is never seen without it. With ``store_frames`` an empty ``frames`` variable is
        created, its data written later chunk by chunk (:func:`write_frames_chunk`); without
        it only the coordinates and ``frame_status`` are.
        """
        ds = frames.to_dataset(name="frames")
        if not store_frames:
            ds = ds.drop_vars("frames")
        ds.attrs = {
            **attrs,
            STATE_ATTR: json.dumps(dict(state), sort_keys=True),
            COMPLETE_ATTR: False,
        }
        encoding = {}
        if store_frames:
            chunks = (frames.data.chunksize[0], *frames.shape[1:])
            encoding["frames"] = {"chunks": chunks, "compressors": frames_compressors()}
        ds.to_zarr(self.zarr_store(), mode="w", compute=False, encoding=encoding, **_ZARR_KW)

    def remove_variables(self, *names: str) -> None:
        """Delete arrays (variables or coordinates) of the cube that exist."""
        import zarr

        group = zarr.open_group(self.zarr_store(), mode="r+", zarr_format=3)
        for name in names:
            if name in group:
                del group[name]

    def add_variables(self, variables: Mapping[str, xr.DataArray], encoding: Mapping) -> None:
        """Add lazily-templated variables to the cube without computing them."""
        import zarr

        self.remove_variables(*variables)
        group = zarr.open_group(self.zarr_store(), mode="r+", zarr_format=3)
        ds = xr.Dataset(dict(variables), attrs=dict(group.attrs))  # keep the root attrs
        ds = ds.drop_vars([c for c in ds.coords if c in group], errors="ignore")
        ds.to_zarr(self.zarr_store(), mode="a", compute=False, encoding=dict(encoding), **_ZARR_KW)

    def write_small(self, variables: Mapping[str, xr.DataArray]) -> None:
        """Write small in-memory variables (e.g. class cover) into the cube, replacing them."""
        import zarr

        self.remove_variables(*variables)
        group = zarr.open_group(self.zarr_store(), mode="r+", zarr_format=3)
        ds = xr.Dataset(dict(variables), attrs=dict(group.attrs))  # keep the root attrs
        existing = [c for c in ds.coords if c in group and c not in variables]
        ds = ds.drop_vars(existing)
        ds.to_zarr(self.zarr_store(), mode="a", **_ZARR_KW)


def frames_compressors() -> list[Any]:
    """Codec of the stored frames: zstd level 1.

    Measured (benchmarks/results.md, 1024 x 1024 uint8 frames, 8-frame chunks): Zarr's
    default (zstd level 0, i.e. 3) stores 0.46-0.56 of the raw size but costs ~24 ms per
    frame to write, more than decoding the H.264 frame; level 1 stores 0.57-0.64 at ~14 ms
    and reads a little faster. Labels keep the default (~1 ms, 2-8 % of raw).
    """
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=1)]


def chunk_bounds(n_time: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges of the time chunks."""
    return [(s, min(s + chunk_frames, n_time)) for s in range(0, n_time, chunk_frames)]


def mark_done(out: Output, stage: str, fingerprint: str, index: int) -> None:
    """Write the finished-chunk mark (after the chunk's data are written)."""
    out.fs.pipe(posixpath.join(out.progress_dir(stage, fingerprint), f"{index:06d}"), b"")


def prepare_progress(out: Output, stage: str, fingerprint: str) -> None:
    """Create the marks folder (local filesystems need it before tasks write into it)."""
    out.fs.makedirs(out.progress_dir(stage, fingerprint), exist_ok=True)


def write_frames_chunk(
    block: np.ndarray,
    out: Output,
    start: int,
    index: int,
    fingerprint: str,
    status: np.ndarray | None = None,
) -> int:
    """Worker task: write one time chunk of frames and their status, then its mark."""
    import zarr

    arr = zarr.open_array(out.zarr_store(), path="frames", mode="r+", zarr_format=3)
    arr[start : start + block.shape[0]] = block
    if status is not None:
        flags = zarr.open_array(out.zarr_store(), path="frame_status", mode="r+", zarr_format=3)
        flags[start : start + len(status)] = status
    mark_done(out, "ingest", fingerprint, index)
    return int(block.shape[0])


def pending(done: Iterable[int], n_chunks: int) -> list[int]:
    """Chunk indices still to do."""
    finished = set(done)
    return [i for i in range(n_chunks) if i not in finished]
