"""Read a run's stored results, and say exactly what is missing when the run did not finish.

Zarr reads a chunk that was never written as its fill value, so a cube left by a killed run
looks like data. :func:`open_results` trusts a cube only when its ``sediment_xr_complete``
attribute is true; otherwise it reports, from the run's own records (the completion marks of
every chunk and the files of the output folder), which stages and frames are not done.

A finished cube is also checked for damage done to it after the run (cubes of layout
:data:`sediment_xr.store.CHECKED_LAYOUT` or later: every chunk written, each with a crc32c
checksum), and refused in one line naming the damaged file:

- every chunk (or shard) file of every array must exist and not be empty (one listing of
  ``cube.zarr``, no data read);
- every variable but ``labels`` and ``frames`` (the per-frame series, coordinates, trends:
  small) is read at open, so a chunk whose bytes changed fails its checksum there;
- ``labels`` and ``frames`` are not read at open (they are most of the cube): a shard whose
  bytes changed raises :class:`sediment_xr.store.DamagedOutputError` (one line, naming the
  shard) when that part is read, not at open. A rerun does not read them either: deleting the
  named shard makes the next run compute that chunk again.

Not guaranteed: damage that keeps each chunk's checksum valid (a chunk replaced by another
valid chunk), and cubes of earlier layouts (no checksums, chunks of fill values not written).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from sediment_xr.exceptions import OutputError, SedimentXRWarning
from sediment_xr.store import (
    CHECKED_LAYOUT,
    CHUNK_ERRORS,
    COMPLETE_ATTR,
    PER_FRAME,
    RERUN_FIX,
    SHARDED,
    TABLE_FILES,
    Output,
    chunk_bounds,
    damaged,
    pending,
)

__all__ = ["missing", "open_cover", "open_results"]

#: The fix for a damaged coordinate: runs write coordinates only when they create the cube.
_FRESH_FIX = "Delete cube.zarr and run the same `sediment-xr run` again to recompute it."


def _frame_ranges(chunks: list[int], bounds: list[tuple[int, int]]) -> str:
    """``"0-5, 10-11"``: the frame positions of some chunks, merged into ranges."""
    ranges: list[list[int]] = []
    for i in chunks:
        start, stop = bounds[i]
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = stop
        else:
            ranges.append([start, stop])
    return ", ".join(f"{a}-{b - 1}" if b - a > 1 else f"{a}" for a, b in ranges)


def missing(output: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """What a stored run has not finished, one item per stage or file; empty when complete.

    Parameters
    ----------
    output : str
        The output folder (path or fsspec URL) of ``sediment-xr run``.
    storage_options : mapping, optional
        fsspec options for a URL (credentials, endpoint).

    Returns
    -------
    list of str
        E.g. ``["label: 9 of 12 chunks not done (frames 6-23)", "cover.csv"]``.
    """
    out = Output(output, dict(storage_options or {}))
    state = out.state()
    if state is None:
        return ["cube.zarr (no run has written this output yet)"]
    cube = out.open_cube()
    if cube.attrs.get(COMPLETE_ATTR) is True:
        if state.get("layout", 0) >= 3 and not out.is_consolidated():
            return ["the final write (the run stopped before consolidating the metadata)"]
        return []
    if not state.get("cube_created") or "time" not in cube.sizes:
        return ["cube.zarr (the run stopped while creating it)"]
    n_time = cube.sizes["time"]
    chunk_frames = state.get("chunk_frames")
    bounds = chunk_bounds(n_time, chunk_frames if isinstance(chunk_frames, int) else n_time)
    items = []
    if not (out.exists("model.json") and "labels" in cube):
        items.append("model.json (the model is not fitted yet)")
        items.append(f"label: {len(bounds)} of {len(bounds)} chunks not done (all frames)")
    else:
        items += _missing_chunks(out, "label", state.get("fingerprint_model"), bounds)
    if state.get("config", {}).get("ingest", {}).get("store_frames"):
        items += _missing_chunks(out, "frames", state.get("fingerprint_cube"), bounds)
    items += [name for name in TABLE_FILES if not out.exists(name) and name != "model.json"]
    if not items:
        items.append("the final write (the run stopped while writing the report files)")
    return items


def _missing_chunks(
    out: Output, stage: str, fingerprint: str | None, bounds: list[tuple[int, int]]
) -> list[str]:
    todo = pending(out.done_chunks(stage, str(fingerprint)), len(bounds))
    if not todo:
        return []
    frames = _frame_ranges(todo, bounds)
    return [f"{stage}: {len(todo)} of {len(bounds)} chunks not done (frames {frames})"]


def open_results(
    output: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open the cube of a finished run, lazily; refuse (or warn about) an unfinished one.

    Parameters
    ----------
    output : str
        The output folder (path or fsspec URL) of ``sediment-xr run``.
    storage_options : mapping, optional
        fsspec options for a URL (credentials, endpoint).
    allow_incomplete : bool, default False
        Open an unfinished run's cube anyway, with a :class:`SedimentXRWarning` listing what
        is missing. Frames not labelled read as labels ``-1`` (no data) and cover NaN (and,
        with ``ingest.store_frames``, frames not stored as 0).

    Returns
    -------
    xarray.Dataset
        ``labels``, ``cover``, ``frame_status``, (with classes) ``class_cover`` and (with
        ``ingest.store_frames``) ``frames``, dask-backed.

    Raises
    ------
    OutputError
        When there is no cube, or the run did not finish and ``allow_incomplete`` is False.
    """
    out = Output(output, dict(storage_options or {}))
    cube = out.open_cube()
    if cube is None:
        raise OutputError(
            f"there are no results in {output}: cube.zarr does not exist. Run "
            "`sediment-xr run <config>` with this output folder first."
        )
    todo = missing(output, storage_options=storage_options)
    if todo:
        message = (
            f"the results in {output} are incomplete (the run that wrote them stopped, or is "
            f"still running); missing: {'; '.join(todo)}"
        )
        if not allow_incomplete:
            raise OutputError(
                f"{message}. Run the same `sediment-xr run` again to finish them, or pass "
                "allow_incomplete=True to read what is there."
            )
        warnings.warn(message, SedimentXRWarning, stacklevel=2)
        return _with_staged(out, cube)
    return _checked(out, cube)


def _checked(out: Output, cube: xr.Dataset) -> xr.Dataset:
    """A finished cube, refused if a chunk is missing or a small variable does not read.

    ``labels`` and ``frames`` come back reading through their checksums with a one-line
    error (see the module docstring for what is and is not checked).
    """
    state = out.state() or {}
    if state.get("layout", 0) < CHECKED_LAYOUT:
        return cube
    absent = out.absent_chunks()
    if absent:
        more = f" and {len(absent) - 1} other chunk files" if len(absent) > 1 else ""
        raise damaged(out.url, f"{absent[0]}{more}", "missing or empty", fix=RERUN_FIX)
    for name, variable in cube.variables.items():
        if name in SHARDED:
            continue
        try:
            variable.values  # noqa: B018 (read to check, not kept: the cube stays lazy)
        except CHUNK_ERRORS as err:
            rewritten = name in cube.data_vars or name in PER_FRAME  # by every run
            fix = RERUN_FIX if rewritten else _FRESH_FIX
            raise damaged(out.url, f"cube.zarr/{name}", err, fix=fix) from err
    for name in SHARDED:
        if name in cube.variables:
            data = out.checked_array(name, chunks=cube[name].chunks)
            cube[name] = cube[name].copy(data=data)
    return cube


def _with_staged(out: Output, cube: xr.Dataset) -> xr.Dataset:
    """An unfinished cube with the per-frame series the chunk tasks wrote so far.

    A finished run gathers them into the cube; until then they are in ``by_chunk.zarr``.
    """
    for name in PER_FRAME:
        staged = out.staged(name)
        if staged is not None and name in cube.variables:
            stored = cube.variables[name]
            if staged.shape == stored.shape:
                variable = stored.copy(data=staged)
                if name in cube.coords:
                    cube = cube.assign_coords({name: variable})
                else:
                    cube[name] = variable
    return cube


def open_cover(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
):
    """The cover of one or many runs as one Dask DataFrame (``cover.parquet``, long form).

    Parameters
    ----------
    paths : str, path or sequence of them
        Output folders of runs, ``cover.parquet`` files, or glob patterns of either (e.g.
        ``"s3://bucket/camera-*/2022*"``); local paths or fsspec URLs.
    storage_options : mapping, optional
        fsspec options for URLs.

    Returns
    -------
    dask.dataframe.DataFrame
        Columns ``run``, ``time``, ``frame``, ``kind``, ``name``, ``cover`` (see
        :func:`sediment_xr.tables.cover_long`); ``run`` tells the runs apart.

    Notes
    -----
    Lazy: reads the Parquet metadata now, the rows when computed.
    """
    import dask.dataframe as dd

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files = []
    for path in map(os.fspath, paths):
        files.append(path if path.endswith(".parquet") else f"{path.rstrip('/')}/cover.parquet")
    return dd.read_parquet(files, storage_options=dict(storage_options or {}) or None)
