"""Benchmarks of sediment_xr against the K-means segmentation lesson's loop.

One run measures, on the same generated 1024 x 1024 H.264 video (``sediment_xr.testing``):

* ``lesson``: a faithful re-implementation of the lesson's loop (extract PNGs, CLAHE on the HSV
  value, SLIC, ``KMeans.predict``, ``Counter``, write the segmented image and a text file per
  frame), run as a subprocess at two video lengths;
* ``sx``: ``sediment-xr run CONFIG.yaml`` as a subprocess (a LocalCluster of 2 worker
  processes) at two video lengths, with the default report (HTML + segmented video) and
  without it, sampling the RSS and CPU time of every worker process;
* ``workers``: the same without report, with 1 worker;
* ``kernel``: the label (lookup table) and count kernels against ``KMeans.predict`` +
  ``Counter``;
* ``compress``: Zarr v3 codecs for the stored frames (uint8) and labels (int8);
* ``breakdown``: the per-frame cost of each step of the pipeline's tasks, in one process.

Steady-state per-frame time is ``(t(N2) - t(N1)) / (N2 - N1)`` of the wall time (and of the
CPU time of the whole process tree) of the command. Every measurement records the load
average of the machine (others may be using it); timed runs are repeated, interleaved, and
medians are reported.

Usage::

    python benchmarks/run_benchmarks.py --snapshot HEAD --workdir /tmp/sxbench
        # the full run: ~21 min on 2 quiet cores, ~26 min on busy ones, plus ~3.5 min to
        # generate the 1200-frame video the first time (kept in --workdir)
    python benchmarks/run_benchmarks.py --quick         # a smoke run (~3-5 min)
    python benchmarks/run_benchmarks.py --only kernel compress
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
SECTIONS = ("kernel", "compress", "breakdown", "lesson", "sx", "workers")
MIB = 1024**2


# ------------------------------------------------------------------------------------------
# machine, load, small helpers
def load_average() -> list[float]:
    """1, 5 and 15 minute load averages of the machine."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS, Python and package versions of this machine."""
    from importlib.metadata import PackageNotFoundError, version

    import psutil

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in (
        "sediment_xr",
        "numpy",
        "dask",
        "distributed",
        "xarray",
        "zarr",
        "numcodecs",
        "numba",
        "scikit-learn",
        "scikit-image",
        "dask-ml",
        "opencv-python-headless",
        "av",
        "psutil",
        "threadpoolctl",
    ):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        packages["blas/openmp"] = sorted(
            {
                f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                for i in threadpool_info()
            }
        )
    env = {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OMP_", "OPENBLAS_"))}
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "ram_available_gib": round(psutil.virtual_memory().available / 1024**3, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": packages,
        "env": env,
        "load_average": load_average(),
    }


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def say(message: str) -> None:
    """Print a progress line (with the load average) to stderr."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp} load {load_average()}] {message}", file=sys.stderr, flush=True)


def best_of(func: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Run ``func`` ``repeats`` times; return the best and median seconds and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return min(times), median(times), result


def use_snapshot(ref: str, workdir: Path) -> dict[str, str]:
    """Import sediment_xr from ``git archive REF`` of this repository (here and in children).

    Others may be editing the working tree while the benchmark runs; a snapshot of a commit
    keeps every run of one benchmark on the same code. Subprocesses get it through
    ``PYTHONPATH`` (ahead of the editable install's finder).
    """
    repo = HERE.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = workdir / f"sediment_xr_{commit[:12]}"
    if not (target / "sediment_xr" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit, "sediment_xr"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    subject = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%s", commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"commit": commit, "subject": subject, "path": str(target)}


# ------------------------------------------------------------------------------------------
# the video
def make_videos(
    workdir: Path, lengths: Sequence[int], *, size: int = 1024, block: int = 120
) -> dict[int, Path]:
    """Write H.264 videos of the synthetic mat-growth series, one per length (prefixes).

    Frames come from :func:`sediment_xr.testing.synthetic_series` (the bundled SHR frame with
    white mat growing, lighting flicker and sensor noise), generated ``block`` frames at a
    time so that memory stays small: block ``b`` continues the cover of block ``b - 1``
    (``start_cover = 20 + slope * first_frame``, same seed, so the same mat pattern grows
    from 20 % to 50 % of the analysed area over the longest video). Every shorter video holds
    the first frames of the longest one. Encoding is that of
    :func:`sediment_xr.testing.write_video` (libx264, yuv420p, crf 18, GOP 8, 10 frames/s),
    streamed. Videos are kept in ``workdir`` and reused by later runs.
    """
    import av

    from sediment_xr.testing import synthetic_series

    longest = max(lengths)
    slope = 30.0 / longest
    paths = {n: workdir / f"synthetic_{size}px_{n}of{longest}.mp4" for n in lengths}
    if all(p.exists() and p.stat().st_size > 0 for p in paths.values()):
        return paths
    say(f"generating {longest} frames of {size} x {size}, writing {sorted(lengths)} H.264")
    writers = {}
    with contextlib.ExitStack() as stack:
        for n, path in paths.items():
            container = stack.enter_context(av.open(str(path) + ".partial.mp4", mode="w"))
            stream = container.add_stream("libx264", rate=10)
            stream.height, stream.width = size, size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "g": "8"}  # as sediment_xr.testing.write_video
            writers[n] = (container, stream)
        for first in range(0, longest, block):
            count = min(block, longest - first)
            ds = synthetic_series(
                count, size=size, start_cover=20.0 + slope * first, slope=slope, seed=0
            )
            for i, frame in enumerate(ds["frames"].values):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for n, (container, stream) in writers.items():
                    if first + i < n:
                        for packet in stream.encode(vf):
                            container.mux(packet)
        for container, stream in writers.values():
            for packet in stream.encode():
                container.mux(packet)
    for path in paths.values():
        os.replace(str(path) + ".partial.mp4", path)
    return paths


def decode_frames(video: Path, count: int, start: int = 0) -> np.ndarray:
    """Decode ``count`` frames from ``start`` as uint8 RGB ``(count, y, x, 3)``."""
    import sediment_xr as sx

    frames = sx.open_video(str(video), start_time="2022-06-01", frame_interval="17h")
    return np.asarray(frames.isel(time=slice(start, start + count)).values)


# ------------------------------------------------------------------------------------------
# running a command while sampling memory
@dataclass
class Monitored:
    """A finished subprocess: wall time, stderr fragments with times, peak memory."""

    cmd: list[str]
    wall_s: float
    returncode: int
    stdout: str
    events: list[tuple[float, str]]
    peak_rss_main_mib: float
    peak_rss_by_pid: dict[int, dict[str, Any]] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    cpu_s: float = float("nan")
    cpu_sampled_s: float = float("nan")

    def worker_peaks_mib(self) -> list[float]:
        """Peak RSS of each dask worker process (children started by multiprocessing)."""
        return sorted(
            (v["peak_rss_mib"] for v in self.peak_rss_by_pid.values() if v["kind"] == "worker"),
            reverse=True,
        )

    def first(self, pattern: str) -> float | None:
        """Time (s after start) of the first stderr fragment matching ``pattern``."""
        rx = re.compile(pattern)
        for t, text in self.events:
            if rx.search(text):
                return t
        return None


def _child_kind(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "resource_tracker" in text:
        return "resource_tracker"
    if "spawn_main" in text or "forkserver" in text or "multiprocessing" in text:
        return "worker"
    return "other"


def run_monitored(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, interval: float = 0.05
) -> Monitored:
    """Run ``cmd``; time its stderr fragments (split at CR/LF) and sample RSS of its tree."""
    import psutil

    load_before = load_average()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
    )
    events: list[tuple[float, str]] = []
    out_parts: list[bytes] = []
    peaks: dict[int, dict[str, Any]] = {}
    cpu_seen: dict[int, float] = {}
    main_peak = [0]

    def read_stderr() -> None:
        pending = b""
        while True:
            data = os.read(proc.stderr.fileno(), 65536)
            if not data:
                break
            now = time.perf_counter() - t0
            pending += data
            parts = re.split(rb"[\r\n]", pending)
            pending = parts.pop()
            events.extend((now, p.decode("utf-8", "replace")) for p in parts if p.strip())
        if pending.strip():
            events.append((time.perf_counter() - t0, pending.decode("utf-8", "replace")))

    def read_stdout() -> None:
        out_parts.append(proc.stdout.read())

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                main_peak[0] = max(main_peak[0], root.memory_info().rss)
                cpu_seen[root.pid] = sum(root.cpu_times()[:2])
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss = child.memory_info().rss
                        entry = peaks.get(child.pid)
                        if entry is None:
                            entry = peaks[child.pid] = {
                                "kind": "other",
                                "peak_rss_mib": 0.0,
                                "cpu_s": 0.0,
                            }
                        if entry["kind"] == "other":  # cmdline may be empty while spawning
                            entry["kind"] = _child_kind(child.cmdline())
                        entry["peak_rss_mib"] = max(entry["peak_rss_mib"], rss / MIB)
                        cpu_seen[child.pid] = entry["cpu_s"] = sum(child.cpu_times()[:2])
            time.sleep(interval)

    threads = [threading.Thread(target=f, daemon=True) for f in (read_stderr, read_stdout, sample)]
    for th in threads:
        th.start()
    proc.wait()
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for th in threads:
        th.join(timeout=30)
    return Monitored(
        cmd=list(cmd),
        wall_s=wall,
        returncode=proc.returncode,
        stdout=b"".join(out_parts).decode("utf-8", "replace"),
        events=events,
        peak_rss_main_mib=main_peak[0] / MIB,
        peak_rss_by_pid={
            k: {**v, "peak_rss_mib": round(v["peak_rss_mib"], 1), "cpu_s": round(v["cpu_s"], 2)}
            for k, v in peaks.items()
        },
        load_before=load_before,
        load_after=load_average(),
        # CPU seconds (user + system) of the command and every descendant it reaped.
        cpu_s=(usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        cpu_sampled_s=sum(cpu_seen.values()),
    )


# ------------------------------------------------------------------------------------------
# (a) the lesson's loop, re-implemented faithfully (runs in a subprocess: `_lesson` mode)
_STEPS: dict[str, float] = {}


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _STEPS[name] = _STEPS.get(name, 0.0) + time.perf_counter() - t0


def lesson_main(video_path: str, output_dir: str) -> None:
    """The lesson's loop on ``video_path``; prints its phase timings as JSON on stdout.

    The code follows the lesson (``seed/kmeans_segmentation_lesson.txt``) line by line. The
    only change: frames come from PyAV instead of moviepy (not installed; moviepy pipes the
    same FFmpeg decoder's RGB frames through a subprocess, so this is no slower than the
    lesson). ``_step`` only accumulates timings. The final segmented video
    (``create_video_from_frames``) is not part of the loop measured here.
    """
    import os
    from collections import Counter

    import av
    import cv2
    import numpy as np
    from skimage.segmentation import slic
    from skimage.util import img_as_float
    from sklearn.cluster import KMeans

    def iter_frames(video_path, fps):
        # moviepy's VideoFileClip(video_path).iter_frames(fps=fps): RGB uint8 frames at fps
        with av.open(video_path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's default, as moviepy's ffmpeg reader
            if abs(float(stream.average_rate) - fps) > 1e-6:
                raise SystemExit(f"the benchmark video must be at {fps} frames/s")
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    def extract_frames_from_video(video_path, output_dir, frame_rate=10, width=1024, height=1024):
        os.makedirs(output_dir, exist_ok=True)
        for i, frame in enumerate(iter_frames(video_path, fps=frame_rate)):
            resized_frame = cv2.resize(frame, (width, height))
            frame_path = os.path.join(output_dir, f"frame_{i:04d}.png")
            cv2.imwrite(frame_path, resized_frame)
        print(f"Frames extracted and saved to: {output_dir}", file=sys.stderr)

    def apply_kmeans(image, n_clusters, kmeans_model=None):
        pixel_values = image.reshape((-1, 3))
        pixel_values = np.float32(pixel_values)
        if kmeans_model is None:
            kmeans = KMeans(n_clusters=n_clusters, random_state=42)
            kmeans.fit(pixel_values)
        else:
            kmeans = kmeans_model
        with _step("predict"):
            labels = kmeans.predict(pixel_values)
        segmented_image = kmeans.cluster_centers_[labels]
        segmented_image = segmented_image.reshape(image.shape)
        segmented_image = np.uint8(segmented_image)
        return segmented_image, labels, kmeans

    def preprocess_image(image):
        image_cropped = image[-400:, :, :]
        hsv_image = cv2.cvtColor(image_cropped, cv2.COLOR_BGR2HSV)
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        hsv_image[:, :, 2] = clahe.apply(hsv_image[:, :, 2])
        preprocessed_image = cv2.cvtColor(hsv_image, cv2.COLOR_HSV2BGR)
        return preprocessed_image

    def segment_image(image, n_segments):
        image_float = img_as_float(image)
        segments = slic(image_float, n_segments=n_segments, compactness=10, start_label=0)
        return segments

    def process_and_save_image(image, kmeans_model, filename, output_dir):
        with _step("preprocess"):
            image_cropped = preprocess_image(image)
        with _step("slic"):
            segments = segment_image(image_cropped, n_segments=500)  # noqa: F841 (never used)
        with _step("apply_kmeans"):
            segmented_image, labels, _ = apply_kmeans(
                image_cropped, n_clusters=4, kmeans_model=kmeans_model
            )
        with _step("counter"):
            label_counts = Counter(labels)
        cluster_info = []
        total_pixels = image_cropped.shape[0] * image_cropped.shape[1]
        cluster_hsv_values = kmeans_model.cluster_centers_
        for i in range(4):
            cluster_percentage = (label_counts[i] / total_pixels) * 100
            cluster_hsv = cluster_hsv_values[i]
            cluster_info.append(
                f"Cluster {i}: {label_counts[i]} pixels ({cluster_percentage:.2f}%) - HSV: "
                f"({cluster_hsv[0]:.2f}, {cluster_hsv[1]:.2f}, {cluster_hsv[2]:.2f})"
            )
        with _step("write"):
            segmented_image_bgr = cv2.cvtColor(segmented_image, cv2.COLOR_HSV2BGR)
            output_image_path = os.path.join(output_dir, filename)
            cv2.imwrite(output_image_path, segmented_image_bgr)
            output_txt_path = os.path.join(
                output_dir, filename.rsplit(".", 1)[0] + "_clusters.txt"
            )
            with open(output_txt_path, "w") as f:
                for info in cluster_info:
                    f.write(info + "\n")
        for i, info in enumerate(cluster_info):
            text_position = (10, 30 + i * 20)
            cv2.putText(
                segmented_image_bgr,
                info,
                text_position,
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (255, 255, 255),
                2,
            )
        return segmented_image_bgr

    def process_frames(output_dir):
        frames = os.listdir(output_dir)
        if not frames:
            print("No frames available for processing.", file=sys.stderr)
            return []
        t0 = time.perf_counter()
        first_image_path = os.path.join(output_dir, frames[0])
        first_image = cv2.imread(first_image_path)
        first_image_cropped = preprocess_image(first_image)
        segmented_image, labels, kmeans_model = apply_kmeans(  # noqa: RUF059 (as the lesson)
            first_image_cropped, n_clusters=4
        )
        _STEPS.clear()
        _STEPS["fit"] = time.perf_counter() - t0
        processed_frames_list = []
        for filename in frames:
            if filename.endswith((".png", ".jpg", ".jpeg")):
                image_path = os.path.join(output_dir, filename)
                with _step("read"):
                    image = cv2.imread(image_path)
                processed_frame = process_and_save_image(image, kmeans_model, filename, output_dir)
                processed_frames_list.append(processed_frame)
        print("Segmentation completed, results saved.", file=sys.stderr)
        return processed_frames_list

    t0 = time.perf_counter()
    extract_frames_from_video(video_path, output_dir)
    t1 = time.perf_counter()
    processed = process_frames(output_dir)
    t2 = time.perf_counter()
    steps = dict(_STEPS)
    steps["predict_in_apply_kmeans"] = steps.get("predict", 0.0)
    print(
        json.dumps(
            {
                "n_frames": len(processed),
                "extract_s": t1 - t0,
                "process_s": t2 - t1,
                "steps_s": steps,
            }
        )
    )


def run_lesson(video: Path, workdir: Path) -> dict[str, Any]:
    """Run the lesson loop on ``video`` in a fresh subprocess; wall time and its phases."""
    out = workdir / "lesson_frames"
    shutil.rmtree(out, ignore_errors=True)
    mon = run_monitored(
        [sys.executable, str(Path(__file__).resolve()), "_lesson", str(video), str(out)]
    )
    if mon.returncode != 0:
        raise RuntimeError(f"lesson loop failed:\n{mon.events[-20:]}")
    inner = json.loads(mon.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": mon.wall_s,
        "cpu_s": mon.cpu_s,
        "cpu_sampled_s": mon.cpu_sampled_s,
        "n_frames": inner["n_frames"],
        "extract_s": inner["extract_s"],
        "process_s": inner["process_s"],
        "steps_s": inner["steps_s"],
        "peak_rss_mib": round(mon.peak_rss_main_mib, 1),
        "load_before": mon.load_before,
        "load_after": mon.load_after,
    }


# ------------------------------------------------------------------------------------------
# (b) sediment-xr run
def sx_command() -> list[str]:
    """The ``sediment-xr`` command of this Python environment."""
    exe = Path(sys.executable).parent / "sediment-xr"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sediment_xr.cli"]


def write_config(
    path: Path,
    video: Path,
    output: Path,
    *,
    n_workers: int,
    report: bool,
    store_frames: bool = False,
) -> Path:
    """A config like ``configs/demo.yaml`` (the lesson's settings) for the benchmark video.

    ``chunk_frames`` is left to the default (auto: 32 frames of 1024 x 1024).
    """
    import yaml

    config = {
        "input": str(video),
        "output": str(output),
        "ingest": {
            "start_time": "2022-06-01T00:00:00",
            "frame_interval": "17h",
            "store_frames": store_frames,
        },
        # the default config: only the crop and the time axis (flat field, 12 clusters, a
        # 3 x 3 median, 4 bootstrap refits, intervals and frame flags)
        "preprocess": {"crop": {"rows": [-400, None]}},
        "dask": {"n_workers": n_workers, "threads_per_worker": 1, "memory_limit": "4GiB"},
        "report": {"html": report, "video": report},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_sx(
    video: Path,
    workdir: Path,
    *,
    n_workers: int,
    report: bool,
    store_frames: bool = False,
    keep: bool = False,
) -> dict[str, Any]:
    """Run ``sediment-xr run`` on ``video`` (fresh output folder); times, stages, memory."""
    name = f"{n_workers}w_{'report' if report else 'lean'}{'_frames' if store_frames else ''}"
    output = workdir / f"sx_out_{name}"
    shutil.rmtree(output, ignore_errors=True)
    cfg = write_config(
        workdir / f"sx_{name}.yaml",
        video,
        output,
        n_workers=n_workers,
        report=report,
        store_frames=store_frames,
    )
    mon = run_monitored([*sx_command(), "run", str(cfg)])
    if mon.returncode != 0:
        tail = "\n".join(t for _, t in mon.events[-20:])
        raise RuntimeError(f"sediment-xr run failed ({mon.returncode}):\n{tail}")
    marks = {
        "cluster_up": mon.first(r"^dask dashboard:"),
        "sample_start": mon.first(r"^cluster: sampling"),
        # ("sample: 100%": the progress bar of sediment_xr before the one pipeline)
        "sample_end": mon.first(r"^cluster: sample of") or mon.first(r"^sample: 100%"),
        "fit_end": mon.first(r"^cluster: <ClusterModel"),
        "label_start": mon.first(r"^label: \d+ of \d+ chunks"),
        "label_end": mon.first(r"^label: 100%"),
        "done": mon.first(r"^done: "),
    }
    stages = {}

    def span(a: str, b: str) -> float | None:
        if marks[a] is None or marks[b] is None:
            return None
        return round(marks[b] - marks[a], 4)

    stages["startup_s"] = marks["sample_start"]
    stages["sample_s"] = span("sample_start", "sample_end")
    stages["sample_fit_s"] = span("sample_start", "label_start")
    stages["fit_only_s"] = span("sample_end", "fit_end")
    stages["label_s"] = span("label_start", "label_end")  # decode + label + count (+ frames)
    stages["outputs_s"] = span("label_end", "done")
    stages["shutdown_s"] = round(mon.wall_s - marks["done"], 4) if marks["done"] else None
    cube = output / "cube.zarr"
    chunking = {}
    for name in ("frames", "labels", "cover"):
        meta = cube / name / "zarr.json"
        if meta.exists():
            doc = json.loads(meta.read_text())
            chunking[name] = {
                "chunk_shape": doc["chunk_grid"]["configuration"]["chunk_shape"],
                "codecs": doc["codecs"],
                "stored_bytes": _du(cube / name),
            }
    n_frames = int(json.loads((cube / "labels" / "zarr.json").read_text())["shape"][0])
    result = {
        "n_frames": n_frames,
        "n_workers": n_workers,
        "report": report,
        "store_frames": store_frames,
        "stored_bytes": _du(output),
        "wall_s": mon.wall_s,
        "cpu_s": mon.cpu_s,
        "cpu_sampled_s": mon.cpu_sampled_s,
        "stages_s": stages,
        "worker_peak_rss_mib": mon.worker_peaks_mib(),
        "client_peak_rss_mib": round(mon.peak_rss_main_mib, 1),
        "children": list(mon.peak_rss_by_pid.values()),
        "zarr": chunking,
        "load_before": mon.load_before,
        "load_after": mon.load_after,
    }
    if not keep:
        shutil.rmtree(output, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------
# the label+cover kernel against KMeans.predict + Counter
def kernel_main(video_path: str, n_frames: int, repeats: int) -> None:
    """Label and count preprocessed frames with each method; print per-frame times as JSON.

    Every round times every method once (interleaved, so that load from other processes
    hits all alike); the median and best over rounds are reported.
    """
    from collections import Counter

    import xarray as xr
    from sklearn.cluster import KMeans

    import sediment_xr as sx
    from sediment_xr._kernels import build_lut, label_frames
    from sediment_xr.coverage import _count_frames

    rgb = decode_frames(Path(video_path), n_frames)
    frames = xr.DataArray(rgb, dims=("time", "y", "x", "channel"))
    features = sx.preprocess(frames, rows=[-400, None], color_space="bgr")
    block = np.ascontiguousarray(features.values)  # (t, 400, 1024, 3) uint8 BGR, as labelled
    # The lesson's model: KMeans fitted on the first frame's pixels (float32).
    km = KMeans(n_clusters=4, random_state=42).fit(np.float32(block[0].reshape(-1, 3)))
    centers = km.cluster_centers_.astype(np.float64)
    model = sx.ClusterModel(centers=tuple(map(tuple, centers)), color_space="bgr")
    sk_labels = [km.predict(np.float32(f.reshape((-1, 3)))) for f in block]

    def sk_predict_counter() -> list[Counter]:
        # the lesson: apply_kmeans (float32 copy, predict) then Counter(labels)
        out = []
        for frame in block:
            labels = km.predict(np.float32(frame.reshape((-1, 3))))
            out.append(Counter(labels))
        return out

    def sk_predict() -> list[np.ndarray]:
        return [km.predict(np.float32(f.reshape((-1, 3)))) for f in block]

    def counter() -> list[Counter]:
        return [Counter(lab) for lab in sk_labels]

    def bincount() -> list[np.ndarray]:
        return [np.bincount(lab, minlength=4) for lab in sk_labels]

    lut = build_lut(centers)  # the first call compiles (once per machine: numba's cache)

    def numba_kernel() -> tuple[np.ndarray, np.ndarray]:
        # the pipeline's kernels: labels through the lookup table, then byte counts per frame
        labels = label_frames(block, centers, lut)
        return labels, _count_frames(labels, 4)

    def public_api() -> np.ndarray:
        return sx.cover(sx.label(features, model)).values

    def lut_build() -> None:  # the lookup table: one task per run in the pipeline's graph
        build_lut(centers)

    t0 = time.perf_counter()
    labels_nb, counts_nb = numba_kernel()  # the first call compiles (once per process)
    compile_s = time.perf_counter() - t0
    cases = {
        "sklearn predict+Counter (lesson)": sk_predict_counter,
        "sklearn predict": sk_predict,
        "Counter": counter,
        "np.bincount": bincount,
        "sediment_xr kernels: label (lookup table) + count": numba_kernel,
        "sediment_xr label()+cover() on numpy": public_api,
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    build_times = []
    for _ in range(repeats):
        for name, func in cases.items():
            t0 = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lut_build()
        build_times.append(time.perf_counter() - t0)
    per_frame = {
        k: {"median_ms": 1e3 * median(v) / n_frames, "best_ms": 1e3 * min(v) / n_frames}
        for k, v in times.items()
    }
    sk_all = np.stack(sk_labels).reshape(labels_nb.shape)
    sk_counts = np.array([[c[i] for i in range(4)] for c in counter()])
    print(
        json.dumps(
            {
                "n_frames": n_frames,
                "pixels_per_frame": int(block.shape[1] * block.shape[2]),
                "numba_first_call_s": compile_s,
                "lut_build_s": median(build_times),
                "per_frame": per_frame,
                "labels_equal_sklearn": float(np.mean(sk_all == labels_nb)),
                "max_count_difference_pixels": int(np.abs(sk_counts - counts_nb).max()),
            }
        )
    )


def bench_kernel(video: Path, n_frames: int, repeats: int) -> dict[str, Any]:
    """:func:`kernel_main` in two fresh processes: default threads, and one thread.

    scikit-learn's ``predict`` uses OpenMP/BLAS threads by default (as in the lesson); a
    dask worker of ``sediment-xr run`` has ``OMP_NUM_THREADS=1``. The target compares the
    numba kernel against the faster of the two.
    """
    out: dict[str, Any] = {}
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for env_name, extra in (("default_threads", {}), ("one_thread", one)):
        say(f"kernel: {n_frames} frames, {env_name}")
        mon = run_monitored(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "_kernel",
                str(video),
                str(n_frames),
                str(repeats),
            ],
            env=dict(os.environ, **extra),
        )
        if mon.returncode != 0:
            tail = "\n".join(t for _, t in mon.events[-30:])
            raise RuntimeError(f"kernel benchmark failed:\n{tail}")
        entry = json.loads(mon.stdout.strip().splitlines()[-1])
        entry["load_before"], entry["load_after"] = mon.load_before, mon.load_after
        out[env_name] = entry
    lesson = "sklearn predict+Counter (lesson)"
    ours = "sediment_xr kernels: label (lookup table) + count"
    ref = min(out[e]["per_frame"][lesson]["median_ms"] for e in out)
    nb = min(out[e]["per_frame"][ours]["median_ms"] for e in out)
    api = min(
        out[e]["per_frame"]["sediment_xr label()+cover() on numpy"]["median_ms"] for e in out
    )
    out["speedup_vs_fastest_predict_counter"] = ref / nb
    out["speedup_public_api_vs_fastest_predict_counter"] = ref / api
    out["speedup_by_env"] = {
        e: out[e]["per_frame"][lesson]["median_ms"] / out[e]["per_frame"][ours]["median_ms"]
        for e in ("default_threads", "one_thread")
    }
    return out


# ------------------------------------------------------------------------------------------
# Zarr compressors for frames and labels
def _codecs() -> list[tuple[str, Any]]:
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    out: list[tuple[str, Any]] = [("none", None), ("zstd-0 (zarr default)", ZstdCodec(level=0))]
    out += [(f"zstd-{lv}", ZstdCodec(level=lv)) for lv in (1, 3, 5, 9)]
    out += [("gzip-1", GzipCodec(level=1))]
    for cname, lv in (("lz4", 5), ("lz4hc", 5), ("blosclz", 5), ("zstd", 1), ("zstd", 3)):
        for shuffle in ("noshuffle", "bitshuffle"):
            out.append(
                (
                    f"blosc-{cname}-{lv}-{shuffle}",
                    BloscCodec(cname=cname, clevel=lv, shuffle=shuffle),
                )
            )
    return out


def _time_codec(
    data: np.ndarray, chunk_t: int, codec: Any, root: Path, repeats: int
) -> dict[str, float]:
    """Write and read ``data`` chunk by chunk (as the pipeline's tasks do); best of repeats.

    Wall and CPU time (``process_time``: every thread of this process, so Blosc's internal
    threads count) per frame.
    """
    import zarr

    n = data.shape[0]
    chunks = (chunk_t, *data.shape[1:])
    compressors = None if codec is None else [codec]
    writes, reads, writes_cpu, reads_cpu, size = [], [], [], [], 0
    for r in range(repeats):
        path = root / f"r{r}"
        shutil.rmtree(path, ignore_errors=True)
        arr = zarr.create_array(
            zarr.storage.LocalStore(str(path)),
            shape=data.shape,
            chunks=chunks,
            dtype=data.dtype,
            compressors=compressors,
            fill_value=0,
            zarr_format=3,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, n, chunk_t):
            arr[s : s + chunk_t] = data[s : s + chunk_t]
        writes.append(time.perf_counter() - t0)
        writes_cpu.append(time.process_time() - c0)
        arr = zarr.open_array(zarr.storage.LocalStore(str(path)), mode="r", zarr_format=3)
        back = np.empty_like(data)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, n, chunk_t):
            back[s : s + chunk_t] = arr[s : s + chunk_t]
        reads.append(time.perf_counter() - t0)
        reads_cpu.append(time.process_time() - c0)
        if not np.array_equal(back, data):
            raise AssertionError(f"{codec} did not round-trip the data")
        size = _du(path) - sum(p.stat().st_size for p in path.rglob("zarr.json"))
        shutil.rmtree(path, ignore_errors=True)
    return {
        "ratio": size / data.nbytes,
        "bytes_per_frame": size / n,
        "write_ms_per_frame": 1e3 * min(writes) / n,
        "read_ms_per_frame": 1e3 * min(reads) / n,
        "write_ms_per_frame_median": 1e3 * median(writes) / n,
        "read_ms_per_frame_median": 1e3 * median(reads) / n,
        "write_cpu_ms_per_frame": 1e3 * min(writes_cpu) / n,
        "read_cpu_ms_per_frame": 1e3 * min(reads_cpu) / n,
    }


def bench_compress(
    video: Path, workdir: Path, n_frames: int, repeats: int, chunk_t: int = 8
) -> dict[str, Any]:
    """Sizes and write/read times of Zarr codecs for frames (uint8) and labels (int8).

    Data: ``n_frames`` decoded frames of the benchmark video and the four real SHR frames
    bundled with sediment_xr, and the labels the pipeline stores for them (the bottom 400 rows,
    the analysed window's grid).
    """
    import numcodecs
    import xarray as xr

    import sediment_xr as sx
    from sediment_xr._kernels import label_frames
    from sediment_xr.testing import sample_frame, sample_frames_dir

    say(f"compress: {n_frames} frames")
    synthetic = decode_frames(video, n_frames)
    real = np.stack(
        [sample_frame(p.name) for p in sorted(sample_frames_dir().glob("frame_*.png"))]
    )
    datasets = {}
    for name, rgb in (("synthetic_h264", synthetic), ("real_shr_png", real)):
        features = sx.preprocess(
            xr.DataArray(rgb, dims=("time", "y", "x", "channel")), rows=[-400, None]
        ).values
        km_centers = np.array([[40.0, 50, 45], [80, 95, 90], [140, 160, 150], [210, 230, 220]])
        labels = label_frames(np.ascontiguousarray(features), km_centers)  # the crop's grid
        datasets[f"frames/{name}"] = rgb
        datasets[f"labels/{name}"] = labels
    root = workdir / "compress"
    results: dict[str, Any] = {
        "chunk_frames": chunk_t,
        "blosc_threads": numcodecs.blosc.get_nthreads(),
        "load_before": load_average(),
        "table": {},
    }
    for codec_name, codec in _codecs():
        for data_name, data in datasets.items():
            ct = min(chunk_t, data.shape[0])
            results["table"].setdefault(data_name, {})[codec_name] = _time_codec(
                data, ct, codec, root, repeats
            )
    results["video_bytes_per_frame"] = video.stat().st_size / _n_frames_of(video)
    results["load_after"] = load_average()
    shutil.rmtree(root, ignore_errors=True)
    return results


def _n_frames_of(video: Path) -> int:
    m = re.search(r"_(\d+)of\d+\.mp4$", video.name)
    return int(m.group(1)) if m else 1


# ------------------------------------------------------------------------------------------
# where the time of a sediment-xr run goes (one process, synchronous, like one worker)
def breakdown_main(video_path: str, workdir: str, full: bool = True) -> None:
    """Time every per-frame step of a run on ``video_path`` in one process; print JSON.

    Builds the run's graph from the public functions as ``pipeline.run`` does
    (``open_video`` -> ``preprocess`` -> ``sample_pixels`` -> ``fit_kmeans`` -> ``label`` ->
    ``cover`` -> ``store.chunk_writes``) and computes it with dask's synchronous scheduler
    and one thread for OpenCV/BLAS, as a worker does: the sample, the fit, then each chunk's
    write task (decode + preprocess + label + count + write + mark) one at a time, with and
    without storing the frames; then the pieces of a chunk's task one by one. Without
    ``full``, only the sample, the fit and the default chunk tasks (the per-frame cost of a
    frame, for the 120 vs 1200 frames comparison).
    """
    import dask
    import numpy as np
    import zarr

    import sediment_xr as sx
    from sediment_xr._kernels import build_lut, label_frames
    from sediment_xr.coverage import _count_frames
    from sediment_xr.preprocess import _preprocess_frames
    from sediment_xr.scheduler import limit_threads
    from sediment_xr.segment import write_segmented_video
    from sediment_xr.store import Output, chunk_bounds, chunk_writes

    limit_threads()
    t: dict[str, float] = {}

    def add(name: str, seconds: float) -> None:
        t[name] = t.get(name, 0.0) + seconds

    with dask.config.set(scheduler="synchronous"):
        t0 = time.perf_counter()
        frames = sx.open_video(video_path, start_time="2022-06-01", frame_interval="17h")
        add("open_video (probe, fixed)", time.perf_counter() - t0)
        n = frames.sizes["time"]
        chunk = frames.data.chunksize[0]
        bounds = chunk_bounds(n, chunk)
        features = sx.preprocess(frames, rows=[-400, None], color_space="bgr")
        t0 = time.perf_counter()
        sample = sx.sample_pixels(features, sample_size=200_000, random_state=0, max_frames=240)
        n_sampled = len(sx.sample_positions(n, 240))
        add(f"sample: decode + preprocess {n_sampled} frames + draw", time.perf_counter() - t0)
        t0 = time.perf_counter()
        model = sx.fit_kmeans(sample, n_clusters=4, color_space="bgr", random_state=0)
        add("fit_kmeans (fixed)", time.perf_counter() - t0)
        labels = sx.label(features, model)
        cover = sx.cover(labels)
        window = sx.crop(frames, rows=[-400, None])
        variants = (("lean", False), ("frames", True)) if full else (("lean", False),)
        tasks = {}
        for name, stored in variants:
            out = Output(str(Path(workdir) / f"breakdown_{name}"))
            shutil.rmtree(out.root, ignore_errors=True)
            variables = {"labels": labels, "cover": cover, "frame_status": labels["frame_status"]}
            marks = [("label", "bench")]
            if stored:
                variables["frames"] = window
                marks.append(("frames", "bench"))
            template = xr.Dataset(coords=features.coords)
            out.create_cube(template, {"title": "benchmark"}, state={})
            out.add_variables(variables)
            for stage, fingerprint in marks:
                out.prepare_progress(stage, fingerprint)
            tasks[name] = (
                out,
                chunk_writes(out, variables, marks=marks, chunks=range(len(bounds))),
            )
        repeats = max(1, 360 // n)  # at least ~360 frames of default chunk tasks, in all
        chunk_ms: list[float] = []
        t0 = time.perf_counter()  # what each worker pays once: the table, a cold decoder
        build_lut(model.centers_array)
        frames.isel(time=slice(bounds[-1][0], None)).load()
        add("label: lookup table, first decode (fixed, once per worker)", time.perf_counter() - t0)
        for name, stored in variants:
            key = "store_frames: true" if stored else "default"
            runs = 1 if stored else repeats
            for _ in range(runs):
                for task, (start, stop) in zip(tasks[name][1], bounds, strict=True):
                    t0 = time.perf_counter()
                    dask.compute(task)
                    seconds = time.perf_counter() - t0
                    add(
                        f"chunk task ({key}): decode + preprocess + label + count + write",
                        seconds / runs,
                    )
                    if not stored:  # per frame of each chunk, for the 120 vs 1200 comparison
                        chunk_ms.append(1e3 * seconds / (stop - start))
        # The pieces of a chunk's task, again on every chunk.
        centers = model.centers_array
        lut = build_lut(centers)
        out = tasks["lean"][0]
        store = out.zarr_store()
        for start, stop in bounds if full else []:
            t0 = time.perf_counter()
            block = frames.isel(time=slice(start, stop)).values
            add("  decode", time.perf_counter() - t0)
            t0 = time.perf_counter()
            feats = _preprocess_frames(np.ascontiguousarray(block[:, -400:]), 2.0, (8, 8), "bgr")
            add("  crop + CLAHE + colour", time.perf_counter() - t0)
            t0 = time.perf_counter()
            lab = label_frames(feats, centers, lut)
            add("  label (lookup table)", time.perf_counter() - t0)
            t0 = time.perf_counter()
            counts = _count_frames(lab, 4)
            add("  count (bincount per frame)", time.perf_counter() - t0)
            t0 = time.perf_counter()
            zarr.open_array(store, path="labels", mode="r+", zarr_format=3)[start:stop] = lab
            add("  write labels to Zarr", time.perf_counter() - t0)
            t0 = time.perf_counter()
            percent = 100.0 * counts / counts.sum(axis=1, keepdims=True)
            zarr.open_array(store, path="cover", mode="r+", zarr_format=3)[start:stop] = percent
            out.mark_done("label", "bench", bounds.index((start, stop)))
            add("  write cover + mark", time.perf_counter() - t0)
        if full:
            cube = out.open_cube()
            t0 = time.perf_counter()
            write_segmented_video(
                cube["labels"], model.center_rgb, str(Path(workdir) / "breakdown_segmented.mp4")
            )
            add("report: segmented.mp4 (client process)", time.perf_counter() - t0)
    for out, _ in tasks.values():
        shutil.rmtree(out.root, ignore_errors=True)
    per_frame = {k: 1e3 * v / n for k, v in t.items()}
    result = {
        "n_frames": n,
        "chunk_frames": chunk,
        "total_s": t,
        "per_frame_ms": per_frame,
        "label_task_ms_per_frame_by_chunk": [round(v, 3) for v in chunk_ms],
        "label_task_ms_per_frame_median": statistics.median(chunk_ms),
        "label_task_repeats": repeats,
    }
    print(json.dumps(result))


def run_breakdown(video: Path, workdir: Path, *, full: bool = True) -> dict[str, Any]:
    """Run :func:`breakdown_main` in a subprocess with one thread for OpenMP/BLAS."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    say(f"breakdown: {video.name}")
    mon = run_monitored(
        [
            *(sys.executable, str(Path(__file__).resolve()), "_breakdown"),
            *(str(video), str(workdir), "full" if full else "tasks"),
        ],
        env=env,
    )
    if mon.returncode != 0:
        tail = "\n".join(t for _, t in mon.events[-30:])
        raise RuntimeError(f"breakdown failed:\n{tail}")
    result = json.loads(mon.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = mon.load_before, mon.load_after
    return result


# ------------------------------------------------------------------------------------------
# the run
def steady(t1: float, t2: float, n1: int, n2: int) -> float:
    """Per-frame steady-state time from two lengths."""
    return (t2 - t1) / (n2 - n1)


def steady_stats(reps: list[dict[str, Any]], n1: int, n2: int, metric: str) -> dict[str, Any]:
    """Per-frame steady state (ms) of ``metric`` from runs at two lengths, over repeats."""
    ok = [r for r in reps if str(n1) in r and str(n2) in r]
    slopes = [steady(r[str(n1)][metric], r[str(n2)][metric], n1, n2) for r in ok]
    best = steady(min(r[str(n1)][metric] for r in ok), min(r[str(n2)][metric] for r in ok), n1, n2)
    return {
        "median_ms": 1e3 * median(slopes),
        "from_best_ms": 1e3 * best,
        "all_ms": [round(1e3 * v, 2) for v in slopes],
        "loads": [r[str(n2)]["load_before"] for r in ok],
    }


def summarize(res: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The targets of the issue, from the raw results.

    ``wall`` is what the targets ask for; ``cpu`` (user + system seconds of the whole process
    tree) is the work per frame, much less sensitive to load from other users of the machine.
    """
    s: dict[str, Any] = {}
    l1, l2 = cfg["lesson_frames"]
    n1, n2 = cfg["sx_frames"]
    if res.get("lesson", {}).get("runs"):
        reps = res["lesson"]["runs"]
        s["lesson"] = {
            "wall": steady_stats(reps, l1, l2, "wall_s"),
            "cpu": steady_stats(reps, l1, l2, "cpu_s"),
            "process_loop_only_ms_at_N2": 1e3
            * median([r[str(l2)]["process_s"] / r[str(l2)]["n_frames"] for r in reps]),
            "peak_rss_mib": {
                str(n): max(r[str(n)]["peak_rss_mib"] for r in reps) for n in (l1, l2)
            },
        }
        steps = reps[-1][str(l2)]["steps_s"]
        total = reps[-1][str(l2)]["process_s"]
        s["lesson"]["step_share_of_loop"] = {
            k: round(v / total, 4) for k, v in steps.items() if k != "fit"
        }
    for key in ("sx", "sx_lean", "sx_frames", "workers"):
        reps = [r for r in res.get(key, {}).get("runs", []) if str(n1) in r and str(n2) in r]
        if not reps:
            continue
        d: dict[str, Any] = {
            "wall": steady_stats(reps, n1, n2, "wall_s"),
            "cpu": steady_stats(reps, n1, n2, "cpu_s"),
        }
        for n in (n1, n2):
            stages = [r[str(n)]["stages_s"] for r in reps]
            frame_stages = [st["label_s"] / n for st in stages]
            with_fit = [(st["sample_fit_s"] + st["label_s"]) / n for st in stages]
            d[f"at_{n}"] = {
                "wall_s_median": median([r[str(n)]["wall_s"] for r in reps]),
                "cpu_s_median": median([r[str(n)]["cpu_s"] for r in reps]),
                "wall_per_frame_ms": 1e3 * median([r[str(n)]["wall_s"] / n for r in reps]),
                "label_per_frame_ms": 1e3 * median(frame_stages),
                "sample_fit+label_per_frame_ms": 1e3 * median(with_fit),
                "stored_mib_median": median([r[str(n)]["stored_bytes"] for r in reps]) / MIB,
                "stages_s_median": {
                    k: median(values) if values else None
                    for k in stages[0]
                    for values in [[st[k] for st in stages if st[k] is not None]]
                },
                "worker_peak_rss_mib_max": max(
                    max(r[str(n)]["worker_peak_rss_mib"] or [float("nan")]) for r in reps
                ),
                "n_workers_seen": [len(r[str(n)]["worker_peak_rss_mib"]) for r in reps],
                "client_peak_rss_mib_max": max(r[str(n)]["client_peak_rss_mib"] for r in reps),
            }
        a, b = d[f"at_{n1}"], d[f"at_{n2}"]
        d["flatness_label"] = b["label_per_frame_ms"] / a["label_per_frame_ms"]
        d["flatness_sample_fit+label"] = (
            b["sample_fit+label_per_frame_ms"] / a["sample_fit+label_per_frame_ms"]
        )
        d["worker_memory_growth"] = b["worker_peak_rss_mib_max"] / a["worker_peak_rss_mib_max"]
        s[key] = d
        if "lesson" in s and key != "workers":
            lw, lc = s["lesson"]["wall"], s["lesson"]["cpu"]
            s[f"{key}_speedup_vs_lesson"] = {
                "wall_median": lw["median_ms"] / d["wall"]["median_ms"],
                "wall_from_best": lw["from_best_ms"] / d["wall"]["from_best_ms"],
                "cpu_median": lc["median_ms"] / d["cpu"]["median_ms"],
            }
    if "workers" in s and "sx_lean" in s:
        one, two = s["workers"], s["sx_lean"]
        s["workers_1_vs_2"] = {
            "throughput_ratio_steady_wall": one["wall"]["median_ms"] / two["wall"]["median_ms"],
            "throughput_ratio_steady_wall_from_best": one["wall"]["from_best_ms"]
            / two["wall"]["from_best_ms"],
            f"throughput_ratio_wall_at_{n2}": one[f"at_{n2}"]["wall_s_median"]
            / two[f"at_{n2}"]["wall_s_median"],
            f"throughput_ratio_label_at_{n2}": one[f"at_{n2}"]["label_per_frame_ms"]
            / two[f"at_{n2}"]["label_per_frame_ms"],
            "cpu_per_frame_ratio_2w_over_1w": two["cpu"]["median_ms"] / one["cpu"]["median_ms"],
        }
    if "breakdown" in res and "tasks_at_n2" in res["breakdown"]:
        per_frame = {
            name: res["breakdown"][part]["label_task_ms_per_frame_median"]
            for name, part in (("at_n1", "full"), ("at_n2", "tasks_at_n2"))
        }
        s["task_per_frame_ms"] = per_frame | {"flatness": per_frame["at_n2"] / per_frame["at_n1"]}
    if "kernel" in res:
        k = res["kernel"]
        s["kernel"] = {key: v for key, v in k.items() if key.startswith("speedup")}
    return s


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_lesson"]:
        lesson_main(argv[1], argv[2])
        return 0
    if argv[:1] == ["_kernel"]:
        kernel_main(argv[1], int(argv[2]), int(argv[3]))
        return 0
    if argv[:1] == ["_breakdown"]:
        breakdown_main(argv[1], argv[2], full=argv[3:4] != ["tasks"])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch folder (videos are kept and reused; default: a temp dir)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default benchmarks/results.json, or quick.json)",
    )
    p.add_argument(
        "--snapshot",
        metavar="REF",
        default=None,
        help="benchmark sediment_xr as of this git commit (git archive into the workdir) "
        "instead of the installed/working-tree package",
    )
    p.add_argument(
        "--package-dir",
        type=Path,
        default=None,
        help="import sediment_xr from DIR/sediment_xr (e.g. a patched copy) here and in children",
    )
    p.add_argument("--size", type=int, default=1024, help="frame width and height")
    p.add_argument("--lesson-frames", type=int, nargs=2, default=(24, 120), metavar=("N1", "N2"))
    p.add_argument("--sx-frames", type=int, nargs=2, default=(120, 1200), metavar=("N1", "N2"))
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats of the lesson and of sediment-xr with 2 workers and no report",
    )
    p.add_argument(
        "--repeats-extra",
        type=int,
        default=2,
        help="repeats of sediment-xr with the default report, and with 1 worker",
    )
    p.add_argument("--kernel-frames", type=int, default=32)
    p.add_argument("--compress-frames", type=int, default=32)
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = p.parse_args(argv)
    if args.quick:
        args.lesson_frames, args.sx_frames = (8, 24), (24, 96)
        args.repeats, args.repeats_extra, args.kernel_frames, args.compress_frames = 1, 1, 8, 8
    cfg = {
        "lesson_frames": list(args.lesson_frames),
        "sx_frames": list(args.sx_frames),
        "repeats": args.repeats,
        "repeats_extra": args.repeats_extra,
        "size": args.size,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "sections": args.only,
    }
    out_json = args.json or (HERE / ("quick.json" if args.quick else "results.json"))
    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="sediment_xr_bench_")
        workdir = Path(tmp)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"config": cfg, "machine": machine_info()}
    if args.snapshot:
        res["package_snapshot"] = use_snapshot(args.snapshot, workdir)
    elif args.package_dir:
        target = str(args.package_dir.resolve())
        sys.path.insert(0, target)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [target, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        res["package_snapshot"] = {"commit": f"package dir {target}"}
    else:
        res["package_snapshot"] = {"commit": "working tree (not a snapshot)"}
    import sediment_xr

    res["package_snapshot"]["imported_from"] = str(Path(sediment_xr.__file__).parent)
    say(
        f"machine: {res['machine']['cpu_model']}, {res['machine']['nproc']} cores, "
        f"workdir {workdir}"
    )
    t_start = time.perf_counter()
    lengths = sorted({*args.lesson_frames, *args.sx_frames})
    videos = make_videos(workdir, lengths, size=args.size)
    res["videos"] = {
        str(n): {"path": str(p), "bytes": p.stat().st_size} for n, p in videos.items()
    }
    l1, l2 = args.lesson_frames
    n1, n2 = args.sx_frames
    longest = videos[max(lengths)]

    def save() -> None:
        res["summary"] = summarize(res, cfg)
        res["total_benchmark_s"] = time.perf_counter() - t_start
        out_json.write_text(json.dumps(res, indent=2, default=str))

    single: dict[str, Callable[[], dict[str, Any]]] = {
        "kernel": lambda: bench_kernel(longest, args.kernel_frames, max(args.repeats, 7)),
        "compress": lambda: bench_compress(longest, workdir, args.compress_frames, args.repeats),
        "breakdown": lambda: {
            "full": run_breakdown(videos[n1], workdir),
            "tasks_at_n2": run_breakdown(videos[n2], workdir, full=False),
        },
    }
    for name, func in single.items():
        if name in args.only:
            try:
                res[name] = func()
            except Exception as err:  # keep the other sections' results
                say(f"{name} failed: {err}")
                res.setdefault("errors", {})[name] = repr(err)
            save()

    # Timed runs, interleaved so that a burst of load from others hits all of them alike.
    def timed(key: str, rep: int, label: str, func: Callable[[int], dict[str, Any]]) -> None:
        entry = {}
        for n in (l1, l2) if key == "lesson" else (n1, n2):
            say(f"rep {rep}: {label}, {n} frames")
            entry[str(n)] = func(n)
        res.setdefault(key, {"runs": []})["runs"].append(entry)
        save()

    if {"sx", "workers"} & set(args.only):
        # Not timed: the first run of a snapshot compiles its numba kernels into its cache
        # (seconds, in the first 120-frame run only: rep 0 gave 5.4 ms/frame steady state
        # against 10.0 and 10.8 for reps 1 and 2).
        say("warm-up: sediment-xr run, 2 workers, report on (not timed)")
        run_sx(videos[n1], workdir, n_workers=2, report=True)
    for rep in range(max(args.repeats, args.repeats_extra)):
        main_rep, extra_rep = rep < args.repeats, rep < args.repeats_extra
        if "lesson" in args.only and main_rep:
            timed("lesson", rep, "lesson loop", lambda n: run_lesson(videos[n], workdir))
        if ("sx" in args.only or "workers" in args.only) and main_rep:
            timed(
                "sx_lean",
                rep,
                "sediment-xr run, 2 workers, report off",
                lambda n: run_sx(videos[n], workdir, n_workers=2, report=False),
            )
        if "sx" in args.only and extra_rep:
            timed(
                "sx",
                rep,
                "sediment-xr run, 2 workers, default report",
                lambda n: run_sx(videos[n], workdir, n_workers=2, report=True),
            )
        if "sx" in args.only and extra_rep:
            timed(
                "sx_frames",
                rep,
                "sediment-xr run, 2 workers, report off, frames stored",
                lambda n: run_sx(videos[n], workdir, n_workers=2, report=False, store_frames=True),
            )
        if "workers" in args.only and extra_rep:
            timed(
                "workers",
                rep,
                "sediment-xr run, 1 worker, report off",
                lambda n: run_sx(videos[n], workdir, n_workers=1, report=False),
            )
    save()
    print(json.dumps(res["summary"], indent=2))
    say(f"wrote {out_json} after {time.perf_counter() - t_start:.0f} s")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
