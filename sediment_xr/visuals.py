"""The report files of a run: ``segmented.mp4``, ``segmented/*.png`` and ``report.html``.

Everything is painted from the stored labels, which are on the grid of the analysed window:
no window is ever inferred from the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._provenance import package_versions
from sediment_xr.config import Config, dump_config
from sediment_xr.frames import FRAME_UNDECODABLE
from sediment_xr.model import ClusterModel
from sediment_xr.store import Output
from sediment_xr.trend import summary_statistics

if TYPE_CHECKING:
    from sediment_xr.lock import LockFence

__all__ = [
    "example_position",
    "remove_stale_report_files",
    "report_inputs",
    "write_report_files",
]


def example_position(cube: xr.Dataset, wanted: int | None) -> int:
    """The example frame: ``wanted`` (or the middle), or the nearest frame that decoded."""
    n_time = cube.sizes["time"]
    pos = n_time // 2 if wanted is None else min(int(wanted), n_time - 1)
    if "frame_status" not in cube.variables:
        return pos
    good = np.flatnonzero(np.asarray(cube["frame_status"].values) != FRAME_UNDECODABLE)
    return pos if not len(good) else int(good[np.argmin(np.abs(good - pos))])


def _good_frames(
    series: Mapping[str, xr.DataArray], quality: Sequence[str] | None, config: Config
) -> dict[str, xr.DataArray]:
    """The series on the frames the trends use (all, with ``quality.include_flagged``)."""
    if quality is None or config.quality.include_flagged:
        return dict(series)
    good = xr.DataArray(np.asarray(quality) == "ok", dims=["time"])
    return {name: value.where(good) for name, value in series.items()}


def report_inputs(
    cube: xr.Dataset,
    frames: xr.DataArray,
    model: ClusterModel,
    config: Config,
    series: Mapping[str, xr.DataArray],
    trend: pd.DataFrame,
    clusters: Sequence[Mapping[str, Any]],
    quality: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`sediment_xr.report.build_report` for a stored run."""
    from sediment_xr.preprocess import preprocess
    from sediment_xr.segment import overlay, paint

    pos = example_position(cube, config.report.example_frame)
    labels = cube["labels"].isel(time=[pos])
    if "frames" in cube:
        original = cube["frames"].isel(time=[pos]).load()
    else:  # not stored: decode it again, here (one chunk, no scheduler round trip)
        window = frames.isel(time=[pos]).sel(y=labels["y"], x=labels["x"])
        original = window.compute(scheduler="synchronous")
    pre = config.preprocess
    light = model.illumination if model.illumination is not None else pre.illumination
    enhanced = preprocess(
        original,
        illumination=light,
        clip_limit=pre.clahe.clip_limit,
        tile_grid_size=pre.clahe.tile_grid_size,
        color_space="rgb",
    )
    segmented = paint(labels, model.center_rgb).load()
    times = pd.DatetimeIndex(cube["time"].values)
    rows, cols = cube.attrs.get("crop_rows", [0, 0]), cube.attrs.get("crop_cols", [0, 0])
    height, width = cube.attrs.get("frame_shape", [cube.sizes["y"], cube.sizes["x"]])
    return {
        "cover": series["cover"],
        "class_cover": series.get("class_cover"),
        "trend": trend,
        "stats": summary_statistics(xr.Dataset(_good_frames(series, quality, config))),
        "clusters": clusters,
        "example": {
            "original": original.values[0],
            "enhanced": enhanced.values[0],
            "segmented": segmented.values[0],
            "overlay": overlay(original, segmented).values[0],
            "label": f"frame {pos} at {times[pos].isoformat()}",
        },
        "summary": {
            "input": config.input_label,
            "output": config.output,
            "frames": str(cube.sizes["time"]),
            "time span": f"{times[0].isoformat()} to {times[-1].isoformat()}",
            "frame size": f"{width} x {height} pixels",
            "analysed window": f"rows {rows[0]}-{rows[1] - 1}, columns {cols[0]}-{cols[1] - 1}",
            "clusters": f"{model.n_clusters} ({model.color_space}), sample of "
            f"{model.sample_size} pixels from {model.n_frames_sampled} frames",
        },
        "config_yaml": dump_config(config),
        "versions": package_versions(),
        "quality": None if quality is None else list(quality),
    }


def remove_stale_report_files(out: Output, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Remove the report files a changed ``report`` section no longer asks for as they are."""
    if not old:
        return
    if (old.get("video"), old.get("video_fps")) != (new["video"], new["video_fps"]):
        out.remove("segmented.mp4")
    if old.get("png_frames") != new["png_frames"]:
        out.remove("segmented")
    if not new["html"]:
        out.remove("report.html")


def write_report_files(
    out: Output,
    cube: xr.Dataset,
    frames: xr.DataArray,
    model: ClusterModel,
    config: Config,
    *,
    series: Mapping[str, xr.DataArray],
    trend: pd.DataFrame,
    clusters: Sequence[Mapping[str, Any]],
    relabelled: bool,
    log: Any,
    quality: Sequence[str] | None = None,
    fence: LockFence | None = None,
) -> list[str]:
    """Write what ``config.report`` asks for; returns what was (re)made.

    ``segmented.mp4`` is painted again only when the labels changed (``relabelled``) or it
    is missing: on the workers, one segment per time chunk, joined here without encoding
    again (:func:`sediment_xr.segment.write_segmented_video_in_output`); its tasks check
    ``fence`` (the run's lock) before they write.
    """
    from sediment_xr.segment import write_segmented_pngs, write_segmented_video_in_output

    rep = config.report
    labels = cube["labels"]
    made = []
    if rep.video and (relabelled or not out.exists("segmented.mp4")):
        log(f"segmented.mp4: painting the stored labels, {labels.data.numblocks[0]} segments")
        write_segmented_video_in_output(
            labels,
            model.center_rgb,
            out,
            "segmented.mp4",
            fps=rep.video_fps,
            fence=fence,
            retries=config.dask.retries,
        )
        made.append("video")
    if rep.png_frames:
        write_segmented_pngs(labels, model.center_rgb, rep.png_frames, out.write_bytes)
    if rep.html:
        from sediment_xr.report import build_report

        html = build_report(
            **report_inputs(cube, frames, model, config, series, trend, clusters, quality)
        )
        out.write_text("report.html", html)
    return made
