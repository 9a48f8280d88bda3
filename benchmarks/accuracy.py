"""Accuracy against planted truth: methods x scenes, written to ``benchmarks/accuracy.md``.

Scenes are :func:`sediment_xr.testing.realistic_series` (a real SHR frame turned into textured
sediment with pale pebbles, textured mat growing 12 -> 30 %, vignetting, flicker, noise, MJPEG),
``steady`` (lamp as new, no events) and ``ageing`` (the lamp loses 30 % of its light, blue
first, and 12 % of the frames carry an event), three seeds each. Every method is built from
the public functions; clusters are named as an analyst names them, each after what most of its
pixels are (``sediment_xr.evaluate.match_clusters`` against the true masks). Errors are on the
frames whose event is ``ok`` (the flagged ones are what the quality flags are for).

    python benchmarks/accuracy.py                    # the table (~10 min on 2 cores)
    python benchmarks/accuracy.py --quick            # one seed, small frames
    python benchmarks/accuracy.py --h264             # the default path on 1024 x 1024 H.264
    python benchmarks/accuracy.py --intervals 0 1 2  # the default config's intervals, 512 x 512

The per-frame cost column is the preprocessing alone (one thread, 1024 x 400 crop).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

import sediment_xr as sx
from sediment_xr.cluster import refit_stability
from sediment_xr.evaluate import match_clusters
from sediment_xr.quality import FLAGS, flag_frames, frame_measures
from sediment_xr.testing import realistic_series
from sediment_xr.uncertainty import boundary_pixels, class_interval


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    illumination: str = "flat_field"
    color_space: str = "bgr"
    n_clusters: int = 12
    median_filter: int = 3
    first_frame: bool = False  # the lesson fits KMeans on the first frame only


METHODS = [
    Method(
        "lesson: CLAHE on V, k=4 on frame 0",
        "clahe",
        n_clusters=4,
        median_filter=0,
        first_frame=True,
    ),
    Method("CLAHE on V, k=4, sample of all frames", "clahe", n_clusters=4, median_filter=0),
    Method("CLAHE on V, Lab, k=12", "clahe", color_space="lab", median_filter=0),
    Method("raw BGR, k=12", "none", median_filter=0),
    Method("raw Lab, k=12", "none", color_space="lab", median_filter=0),
    Method("flat field, k=4", n_clusters=4, median_filter=0),
    Method("flat field, k=8", n_clusters=8, median_filter=0),
    Method("flat field, k=8, 3x3 median", n_clusters=8),
    Method("flat field, k=12", median_filter=0),
    Method("flat field, k=12, 3x3 median (default)"),
    Method("flat field, k=12, 5x5 median", median_filter=5),
    Method("flat field, Lab, k=12, 3x3 median", color_space="lab"),
]
SCENES = {"steady": {}, "ageing": {"lamp_ageing": 0.3, "events": 0.12}}


def evaluate(scene, method: Method) -> dict:
    rows = scene.attrs["crop_rows"]
    window = sx.crop(scene["frames"], rows=[-rows, None])
    light = method.illumination
    if light == "flat_field":
        light = sx.fit_illumination(window)
    features = sx.preprocess(window, illumination=light, color_space=method.color_space)
    source = features.isel(time=[0]) if method.first_frame else features
    sample = sx.sample_pixels(source, sample_size=200_000)
    model = sx.fit_kmeans(
        sample,
        n_clusters=method.n_clusters,
        color_space=method.color_space,
        illumination=light if not isinstance(light, str) else None,
    )
    model = dataclasses.replace(model, stability=refit_stability(sample, model))
    labels = sx.label(features, model, median_filter=method.median_filter)
    masks = scene["mask"].values
    classes = match_clusters(labels, masks, class_names=["sediment", "mat"])
    classes.setdefault("mat", [])
    classes = {k: v for k, v in classes.items() if v}
    cover = sx.merge_classes(sx.cover(labels), classes)
    mat = cover.sel({"class": "mat"}).values if "mat" in classes else np.zeros(len(masks))
    truth = scene["true_cover"].values
    good = scene["event"].values == "ok"
    t = np.arange(len(truth))
    slope = np.polyfit(t[good], mat[good], 1)[0] / np.polyfit(t[good], truth[good], 1)[0]
    pixels = labels.sizes["y"] * labels.sizes["x"]
    boundary = boundary_pixels(features, model).compute()
    row = {
        "mae_pp": float(np.abs(mat - truth)[good].mean()),
        "bias_pp": float((mat - truth)[good].mean()),
        "slope_ratio": float(slope),
        **interval_scores(cover, boundary, model, classes, pixels, truth, good),
    }
    if not isinstance(light, str):
        flags = np.asarray(FLAGS, object)[flag_frames(frame_measures(window, light)).values]
        events = ~good
        row["events_caught"] = float((flags != "ok")[events].mean()) if events.any() else np.nan
        row["good_flagged"] = float((flags != "ok")[good].mean())
    return row


def interval_scores(cover, boundary, model, classes, pixels, truth, good) -> dict:
    """Share of good frames whose true mat cover the mat interval holds, and its mean width.

    ``interval_*``: the interval as the package makes it; ``pixel_interval_*``: without the
    classes' mixing term (``class_interval(..., mixing=False)``, the interval before issue 11).
    """
    row = {}
    for prefix, mixing in (("", True), ("pixel_", False)):
        if "mat" not in classes:
            row |= {f"{prefix}interval_coverage": np.nan, f"{prefix}interval_width_pp": np.nan}
            continue
        low, high = class_interval(cover, boundary, model, classes, pixels, mixing=mixing)
        low = low.sel({"class": "mat"}).values
        high = high.sel({"class": "mat"}).values
        held = (truth >= low) & (truth <= high)
        row[f"{prefix}interval_coverage"] = float(held[good].mean())
        row[f"{prefix}interval_width_pp"] = float((high - low)[good].mean())
    return row


def interval_check(seeds, n_frames: int = 36, size: int = 512) -> pd.DataFrame:
    """The default config's intervals on the steady and ageing scenes of the given seeds."""
    default = next(m for m in METHODS if m.name.endswith("(default)"))
    rows = []
    for seed in seeds:
        for scene_name, kwargs in SCENES.items():
            scene = realistic_series(n_frames, size=size, seed=seed, **kwargs)
            row = {"scene": scene_name, "seed": seed, **evaluate(scene, default)}
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    return pd.DataFrame(rows)


def preprocess_cost(method: Method, n_frames: int = 24) -> float:
    """ms per 1024 x 400 frame of the preprocessing alone, one thread."""
    import cv2

    cv2.setNumThreads(1)
    scene = realistic_series(n_frames, seed=0)
    window = sx.crop(scene["frames"], rows=[-400, None])
    light = (
        sx.fit_illumination(window) if method.illumination == "flat_field" else method.illumination
    )
    sx.preprocess(window.isel(time=[0]), illumination=light, color_space=method.color_space).load()
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        sx.preprocess(window, illumination=light, color_space=method.color_space).load()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / n_frames


def h264_check(seeds, workdir: Path) -> pd.DataFrame:
    """The default config's path on H.264 videos of 1024 x 1024 ageing scenes with events.

    ``open_video`` -> crop -> light fitted on the sample's frames -> 12 clusters with 4
    bootstrap refits -> labels with and without the 3 x 3 median -> classes named by
    majority -> class intervals. Returns one row per seed and median setting.
    """
    from sediment_xr.testing import write_video

    events = {"dark": [4], "moved": [9], "occluded": [13, 21], "turbid": [17], "overexposed": [19]}
    rows = []
    for seed in seeds:
        scene = realistic_series(24, seed=seed, lamp_ageing=0.3, events=events)
        video = write_video(scene["frames"].values, workdir / f"ageing_{seed}.mp4", crf=18)
        frames = sx.open_video(
            video, start_time="2022-06-01", frame_interval="17h", chunk_frames=6
        )
        window = sx.crop(frames, rows=[-400, None])
        light = sx.fit_illumination(window.isel(time=sx.sample_positions(24)))
        features = sx.preprocess(window, illumination=light)
        sample = sx.sample_pixels(features)
        model = sx.fit_kmeans(sample, n_clusters=12, illumination=light)
        model = dataclasses.replace(model, stability=refit_stability(sample, model))
        boundary = boundary_pixels(features, model).compute()
        masks, good = scene["mask"].values, scene["event"].values == "ok"
        truth, t = scene["true_cover"].values, np.arange(24)
        for median in (0, 3):
            labels = sx.label(features, model, median_filter=median).compute()
            classes = match_clusters(labels, masks, class_names=["sediment", "mat"])
            cover = sx.merge_classes(sx.cover(labels), classes)
            mat = cover.sel({"class": "mat"}).values
            slope = np.polyfit(t[good], mat[good], 1)[0] / np.polyfit(t[good], truth[good], 1)[0]
            rows.append(
                {
                    "seed": seed,
                    "median_filter": median,
                    "mae_pp": float(np.abs(mat - truth)[good].mean()),
                    "bias_pp": float((mat - truth)[good].mean()),
                    "slope_ratio": float(slope),
                    **interval_scores(cover, boundary, model, classes, 400 * 1024, truth, good),
                }
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("accuracy_results.csv")))
    parser.add_argument("--h264", type=int, nargs="*", metavar="SEED", help="only the H.264 check")
    parser.add_argument("--workdir", default="/tmp/sx_accuracy")
    parser.add_argument(
        "--intervals", type=int, nargs="+", metavar="SEED", help="only the intervals, 512 x 512"
    )
    args = parser.parse_args(argv)
    if args.intervals:
        table = interval_check(args.intervals)
        table.to_csv(args.out, index=False, float_format="%.4f")
        return 0
    if args.h264 is not None:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        table = h264_check(args.h264 or (21, 22, 23, 24, 25, 26), Path(args.workdir))
        table.to_csv(args.out, index=False, float_format="%.4f")
        print(table.groupby("median_filter").mean(numeric_only=True).round(3).to_string())
        return 0
    seeds, size, n = ((0,), 256, 24) if args.quick else ((0, 1, 2), 512, 36)
    rows = []
    for seed in seeds:
        for scene_name, kwargs in SCENES.items():
            scene = realistic_series(n, size=size, seed=seed, **kwargs)
            for method in METHODS:
                row = evaluate(scene, method)
                rows.append({"method": method.name, "scene": scene_name, "seed": seed, **row})
                print(
                    f"{scene_name} seed {seed} {method.name}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
                    flush=True,
                )
    table = pd.DataFrame(rows)
    costs = {m.name: preprocess_cost(m) for m in METHODS}
    table["preprocess_ms_per_frame"] = table["method"].map(costs)
    table.to_csv(args.out, index=False, float_format="%.4f")
    summary = table.groupby(["scene", "method"], sort=False).mean(numeric_only=True)
    print(summary.drop(columns="seed").round(3).to_string())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, sediment_xr {sx.__version__}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
