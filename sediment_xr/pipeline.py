"""The whole run: sample and fit -> one pass per chunk -> classes, trends and output files.

:func:`run` is what ``sediment-xr run`` calls; it computes on whatever dask scheduler is
active (the CLI starts a ``dask.distributed`` cluster first).

1. The pixel sample is drawn from whole chunks spread over the series (only those are
   decoded), and the model is fitted on it.
2. One task per chunk takes the chunk's frames from the input's decode task, (stores them
   with ``ingest.store_frames``,) preprocesses, labels and counts them, and writes the labels
   and cover by region: each frame is decoded once and never read back.

Every chunk is marked when written, so running the same config again resumes where a
previous run stopped and recomputes nothing that is stored; changing only ``classes``
recomputes only the class cover, trends and files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr import __version__
from sediment_xr._compat import history_line
from sediment_xr.cluster import (
    NO_DATA,
    ClusterModel,
    fit_kmeans,
    flag_attrs,
)
from sediment_xr.config import Config, dump_config, redacted_dict
from sediment_xr.coverage import _check_classes, cover_from_counts, merge_classes
from sediment_xr.exceptions import InputError, OutputError, SedimentXRWarning
from sediment_xr.io import FRAME_UNDECODABLE
from sediment_xr.lock import OutputLock
from sediment_xr.preprocess import _check_clahe, _preprocess_block, _slice_from
from sediment_xr.store import (
    Output,
    chunk_bounds,
    mark_done,
    pending,
    prepare_progress,
    write_frames_chunk,
)
from sediment_xr.trend import fit_trends, summary_statistics, trend_summaries

__all__ = ["RunResult", "check", "open_input", "run"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Files of the output folder written by :func:`run` (and only these are ever replaced).
OUTPUT_FILES = (
    "cube.zarr",
    "cover.csv",
    "trend.csv",
    "trend_summary.txt",
    "clusters.json",
    "model.json",
    "config.resolved.yaml",
    "segmented.mp4",
    "segmented",
    "report.html",
    ".sediment_xr/progress",
)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced."""

    output: str
    cover: pd.DataFrame
    trend: pd.DataFrame
    model: ClusterModel
    computed: tuple[str, ...]

    def open(self) -> xr.Dataset:
        """The output cube, lazily."""
        return xr.open_zarr(
            Output(self.output).zarr_store(), zarr_format=3, consolidated=False, chunks={}
        )


def open_input(config: Config) -> xr.DataArray:
    """Open the configured input (a video, or a folder/glob of stills) lazily."""
    from sediment_xr.io import open_images, open_video

    ing = config.ingest
    common = {
        "resize": ing.resize,
        "chunk_frames": ing.chunk_frames,
        "start_time": ing.start_time,
        "frame_interval": ing.frame_interval,
        "storage_options": dict(config.storage_options) or None,
    }
    if _looks_like_images(config.input, config.storage_options):
        if ing.fps is not None:
            raise InputError(
                f"ingest.fps samples a video, but {config.input} is a folder of stills. "
                "Remove fps (use frame_interval for the time between stills)."
            )
        return open_images(config.input, **common)
    return open_video(config.input, fps=ing.fps, **common)


def _looks_like_images(source: str, storage_options) -> bool:
    if any(ch in source for ch in "*?["):
        return True
    if source.lower().endswith(IMAGE_EXTENSIONS):
        return True
    if "://" in source:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(source, **dict(storage_options or {}))
        return fs.isdir(path)
    return os.path.isdir(source)


def _log(progress: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    return log


def _compute(tasks: list[Any], *, desc: str, progress: bool) -> list[Any]:
    """Compute dask delayed tasks on the active scheduler, with a progress bar.

    ``tasks`` is emptied once they are submitted to a distributed scheduler, so that data
    kept on the workers for them (persisted inputs) is released as each task finishes.
    """
    if not tasks:
        return []
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        with contextlib.ExitStack() as stack:
            if progress:
                from dask.diagnostics import ProgressBar

                stack.enter_context(ProgressBar(out=sys.stderr))
            results = list(dask.compute(*tasks))
        tasks.clear()
        return results
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(list(tasks))
    tasks.clear()  # the scheduler holds what the tasks need now, and frees it after them
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with tqdm(total=len(futures), desc=desc, unit="chunk", disable=not progress) as bar:
        for future in as_completed(futures):
            results[index[future.key]] = future.result()
            bar.update(1)
    return results


@dataclasses.dataclass(frozen=True)
class _Labelling:
    """What every labelling task needs besides its frames (small: travels in the graph)."""

    out: Output
    fingerprint_model: str
    fingerprint_ingest: str
    ys: slice
    xs: slice
    clip_limit: float
    tile_grid_size: tuple[int, int]
    color_space: str
    centers: np.ndarray


def _prepare_chunk(
    frames: np.ndarray, status: np.ndarray | None, job: _Labelling
) -> tuple[np.ndarray, np.ndarray | None]:
    """Worker task: crop, CLAHE and colour-convert a decoded chunk; its status rides along."""
    features = _preprocess_block(
        frames, job.ys, job.xs, job.clip_limit, job.tile_grid_size, job.color_space
    )
    return features, status


def _label_chunk(
    frames: np.ndarray,
    status: np.ndarray | None,
    job: _Labelling,
    index: int,
    start: int,
    store_frames: bool,
) -> np.ndarray:
    """Worker task: one pass over a decoded chunk: (store it,) preprocess, label, count, mark.

    ``frames`` and ``status`` come from the input's decode task, so the frames are never
    read back from storage.
    """
    if store_frames:  # the frames, their status and the ingest mark
        write_frames_chunk(frames, job.out, start, index, job.fingerprint_ingest, status=status)
    return _label_prepared(_prepare_chunk(frames, status, job), job, index, start)


def _label_prepared(
    prepared: tuple[np.ndarray, np.ndarray | None], job: _Labelling, index: int, start: int
) -> np.ndarray:
    """Worker task: label and count a preprocessed chunk, write it by region, then mark it."""
    import zarr

    from sediment_xr.cluster import _label_count_frames

    features, status = prepared
    store = job.out.zarr_store()
    stop = start + features.shape[0]
    labels, counts = _label_count_frames(features, job.centers)
    if status is not None:  # undecodable frames: no data, no cover
        flags = zarr.open_array(store, path="frame_status", mode="r+", zarr_format=3)
        flags[start:stop] = status
        skipped = status == FRAME_UNDECODABLE
        labels[skipped] = NO_DATA
        counts[skipped] = 0
    labels_arr = zarr.open_array(store, path="labels", mode="r+", zarr_format=3)
    labels_arr[start:stop, job.ys, job.xs] = labels
    total = counts.sum(axis=1, keepdims=True)
    percent = np.where(total > 0, 100.0 * counts / np.maximum(total, 1), np.nan)
    cover_arr = zarr.open_array(store, path="cover", mode="r+", zarr_format=3)
    cover_arr[start:stop] = percent
    mark_done(job.out, "label", job.fingerprint_model, index)
    return counts


def _sample_chunk(
    prepared: tuple[np.ndarray, np.ndarray | None],
    frame_ids: np.ndarray,
    counts: np.ndarray,
    random_state: int,
) -> np.ndarray:
    """Worker task: draw a preprocessed chunk's share of the pixel sample.

    Undecodable frames give no pixels (the sample is then a little smaller).
    """
    from sediment_xr.cluster import _sample_block

    features, status = prepared
    if status is not None:
        good = status != FRAME_UNDECODABLE
        features, frame_ids, counts = features[good], frame_ids[good], counts[good]
    return _sample_block(features, frame_ids, counts, random_state)


#: Most bytes of preprocessed sample chunks kept in memory (on the workers) from the sample
#: to the labelling, so that each frame is decoded once per run. Above it they are decoded
#: again (e.g. 240 frames of a 400 x 3840 crop, 1.1 GiB).
KEEP_SAMPLE_BYTES = 2**30


def _sample_chunks(bounds: Sequence[tuple[int, int]], max_frames: int) -> list[int]:
    """Chunks spread evenly over the series, ``max_frames`` frames in all (at least one).

    The sample is drawn from whole chunks so that it costs one decode of each frame it uses
    (a frame in the middle of a chunk would cost the decode of the chunk up to it).
    """
    sizes = [stop - start for start, stop in bounds]
    if sum(sizes) <= max_frames:
        return list(range(len(bounds)))
    n = max(1, max_frames // max(sizes))
    return [int(i) for i in (np.arange(n) + 0.5) * len(bounds) // n]  # centres of n parts


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


_STAGE_KEYS = ("input", "ingest", "preprocess", "cluster")
_FILES_CHANGED = (
    "the input files (names, sizes or modification times), or the automatic chunk_frames"
)


def _mix(fingerprint: str, signature: str) -> str:
    return hashlib.sha256(f"{fingerprint}:{signature}".encode()).hexdigest()[:16]


def _stamp(info: Mapping[str, Any]) -> str:
    """A file's modification stamp from an fsspec ``info`` (local mtime, S3/GCS dates, ETag)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "ETag", "etag"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


def input_signature(config: Config, source: xr.DataArray) -> str:
    """Hash of the input files' names, sizes and modification times.

    Part of the stored fingerprints, so that a rerun notices an input folder that gained,
    lost or changed files (or a video replaced under the same name) instead of mixing old
    and new frames. Folders are listed once each, not file by file (object stores).
    """
    from fsspec.core import url_to_fs

    files = json.loads(source.attrs.get("source_files") or "null") or [config.input]
    options = dict(config.storage_options) if "://" in config.input else {}
    fs, _ = url_to_fs(config.input, **options)
    paths = [fs._strip_protocol(f) for f in files]
    entries = []
    if len(paths) == 1:
        infos = {paths[0]: fs.info(paths[0])}
    else:
        infos = {}
        for folder in sorted({posixpath.dirname(p) for p in paths}):
            fs.invalidate_cache(folder)
            for info in fs.ls(folder, detail=True):
                infos[fs._strip_protocol(info["name"])] = info
    for path in paths:
        info = infos.get(path) or fs.info(path)
        entries.append([posixpath.basename(path), info.get("size"), _stamp(info)])
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()[:16]


#: Largest chunk of frames a task may hold. A labelling task holds about four times this
#: (frames, colour-converted features, labels, the written copy), so 256 MiB keeps a task
#: under about 1 GiB on workers that often have 2-4 GiB per thread.
MAX_CHUNK_BYTES = 256 * 2**20


def _chunk_frames(source: xr.DataArray) -> int:
    """Frames per chunk of the opened input (``ingest.chunk_frames`` or the automatic one)."""
    return int(source.data.chunks[0][0]) if source.sizes["time"] else 1


def _check_task_memory(source: xr.DataArray, chunk_frames: int) -> None:
    frame_bytes = source.sizes["y"] * source.sizes["x"] * source.sizes.get("channel", 3)
    frames = min(chunk_frames, source.sizes["time"])
    if frames * frame_bytes > MAX_CHUNK_BYTES:
        most = max(1, MAX_CHUNK_BYTES // frame_bytes)
        raise InputError(
            f"ingest.chunk_frames is {chunk_frames}, which puts {frames} frames of "
            f"{source.sizes['x']} x {source.sizes['y']} pixels "
            f"({frames * frame_bytes / 2**20:.0f} MiB) in each task, over the "
            f"{MAX_CHUNK_BYTES // 2**20} MiB a task may hold. Use chunk_frames: {most} or "
            "fewer, or give ingest.resize."
        )


def check(config: Config) -> xr.DataArray:
    """Open the input lazily and check the config against it, before anything is written.

    Returns the lazy frames. Raises the errors a run would raise for a missing or unreadable
    input, a crop outside the frame or invalid CLAHE settings.
    """
    source = open_input(config)
    _check_task_memory(source, _chunk_frames(source))
    pre = config.preprocess
    _slice_from(pre.rows, source.sizes["y"], "rows")
    _slice_from(pre.cols, source.sizes["x"], "cols")
    _check_clahe(pre.clip_limit, pre.tile_grid_size)
    if config.classes:
        _check_classes(config.classes, config.cluster.n_clusters)
    if config.cluster.model:
        load_model(config.cluster.model, config)
    return source


def run(
    config: Config,
    *,
    overwrite: bool = False,
    progress: bool = True,
    source: xr.DataArray | None = None,
) -> RunResult:
    """Run the whole pipeline of a config and write its output folder.

    Parameters
    ----------
    config : Config
        From :func:`sediment_xr.config.load_config` or built in Python.
    overwrite : bool, default False
        Replace an output made with a different input, ingest, preprocess or cluster
        config. Without it such an output is refused. Only the tool's own files are replaced.
    progress : bool, default True
        Print stage messages and progress bars to stderr.
    source : xarray.DataArray, optional
        The input as returned by :func:`check` (opened again when not given).

    Returns
    -------
    RunResult

    Notes
    -----
    Computes: on the active dask scheduler (start a ``distributed.Client`` first to use a
    cluster). Resumes from finished chunks of an interrupted run with the same config.
    """
    log = _log(progress)
    out = Output(config.output, dict(config.storage_options))
    # 1. Open and validate everything before anything is written.
    if source is None:
        source = check(config)
    if not out.exists(".sediment_xr"):  # no run of ours has been here: refuse others' files
        foreign = [name for name in OUTPUT_FILES if out.exists(name)]
        if foreign:
            raise OutputError(
                f"output {config.output} already holds {', '.join(foreign)}, not written by a "
                "sediment_xr run there. Choose an empty or new output folder."
            )
    # 2. One writer at a time (a lock left by a killed run is taken over).
    with OutputLock(out) as lock:
        if lock.taken_over:
            log(f"took over the lock of an earlier run ({lock.taken_over})")
        return _run_locked(config, out, source, lock, progress=progress, overwrite=overwrite)


def _run_locked(
    config: Config,
    out: Output,
    source: xr.DataArray,
    lock: OutputLock,
    *,
    progress: bool,
    overwrite: bool,
) -> RunResult:
    """The stages of :func:`run`, with the output's lock held."""
    log = _log(progress)
    pre = config.preprocess
    ys = _slice_from(pre.rows, source.sizes["y"], "rows")
    xs = _slice_from(pre.cols, source.sizes["x"], "cols")
    clip_limit, tiles = _check_clahe(pre.clip_limit, pre.tile_grid_size)
    signature = input_signature(config, source)  # edited, added or removed input files
    chunk_frames = _chunk_frames(source)  # ingest.chunk_frames, or the automatic choice
    # The resolved chunk size is part of what the marks mean (auto may resolve differently).
    fp_ingest = _mix(config.fingerprint("ingest"), f"{signature}:{chunk_frames}")
    fp_model = _mix(config.fingerprint("model"), f"{signature}:{chunk_frames}")
    resolved = redacted_dict(config)  # stored in the cube: no credentials
    state = out.state()  # read again: another run may have written it before we got the lock
    computed: list[str] = []
    if state is not None and (
        state.get("fingerprint_ingest") != fp_ingest or state.get("fingerprint_model") != fp_model
    ):
        changed = _changed_keys(
            {k: state.get("config", {}).get(k) for k in _STAGE_KEYS},
            {k: resolved.get(k) for k in _STAGE_KEYS},
        )
        if not overwrite:
            raise OutputError(
                f"output {config.output} was made with a different config "
                f"(changed: {', '.join(changed) or _FILES_CHANGED}). Rerun with --overwrite to "
                "replace it, or choose another output folder."
            )
        log(
            "--overwrite: replacing the output made with other settings "
            f"({', '.join(changed) or _FILES_CHANGED})"
        )
    new_ingest = (  # a cube whose creation was interrupted is created again
        state is None
        or state.get("fingerprint_ingest") != fp_ingest
        or not state.get("cube_created")
    )
    new_model = new_ingest or state.get("fingerprint_model") != fp_model
    old_report = (state or {}).get("config", {}).get("report")
    state = dict(state or {})
    state.update(
        chunk_frames=chunk_frames,
        config=resolved,
        fingerprint_ingest=fp_ingest,
        fingerprint_model=fp_model,
        version=__version__,
    )

    # 3. The cube: coordinates (and an empty frames variable when frames are stored).
    n_time = source.sizes["time"]
    bounds = chunk_bounds(n_time, chunk_frames)
    store_frames = config.ingest.store_frames
    if new_ingest:
        out.remove(*OUTPUT_FILES)
        attrs = {
            "Conventions": "CF-1.10",
            "title": "sediment_xr cube: labels and percent cover"
            + (", with the frames" if store_frames else ""),
            "source": config.input,
            "history": history_line(f"ingest {config.input}"),
            "sediment_xr_version": __version__,
        }
        state["stages"] = {}
        state.pop("cube_created", None)  # set once every array is created
        # state in the same atomic zarr.json
        out.create_cube(source, attrs, state=state, store_frames=store_frames)
        state["cube_created"] = True  # every array and coordinate is there
        out.set_state(state, complete=False)
    else:
        if new_model:  # forget the old model before the state names the new one
            out.remove("model.json")
            out.clear_progress("label")
        state["stages"] = {}
        out.set_state(state, complete=False)
    # Each chunk is decoded by one task of the input's graph; the sample and the labelling
    # tasks take its frames and status from there (``.blocks[i]`` would decode twice).
    blocks = source.data.to_delayed(optimize_graph=False).ravel()
    statuses = (
        source["frame_status"].data.to_delayed(optimize_graph=False).ravel()
        if "frame_status" in source.coords
        else [None] * len(blocks)
    )
    job = _Labelling(
        out=out,
        fingerprint_model=fp_model,
        fingerprint_ingest=fp_ingest,
        ys=ys,
        xs=xs,
        clip_limit=clip_limit,
        tile_grid_size=tiles,
        color_space=pre.color_space,
        centers=np.empty((0, 3)),
    )

    lock.check()  # still ours (not taken over while this run was suspended)
    # 4. Fit (or reuse) the model on a pixel sample spread over the series.
    cube = out.open_cube()
    model = None
    if not new_model and out.exists("model.json") and {"labels", "cover"} <= set(cube):
        model = ClusterModel.from_json(
            out.read_text("model.json"), source=out.url_of("model.json")
        )
    cl = config.cluster
    if model is None and cl.model:
        model = load_model(cl.model, config)
        log(f"cluster: applying {model!r} from {cl.model}")
        _store_model(out, cube, model, chunk_frames)
        computed.append("model")
    kept: dict[int, Any] = {}  # preprocessed sample chunks, kept for the labelling
    if model is None:
        chosen = _sample_chunks(bounds, cl.max_frames)
        positions = np.concatenate([np.arange(*bounds[i]) for i in chosen])
        log(
            f"cluster: sampling {cl.sample_size} pixels from {len(positions)} frames "
            f"({len(chosen)} chunks spread over the series)"
        )
        counts = np.full(len(positions), cl.sample_size // len(positions))
        counts[: cl.sample_size % len(positions)] += 1
        prepared = [dask.delayed(_prepare_chunk)(blocks[i], statuses[i], job) for i in chosen]
        height = len(range(*ys.indices(source.sizes["y"])))
        width = len(range(*xs.indices(source.sizes["x"])))
        if not store_frames and len(positions) * height * width * 3 <= KEEP_SAMPLE_BYTES:
            # Kept (on the workers) for the labelling: these chunks are not decoded again.
            prepared = list(dask.persist(*prepared))
            kept = dict(zip(chosen, prepared, strict=True))
        tasks, at = [], 0
        for i, chunk in zip(chosen, prepared, strict=True):
            size = bounds[i][1] - bounds[i][0]
            part = slice(at, at + size)
            tasks.append(
                dask.delayed(_sample_chunk)(chunk, positions[part], counts[part], cl.random_state)
            )
            at += size
        del prepared, chunk  # only ``kept`` holds the kept chunks from here on
        sample = np.concatenate(_compute(tasks, desc="sample", progress=progress))
        if len(sample) == 0:
            raise InputError(
                f"none of the {len(positions)} frames sampled from {config.input} can be "
                "decoded, so no model can be fitted. The file is damaged: fetch it again or "
                "re-encode it."
            )
        model = fit_kmeans(
            sample,
            n_clusters=cl.n_clusters,
            color_space=pre.color_space,
            random_state=cl.random_state,
            preprocess={
                "rows": list(pre.rows) if pre.rows is not None else None,
                "cols": list(pre.cols) if pre.cols is not None else None,
                "clip_limit": clip_limit,
                "tile_grid_size": list(tiles),
            },
            n_frames_sampled=len(positions),
        )
        log(f"cluster: {model!r} after {model.n_epochs} epochs")
        _store_model(out, cube, model, chunk_frames)
        computed.append("fit")

    lock.check()  # still ours (not taken over while this run was suspended)
    # 5. One pass per chunk: decode, (store the frames,) preprocess, label and count.
    todo = pending(out.done_chunks("label", fp_model), len(bounds))
    unstored: set[int] = set()
    if store_frames:
        unstored = set(pending(out.done_chunks("ingest", fp_ingest), len(bounds)))
        todo = sorted(set(todo) | unstored)
    if todo:
        log(f"label: {len(todo)} of {len(bounds)} chunks of {n_time} frames -> {out.store_url}")
        prepare_progress(out, "label", fp_model)
        if store_frames:
            prepare_progress(out, "ingest", fp_ingest)
        job = dataclasses.replace(job, centers=model.centers_array)
        todo = sorted(todo, key=lambda i: (i not in kept, i))  # free the kept chunks first
        tasks = [
            dask.delayed(_label_prepared, pure=False)(kept.pop(i), job, i, bounds[i][0])
            if i in kept
            else dask.delayed(_label_chunk, pure=False)(
                blocks[i], statuses[i], job, i, bounds[i][0], i in unstored
            )
            for i in todo
        ]
        _compute(tasks, desc="label", progress=progress)  # each kept chunk freed after its task
        computed.append("label")
    if store_frames:
        _require_done(out, "ingest", fp_ingest, len(bounds))
    _require_done(out, "label", fp_model, len(bounds))
    _warn_undecodable(out.open_cube(), config.input)

    lock.check()  # still ours (not taken over while this run was suspended)
    # 6. Classes, trends and the output files.
    cube = out.open_cube()
    cover = cube["cover"].load()
    frame_coord = cube["frame"].values if "frame" in cube.coords else np.arange(n_time)
    cover = cover.assign_coords(frame=("time", frame_coord))
    series = {"cover": cover}
    if config.classes:
        class_cover = merge_classes(cover, config.classes)
        class_cover = class_cover.assign_coords({"class": np.array(list(config.classes), object)})
        out.write_small({"class_cover": class_cover})
        series["class_cover"] = class_cover
    else:
        out.remove_variables("class_cover", "class")
    table = _cover_table(cover, series.get("class_cover"))
    trend = fit_trends(xr.Dataset(series))
    out.write_text("cover.csv", table.to_csv(index=False, float_format="%.6f"))
    out.write_text("trend.csv", trend.to_csv(index=False, float_format="%.8g"))
    out.write_text("trend_summary.txt", _summary_text(xr.Dataset(series), trend))
    out.write_text("clusters.json", json.dumps(_clusters_json(model, cover, config), indent=2))
    out.write_text("config.resolved.yaml", dump_config(config))
    clusters = _clusters_json(model, cover, config)
    if old_report is not None and old_report != resolved.get("report"):
        # The report section changed: its old files go, the new ones are written below.
        out.remove("segmented.mp4", "segmented", "report.html")
    _write_visuals(
        out, cube, source, model, config, computed, series, trend, clusters["clusters"], log
    )
    state.setdefault("stages", {})
    state["stages"].update(ingest="complete", label="complete", outputs="complete")
    out.update_attrs(history=_history(cube.attrs.get("history", ""), computed))
    lock.check()
    out.set_state(state, complete=True)
    log(f"done: {config.output}")
    return RunResult(
        output=config.output, cover=table, trend=trend, model=model, computed=tuple(computed)
    )


def _write_visuals(
    out: Output,
    cube: xr.Dataset,
    source: xr.DataArray,
    model: ClusterModel,
    config: Config,
    computed: list[str],
    series: dict[str, xr.DataArray],
    trend: pd.DataFrame,
    clusters: list[dict[str, Any]],
    log: Callable[[str], None],
) -> None:
    """segmented.mp4, segmented PNGs and report.html (painted from the stored labels)."""
    from sediment_xr.segment import write_segmented_pngs, write_segmented_video

    rep = config.report
    labels = cube["labels"]
    colors = model.center_rgb
    n_time = labels.sizes["time"]
    if rep.video and ("label" in computed or not out.exists("segmented.mp4")):
        log("segmented.mp4: painting the stored labels")
        n = write_segmented_video(
            labels,
            colors,
            out.url_of("segmented.mp4"),
            fps=rep.video_fps,
            storage_options=dict(config.storage_options) or None,
        )
        computed.append("video")
        if n != n_time:  # pragma: no cover - guarded by write_segmented_video's loop
            raise OutputError(f"segmented.mp4 has {n} frames but the cube {n_time}.")
    bad = [p for p in rep.png_frames if p >= n_time]
    if bad:
        raise InputError(
            f"report.png_frames needs positions below {n_time} (the number of frames), but "
            f"got {bad}. Use positions 0 to {n_time - 1}."
        )
    if rep.png_frames:
        fs = out.fs

        def write_bytes(name: str, data: bytes) -> None:
            fs.makedirs(out.path("segmented"), exist_ok=True)
            fs.pipe(out.path(name), data)

        write_segmented_pngs(labels, colors, rep.png_frames, write_bytes)
    if rep.html:
        from sediment_xr.report import build_report

        inputs = _report_inputs(cube, source, model, config, series, trend, clusters)
        html = build_report(**inputs)
        out.write_text("report.html", html)


def _report_inputs(
    cube: xr.Dataset,
    source: xr.DataArray,
    model: ClusterModel,
    config: Config,
    series: dict[str, xr.DataArray],
    trend: pd.DataFrame,
    clusters: list[dict[str, Any]],
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from sediment_xr.preprocess import enhance
    from sediment_xr.segment import analysed_window, overlay, paint

    n_time = cube.sizes["time"]
    pos = config.report.example_frame
    pos = n_time // 2 if pos is None else min(pos, n_time - 1)
    labels = cube["labels"].isel(time=[pos])
    ys, xs = analysed_window(labels)
    if "frames" in cube:
        original = cube["frames"].isel(time=[pos], y=ys, x=xs).load()
    else:  # not stored: decode its chunk again, here (one chunk; no scheduler round trip,
        # whose workers may still be releasing the same keys from the labelling)
        original = source.isel(time=[pos], y=ys, x=xs).compute(scheduler="synchronous")
    enhanced = enhance(
        original,
        clip_limit=config.preprocess.clip_limit,
        tile_grid_size=config.preprocess.tile_grid_size,
    )
    segmented = paint(labels.isel(y=ys, x=xs), model.center_rgb).load()
    example = {
        "original": original.values[0],
        "enhanced": enhanced.values[0],
        "segmented": segmented.values[0],
        "overlay": overlay(original, segmented).values[0],
        "label": f"frame {pos} at {pd.Timestamp(cube['time'].values[pos]).isoformat()}",
    }
    times = pd.DatetimeIndex(cube["time"].values)
    versions = {}
    for package in (
        "sediment_xr",
        "numpy",
        "xarray",
        "dask",
        "distributed",
        "zarr",
        "scikit-learn",
        "dask-ml",
        "opencv-python-headless",
        "av",
        "statsmodels",
        "hvplot",
        "bokeh",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    data = xr.Dataset(series)
    return {
        "cover": series["cover"],
        "class_cover": series.get("class_cover"),
        "trend": trend,
        "stats": summary_statistics(data),
        "clusters": clusters,
        "example": example,
        "summary": {
            "input": config.input,
            "output": config.output,
            "frames": str(n_time),
            "time span": f"{times[0].isoformat()} to {times[-1].isoformat()}",
            "frame size": f"{cube.sizes['x']} x {cube.sizes['y']} pixels",
            "analysed window": f"rows {ys.start}-{ys.stop - 1}, columns {xs.start}-{xs.stop - 1}",
            "clusters": f"{model.n_clusters} ({model.color_space}), sample of "
            f"{model.sample_size} pixels from {model.n_frames_sampled} frames",
        },
        "config_yaml": dump_config(config),
        "versions": versions,
    }


def load_model(path: str, config: Config) -> ClusterModel:
    """Read a ``model.json`` (path or URL) and check it fits the config's preprocessing."""
    from fsspec.core import url_to_fs

    options = dict(config.storage_options) if "://" in path else {}
    fs, fs_path = url_to_fs(path, **options)
    if not fs.exists(fs_path):
        raise InputError(
            f"cluster.model {path} does not exist. Give the model.json of an earlier run, "
            "or leave cluster.model out to fit a model."
        )
    model = ClusterModel.from_json(fs.cat(fs_path).decode("utf-8"), source=path)
    pre = config.preprocess
    wanted = {
        "color_space": pre.color_space,
        "n_clusters": config.cluster.n_clusters,
        "rows": list(pre.rows) if pre.rows is not None else None,
        "cols": list(pre.cols) if pre.cols is not None else None,
        "clip_limit": float(pre.clip_limit),
        "tile_grid_size": list(pre.tile_grid_size),
    }
    seen = {"color_space": model.color_space, "n_clusters": model.n_clusters}
    seen |= {k: model.preprocess.get(k) for k in ("rows", "cols", "clip_limit", "tile_grid_size")}
    diff = [
        f"{k}: model {seen[k]!r}, config {wanted[k]!r}" for k in wanted if seen[k] != wanted[k]
    ]
    if diff:
        raise InputError(
            f"cluster.model {path} was fitted with other settings ({'; '.join(diff)}). Set the "
            "config's preprocess and n_clusters to the model's, or fit a new model."
        )
    return model


def _warn_undecodable(cube: xr.Dataset, source: str) -> None:
    """Warn about the frames that did not decode (their labels are no data)."""
    if "frame_status" not in cube.variables:
        return
    status = np.asarray(cube["frame_status"].values)
    skipped = np.flatnonzero(status == FRAME_UNDECODABLE)
    if len(skipped):
        n_time = len(status)
        numbers = cube["frame"].values[skipped] if "frame" in cube.coords else skipped
        shown = ", ".join(str(int(p)) for p in numbers[:10])
        more = ", ..." if len(skipped) > 10 else ""
        warnings.warn(
            f"{len(skipped)} of {n_time} frames of {source} cannot be decoded and were skipped "
            f"(frame {shown}{more}): their labels are no_data and their cover is empty in "
            "cover.csv; frame_status in cube.zarr marks them. To analyse them, fetch the input "
            "again or re-encode it.",
            SedimentXRWarning,
            stacklevel=3,
        )


def _summary_text(series: xr.Dataset, trend: pd.DataFrame) -> str:
    with pd.option_context("display.width", 160, "display.max_columns", 50):
        stats = summary_statistics(series).round(4).to_string()
        table = trend.set_index("name").to_string(float_format=lambda v: f"{v:.6g}")
    return (
        "Percent cover: summary statistics per cluster and class\n\n"
        f"{stats}\n\n"
        "Trends (slope per day; HAC = Newey-West standard errors, robust to autocorrelation)\n\n"
        f"{table}\n\n"
        f"{trend_summaries(series)}\n"
    )


def _history(previous: str, computed: Sequence[str]) -> str:
    line = history_line(f"run ({', '.join(computed) or 'outputs only'})")
    return f"{previous}\n{line}" if previous else line


def _require_done(out: Output, stage: str, fingerprint: str, n_chunks: int) -> None:
    missing = pending(out.done_chunks(stage, fingerprint), n_chunks)
    if missing:
        raise OutputError(
            f"{stage} did not finish: {len(missing)} of {n_chunks} chunks are missing in "
            f"{out.store_url} (first: chunk {missing[0]}). Run the same command again to resume."
        )


def _store_model(out: Output, cube: xr.Dataset, model: ClusterModel, chunk_frames: int) -> None:
    """Start the labels and cover over (a new model relabels all), then write model.json.

    model.json is written last: a run killed before it fits again, one killed after it finds
    the label variables in place.
    """
    out.remove("model.json")
    out.clear_progress("label")
    _init_label_variables(out, cube, model, chunk_frames)
    out.write_text("model.json", model.to_json())


def _init_label_variables(
    out: Output, cube: xr.Dataset, model: ClusterModel, chunk_frames: int
) -> None:
    import dask.array as da

    n_time, height, width = (cube.sizes[d] for d in ("time", "y", "x"))
    chunk_t = min(chunk_frames, n_time)
    k = model.n_clusters
    labels = xr.DataArray(
        da.full((n_time, height, width), NO_DATA, dtype=np.int8, chunks=(chunk_t, -1, -1)),
        dims=("time", "y", "x"),
        attrs=flag_attrs(k)
        | {"comment": "-1 (no_data): outside the analysed crop or not analysed"},
    )
    cover = xr.DataArray(
        da.full((n_time, k), np.nan, chunks=(chunk_t, k)),
        dims=("time", "cluster"),
        coords={"cluster": np.arange(k)},
    )
    cover = cover_from_counts(cover)  # for attrs and coords only (lazy, never computed)
    cover.attrs["comment"] = "percent of the analysed pixels of each frame in each cluster"
    # Everything that depends on the model goes: a new model may have another k.
    out.remove_variables("labels", "cover", "cluster", "class_cover", "class")
    encoding = {
        "labels": {"chunks": (chunk_t, height, width), "fill_value": NO_DATA, "_FillValue": None},
        "cover": {"chunks": (chunk_t, k), "fill_value": np.nan, "_FillValue": None},
    }
    out.add_variables({"labels": labels, "cover": cover}, encoding)


def _cover_table(cover: xr.DataArray, class_cover: xr.DataArray | None) -> pd.DataFrame:
    times = pd.DatetimeIndex(cover["time"].values)
    table = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%S"),
            "frame": cover["frame"].values.astype(np.int64),
        }
    )
    for i in range(cover.sizes["cluster"]):
        table[f"cluster_{i}"] = cover.values[:, i]
    if class_cover is not None:
        for j, name in enumerate(class_cover["class"].values):
            table[str(name)] = class_cover.values[:, j]
    return table


def _clusters_json(model: ClusterModel, cover: xr.DataArray, config: Config) -> dict[str, Any]:
    names = {i: f"cluster_{i}" for i in range(model.n_clusters)}
    for name, ids in (config.classes or {}).items():
        for i in ids:
            names[i] = name
    share = np.nanmean(cover.values, axis=0)
    return {
        "clusters": [
            {
                "id": i,
                "name": names[i],
                "center_rgb": [int(v) for v in model.center_rgb[i]],
                "share_percent": round(float(share[i]), 4),
            }
            for i in range(model.n_clusters)
        ],
        "color_space": model.color_space,
        "n_clusters": model.n_clusters,
        "random_state": model.random_state,
        "sample_size": model.sample_size,
    }
