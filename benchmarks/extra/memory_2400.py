"""Worker memory and time of `sediment-xr run` (report off) at 1200 and 2400 frames.

Uses ``run_sx`` of ``run_benchmarks.py`` on the benchmark's 1200-frame video and on that video
twice in a row (``concat_video.py``); 2 interleaved repeats; writes JSON.

    python benchmarks/extra/concat_video.py WORKDIR/synthetic_1024px_1200of1200.mp4 \\
        WORKDIR/synthetic_1024px_2400_concat.mp4
    python benchmarks/extra/memory_2400.py WORKDIR OUT.json
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_benchmarks as rb


def main(workdir: Path, target: Path) -> None:
    """Run both lengths twice, interleaved, and write what was measured."""
    out = {"machine": rb.machine_info(), "runs": []}
    videos = {
        1200: workdir / "synthetic_1024px_1200of1200.mp4",
        2400: workdir / "synthetic_1024px_2400_concat.mp4",
    }
    for rep in range(2):
        for n, video in videos.items():
            rb.say(f"rep {rep}: report off, {n} frames")
            res = rb.run_sx(video, workdir, n_workers=2, report=False)
            keys = ("wall_s", "cpu_s", "worker_peak_rss_mib", "stages_s", "load_before")
            out["runs"].append({"n": n, **{k: res[k] for k in keys}})
    target.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
