"""The output folder: a Zarr v3 cube written by region, with per-chunk completion marks.

Layout of an output folder (local path or fsspec URL)::

    cube.zarr/            labels (time, y, x), cover (time, cluster), class_cover, frame_status,
                          trends, frames (time, y, x, channel) with ingest.store_frames
    .sediment_xr/by_chunk.zarr/   cover and frame_status as the chunk tasks write them
    .sediment_xr/progress/<stage>-<fingerprint>/<chunk>   one empty file per finished chunk
    .sediment_xr/segments/<id>/<chunk>.mp4   segmented.mp4's pieces while they are joined
    cover.csv, cover.parquet, trend.csv, item.json, ... (see OUTPUT_FILES)

The cube's variables live on the grid of the analysed window (the crop), with the original
pixel positions as ``y`` and ``x``.  :func:`chunk_writes` makes one task per time chunk that
writes that chunk of every variable by region and then its marks, so a task that dask runs
twice writes the same bytes twice, and a rerun after a crash skips exactly the finished
chunks.  Zarr reads a missing chunk as its fill value, so nothing is trusted without its
mark, and the root attribute ``sediment_xr_complete`` is set only after the last output is
written.

The cube is laid out for readers on object storage: ``labels`` and ``frames`` are sharded,
one shard per time chunk (one object, written whole by one task) holding one inner chunk
per frame, so reading a frame fetches a small byte range; the per-frame series (``cover``,
``frame_status``) are written per chunk into ``.sediment_xr/by_chunk.zarr`` and gathered
into one chunk of the cube at the end (:meth:`Output.gather_per_frame`), not hundreds of
tiny objects; and the finished cube has consolidated metadata, so opening it is one read.
Consolidated metadata is a copy, so the run itself never reads it, and the first change of
a finished cube (its state attribute set to not complete) rewrites the root ``zarr.json``
without it.

Damage done to the stored chunks after they were written (layout 5, :data:`CHECKED_LAYOUT`):

- every array the run writes (cube and :data:`STAGING`, numbers and times) ends its codecs
  with a crc32c checksum (:func:`compressors`), so changed or cut bytes fail when read
  instead of reading as other numbers; reads through :meth:`Output.checked_array` (the
  staged series, ``labels`` and ``frames`` of :func:`sediment_xr.open_results`) turn that
  failure into one line naming the file (:class:`DamagedOutputError`);
- every chunk is written, even one of fill values only, so a missing or empty chunk file is
  damage (:meth:`Output.absent_chunks`: one listing, no data read);
- a run on an existing cube first checks each chunk marked labelled
  (:meth:`Output.forget_damaged_chunks`): its shards of ``labels`` and ``frames`` must exist
  and its staged per-frame chunks must exist and pass their checksums; any other chunk loses
  its mark and is computed again, never gathered. The content of the shards is not read by a
  run (that would cost a read of every label): a garbled shard is found when it is read, and
  the message says to delete it so that the next run computes it again.

Not guaranteed: a chunk replaced by another valid chunk (its checksum matches), and cubes of
earlier layouts (no checksums; chunks of fill values only were not written).
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr

from sediment_xr._blockwise import one_block
from sediment_xr._fs import (
    inside_folder,
    is_url,
    local_path,
    refuse_outside_link,
    write_inside,
)
from sediment_xr.exceptions import OutputError

if TYPE_CHECKING:
    from sediment_xr.lock import LockFence

__all__ = [
    "CHECKED_LAYOUT",
    "COMPLETE_ATTR",
    "DAMAGE_ERRORS",
    "LAYOUT",
    "OUTPUT_FILES",
    "PER_FRAME",
    "REPORT_FILES",
    "SHARDED",
    "STAGING",
    "STATE_ATTR",
    "TABLE_FILES",
    "DamagedOutputError",
    "Output",
    "chunk_bounds",
    "chunk_writes",
    "compressors",
    "damaged",
    "frames_compressors",
    "pending",
]

STATE_ATTR = "sediment_xr_state"
COMPLETE_ATTR = "sediment_xr_complete"
#: Version of the cube's layout (2: variables on the crop's grid; 3: sharded labels, per-frame
#: series gathered from :data:`STAGING`; 4: boundary pixels and quality measures per frame;
#: 5: a crc32c checksum on every chunk, and every chunk written, even one of fill values).
LAYOUT = 5
#: First layout whose every chunk is written and checksummed (see :meth:`Output.absent_chunks`).
CHECKED_LAYOUT = 5
#: Zarr group (in the output folder) of the per-frame variables as the chunk tasks write them.
STAGING = ".sediment_xr/by_chunk.zarr"
#: Variables with one value or row per frame: written per time chunk into :data:`STAGING`,
#: gathered into the cube at the end.
PER_FRAME = ("cover", "boundary_pixels", "quality_measure", "frame_status")
#: Variables stored with one shard per time chunk (one inner chunk per frame).
SHARDED = ("labels", "frames")
#: Largest per-frame variable stored as one chunk (larger ones: a few chunks of this size).
SMALL_CHUNK_BYTES = 64 * 2**20
#: Files a finished run always leaves.
TABLE_FILES = (
    "cover.csv",
    "cover.parquet",
    "trend.csv",
    "trend_summary.txt",
    "clusters.json",
    "model.json",
    "config.resolved.yaml",
    "item.json",
)
#: Files the ``report`` section asks for.
REPORT_FILES = ("segmented.mp4", "segmented", "report.html")
#: Every file of the output folder a run writes (and the only ones it ever replaces); the
#: last is the name earlier versions wrote the video under (a leftover is removed).
OUTPUT_FILES = (
    "cube.zarr",
    STAGING,
    *TABLE_FILES,
    *REPORT_FILES,
    ".sediment_xr/progress",
    ".sediment_xr/segments",
    "segmented.mp4.partial.mp4",
)
_ZARR_KW = {"zarr_format": 3, "consolidated": False}
_STATE_NAME = f"the run state ({STATE_ATTR} in cube.zarr/zarr.json)"
#: What reading a damaged metadata file raises: not JSON or not UTF-8 (``ValueError``),
#: JSON of the wrong shape (``TypeError``, ``KeyError``), zarr's metadata errors (``ValueError``).
#: Storage errors (``OSError``) are not among them: they are not damage.
DAMAGE_ERRORS = (ValueError, TypeError, KeyError)
#: What reading a chunk whose bytes were changed raises: its checksum does not match, or its
#: zstd frame is cut short (``ValueError``, ``RuntimeError``).
CHUNK_ERRORS = (ValueError, RuntimeError)
#: The fix a message about damaged data gives: a rerun recomputes what is missing or damaged.
RERUN_FIX = (
    "Run the same `sediment-xr run` again to recompute it (or rerun with --overwrite to start "
    "afresh)."
)
_CONFIG_LOCK = threading.Lock()


class DamagedOutputError(OutputError):
    """The tool's own records in an output folder cannot be read (a file was damaged).

    The message names the damaged file and says that ``--overwrite`` starts afresh.
    """


def damaged(
    url: str, what: str, err: BaseException | str, *, fix: str | None = None
) -> DamagedOutputError:
    """The error of an output whose ``what`` (e.g. ``cube.zarr/zarr.json``) is damaged.

    ``err`` is what reading it raised, or a sentence saying what is wrong with it; ``fix``
    replaces the usual advice (rerun with ``--overwrite``).
    """
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    reason = " ".join(text.split())
    if len(reason) > 200:
        reason = reason[:197] + "..."
    fix = fix or (
        "Rerun with --overwrite to start afresh (it replaces only the files sediment_xr "
        "writes), or choose another output folder."
    )
    return DamagedOutputError(f"output {url} is damaged: {what} cannot be read ({reason}). {fix}")


def _state_of(raw: Any) -> dict[str, Any]:
    """The run state from its attribute (JSON text); TypeError when it is not a mapping."""
    state = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(state, Mapping):
        raise TypeError(f"the state is {type(state).__name__}, not a mapping")
    if not isinstance(state.get("config", {}), Mapping):
        raise TypeError("its config is not a mapping")
    return dict(state)


@dataclasses.dataclass(frozen=True)
class Output:
    """An output folder, local or on object storage (fsspec URL + ``storage_options``)."""

    url: str
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # file:// and local:// are local paths, with every protection of one (links, lock)
        object.__setattr__(self, "url", local_path(self.url))

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
        return dict(self.storage_options) if is_url(self.url) else {}

    def path(self, *parts: str) -> str:
        """Path of a file of the folder, inside :attr:`fs`."""
        return posixpath.join(self.root, *parts)

    def url_of(self, *parts: str) -> str:
        """Path or URL of a file of the folder, as a user would give it."""
        if is_url(self.url):
            return posixpath.join(self.url.rstrip("/"), *parts)
        return os.path.join(self.url, *parts)

    @property
    def store_url(self) -> str:
        """Path or URL of ``cube.zarr``."""
        return self.url_of("cube.zarr")

    def zarr_store(self, name: str = "cube.zarr"):
        """A zarr store object for ``cube.zarr`` or another Zarr store of the folder.

        Works in worker processes too.
        """
        import zarr.storage

        if is_url(self.url):
            return zarr.storage.FsspecStore.from_url(
                self.url_of(name), storage_options=dict(self.storage_options) or None
            )
        return zarr.storage.LocalStore(self.url_of(name))

    def _group(self, mode: str = "r", name: str = "cube.zarr"):
        """The root group, read from its own ``zarr.json`` (never the consolidated copy)."""
        import zarr

        return zarr.open_group(
            self.zarr_store(name), mode=mode, zarr_format=3, use_consolidated=False
        )

    # -- files ----------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        """Whether a file or folder of the output exists (asking the store, not a cache)."""
        fs = self.fs
        path = self.path(*parts)
        fs.invalidate_cache(path)
        return fs.exists(path)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a file of the folder in one piece, never outside the folder.

        Locally: a new file of unpredictable name, created exclusively, then renamed onto
        ``name`` (a link planted at the name is replaced, never written through; a link on
        the way out of the folder is refused; see :func:`sediment_xr._fs.write_inside`).
        """
        if not is_url(self.url):
            write_inside(self.root, name, data)
            return
        fs = self.fs  # object stores write whole objects atomically
        final = self.path(name)
        fs.makedirs(posixpath.dirname(final), exist_ok=True)
        fs.pipe(final, data)

    def write_text(self, name: str, text: str) -> None:
        """Write a text file of the folder in one piece."""
        self.write_bytes(name, text.encode("utf-8"))

    def local_file(self, name: str) -> str:
        """Real path of a file of a local folder, its folders checked to stay inside it."""
        return inside_folder(self.root, name)

    def refuse_outside_links(self) -> None:
        """Raise OutputError when a link at or under a name the run writes leads outside.

        The names are those of :data:`OUTPUT_FILES` and ``.sediment_xr``. zarr and the run
        write files under them, so a link planted there (a file or folder of the cube, a
        table, a PNG) would make a write land outside the output folder. Only local folders
        have links; links that stay inside the folder are left alone.
        """
        if is_url(self.url):
            return
        root = self.root
        for name in sorted({entry.split("/")[0] for entry in OUTPUT_FILES}):
            top = os.path.join(root, name)
            paths = [top]
            if os.path.isdir(top) and not os.path.islink(top):
                for folder, dirs, files in os.walk(top):
                    paths += [os.path.join(folder, entry) for entry in (*dirs, *files)]
            for path in paths:
                if os.path.islink(path):
                    refuse_outside_link(root, path)

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

    def prepare_progress(self, stage: str, fingerprint: str) -> None:
        """Create the marks folder (local filesystems need it before tasks write into it)."""
        self.fs.makedirs(self.progress_dir(stage, fingerprint), exist_ok=True)

    def mark_done(
        self, stage: str, fingerprint: str, index: int, *, fence: LockFence | None = None
    ) -> None:
        """Write the finished-chunk mark (after the chunk's data are written).

        With a ``fence`` (:meth:`sediment_xr.lock.OutputLock.fence`), the mark is written only
        while the run still holds the output's lock: a run whose lock was taken over or
        released raises OutputError instead of marking a chunk of another run.
        """
        if fence is not None:
            fence.check(f"marking chunk {index} of {stage} done")
        self.fs.pipe(posixpath.join(self.progress_dir(stage, fingerprint), f"{index:06d}"), b"")

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
        """The stored cube, lazily, or None when there is none.

        Dask chunks are the run's time chunks (a shard of ``labels``: one read per task),
        not the one-frame inner chunks that ``xr.open_zarr(path)`` gives by default.
        Raises :class:`DamagedOutputError` when its metadata or state cannot be read.
        """
        if not self.exists("cube.zarr", "zarr.json"):
            return None
        try:
            cube = xr.open_zarr(self.zarr_store(), chunks=None, **_ZARR_KW)
        except DAMAGE_ERRORS as err:
            raise damaged(self.url, self._bad_metadata(), err) from err
        raw = cube.attrs.get(STATE_ATTR)
        try:
            state = _state_of(raw) if raw is not None else {}
        except DAMAGE_ERRORS as err:
            raise damaged(self.url, _STATE_NAME, err) from err
        step = state.get("chunk_frames")
        chunked = isinstance(step, int) and step > 0 and "time" in cube.dims
        time = {"time": step} if chunked else {}
        return cube.chunk(time)

    def state(self) -> dict[str, Any] | None:
        """What the tool recorded in the cube (fingerprints, stage status), or None.

        Raises :class:`DamagedOutputError` when the cube's ``zarr.json`` or the state in it
        cannot be read, and :class:`OutputError` for a cube not written by sediment_xr.
        """
        if not self.exists("cube.zarr", "zarr.json"):
            return None
        try:
            raw = self._group("r").attrs.get(STATE_ATTR)
        except DAMAGE_ERRORS as err:
            raise damaged(self.url, "cube.zarr/zarr.json", err) from err
        if raw is None and self.exists(".sediment_xr"):
            return None  # ours, but its creation was interrupted: start it again
        if raw is None:
            raise OutputError(
                f"{self.store_url} exists but was not written by sediment_xr. "
                "Choose another output folder."
            )
        try:
            return _state_of(raw)
        except DAMAGE_ERRORS as err:
            raise damaged(self.url, _STATE_NAME, err) from err

    def _bad_metadata(self) -> str:
        """The cube's first ``zarr.json`` that is not JSON (``cube.zarr`` when none is)."""
        fs, root = self.fs, self.path("cube.zarr")
        folders = [e["name"] for e in fs.ls(root, detail=True) if e["type"] == "directory"]
        for folder in ["", *sorted(folders)]:
            path = posixpath.join(root, posixpath.basename(folder.rstrip("/")), "zarr.json")
            try:
                json.loads(fs.cat_file(path))
            except FileNotFoundError:
                continue
            except ValueError:
                return posixpath.relpath(path, self.root)
        return "cube.zarr"

    def update_attrs(self, **attrs: Any) -> None:
        """Set root attributes of the cube in one write of its ``zarr.json``.

        The group is opened without its consolidated metadata, so the write leaves none:
        a cube being changed has no stale copy of its arrays' metadata.
        """
        self._group("r+").attrs.update(attrs)

    def mark_incomplete(self) -> None:
        """Say the cube is not complete (and drop its consolidated metadata), nothing else."""
        self.update_attrs(**{COMPLETE_ATTR: False})

    def is_consolidated(self) -> bool:
        """Whether the cube's root ``zarr.json`` holds consolidated metadata."""
        try:
            root = json.loads(self.fs.cat_file(self.path("cube.zarr", "zarr.json")))
        except FileNotFoundError:
            return False
        return bool(root.get("consolidated_metadata"))

    def consolidate(self) -> None:
        """Write consolidated metadata into the cube's root ``zarr.json`` (a finished cube)."""
        import zarr

        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not part of the v3 specification yet;
            # xarray, zarr-python and kerchunk-style readers use it.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata")
            zarr.consolidate_metadata(self.zarr_store(), zarr_format=3)

    def set_state(self, state: Mapping[str, Any], *, complete: bool) -> None:
        """Record the run state and whether every output is written."""
        self.update_attrs(
            **{STATE_ATTR: json.dumps(dict(state), sort_keys=True), COMPLETE_ATTR: complete}
        )

    def create_cube(
        self, template: xr.Dataset, attrs: Mapping[str, Any], *, state: Mapping[str, Any]
    ) -> None:
        """Create ``cube.zarr`` from a lazy template: coordinates now, data by region later.

        The run ``state`` goes into the same root ``zarr.json`` (marked not complete), so a
        cube is never seen without it.
        """
        ds = template.copy()
        ds.attrs = {
            **attrs,
            STATE_ATTR: json.dumps(dict(state), sort_keys=True),
            COMPLETE_ATTR: False,
        }
        self._create_staging(ds)
        ds, encoding = _template(ds)
        ds.to_zarr(
            self.zarr_store(),
            mode="w",
            compute=False,
            encoding=encoding,
            write_empty_chunks=True,  # every chunk, so a missing one is damage
            **_ZARR_KW,
        )

    def remove_variables(self, *names: str) -> None:
        """Delete arrays (variables or coordinates) of the cube that exist."""
        group = self._group("r+")
        for name in names:
            if name in group:
                del group[name]

    def add_variables(self, variables: Mapping[str, xr.DataArray]) -> None:
        """Add (or replace) variables: lazy ones as templates, in-memory ones written now.

        Coordinates already in the cube are not written again (the chunk tasks write the
        lazy ones), but each new variable still names its coordinates in its
        ``coordinates`` attribute, so they stay coordinates whatever is removed later.  An
        index coordinate must match the stored one: remove the variables that use a stored
        index (e.g. ``class_cover`` and ``class``) before adding others with new values.
        """
        import zarr

        self.remove_variables(*variables)
        group = self._group("r+")
        ds = xr.Dataset(dict(variables), attrs=dict(group.attrs))  # keep the root attrs
        linked = {
            name: [c for c in var.coords if c not in var.dims]
            for name, var in ds.data_vars.items()
        }
        stored = [c for c in ds.coords if c in group]
        cube = xr.open_zarr(self.zarr_store(), chunks=None, **_ZARR_KW) if stored else None
        for name in stored:
            if name in ds.dims and not np.array_equal(cube[name].values, ds[name].values):
                raise ValueError(
                    f"{name} in {self.store_url} holds other values than the variables "
                    f"added ({', '.join(variables)}): remove the variables that use it first"
                )
        ds = ds.drop_vars(stored)
        self._create_staging(ds)
        ds, encoding = _template(ds)
        ds.to_zarr(
            self.zarr_store(),
            mode="a",
            compute=False,
            encoding=encoding,
            write_empty_chunks=True,
            **_ZARR_KW,
        )
        for name, coords in linked.items():
            if coords:
                zarr.open_array(self.zarr_store(), path=name, mode="r+", zarr_format=3).attrs[
                    "coordinates"
                ] = " ".join(sorted(coords))  # one order: the same bytes every run

    def remove_shard(self, name: str, index: int, ndim: int) -> None:
        """Delete the shard of a time chunk of a sharded variable, where zarr needs it.

        A chunk task writes its whole shard. zarr 3.0 merges such a write into the stored
        shard, so a shard torn by an interrupted write (a full disk) fails its checksum on the
        rerun: on a local disk with zarr 3.0 the task removes it first. Object stores write
        whole objects, and zarr 3.1's local store writes a file under another name and then
        renames it, so there is nothing torn to remove.
        """
        import zarr

        major_minor = tuple(int(p) for p in re.findall(r"\d+", zarr.__version__)[:2])
        if is_url(self.url) or major_minor >= (3, 1):
            return
        path = self.path("cube.zarr", name, "c", str(index), *["0"] * (ndim - 1))
        fs = self.fs
        if fs.exists(path):
            fs.rm_file(path)

    # -- per-frame variables, by chunk ----------------------------------------------------
    def _create_staging(self, ds: xr.Dataset) -> None:
        """Create (empty) the by-chunk copies of the lazy per-frame variables of ``ds``."""
        import zarr

        for name in PER_FRAME:
            var = ds.variables.get(name)
            if var is None or var.chunks is None:
                continue
            zarr.create_array(
                self.zarr_store(STAGING),
                name=name,
                shape=var.shape,
                dtype=var.dtype,
                chunks=(var.chunks[0][0], *var.shape[1:]),
                fill_value=_fill_value(name, var.dtype),
                compressors=compressors(name),
                overwrite=True,
                zarr_format=3,
            )

    def staged(self, name: str) -> Any:
        """The by-chunk copy of a per-frame variable, as a dask array (None if absent).

        A chunk that cannot be read (checksum, cut short) raises :class:`DamagedOutputError`
        when computed.
        """
        if not self.exists(STAGING, name, "zarr.json"):
            return None
        return self.checked_array(name, store=STAGING)

    def gather_per_frame(self) -> None:
        """Copy the per-frame variables from their by-chunk copies into the cube.

        Raises :class:`DamagedOutputError` when a by-chunk copy cannot be read (the run
        checks them first: see :meth:`forget_damaged_chunks`).
        """
        for name in PER_FRAME:
            staged = self.staged(name)
            if staged is not None:
                values = staged.compute(scheduler="synchronous")
                _open_to_write(self.zarr_store(), name)[...] = values

    # -- checks of the stored chunks ------------------------------------------------------
    def checked_array(self, name: str, *, store: str = "cube.zarr", chunks: Any = None) -> Any:
        """An array of a Zarr store of the folder as a dask array (its own chunks by default).

        Reading a chunk whose bytes are damaged raises a one-line :class:`DamagedOutputError`
        naming its file, instead of zarr's codec error.
        """
        import zarr

        array = zarr.open_array(self.zarr_store(store), path=name, mode="r", zarr_format=3)
        reads = _CheckedReads(array, self.url, f"{store}/{name}")
        return da.from_array(
            reads,
            chunks=chunks if chunks is not None else array.chunks,
            name=f"sediment-xr-read-{name}-{uuid.uuid4().hex}",
            meta=np.empty((0,) * array.ndim, array.dtype),
        )

    def _files(self, store: str) -> dict[str, int]:
        """Size of every file of a Zarr store of the folder, by its key (one listing)."""
        fs, root = self.fs, self.path(store)
        fs.invalidate_cache(root)
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        return {
            posixpath.relpath(path, root): int(info.get("size") or 0)
            for path, info in found.items()
        }

    def _arrays(self, store: str, files: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """The metadata of the store's arrays (one read of all their ``zarr.json``)."""
        names = [key for key in files if key.count("/") == 1 and key.endswith("/zarr.json")]
        if not names:
            return {}
        raw = self.fs.cat([self.path(store, key) for key in names])
        arrays = {}
        for key in names:
            try:
                meta = json.loads(raw[self.path(store, key)])
            except DAMAGE_ERRORS as err:
                raise damaged(self.url, f"{store}/{key}", err) from err
            if isinstance(meta, Mapping) and meta.get("node_type") == "array":
                arrays[posixpath.dirname(key)] = dict(meta)
        return arrays

    def absent_chunks(self) -> list[str]:
        """Chunk (or shard) files of the cube's arrays that are missing or empty.

        One listing of ``cube.zarr`` and one read of its arrays' metadata; no data is read.
        Meaningful for cubes of layout :data:`CHECKED_LAYOUT` or later, whose every chunk is
        written (earlier ones skipped chunks of fill values only).

        Returns
        -------
        list of str
            Paths relative to the output folder, e.g. ``cube.zarr/cover/c/0/0``.
        """
        files = self._files("cube.zarr")
        absent = []
        for name, meta in sorted(self._arrays("cube.zarr", files).items()):
            keys = (f"{name}/{key}" for key in _chunk_keys(meta))
            absent += [f"cube.zarr/{key}" for key in keys if not files.get(key)]
        return absent

    def forget_damaged_chunks(self) -> dict[str, list[int]]:
        """Forget the marks of time chunks whose stored data are missing or damaged.

        For every chunk marked labelled, its shard of ``labels`` must be in ``cube.zarr``,
        not empty, and its chunk of each per-frame series in :data:`STAGING` must be there
        and read (checksum); for every chunk marked ``frames``, its shard of ``frames`` must
        be there, not empty. A chunk failing one of these loses that mark, so the run
        computes it again instead of trusting (and gathering) what is stored. The shards'
        content is not read (that would read every label): garbled bytes inside a shard are
        found when it is read (:meth:`checked_array`).

        Returns
        -------
        dict of str to list of int
            The time chunks forgotten, by stage (``label``, ``frames``).
        """
        marks = {stage: self._marks(stage) for stage in ("label", "frames")}
        if not any(marks.values()):
            return {}
        bad: dict[str, set[int]] = {"label": set(), "frames": set()}
        cube = self._files("cube.zarr")
        for name, meta in self._arrays("cube.zarr", cube).items():
            if name in SHARDED:
                stage = "frames" if name == "frames" else "label"
                tail = "/0" * (len(meta["shape"]) - 1)
                bad[stage] |= {i for i in marks[stage] if not cube.get(f"{name}/c/{i}{tail}")}
        staging = self._files(STAGING)
        for name, meta in self._arrays(STAGING, staging).items():
            if name in PER_FRAME:
                todo = set(marks["label"]) - bad["label"]
                bad["label"] |= self._unreadable_staged(name, meta, staging, todo)
        for stage, chunks in bad.items():
            for index in chunks:
                for path in marks[stage][index]:
                    self.fs.rm_file(path)
        return {stage: sorted(chunks) for stage, chunks in bad.items() if chunks}

    def _marks(self, stage: str) -> dict[int, list[str]]:
        """The marks of a stage (every fingerprint), by time chunk."""
        fs, base = self.fs, self.path(".sediment_xr", "progress")
        fs.invalidate_cache(base)
        try:
            found = fs.find(base)
        except FileNotFoundError:
            return {}
        marks: dict[int, list[str]] = {}
        for path in found:
            folder, name = posixpath.split(path)
            if posixpath.basename(folder).startswith(f"{stage}-") and name.isdigit():
                marks.setdefault(int(name), []).append(path)
        return marks

    def _unreadable_staged(
        self, name: str, meta: Mapping[str, Any], files: Mapping[str, int], chunks: set[int]
    ) -> set[int]:
        """Time chunks of a by-chunk series that are missing, empty or fail to read."""
        import zarr

        tail = "/0" * (len(meta["shape"]) - 1)
        bad = {i for i in chunks if not files.get(f"{name}/c/{i}{tail}")}
        array = zarr.open_array(self.zarr_store(STAGING), path=name, mode="r", zarr_format=3)
        step = array.chunks[0]
        for i in sorted(chunks - bad):
            try:
                array[i * step : (i + 1) * step]
            except CHUNK_ERRORS:
                bad.add(i)
        return bad


class _CheckedReads:
    """A zarr array whose damaged chunks raise a one-line :class:`DamagedOutputError`."""

    def __init__(self, array: Any, url: str, what: str) -> None:
        self.array, self.url, self.what = array, url, what
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self.array[key]
        except CHUNK_ERRORS as err:
            raise damaged(self.url, self._file(key), err, fix=self._fix()) from err

    def _file(self, key: Any) -> str:
        """The file (chunk or shard) of the first time position read."""
        first = key[0] if isinstance(key, tuple) and key else key
        start = (first.start or 0) if isinstance(first, slice) else int(first)
        shards = getattr(self.array, "shards", None)
        step = shards[0] if shards else self.array.chunks[0]
        return f"{self.what}/c/{start // step}" + "/0" * (self.ndim - 1)

    def _fix(self) -> str:
        if self.what.split("/")[-1] in SHARDED:  # their content is not read by a rerun
            return "Delete that file and run the same `sediment-xr run` again to recompute it."
        return RERUN_FIX


def _chunk_keys(meta: Mapping[str, Any]) -> list[str]:
    """Keys of every chunk (or shard) of a Zarr v3 array, from its ``zarr.json``."""
    shape = meta["shape"]
    grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
    encoding = meta.get("chunk_key_encoding") or {"name": "default"}
    default = encoding.get("name") == "default"
    separator = (encoding.get("configuration") or {}).get("separator", "/" if default else ".")
    counts = [-(-int(n) // int(c)) for n, c in zip(shape, grid, strict=True)]
    keys = []
    for index in np.ndindex(*counts):
        parts = [str(i) for i in index]
        keys.append(separator.join(["c", *parts]) if default else separator.join(parts) or "0")
    return keys


def _open_to_write(store: Any, name: str) -> Any:
    """An array of a store, opened to write every chunk, even one holding only fill values.

    zarr skips such chunks by default (readers get the fill value anyway), so a missing chunk
    would not tell damage from a chunk never written: sediment_xr writes them all, and
    :meth:`Output.absent_chunks` checks that none is missing. An array takes zarr's config
    when it is opened; the lock keeps other threads of the process from changing it then.
    """
    import zarr

    with _CONFIG_LOCK, zarr.config.set({"array.write_empty_chunks": True}):
        return zarr.open_array(store, path=name, mode="r+", zarr_format=3)


def compressors(name: str) -> list[Any]:
    """Codecs of a stored array: zstd (:func:`frames_compressors` for frames), then crc32c.

    The checksum makes a chunk whose bytes changed fail when it is read (zarr raises
    ``ValueError: Stored and computed checksum do not match``) instead of reading as other
    numbers. It costs 4 bytes per chunk (per frame of a shard) and a pass over the bytes.
    """
    from zarr.codecs import Crc32cCodec, ZstdCodec

    zstd = frames_compressors() if name == "frames" else [ZstdCodec()]
    return [*zstd, Crc32cCodec()]


def _fill_value(name: str, dtype: np.dtype) -> Any:
    """Fill value of a variable: its 'not written' flag, or NaN (None: zarr's default)."""
    from sediment_xr.cluster import NO_DATA
    from sediment_xr.frames import FRAME_NOT_READ

    if name == "labels":
        return NO_DATA
    if name == "frame_status":
        return FRAME_NOT_READ
    return np.nan if np.dtype(dtype).kind == "f" else None


def frames_compressors() -> list[Any]:
    """Codec of the stored frames: zstd level 1.

    Measured (benchmarks/results.md, 1024 x 1024 uint8 frames, 8-frame chunks): Zarr's
    default (zstd level 0, i.e. 3) stores 0.46-0.56 of the raw size but costs ~24 ms per
    frame to write, more than decoding the H.264 frame; level 1 stores 0.57-0.64 at ~14 ms
    and reads a little faster. Labels keep the default (~1 ms, 2-8 % of raw).
    """
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=1)]


def _template(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The dataset to create arrays from, and its encoding: the cube's storage layout.

    - ``labels`` and ``frames``: one shard per time chunk of the dask array (what one task
      writes), inner chunks of one frame;
    - other variables along time (per-frame series): one chunk, or chunks of whole time
      chunks of at most :data:`SMALL_CHUNK_BYTES` for very long series;
    - fill values that mean "not written" (labels ``-1``, frame status ``not_read``, NaN).

    Lazy variables are rechunked to match (they are templates: only metadata is written).
    """
    encoding: dict[str, dict[str, Any]] = {}
    updates: dict[str, xr.Variable] = {}
    for name, var in ds.variables.items():
        checked = {"compressors": compressors(name)} if var.dtype.kind in "biufmM" else {}
        if "time" not in var.dims or name in ds.indexes:
            if checked:
                encoding[name] = checked
            continue
        frame = var.shape[1:]
        step = var.chunks[0][0] if var.chunks is not None else 1
        if name in SHARDED:
            enc: dict[str, Any] = {"chunks": (1, *frame), "shards": (step, *frame), **checked}
        else:
            row = max(1, int(np.prod(frame, dtype=np.int64)) * var.dtype.itemsize)
            per_chunk = max(1, SMALL_CHUNK_BYTES // (row * step))  # whole time chunks
            step = min(var.shape[0], per_chunk * step) or 1
            enc = {"chunks": (step, *frame), **checked}
        fill = _fill_value(name, var.dtype)
        if fill is not None:
            enc |= {"fill_value": fill, "_FillValue": None}
        encoding[name] = enc
        if var.chunks is not None:
            updates[name] = var.chunk({"time": step, **{d: -1 for d in var.dims[1:]}})
    return ds.assign(**{k: v for k, v in updates.items() if k in ds.data_vars}).assign_coords(
        **{k: v for k, v in updates.items() if k in ds.coords}
    ), encoding


def chunk_bounds(n_time: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges of the time chunks."""
    return [(s, min(s + chunk_frames, n_time)) for s in range(0, n_time, chunk_frames)]


def pending(done: Iterable[int], n_chunks: int) -> list[int]:
    """Chunk indices still to do."""
    finished = set(done)
    return [i for i in range(n_chunks) if i not in finished]


def _write_block(
    positions: np.ndarray,
    *blocks: np.ndarray,
    target: Output,
    names: Sequence[str],
    starts: Sequence[int],
    marks: Sequence[tuple[str, str]],
    fence: LockFence | None = None,
) -> np.ndarray:
    """Task body: write one time chunk of every variable by region, then the chunk's marks.

    With a ``fence``, nothing is written unless the run still holds the output's lock, and
    each mark is checked again (see :meth:`Output.mark_done`).
    """
    start, stop = int(positions[0]), int(positions[-1]) + 1
    index = starts.index(start)
    if fence is not None:
        fence.check(f"writing chunk {index}")
    cube, staging = target.zarr_store(), target.zarr_store(STAGING)
    for name, block in zip(names, map(one_block, blocks), strict=True):
        if name in SHARDED:
            target.remove_shard(name, index, block.ndim)
        store = staging if name in PER_FRAME else cube
        _open_to_write(store, name)[start:stop] = block
    for stage, fingerprint in marks:
        target.mark_done(stage, fingerprint, index, fence=fence)
    return np.full(stop - start, index, dtype=np.int64)


def chunk_writes(
    out: Output,
    variables: Mapping[str, xr.DataArray],
    *,
    marks: Sequence[tuple[str, str]],
    chunks: Sequence[int],
    fence: LockFence | None = None,
) -> list[Any]:
    """One task per time chunk that writes every variable's chunk, then the chunk's marks.

    Parameters
    ----------
    out : Output
        Where ``cube.zarr`` is (its variables already created, e.g. by :meth:`create_cube`).
    variables : mapping of str to xarray.DataArray
        Lazy arrays with ``time`` first and the same time chunks, by their name in the cube.
    marks : sequence of (stage, fingerprint)
        The marks each task writes once its chunk is stored.
    chunks : sequence of int
        The time chunks to write (others are left out of the graph).
    fence : sediment_xr.lock.LockFence, optional
        The run's lock: each task checks it before writing and before each mark, so a run
        that lost the lock writes no mark.

    Returns
    -------
    list of dask.delayed.Delayed
        One per chunk of ``chunks``, sharing one graph: computing them together decodes each
        frame once, whatever number of variables derive from it.
    """
    first = next(iter(variables.values()))
    time_chunks = first.chunks[0]
    starts = tuple(int(s) for s in np.cumsum((0, *time_chunks[:-1])))
    positions = da.arange(sum(time_chunks), chunks=(time_chunks,), dtype=np.int64)
    args: list[Any] = [positions, ("t",)]
    for i, var in enumerate(variables.values()):
        if var.dims[0] != "time" or var.chunks[0] != time_chunks:
            raise ValueError(f"{var.name}: every variable needs the time chunks {time_chunks}")
        data = var.data.rechunk({axis: -1 for axis in range(1, var.ndim)})
        args += [data, ("t", *(f"v{i}d{j}" for j in range(1, var.ndim)))]
    written = da.blockwise(
        _write_block,
        ("t",),
        *args,
        name=f"sediment-xr-write-{uuid.uuid4().hex}",  # side effects: never a cached key
        dtype=np.int64,
        concatenate=False,  # the one block of each axis, not a copy (see _blockwise)
        meta=np.empty((0,), np.int64),
        target=out,
        names=tuple(variables),
        starts=starts,
        marks=tuple(marks),
        fence=fence,
    )
    tasks = written.to_delayed().ravel()
    return [tasks[i] for i in chunks]
