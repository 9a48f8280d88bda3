"""Benchmark: a year of 10-minute stills (52,560) with the default config, on this machine.

Generates N 1024 x 1024 JPEG stills (quality 90, about 250 kB) from the three real bundled
Oregon Offshore frames (``sediment_xr/data/oregon_offshore``), each shifted by a few pixels,
scaled in brightness and given its own noise so that no two are alike, named like the OOI
archive (``CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg``, 10 minutes apart). The stills are
kept in ``--workdir`` and reused by the next run; each N is a folder of hard links to the
first N.

For each N, ``sediment-xr run`` of the default config (only ``input`` and ``output`` set: a
LocalCluster of 2 workers, the flat field, 12 clusters, the HTML report and the segmented
video) runs as a subprocess while the RSS of the client (the command's process, which holds
the scheduler) and of each worker are sampled. A least-squares line ``wall = fixed + N x
per_still`` over the N gives the steady-state cost per still and the fixed cost, and the
extrapolation to 52,560 stills (target: < 10 minutes on 2 cores); peak RSS per N shows
whether memory is flat in N (target: < 1.5 GiB per worker).

``--readers`` times the JPEG readers on the generated stills (and simplejpeg's pixels
against OpenCV's, when it is installed). ``--profile`` adds the per-still cost of the steps
of the stills path, timed in one process on the generated stills: listing, name-time parsing
and ordering, the client's header probe, decoding a chunk (``read_chunk``), and the size of
the attributes that grow with N.

Usage::

    python benchmarks/stills_benchmark.py --workdir /tmp/sx_stills --counts 300 1000 3000 5000
    python benchmarks/stills_benchmark.py --quick            # 60 and 200 stills: a smoke run
    python benchmarks/stills_benchmark.py --readers --profile --counts 300 1000

Writes ``--json`` (default ``benchmarks/stills_results.json``) and ``--markdown`` (default
``benchmarks/stills_results.md``). Other engineers may share the machine: record the load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_benchmarks import (  # noqa: E402  (the sibling benchmark's monitored runner)
    load_average,
    machine_info,
    run_monitored,
    say,
    sx_command,
)

#: A year of stills every 10 minutes.
YEAR_OF_STILLS = 365 * 24 * 6
TARGET_S = 600.0
TARGET_WORKER_GIB = 1.5
FIRST_TIME = dt.datetime(2021, 8, 24, 3, 16, 18)
NAME = "CAMDSB106_10.33.9.6_{:%Y%m%dT%H%M%S}_UTC.jpg"
SIZE = 1024
QUALITY = 90
NOISE_FIELDS = 16


# ------------------------------------------------------------------------------------------
# the stills
def base_frames() -> list[np.ndarray]:
    """The real bundled Oregon Offshore frames (BGR), 1024 x 1024."""
    import cv2

    import sediment_xr

    folder = Path(sediment_xr.__file__).parent / "data" / "oregon_offshore"
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(folder.glob("*.jpg"))]
    return [cv2.resize(f, (SIZE, SIZE)) if f.shape[:2] != (SIZE, SIZE) else f for f in frames]


def still_name(index: int) -> str:
    """OOI-style name of still ``index`` (10 minutes apart)."""
    return NAME.format(FIRST_TIME + dt.timedelta(minutes=10 * index))


def make_still(index: int, bases: list[np.ndarray], noise: list[np.ndarray]) -> bytes:
    """JPEG bytes of still ``index``: a base frame shifted, scaled in light, with noise."""
    import cv2

    rng = np.random.default_rng(index)
    dx, dy = rng.integers(-6, 7, size=2)
    gain = rng.uniform(0.9, 1.1)
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    image = cv2.warpAffine(
        bases[index % len(bases)], shift, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT
    )
    image = image.astype(np.int16) * gain + noise[(index * 7) % len(noise)]
    image = np.clip(image, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode still {index}")
    return encoded.tobytes()


def make_stills(workdir: Path, count: int) -> Path:
    """The first ``count`` stills in ``workdir/all`` (made if missing); their folder."""
    folder = workdir / "all"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (folder / still_name(i)).exists()]
    if not missing:
        return folder
    say(f"making {len(missing)} stills in {folder}")
    bases = base_frames()
    rng = np.random.default_rng(0)
    noise = [rng.normal(0, 4, (SIZE, SIZE, 3)).astype(np.float32) for _ in range(NOISE_FIELDS)]
    for i in missing:
        part = folder / (still_name(i) + ".part")
        part.write_bytes(make_still(i, bases, noise))
        os.replace(part, folder / still_name(i))
    return folder


def stills_folder(workdir: Path, count: int) -> Path:
    """A folder of hard links to the first ``count`` stills."""
    source = make_stills(workdir, count)
    folder = workdir / f"n{count}"
    names = [still_name(i) for i in range(count)]
    if folder.exists() and sorted(os.listdir(folder)) == sorted(names):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        os.link(source / name, folder / name)
    return folder


# ------------------------------------------------------------------------------------------
# runs of the default config
def write_config(path: Path, stills: Path, output: Path) -> Path:
    """The default config: only the input and the output."""
    import yaml

    path.write_text(yaml.safe_dump({"input": str(stills), "output": str(output)}))
    return path


def _stage_marks(mon: Any) -> dict[str, float | None]:
    marks = {
        "cluster_up": mon.first(r"^dask dashboard:"),
        "sample_start": mon.first(r"^cluster: sampling"),
        "sample_end": mon.first(r"^cluster: sample of") or mon.first(r"^sample: 100%"),
        "label_start": mon.first(r"^label: \d+ of \d+ chunks"),
        "label_end": mon.first(r"^label: 100%"),
        "done": mon.first(r"^done: "),
    }
    return {k: (None if v is None else round(v, 3)) for k, v in marks.items()}


def _span(marks: dict[str, float | None], a: str, b: str) -> float | None:
    if marks.get(a) is None or marks.get(b) is None:
        return None
    return round(marks[b] - marks[a], 3)


def _cube_attr_bytes(output: Path) -> int | None:
    """Size of the cube's root ``zarr.json`` (attributes that may grow with N)."""
    meta = output / "cube.zarr" / "zarr.json"
    return meta.stat().st_size if meta.exists() else None


def run_default(workdir: Path, count: int) -> dict[str, Any]:
    """``sediment-xr run`` of the default config on ``count`` stills (fresh output)."""
    stills = stills_folder(workdir, count)
    output = workdir / f"out_{count}"
    shutil.rmtree(output, ignore_errors=True)
    config = write_config(workdir / f"stills_{count}.yaml", stills, output)
    mon = run_monitored([*sx_command(), "run", str(config)])
    if mon.returncode != 0:
        tail = "\n".join(t for _, t in mon.events[-20:])
        raise RuntimeError(f"sediment-xr run failed ({mon.returncode}) on {count} stills:\n{tail}")
    marks = _stage_marks(mon)
    workers = mon.worker_peaks_mib()
    children = mon.peak_rss_by_pid.values()
    worker_cpu = sum(c["cpu_s"] for c in children if c["kind"] == "worker")
    other_cpu = sum(c["cpu_s"] for c in children if c["kind"] != "worker")
    result = {
        "n_stills": count,
        "wall_s": round(mon.wall_s, 3),
        "cpu_s": round(mon.cpu_s, 2),
        # sampled: the client's CPU (the command's process, with the scheduler) and the
        # workers' (the client also paints and encodes segmented.mp4)
        "client_cpu_s": round(mon.cpu_sampled_s - worker_cpu - other_cpu, 2),
        "workers_cpu_s": round(worker_cpu, 2),
        "stages_s": {
            "startup_list_probe_s": marks["sample_start"],
            "sample_fit_s": _span(marks, "sample_start", "label_start"),
            "label_decode_write_s": _span(marks, "label_start", "label_end"),
            "outputs_report_s": _span(marks, "label_end", "done"),
            "shutdown_s": None if marks["done"] is None else round(mon.wall_s - marks["done"], 3),
        },
        "marks_s": marks,
        "client_peak_rss_mib": round(mon.peak_rss_main_mib, 1),
        "worker_peak_rss_mib": [round(w, 1) for w in workers],
        "cube_root_zarr_json_bytes": _cube_attr_bytes(output),
        "output_bytes": sum(p.stat().st_size for p in output.rglob("*") if p.is_file()),
        "load_before": mon.load_before,
        "load_after": mon.load_after,
    }
    shutil.rmtree(output, ignore_errors=True)
    return result


def fit_line(counts: Sequence[int], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``fixed + n * per_item`` through the points; ``(fixed, per_item)``."""
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(values, float), 1)
    return float(intercept), float(slope)


def _stage_slope_ms(runs: list[dict[str, Any]], stage: str) -> float:
    """Per-still cost (ms) of one stage: the slope of its seconds over N."""
    counts = [r["n_stills"] for r in runs]
    return round(1e3 * fit_line(counts, [r["stages_s"][stage] or 0 for r in runs])[1], 3)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fixed and per-still costs, the extrapolation to a year, memory against the targets."""
    counts = [r["n_stills"] for r in runs]
    out: dict[str, Any] = {}
    if len(runs) >= 2:
        fixed, per = fit_line(counts, [r["wall_s"] for r in runs])
        cpu_fixed, cpu_per = fit_line(counts, [r["cpu_s"] for r in runs])
        split = all("client_cpu_s" in r for r in runs)  # not in runs before it was recorded
        client_per = fit_line(counts, [r.get("client_cpu_s", 0) for r in runs])[1]
        workers_per = fit_line(counts, [r.get("workers_cpu_s", 0) for r in runs])[1]
        peaks = [max(r["worker_peak_rss_mib"], default=0) for r in runs]
        year = fixed + per * YEAR_OF_STILLS
        out.update(
            fixed_s=round(fixed, 2),
            per_still_ms=round(1e3 * per, 3),
            cpu_per_still_ms=round(1e3 * cpu_per, 3),
            cpu_fixed_s=round(cpu_fixed, 2),
            client_cpu_per_still_ms=round(1e3 * client_per, 3) if split else None,
            workers_cpu_per_still_ms=round(1e3 * workers_per, 3) if split else None,
            worker_rss_growth_mib_per_1000=round(1e3 * fit_line(counts, peaks)[1], 1),
            year_stills=YEAR_OF_STILLS,
            year_wall_s=round(year, 1),
            year_target_s=TARGET_S,
            year_within_target=bool(year < TARGET_S),
            per_stage_ms={stage: _stage_slope_ms(runs, stage) for stage in runs[0]["stages_s"]},
        )
    worst_worker = max((max(r["worker_peak_rss_mib"], default=0) for r in runs), default=0)
    out.update(
        peak_client_rss_mib={str(r["n_stills"]): r["client_peak_rss_mib"] for r in runs},
        peak_worker_rss_mib={
            str(r["n_stills"]): max(r["worker_peak_rss_mib"], default=None) for r in runs
        },
        worker_within_target=bool(worst_worker < TARGET_WORKER_GIB * 1024),
    )
    return out


# ------------------------------------------------------------------------------------------
# where the time of a still goes (one process)
def _per_item_ms(func: Any, count: int, repeats: int = 3) -> float:
    """Best CPU time of this process (ms) per item: steadier than wall time when shared."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        func()
        best = min(best, time.process_time() - start)
    return round(1e3 * best / count, 4)


def profile(workdir: Path, count: int) -> dict[str, Any]:
    """Per-still CPU cost of the steps of the stills path, in this process (one thread)."""
    import cv2

    from sediment_xr import stills
    from sediment_xr.decode import read_chunk
    from sediment_xr.frames import auto_chunk_frames

    cv2.setNumThreads(1)
    folder = stills_folder(workdir, count)
    source = str(folder)
    listed = stills._list_images(source, {})
    files, stamps = stills._order_images(listed)
    chunk = files[: auto_chunk_frames(SIZE, SIZE)]
    crop = (SIZE - 400, SIZE, 0, SIZE)  # the default crop: the bottom 400 rows
    opened = stills.open_images(source)
    attrs = json.dumps(opened.attrs)
    return {
        "n_stills": count,
        "list_ms_per_still": _per_item_ms(lambda: stills._list_images(source, {}), count),
        "order_and_parse_times_ms_per_still": _per_item_ms(
            lambda: stills._order_images(listed), count
        ),
        "header_probe_ms_per_still": _per_item_ms(lambda: stills._image_sizes(files, {}), count),
        "open_images_ms_per_still": _per_item_ms(lambda: stills.open_images(source), count, 1),
        "read_chunk_ms_per_still": _per_item_ms(
            lambda: read_chunk(chunk, frame_size=(SIZE, SIZE)), len(chunk)
        ),
        "read_chunk_cropped_ms_per_still": _per_item_ms(
            lambda: read_chunk(chunk, frame_size=(SIZE, SIZE), window=crop), len(chunk)
        ),
        "frames_attrs_json_bytes": len(attrs),
        "frames_attrs_bytes_per_still": round(len(attrs) / count, 1),
        "stamps_parsed": stamps is not None,
    }


def readers(workdir: Path, count: int = 16, rounds: int = 20) -> dict[str, Any]:
    """Milliseconds per still of each JPEG reader on the generated stills (one thread).

    CPU time of the thread (``time.thread_time``: on a shared machine, wall time mostly
    measures the wait for a core), interleaved rounds, median: the package's reader
    (``decode_image``), OpenCV to BGR plus ``cvtColor``, the package's reader at half size,
    and simplejpeg (libjpeg-turbo) alone, with the largest difference of its pixels from
    the package's.
    """
    import cv2

    from sediment_xr.decode import decode_image

    cv2.setNumThreads(1)
    folder = make_stills(workdir, count)
    raws = [(folder / still_name(i)).read_bytes() for i in range(count)]
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

    def bgr_rgb(raw: bytes) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    funcs: dict[str, Any] = {
        "decode_image": decode_image,
        "opencv_bgr_cvtcolor": bgr_rgb,
        "decode_image_half_size": lambda raw: decode_image(raw, out_size=(SIZE // 2, SIZE // 2)),
    }
    try:
        import simplejpeg
    except ImportError:  # a core dependency, but conda users may lack it
        simplejpeg = None
    if simplejpeg is not None:
        funcs["simplejpeg"] = simplejpeg.decode_jpeg
        funcs["simplejpeg_fastdct_fastupsample"] = lambda raw: simplejpeg.decode_jpeg(
            raw, fastdct=True, fastupsample=True
        )
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(rounds):
        for name, func in funcs.items():
            start = time.thread_time()
            for raw in raws:
                func(raw)
            times[name].append((time.thread_time() - start) / len(raws))
    out: dict[str, Any] = {
        "stills": count,
        "mean_bytes": int(np.mean([len(r) for r in raws])),
        "opencv": cv2.__version__,
        "simplejpeg": getattr(simplejpeg, "__version__", "not installed"),
        "ms_per_still": {k: round(1e3 * float(np.median(v)), 3) for k, v in times.items()},
    }
    if simplejpeg is not None:
        diffs = {"simplejpeg": 0, "simplejpeg_fastdct_fastupsample": 0}
        for raw in raws:
            ref = decode_image(raw).astype(np.int16)
            for name in diffs:
                got = funcs[name](raw).astype(np.int16)
                diffs[name] = max(diffs[name], int(np.abs(got - ref).max()))
        out["max_abs_diff_from_decode_image"] = diffs
    return out


# ------------------------------------------------------------------------------------------
# the report
def markdown(res: dict[str, Any]) -> str:
    """A short summary of ``res`` in Markdown."""
    s = res["summary"]
    lines = [
        "# A year of stills: default config on 1024 x 1024 JPEGs",
        "",
        f"Measured {res['date']} on {res['machine'].get('nproc', '?')} cores "
        f"(load before the runs {res['load_start']}); commit {res['commit']}. The machine may "
        "have been shared: these numbers are preliminary.",
        "",
        "| stills | wall s | CPU s | startup (list+probe) s | sample+fit s | label s | "
        "outputs s | client peak MiB | worker peak MiB | root zarr.json B |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        st = r["stages_s"]
        lines.append(
            f"| {r['n_stills']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{st['startup_list_probe_s']} | {st['sample_fit_s']} | "
            f"{st['label_decode_write_s']} | {st['outputs_report_s']} | "
            f"{r['client_peak_rss_mib']:.0f} | "
            f"{', '.join(f'{w:.0f}' for w in r['worker_peak_rss_mib'])} | "
            f"{r['cube_root_zarr_json_bytes']} |"
        )
    if "per_still_ms" in s:
        lines += [
            "",
            f"Fit `wall = fixed + N x per_still`: fixed {s['fixed_s']} s, per still "
            f"{s['per_still_ms']} ms (CPU {s['cpu_per_still_ms']} ms per still, all processes: "
            f"client {s['client_cpu_per_still_ms']} ms, workers {s['workers_cpu_per_still_ms']} "
            "ms; None: not recorded).",
            f"Per still by stage (ms, slope of each stage): {s['per_stage_ms']}.",
            f"**Extrapolated to {s['year_stills']:,} stills: {s['year_wall_s']:.0f} s "
            f"({s['year_wall_s'] / 60:.1f} min; target < {s['year_target_s'] / 60:.0f} min: "
            f"{'met' if s['year_within_target'] else 'NOT met'}).**",
        ]
    lines += [
        f"Worker peak RSS < {TARGET_WORKER_GIB} GiB at every N: "
        f"{'yes' if s['worker_within_target'] else 'NO'}; it grows by "
        f"{s.get('worker_rss_growth_mib_per_1000')} MiB per 1000 stills (flat is the target).",
    ]
    if res.get("readers"):
        lines += ["", f"JPEG readers (one thread, ms per still): {res['readers']}"]
    if res.get("profile"):
        lines += ["", "Per-still CPU cost of the steps (one process, one thread):", ""]
        lines += [f"- {k}: {v}" for k, v in res["profile"].items()]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the extrapolation."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sx_stills_bench"))
    p.add_argument("--counts", type=int, nargs="+", default=[300, 1000, 3000, 5000])
    p.add_argument("--quick", action="store_true", help="60 and 200 stills: a smoke run")
    p.add_argument("--profile", action="store_true", help="time the steps of the stills path")
    p.add_argument("--profile-stills", type=int, default=1000)
    p.add_argument("--readers", action="store_true", help="time the JPEG readers")
    p.add_argument("--json", type=Path, default=HERE / "stills_results.json")
    p.add_argument("--markdown", type=Path, default=HERE / "stills_results.md")
    args = p.parse_args(argv)
    counts = [60, 200] if args.quick else sorted(set(args.counts))
    args.workdir.mkdir(parents=True, exist_ok=True)
    make_stills(args.workdir, max(counts))
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": machine_info(),
        "load_start": load_average(),
        "command": [*sx_command(), "run", "CONFIG (input and output only)"],
        "runs": [],
    }
    if args.readers:
        res["readers"] = readers(args.workdir)
        say(f"readers: {res['readers']}")
    if args.profile:
        res["profile"] = profile(args.workdir, min(args.profile_stills, max(counts)))
        say(f"profile: {res['profile']}")
    for count in counts:
        say(f"sediment-xr run, default config, {count} stills")
        run = run_default(args.workdir, count)
        res["runs"].append(run)
        say(
            f"  {count} stills: {run['wall_s']:.1f} s wall, client "
            f"{run['client_peak_rss_mib']:.0f} MiB, workers {run['worker_peak_rss_mib']} MiB, "
            f"stages {run['stages_s']}"
        )
        res["summary"] = summarize(res["runs"])
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        args.markdown.write_text(markdown(res))
    s = res["summary"]
    if "year_wall_s" in s:
        print(
            f"per still {s['per_still_ms']:.2f} ms, fixed {s['fixed_s']:.1f} s: "
            f"{s['year_stills']:,} stills in {s['year_wall_s']:.0f} s "
            f"({s['year_wall_s'] / 60:.1f} min; target < 10 min: "
            f"{'met' if s['year_within_target'] else 'NOT met'}); peak worker RSS "
            f"{max(v or 0 for v in s['peak_worker_rss_mib'].values()):.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
