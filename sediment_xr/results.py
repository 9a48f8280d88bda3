"""Read a run's stored results, and say exactly what is missing when the run did not finish.

Zarr reads a chunk that was never written as its fill value, so a cube left by a killed run
looks like data. :func:`open_results` trusts a cube only when its ``sediment_xr_complete``
attribute is true; otherwise it reports, from the run's own records (the completion marks of
every chunk and the files of the output folder), which stages and frames are not done.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import xarray as xr

from sediment_xr.exceptions import OutputError, SedimentXRWarning
from sediment_xr.store import COMPLETE_ATTR, Output, chunk_bounds, pending

__all__ = ["missing", "open_results"]

#: Files a finished run always leaves (report files depend on the ``report`` section).
RESULT_FILES = (
    "cover.csv",
    "trend.csv",
    "trend_summary.txt",
    "clusters.json",
    "model.json",
    "config.resolved.yaml",
)


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
        return []
    created = state.get("cube_created") or "chunk_frames" not in state  # 0.1 cubes: no flag
    if not created or "time" not in cube.sizes:
        return ["cube.zarr (the run stopped while creating it)"]
    n_time = cube.sizes["time"]
    ingest = state.get("config", {}).get("ingest", {})
    chunk_frames = state.get("chunk_frames") or ingest.get("chunk_frames")  # the resolved one
    if not isinstance(chunk_frames, int):
        chunk_frames = n_time
    bounds = chunk_bounds(n_time, max(chunk_frames, 1))
    items = []
    stages = [("label", state.get("fingerprint_model"))]
    if ingest.get("store_frames", True):  # cubes of 0.1 stored the frames, without the key
        stages.insert(0, ("ingest", state.get("fingerprint_ingest")))
    for stage, fingerprint in stages:
        if stage == "label" and not (out.exists("model.json") and "labels" in cube):
            items.append("model.json (the model is not fitted yet)")
            items.append(f"label: {len(bounds)} of {len(bounds)} chunks not done (all frames)")
            continue
        todo = pending(out.done_chunks(stage, str(fingerprint)), len(bounds))
        if todo:
            frames = _frame_ranges(todo, bounds)
            items.append(
                f"{stage}: {len(todo)} of {len(bounds)} chunks not done (frames {frames})"
            )
    items += [name for name in RESULT_FILES if not out.exists(name) and name != "model.json"]
    if not items:
        items.append("the final write (the run stopped while writing the report files)")
    return items


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
    cube = Output(output, dict(storage_options or {})).open_cube()
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
    return cube
