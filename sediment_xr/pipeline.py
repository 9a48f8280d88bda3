"""The whole run: the public functions a notebook user calls, plus storage and resume.

:func:`run` (what ``sediment-xr run`` calls) takes the same steps as the Python API::

    frames = open_frames(config.input, ...)          # lazy (time, y, x, channel)
    window = crop(frames, ...)
    light = fit_illumination(window.isel(time=...))  # computes: the sample's frames
    features = preprocess(window, illumination=light)  # blockwise over time chunks
    sample = sample_pixels(features, ...)            # windows spread over the series
    model = fit_kmeans(sample, ...)
    labels = label(features, model)                  # lazy; undecodable frames are no data
    percent = cover(labels)                          # lazy reduction over y, x

and stores them with :func:`sediment_xr.store.chunk_writes`: one task per time chunk writes
that chunk's labels, cover and frame status (and frames, with ``ingest.store_frames``) and
then marks it done, so dask fuses decode, preprocess, label and count into one pass per chunk
and each frame is decoded once.  The chunks the sample was drawn from are kept in the
workers' memory (persisted, decoded and cropped) for their labelling.  Running the same
config again resumes where a previous run stopped and recomputes nothing that is stored;
changing only ``classes`` or ``report`` recomputes only the files.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr import __version__
from sediment_xr._fs import files_signature, is_url, without_query
from sediment_xr._provenance import coverage_attrs, history_line
from sediment_xr._redact import redact
from sediment_xr.cluster import (
    fit_kmeans,
    label,
    refit_stability,
    sample_pixels,
    sample_positions,
)
from sediment_xr.config import (
    CONFIG_KEYS,
    Config,
    changed_keys,
    dump_config,
    redacted_dict,
    stage_settings,
)
from sediment_xr.coverage import CLASS_ATTRS, cover, merge_classes
from sediment_xr.exceptions import InputError, ModelError, OutputError, SedimentXRWarning
from sediment_xr.frames import FRAME_UNDECODABLE
from sediment_xr.illumination import fit_illumination
from sediment_xr.io import open_frames
from sediment_xr.lock import OutputLock
from sediment_xr.model import ClusterModel
from sediment_xr.preprocess import WINDOW_ATTRS, crop, crop_slice, preprocess
from sediment_xr.quality import MEASURES, flag_frames, flag_names, frame_measures
from sediment_xr.results import open_results
from sediment_xr.scheduler import (
    check_task_memory,
    compute_tasks,
    describe_scheduler,
    keep_chunks,
    progress_logger,
)
from sediment_xr.stac import ASSETS, item_json, run_item
from sediment_xr.store import (
    LAYOUT,
    OUTPUT_FILES,
    DamagedOutputError,
    Output,
    chunk_bounds,
    chunk_writes,
    damaged,
    pending,
)
from sediment_xr.tables import (
    TREND_ROLE,
    clusters_summary,
    cover_long,
    cover_table,
    summary_text,
    trend_variables,
)
from sediment_xr.trend import fit_trends
from sediment_xr.uncertainty import boundary_pixels, class_interval, cover_interval
from sediment_xr.visuals import remove_stale_report_files, write_report_files

__all__ = [
    "KEEP_SAMPLE_BYTES",
    "RunResult",
    "check",
    "features_of",
    "load_model",
    "open_input",
    "run",
]

#: Most bytes of preprocessed sample chunks kept in memory (on the workers) from the sample
#: to the labelling, so that each frame is decoded once per run. Above it they are decoded
#: again (e.g. 240 frames of a 400 x 3840 crop, 1.1 GiB).
KEEP_SAMPLE_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced: its tables, its model and which stages it computed."""

    output: str
    cover: pd.DataFrame
    trend: pd.DataFrame
    model: ClusterModel
    computed: tuple[str, ...]
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def open(self) -> xr.Dataset:
        """The output cube, lazily (see :func:`sediment_xr.open_results`)."""
        return open_results(self.output, storage_options=self.storage_options)


def open_input(config: Config) -> xr.DataArray:
    """The configured input as lazy frames (:func:`sediment_xr.io.open_frames`)."""
    ing = config.ingest
    return open_frames(
        config.input if isinstance(config.input, str) else list(config.input),
        fps=ing.fps,
        window=ing.window,
        resize=ing.resize,
        chunk_frames=ing.chunk_frames,
        start_time=ing.start_time,
        frame_interval=ing.frame_interval,
        storage_options=config.input_options or None,
    )


def _model_preprocess(config: Config) -> dict[str, Any]:
    """The preprocessing a model records, as the config gives it."""
    pre = config.preprocess
    crop_, clahe = pre.crop, pre.clahe
    settings: dict[str, Any] = {
        "rows": list(crop_.rows) if crop_.rows is not None else None,
        "cols": list(crop_.cols) if crop_.cols is not None else None,
        "illumination": pre.illumination,
    }
    if pre.illumination == "clahe":
        settings |= {
            "clip_limit": float(clahe.clip_limit),
            "tile_grid_size": list(clahe.tile_grid_size),
        }
    return settings


def features_of(window: xr.DataArray, model: ClusterModel, config: Config) -> xr.DataArray:
    """The clustering features of the analysed window, with the model's light correction."""
    pre = config.preprocess
    light: Any = pre.illumination
    if light == "flat_field":
        if model.illumination is None:
            raise InputError(
                f"cluster.model {config.cluster.model} has no light correction, so "
                "preprocess.illumination: flat_field cannot be applied with it. Set "
                "preprocess.illumination to the model's (clahe or none), or fit a new model "
                "(leave out cluster.model)."
            )
        light = model.illumination
        seen = (window.sizes["y"], window.sizes["x"])
        if tuple(light.shape) != seen:
            raise InputError(
                f"cluster.model {config.cluster.model} corrects the light of a "
                f"{light.shape[0]} x {light.shape[1]} window, but the crop gives "
                f"{seen[0]} x {seen[1]}. Set preprocess.crop (and ingest.resize) as for the "
                "model's run, or fit a new model (leave out cluster.model)."
            )
    return preprocess(
        window,
        illumination=light,
        clip_limit=pre.clahe.clip_limit,
        tile_grid_size=pre.clahe.tile_grid_size,
        color_space=pre.color_space,
    )


def load_model(config: Config) -> ClusterModel:
    """Read ``cluster.model`` and check it was fitted with the config's preprocessing."""
    path = config.cluster.model
    model = ClusterModel.load(path, storage_options=config.input_options or None)
    diff = model.mismatches(
        n_clusters=config.cluster.n_clusters,
        color_space=config.preprocess.color_space,
        **_model_preprocess(config),
    )
    if diff:
        shown = "; ".join(f"{CONFIG_KEYS[key]}: {text}" for key, text in diff.items())
        raise InputError(
            f"cluster.model {path} was fitted with other settings ({shown}). Set these keys "
            "to the model's, or fit a new model (leave out cluster.model)."
        )
    return model


def load_reference(config: Config) -> ClusterModel | None:
    """Read ``cluster.reference`` (the model whose cluster numbers a new fit takes)."""
    path = config.cluster.reference
    if not path:
        return None
    reference = ClusterModel.load(path, storage_options=config.input_options or None)
    if (reference.n_clusters, reference.color_space) != (
        config.cluster.n_clusters,
        config.preprocess.color_space,
    ):
        raise InputError(
            f"cluster.reference {path} has {reference.n_clusters} {reference.color_space} "
            f"clusters, but the config asks for {config.cluster.n_clusters} "
            f"{config.preprocess.color_space} ones. Set cluster.n_clusters and "
            "preprocess.color_space to the reference's, or leave out cluster.reference."
        )
    return reference


def check(config: Config, *, own_cluster: bool = False) -> xr.DataArray:
    """Open the input lazily and check the config against it, before anything is written.

    Parameters
    ----------
    config : Config
        The run's config.
    own_cluster : bool, default False
        The run will start its own LocalCluster (``config.dask``), whose memory limit tells
        what a chunk's task may use (otherwise 1 GiB is assumed).

    Returns
    -------
    xarray.DataArray
        The lazy frames. Raises the errors a run would raise for a missing or unreadable
        input, a crop outside the frame, chunks too large for a task, report frames that do
        not exist, a ``cluster.model`` that does not fit the config or the frames, or an input
        or model file among the output folder's own files (which a run replaces).
    """
    frames = open_input(config)
    check_task_memory(
        frames,
        chunk_frames=config.ingest.chunk_frames or "auto",
        dask_config=config.dask if own_cluster else None,
    )
    _check_settings(config, frames)
    return frames


def _check_settings(config: Config, frames: xr.DataArray) -> None:
    """Check every setting that depends on the frames, reading them lazily (nothing computed).

    The checks of :func:`check` but the memory of a task; :func:`run` makes them on the
    frames it is given, before it changes a file.
    """
    crop_slice(config.preprocess.crop.rows, frames.sizes["y"], "rows")
    crop_slice(config.preprocess.crop.cols, frames.sizes["x"], "cols")
    n_time = frames.sizes["time"]
    example = config.report.example_frame
    bad = [
        p for p in (*config.report.png_frames, *[example] * (example is not None)) if p >= n_time
    ]
    if bad:
        raise InputError(
            f"report.png_frames and report.example_frame need positions below {n_time} (the "
            f"number of frames), but got {bad}. Use positions 0 to {n_time - 1}."
        )
    reads = [("input", path) for path in frames.attrs.get("source_files") or list(config.inputs)]
    reads += [("cluster.model", config.cluster.model)]
    reads += [("cluster.reference", config.cluster.reference)]
    for key, path in reads:  # files the run reads are never among those it replaces
        own = _own_file(config.output, path) if path else None
        if own is not None:
            raise InputError(
                f"{key} {path} is {own} of the output folder {config.output}, which a run "
                f"there replaces. Copy it out of the output folder and set {key} to the copy, "
                "or choose another output."
            )
    if config.cluster.model:
        window = crop(frames, rows=config.preprocess.crop.rows, cols=config.preprocess.crop.cols)
        features_of(window, load_model(config), config)  # lazy: checks the model's light
    load_reference(config)


def _own_file(output: str, path: str) -> str | None:
    """Which of the output folder's own files (:data:`OUTPUT_FILES`) ``path`` is or is in."""
    if is_url(output) != is_url(path):
        return None
    if is_url(output):
        base, target = output.rstrip("/"), path.rstrip("/")
        inside = [n for n in OUTPUT_FILES if f"{target}/".startswith(f"{base}/{n}/")]
    else:
        base, target = Path(output).resolve(), Path(path).resolve()
        inside = [n for n in OUTPUT_FILES if target.is_relative_to(base / n)]
    return inside[0] if inside else None


def run(
    config: Config,
    *,
    overwrite: bool = False,
    progress: bool = True,
    frames: xr.DataArray | None = None,
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
        Log stage messages (logger ``sediment_xr``) and show progress bars on stderr.
    frames : xarray.DataArray, optional
        The input as returned by :func:`check` (opened again when not given).

    Returns
    -------
    RunResult

    Notes
    -----
    Computes: on the active dask scheduler (start a ``distributed.Client`` first to use a
    cluster). Resumes from finished chunks of an interrupted run with the same config.
    """
    out = Output(config.output, config.output_options)
    if frames is None:
        frames = check(config)
    else:
        _check_settings(config, frames)
    if not out.exists(".sediment_xr"):  # no run of ours has been here: refuse others' files
        foreign = [name for name in OUTPUT_FILES if out.exists(name)]
        if foreign:
            raise OutputError(
                f"output {config.output} already holds {', '.join(foreign)}, not written by a "
                "sediment_xr run there. Choose an empty or new output folder."
            )
    out.refuse_outside_links()  # zarr and the run write there: never through a link out
    say = progress_logger(progress)
    with OutputLock(out) as lock:
        if lock.taken_over:
            say(f"took over the lock of an earlier run ({lock.taken_over})")
        plan = _plan(config, out, frames, overwrite, say)
        lock.check()
        say(describe_scheduler())
        model, computed = _label(config, out, frames, plan, lock, say, progress)
        lock.check()
        return _outputs(config, out, frames, model, plan, computed, lock, say)


@dataclasses.dataclass
class _Plan:
    """What this run does, from the stored state and the config."""

    state: dict[str, Any]
    bounds: list[tuple[int, int]]
    fp_cube: str
    fp_model: str
    new_cube: bool
    new_model: bool
    old_report: Any  # the report section the report files were last written with


def _plan(
    config: Config, out: Output, frames: xr.DataArray, overwrite: bool, say: Callable
) -> _Plan:
    """Compare the config with the stored state: refuse, replace or resume."""
    chunk_frames = int(frames.chunks[0][0]) if frames.sizes["time"] else 1
    files = frames.attrs.get("source_files") or list(config.inputs)
    signature = files_signature(files, config.input_options or None)
    fp_cube = config.fingerprint("cube", signature, chunk_frames, LAYOUT)
    # A model given as a file is part of what the labels depend on: its content, not its path.
    given = load_model(config).to_dict()["sha256"] if config.cluster.model else None
    reference = load_reference(config)
    matched = reference.to_dict()["sha256"] if reference is not None else None
    fp_model = config.fingerprint("model", signature, chunk_frames, LAYOUT, given, matched)
    resolved = redacted_dict(config)  # stored in the cube: no credentials
    state = _stored_state(out, overwrite, say)  # read again: now we hold the lock
    if state is not None and (
        state.get("fingerprint_cube") != fp_cube or state.get("fingerprint_model") != fp_model
    ):
        changed = changed_keys(
            stage_settings(state.get("config", {}))["model"], stage_settings(resolved)["model"]
        )
        if state.get("layout") != LAYOUT:
            what = f"an earlier version of sediment_xr ({state.get('version', 'unknown')})"
        else:
            what = (
                f"a different config (changed: {', '.join(changed)})"
                if changed
                else "other input files (names, sizes or modification times changed)"
            )
        if not overwrite:
            raise OutputError(
                f"output {config.output} was made with {what}. Rerun with --overwrite to "
                "replace it, or choose another output folder."
            )
        say(f"--overwrite: replacing the output made with {what}")
    new_cube = (
        state is None or state.get("fingerprint_cube") != fp_cube or not state.get("cube_created")
    )
    return _Plan(
        state={
            **(state or {}),
            "chunk_frames": chunk_frames,
            "config": resolved,
            "fingerprint_cube": fp_cube,
            "fingerprint_model": fp_model,
            "layout": LAYOUT,
            "version": __version__,
            "stages": {},
        },
        bounds=chunk_bounds(frames.sizes["time"], chunk_frames),
        fp_cube=fp_cube,
        fp_model=fp_model,
        new_cube=new_cube,
        new_model=new_cube or state.get("fingerprint_model") != fp_model,
        old_report=(state or {}).get("report_written"),
    )


def _stored_state(out: Output, overwrite: bool, say: Callable) -> dict[str, Any] | None:
    """The stored run state, once the records a rerun reads are known to be readable.

    A damaged ``cube.zarr`` (its ``zarr.json``, the state in it, an array's metadata) or
    ``model.json`` is refused with one line; with ``overwrite`` the run starts afresh
    (None: as if there were no earlier run).
    """
    try:
        state = out.state()
        if state is not None and state.get("cube_created"):
            out.open_cube()  # every array's metadata and the index coordinates
            if out.exists("model.json"):
                _stored_model(out)
    except DamagedOutputError:
        if not overwrite:
            raise
        say("--overwrite: the output's own records are damaged; starting afresh")
        return None
    return state


def _stored_model(out: Output) -> ClusterModel:
    """The output's own ``model.json``; :class:`DamagedOutputError` when it cannot be read."""
    try:
        return ClusterModel.load(out.url_of("model.json"), storage_options=out.storage_options)
    except ModelError as err:
        reason = re.split(r"\.\s+(?=[A-Z])", str(err), maxsplit=1)[0]  # without its fix
        raise damaged(out.url, "model.json", reason) from err


def _title(store_frames: bool) -> str:
    frames = ", with the frames of the analysed window" if store_frames else ""
    return f"sediment_xr cube: labels and percent cover{frames}"


def _prepare_cube(config: Config, out: Output, window: xr.DataArray, plan: _Plan) -> None:
    """Create the cube (coordinates now, data by region later), or update the stored one.

    ``window`` is the frames of the analysed window, stored with ``ingest.store_frames``.
    """
    store_frames = config.ingest.store_frames
    if plan.new_cube:
        out.remove(*OUTPUT_FILES)
        template = xr.Dataset(coords=window.coords)
        if store_frames:
            template["frames"] = window
        attrs = {
            "Conventions": "CF-1.10, ACDD-1.3",
            "title": _title(store_frames),
            "source": redact(without_query(config.input_label)),
            "history": history_line(f"ingest {config.input_label}"),
            "sediment_xr_version": __version__,
            **{k: window.attrs[k] for k in WINDOW_ATTRS if k in window.attrs},
        }
        plan.state.pop("cube_created", None)  # set once every array is created
        out.create_cube(template, attrs, state=plan.state)
        plan.state["cube_created"] = True
    else:
        # The first write to a finished cube says it is not complete any more (and drops its
        # consolidated metadata): a run stopped after any later change never looks finished.
        # The state keeps the old fingerprints until the old model is forgotten.
        out.mark_incomplete()
        if plan.new_model:  # forget the old model before the state names the new one
            out.remove("model.json")
            out.clear_progress("label")
        cube = out.open_cube()
        if store_frames and "frames" not in cube:
            out.clear_progress("frames")  # marks of frames removed by a run stopped after that
            out.add_variables({"frames": window})
        elif not store_frames and "frames" in cube:
            out.clear_progress("frames")  # first: marks never outlive the frames they vouch for
            out.remove_variables("frames")
        out.update_attrs(title=_title(store_frames))
        out.forget_damaged_chunks()  # computed again: neither trusted nor gathered
    out.set_state(plan.state, complete=False)


def _fit(
    config: Config, window: xr.DataArray, say: Callable
) -> tuple[ClusterModel, xr.DataArray, list[int]]:
    """Fit the light (``flat_field``) and the model on a pixel sample.

    Returns the model, the window with the sample's chunks kept in memory, and those chunks
    (none when they would take more than :data:`KEEP_SAMPLE_BYTES`).
    """
    cl, pre = config.cluster, config.preprocess
    positions = sample_positions(window.sizes["time"], cl.max_frames)
    starts = np.cumsum((0, *window.chunks[0]))
    chunks = sorted({int(np.searchsorted(starts, p, side="right")) - 1 for p in positions})
    sizes = [int(starts[i + 1] - starts[i]) for i in chunks]
    frame_bytes = window.sizes["y"] * window.sizes["x"] * 3
    keep = "frame_status" in window.coords  # frames from our readers (not user arrays)
    if keep and sum(sizes) * frame_bytes <= KEEP_SAMPLE_BYTES:
        window = keep_chunks(window, chunks)  # decoded once: light, sample, labels, frames
    else:
        chunks = []
    light = None
    if pre.illumination == "flat_field":
        say(f"light: fitting the lamps' field and reference on {len(positions)} frames")
        light = fit_illumination(window.isel(time=positions))
    features = preprocess(
        window,
        illumination=light if light is not None else pre.illumination,
        clip_limit=pre.clahe.clip_limit,
        tile_grid_size=pre.clahe.tile_grid_size,
        color_space=pre.color_space,
    )
    say(f"cluster: sampling {cl.sample_size} pixels from {len(positions)} frames")
    sample = sample_pixels(
        features,
        sample_size=cl.sample_size,
        random_state=cl.random_state,
        max_frames=cl.max_frames,
    )
    say(f"cluster: sample of {len(sample)} pixels drawn")
    if len(sample) == 0:
        raise InputError(
            f"none of the {len(positions)} frames sampled from {config.input_label} can be "
            "decoded, so no model can be fitted. The file is damaged: fetch it again or "
            "re-encode it."
        )
    model = fit_kmeans(
        sample,
        n_clusters=cl.n_clusters,
        color_space=pre.color_space,
        random_state=cl.random_state,
        preprocess=_model_preprocess(config),
        n_frames_sampled=len(positions),
        illumination=light,
    )
    if cl.n_refits:
        say(f"cluster: {cl.n_refits} bootstrap refits for the stability of the clusters")
        stability = refit_stability(
            sample, model, n_refits=cl.n_refits, random_state=cl.random_state
        )
        model = dataclasses.replace(model, stability=stability)
    reference = load_reference(config)
    if reference is not None:
        model = model.matched_to(reference)
        say(f"cluster: clusters numbered as in {redact(cl.reference)}")
    say(f"cluster: {model!r} after {model.n_epochs} epochs")
    return model, window, chunks


def _label(
    config: Config,
    out: Output,
    frames: xr.DataArray,
    plan: _Plan,
    lock: OutputLock,
    say: Callable,
    progress: bool,
) -> tuple[ClusterModel, list[str]]:
    """Preprocess, fit (or reuse) the model, label and count, and store every chunk."""
    window = crop(frames, rows=config.preprocess.crop.rows, cols=config.preprocess.crop.cols)
    computed: list[str] = []
    kept: list[int] = []
    model: ClusterModel | None = None
    if plan.new_model and not config.cluster.model:
        # Fitted before the output is touched: a fit that the data refuse (blank frames, too
        # few colours) leaves a finished output as it was, even with --overwrite.
        model, window, kept = _fit(config, window, say)
        computed.append("fit")
    _prepare_cube(config, out, window, plan)
    lock.check()
    if model is not None:  # fitted above
        pass
    elif not plan.new_model and out.exists("model.json") and "labels" in out.open_cube():
        model = ClusterModel.load(out.url_of("model.json"), storage_options=out.storage_options)
    elif config.cluster.model:
        model = load_model(config)
        say(f"cluster: applying {model!r} from {config.cluster.model}")
        computed.append("model")
    else:  # a run stopped between its fit and its model.json: fitted again
        model, window, kept = _fit(config, window, say)
        computed.append("fit")
    features = features_of(window, model, config)
    labels = label(features, model, median_filter=config.cluster.median_filter)
    percent = cover(labels)
    per_frame = {"cover": percent, "boundary_pixels": boundary_pixels(features, model)}
    if model.illumination is not None:
        per_frame["quality_measure"] = frame_measures(window, model.illumination)
    if computed:  # a new model relabels everything: its variables start empty
        out.remove("model.json", "segmented.mp4", "segmented")  # painted with the old one
        out.clear_progress("label")
        stale = [
            n
            for n, v in out.open_cube().variables.items()
            if {"cluster", "partner", "class", "measure"} & set(v.dims)
        ]
        out.remove_variables("labels", "statistic", "frame_quality", *stale)  # and indexes
        out.add_variables({"labels": labels, **per_frame})
        out.write_text("model.json", model.to_json())  # last: a run killed before refits
    # The label mark is a chunk's last: a chunk marked labelled has all its marks, so the
    # marks of a run stopped between two of them never count a chunk as labelled that this
    # run writes again.
    marks = [("label", plan.fp_model)]
    variables = {"labels": labels, **per_frame, "frame_status": labels["frame_status"]}
    if config.ingest.store_frames:
        marks.insert(0, ("frames", plan.fp_cube))
        variables["frames"] = window
    n_chunks = len(plan.bounds)
    todo = {i for stage, fp in marks for i in pending(out.done_chunks(stage, fp), n_chunks)}
    relabel = bool(pending(out.done_chunks("label", plan.fp_model), n_chunks))
    if todo:
        say(f"label: {len(todo)} of {n_chunks} chunks of {labels.sizes['time']} frames")
        for stage, fp in marks:
            out.prepare_progress(stage, fp)
        order = sorted(todo, key=lambda i: (i not in kept, i))  # kept chunks are freed first
        tasks = chunk_writes(out, variables, marks=marks, chunks=order, fence=lock.fence())
        hold = [features]  # its kept chunks, until the tasks that read them are submitted
        del features, labels, percent, variables, window, per_frame
        lock.check()
        compute_tasks(
            tasks, desc="label", progress=progress, hold=hold, retries=config.dask.retries
        )
        computed.append("label" if relabel else "frames")  # frames only: same labels
    for stage, fp in marks:
        missing = pending(out.done_chunks(stage, fp), len(plan.bounds))
        if missing:
            raise OutputError(
                f"{stage} did not finish: {len(missing)} of {len(plan.bounds)} chunks are "
                f"missing in {out.store_url} (first: chunk {missing[0]}). Run the same command "
                "again to resume."
            )
    return model, computed


def _warn_undecodable(cube: xr.Dataset, source: str) -> None:
    """Warn about the frames that did not decode (their labels are no data)."""
    status = np.asarray(cube["frame_status"].values)
    skipped = np.flatnonzero(status == FRAME_UNDECODABLE)
    if len(skipped):
        numbers = cube["frame"].values[skipped]
        shown = ", ".join(str(int(p)) for p in numbers[:10])
        more = ", ..." if len(skipped) > 10 else ""
        warnings.warn(
            f"{len(skipped)} of {len(status)} frames of {source} cannot be decoded and were "
            f"skipped (frame {shown}{more}): their labels are no_data and their cover is "
            "empty in cover.csv; frame_status in cube.zarr marks them. To analyse them, fetch "
            "the input again or re-encode it.",
            SedimentXRWarning,
            stacklevel=4,
        )


def _frame_quality(cube: xr.Dataset, config: Config) -> xr.DataArray:
    """``frame_quality`` of the stored frames with the config's thresholds."""
    status = cube["frame_status"]
    if "quality_measure" in cube:
        flags = flag_frames(cube["quality_measure"].load(), status, config.quality.thresholds())
    else:  # no light model (illumination: clahe or none): only undecodable frames are known
        usual = np.tile(np.array([1.0, 0.0, 1.0, 1.0, 0.0]), (cube.sizes["time"], 1))
        empty = xr.DataArray(
            usual,
            dims=["time", "measure"],
            coords={"time": cube["time"], "measure": list(MEASURES)},
        )
        flags = flag_frames(empty, status)
    return flags.assign_coords({"time": cube["time"]}).drop_vars(
        [c for c in flags.coords if c != "time"]
    )


def _outputs(
    config: Config,
    out: Output,
    frames: xr.DataArray,
    model: ClusterModel,
    plan: _Plan,
    computed: list[str],
    lock: OutputLock,
    say: Callable,
) -> RunResult:
    """Classes, trends, tables and the report, from the stored cover; then mark complete."""
    out.gather_per_frame()
    cube = out.open_cube()
    _warn_undecodable(cube, config.input_label)
    series = {"cover": cube["cover"].load()}
    old = [n for n, v in cube.data_vars.items() if v.attrs.get("sediment_xr_role") == TREND_ROLE]
    derived = ("class_cover_low", "class_cover_high", "cover_low", "cover_high")
    out.remove_variables(*old, *derived, "statistic", "class_cover", "class")  # classes change
    quality = _frame_quality(cube, config)
    pixels = cube.sizes["y"] * cube.sizes["x"]
    boundary = cube["boundary_pixels"].load()
    low, high = cover_interval(series["cover"], boundary, model, pixels)
    out.add_variables({"frame_quality": quality, "cover_low": low, "cover_high": high})
    if config.classes:
        class_cover = merge_classes(series["cover"], config.classes)
        names = np.array(list(config.classes), object)  # str, not numpy's fixed width
        class_cover = class_cover.assign_coords({"class": ("class", names, CLASS_ATTRS)})
        c_low, c_high = class_interval(class_cover, boundary, model, config.classes, pixels)
        out.add_variables(
            {"class_cover": class_cover, "class_cover_low": c_low, "class_cover_high": c_high}
        )
        series["class_cover"] = class_cover
    table = cover_table(series["cover"], series.get("class_cover"))
    table["quality"] = flag_names(quality.values)
    good = quality == 0
    fitted = (
        series if config.quality.include_flagged else {k: v.where(good) for k, v in series.items()}
    )
    trend = fit_trends(xr.Dataset(fitted))
    out.add_variables(
        trend_variables(trend, model.n_clusters, list(config.classes) if config.classes else [])
    )
    clusters = clusters_summary(model, series["cover"], config.classes)
    out.write_text("cover.csv", table.to_csv(index=False, float_format="%.6f"))
    long = cover_long(
        series["cover"], series.get("class_cover"), run=config.run_name, quality=table["quality"]
    )
    out.write_bytes("cover.parquet", long.to_parquet(index=False))
    out.write_text("trend.csv", trend.to_csv(index=False, float_format="%.8g"))
    out.write_text("trend_summary.txt", summary_text(xr.Dataset(fitted), trend))
    out.write_text("clusters.json", json.dumps(clusters, indent=2))
    out.write_text("config.resolved.yaml", dump_config(config))
    remove_stale_report_files(out, plan.old_report or {}, redacted_dict(config)["report"])
    computed += write_report_files(
        out,
        cube,  # opened once: a second open makes the same dask keys with other specs
        frames,
        model,
        config,
        series=series,
        trend=trend,
        clusters=clusters["clusters"],
        relabelled="label" in computed,
        log=say,
        quality=list(table["quality"]),
        fence=lock.fence(),
    )
    acdd = coverage_attrs(cube["time"].values)
    files = [name for name in ASSETS if name == "cube.zarr" or out.exists(name)]
    item = run_item(
        cube,
        run=config.run_name,
        files=files,
        classes=list(config.classes or ()),
        time_chunk=plan.state.get("chunk_frames"),
        properties={"created": acdd["date_created"]},
    )
    out.write_text("item.json", item_json(item))
    plan.state["stages"] = {"label": "complete", "outputs": "complete"}
    plan.state["report_written"] = redacted_dict(config)["report"]  # what the files show
    previous = cube.attrs.get("history", "")
    line = history_line(f"run ({', '.join(computed) or 'outputs only'})")
    out.update_attrs(
        history=f"{previous}\n{line}" if previous else line,
        **acdd,
    )
    lock.check()
    out.set_state(plan.state, complete=True)
    out.consolidate()  # last: only a finished cube has a copy of its metadata
    say(f"done: {redact(config.output)}")
    return RunResult(
        output=config.output,
        cover=table,
        trend=trend,
        model=model,
        computed=tuple(computed),
        storage_options=config.output_options,
    )
