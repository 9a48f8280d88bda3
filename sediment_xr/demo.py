"""``sediment-xr demo``: the whole pipeline on a realistic series with a known mat trend.

The sample is :func:`sediment_xr.testing.realistic_series`: a real SHR frame turned into a
scene as hard as a real camera's (textured sediment, pale pebbles, textured mat growing
from 12 to 30 %, vignetting, flicker, an ageing lamp, noise, compression, and a few frames
with the lights off, a bumped camera, a fish, a cloud of sediment or a flash), written as an
H.264 video with the planted truth beside it. The demo runs the default config (only the
crop and the time axis given), names the clusters as an analyst would (each after what most
of its pixels are), reruns for the named classes (only the tables are recomputed), and
prints the recovered trend against the planted one, the frames it flagged against the
injected events, and how often the 95 % intervals hold the true cover.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sediment_xr._fs import exclusive_temp
from sediment_xr.config import Config, CropConfig, DaskConfig, IngestConfig, PreprocessConfig

#: How the demo sample is made (see :func:`sediment_xr.testing.realistic_series`).
DEMO_START = "2022-06-01T00:00:00"
DEMO_INTERVAL = "17h"
DEMO_SCENE = {"start_cover": 12.0, "end_cover": 30.0, "lamp_ageing": 0.3, "events": 0.1}


def demo_config(
    video: str,
    output: str,
    scheduler: str | None = None,
    classes: dict[str, tuple[int, ...]] | None = None,
) -> Config:
    """The config the demo runs: the defaults, the crop and the time axis (and classes)."""
    return Config(
        input=video,
        output=output,
        ingest=IngestConfig(start_time=DEMO_START, frame_interval=DEMO_INTERVAL, chunk_frames=8),
        preprocess=PreprocessConfig(crop=CropConfig(rows=(-400, None))),
        classes=classes,
        dask=DaskConfig(scheduler=scheduler, n_workers=2, threads_per_worker=1),
    )


def name_by_truth(labels: np.ndarray, truth: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Classes as an analyst names them: each cluster after what most of its pixels are.

    ``truth`` holds 1 for mat, 0 for sediment and -1 for pixels hidden by an occluder.
    """
    seen = truth >= 0
    mat, other = [], []
    for cluster in range(int(labels.max()) + 1):
        pixels = (labels == cluster) & seen
        (mat if pixels.any() and truth[pixels].mean() > 0.5 else other).append(cluster)
    return {"sediment": tuple(other), "mat": tuple(mat)}


def _make_sample(inputs: Path, n_frames: int) -> tuple[Path, Path]:
    """Write the sample video, its truth table and its true masks (once)."""
    from sediment_xr.testing import realistic_series, write_video

    video = inputs / f"shr_realistic_{n_frames}.mp4"
    truth_csv = inputs / f"truth_{n_frames}.csv"
    masks = inputs / f"truth_masks_{n_frames}.npz"
    if video.exists() and truth_csv.exists() and masks.exists():
        return video, truth_csv
    series = realistic_series(
        n_frames, start_time=DEMO_START, frame_interval=DEMO_INTERVAL, **DEMO_SCENE
    )
    # a new file of unpredictable name, never a link planted at a known one
    fd, partial = exclusive_temp(str(video), suffix=".mp4")
    os.close(fd)
    try:
        write_video(series["frames"], partial, codec="libx264", fps=10, crf=18)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    np.savez_compressed(masks, mask=series["mask"].values)
    pd.DataFrame(
        {
            "time": pd.DatetimeIndex(series.time.values).strftime("%Y-%m-%dT%H:%M:%S"),
            "frame": np.arange(n_frames),
            "true_mat_percent": series["true_cover"].values,
            "event": series["event"].values,
        }
    ).to_csv(truth_csv, index=False, float_format="%.6f")
    os.replace(partial, video)  # last: a sample is complete when its video exists
    return video, truth_csv


def run_demo(
    output: str | os.PathLike[str],
    *,
    n_frames: int = 48,
    scheduler: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Make the sample video, run the pipeline on it, and return the output folder.

    The sample (see the module docstring) is written under ``output/input`` with
    ``truth_<n>.csv`` (planted cover and injected event per frame) and
    ``truth_masks_<n>.npz`` (the true mat mask of every frame) beside it.
    """
    from sediment_xr.exceptions import ConfigError
    from sediment_xr.pipeline import run
    from sediment_xr.scheduler import dask_client

    if n_frames < 3 or n_frames > 2000:
        raise ConfigError(f"demo --frames needs 3 to 2000 frames, but got {n_frames}.")
    out = Path(output).resolve()
    inputs = out / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    video, truth_csv = _make_sample(inputs, n_frames)
    masks = np.load(inputs / f"truth_masks_{n_frames}.npz")["mask"]
    config = demo_config(str(video), str(out / "results"), scheduler)
    with dask_client(scheduler, config.dask):
        result = run(config, progress=progress, overwrite=overwrite)
        classes = name_by_truth(np.asarray(result.open()["labels"].values), masks)
        config = demo_config(str(video), str(out / "results"), scheduler, classes)
        result = run(config, progress=progress, overwrite=overwrite)
    if progress:
        print(demo_summary(result, pd.read_csv(truth_csv), classes), flush=True)
    return out / "results"


def demo_summary(result, truth: pd.DataFrame, classes: dict[str, tuple[int, ...]]) -> str:
    """The demo's lines: recovered against planted trend, flags, interval coverage."""
    cube = result.open()
    quality = result.cover["quality"].to_numpy()
    good = quality == "ok"
    true = truth["true_mat_percent"].to_numpy()
    mat = result.cover["mat"].to_numpy()
    days = (pd.to_datetime(truth["time"]) - pd.Timestamp(DEMO_START)) / pd.Timedelta(days=1)
    planted = np.polyfit(days[good], true[good], 1)[0]
    row = result.trend.set_index("name").loc["mat"]
    low = cube["class_cover_low"].sel({"class": "mat"}).values
    high = cube["class_cover_high"].sel({"class": "mat"}).values
    held = ((true >= low) & (true <= high))[good]
    events = truth["event"].to_numpy() != "ok"
    caught = (quality != "ok")[events].mean() if events.any() else float("nan")
    false = (quality != "ok")[~events].mean()
    return "\n".join(
        [
            f"demo: clusters named by what most of their pixels are: mat = {list(classes['mat'])}",
            f"demo: mat cover trend {row['slope_per_day']:+.4f} %/day (planted "
            f"{planted:+.4f} %/day, ratio {row['slope_per_day'] / planted:.3f}), "
            f"95 % CI {row['ci_low_hac']:+.4f} to {row['ci_high_hac']:+.4f} (HAC), "
            f"{int(row['n'])} good frames",
            f"demo: per-frame error vs truth on good frames: mean "
            f"{np.abs(mat - true)[good].mean():.2f} pp, "
            f"max {np.abs(mat - true)[good].max():.2f} pp",
            f"demo: 95 % intervals hold the true cover on {held.mean():.0%} of good frames "
            f"(mean width {(high - low)[good].mean():.2f} pp)",
            f"demo: flagged {int((~good).sum())} frames ({', '.join(sorted(set(quality[~good])))}"
            f"); {caught:.0%} of injected events caught, {false:.0%} of other frames flagged",
        ]
    )
