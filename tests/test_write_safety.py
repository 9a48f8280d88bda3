"""Writes stay inside the output folder, and the report steps give no traceback (issue 14).

Each case plants a real symbolic link in a real output folder, pointing outside it (to a
file whose bytes are known, or to a folder), runs the pipeline again, and checks that
nothing outside changed: the target's bytes are the same and no file appeared beside it.
The run may refuse (one line naming the link) or replace the link; it must never write
through it.  Runs use dask's in-process scheduler (``--scheduler synchronous``, or
``dask.config`` for the Python API, which skips the command line's own location checks).

* temporary names the run used to write under (``.cover.csv.partial``,
  ``.report.html.partial``, ``segmented/.frame_000001.png.partial``,
  ``segmented.mp4.partial.mp4``) were predictable and opened through links;
* final names (``report.html``, a PNG of ``segmented/``, a folder and a file of the cube,
  ``segmented.mp4``) were renamed into a linked folder or written by zarr through a link;
* a ``file://`` output skipped every local protection;
* the report steps on an undecodable first frame and on a one-row crop.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import av
import dask
import numpy as np
import pytest
import yaml

from sediment_xr.cli import main
from sediment_xr.config import load_config
from sediment_xr.exceptions import OutputError
from sediment_xr.lock import OutputLock
from sediment_xr.pipeline import run
from sediment_xr.store import Output
from sediment_xr.testing import write_video

ERROR = "sediment-xr: error: "
WARNING = "sediment-xr: warning: "
SIZE = 64
RUN = ["--scheduler", "synchronous", "--quiet"]
SECRET = b"bytes outside the output folder"
REPORT = {"html": True, "video": True, "png_frames": [1]}


# --------------------------------------------------------------------------------------------
# inputs, configs and runs
def frames(n: int = 6, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """RGB frames with many colours, each frame different."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            np.stack([(x * 3 + 7 * k) % 256, (y * 5) % 256, np.full_like(x, 40 * k)], -1)
            for k in range(n)
        ]
    ).astype(np.uint8)


def mjpeg_video(path: Path, n: int = 8, broken: tuple[int, ...] = ()) -> Path:
    """An MJPEG video whose frames at positions `broken` have their JPEG data zeroed."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
        for frame in frames(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    assert len(starts) == n
    for k in broken:
        end = data.index(b"\xff\xd9", starts[k]) + 2
        data[starts[k] : end] = bytes(end - starts[k])
    path.write_bytes(bytes(data))
    return path


def write_config(tmp_path: Path, input_path: Path | str, output: Path | str, **sections) -> Path:
    """A small, quick config (3 clusters, 2000 pixels), updated section by section."""
    data = {
        "input": str(input_path),
        "output": str(output),
        "ingest": {"start_time": "2022-06-01T00:00:00", "frame_interval": "1h", "chunk_frames": 2},
        "cluster": {"n_clusters": 3, "sample_size": 2000},
        "report": dict(REPORT),
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_api(config: Path) -> OutputError | None:
    """Run through the Python API (no command-line checks); the refusal, if any."""
    with dask.config.set(scheduler="synchronous"):
        try:
            run(load_config(config), progress=False)
        except OutputError as err:
            return err
    return None


def assert_one_line(err: str, words: list[str]) -> None:
    """One error line naming the problem and the fix, no traceback."""
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@pytest.fixture
def scene(tmp_path) -> dict[str, Path]:
    """A finished run (report, video and one PNG) and a folder outside it with one file."""
    video = write_video(frames(), tmp_path / "input.mkv", codec="ffv1")
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(SECRET)
    config = write_config(tmp_path, video, out)
    assert main(["run", str(config), *RUN]) == 0
    assert (out / "report.html").is_file() and (out / "segmented" / "frame_000001.png").is_file()
    # the next run changes the classes: tables, report and PNGs are written again
    rerun = write_config(tmp_path, video, out, classes={"dark": [0], "light": [1, 2]})
    return {"tmp": tmp_path, "video": video, "out": out, "outside": outside, "rerun": rerun}


def plant(out: Path, name: str, target: Path) -> None:
    """Put a symbolic link at `name` of the output folder (replacing what is there)."""
    path = out / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def assert_outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert (outside / "victim.txt").read_bytes() == SECRET


def assert_ran_or_refused(refusal: OutputError | None, name: str) -> None:
    """The run finished, or it refused in one line naming the link."""
    if refusal is not None:
        text = str(refusal)
        assert "\n" not in text and name in text and "symbolic link" in text, text


# --------------------------------------------------------------------------------------------
# links at the temporary names the run used to write under
@pytest.mark.parametrize(
    "name",
    [".cover.csv.partial", ".report.html.partial", "segmented/.frame_000001.png.partial"],
    ids=["table", "report", "png"],
)
def test_link_at_the_old_temporary_name_of_a_file_is_not_written_through(scene, name):
    """Weakness: write_bytes wrote every file to `.<name>.partial` first, through a link."""
    plant(scene["out"], name, scene["outside"] / "victim.txt")
    refusal = run_api(scene["rerun"])
    assert_ran_or_refused(refusal, name)
    assert_outside_untouched(scene["outside"])
    if refusal is None:  # the temporary names are others now
        assert "light" in (scene["out"] / "cover.csv").read_text().splitlines()[0]


def test_link_at_the_old_temporary_name_of_the_video_is_not_written_through(scene):
    """Weakness: the video was encoded into `segmented.mp4.partial.mp4`, through a link."""
    plant(scene["out"], "segmented.mp4.partial.mp4", scene["outside"] / "victim.txt")
    video_fps = write_config(
        scene["tmp"], scene["video"], scene["out"], report={**REPORT, "video_fps": 5}
    )
    assert_ran_or_refused(run_api(video_fps), "segmented.mp4.partial.mp4")
    assert_outside_untouched(scene["outside"])


# --------------------------------------------------------------------------------------------
# links at final names
def test_report_html_linked_to_a_folder_outside_gets_nothing_there(scene):
    """Weakness: the finished report was moved into the folder a `report.html` link names."""
    plant(scene["out"], "report.html", scene["outside"])
    assert_ran_or_refused(run_api(scene["rerun"]), "report.html")
    assert_outside_untouched(scene["outside"])


def test_png_linked_to_a_folder_outside_gets_nothing_there(scene):
    """Weakness: a PNG of `segmented/` was moved into the folder its link names."""
    plant(scene["out"], "segmented/frame_000001.png", scene["outside"])
    assert_ran_or_refused(run_api(scene["rerun"]), "frame_000001.png")
    assert_outside_untouched(scene["outside"])


def test_cube_folder_linked_outside_gets_nothing_there(scene):
    """Weakness: zarr wrote the rerun's class cover through a link planted in the cube."""
    plant(scene["out"], "cube.zarr/class_cover", scene["outside"])
    assert_ran_or_refused(run_api(scene["rerun"]), "cube.zarr/class_cover")
    assert_outside_untouched(scene["outside"])


def test_cube_file_linked_outside_is_refused_in_one_line(scene, capsys):
    """Weakness: a link at the cube's zarr.json was read through, ending in a traceback."""
    plant(scene["out"], "cube.zarr/zarr.json", scene["outside"] / "victim.txt")
    code, out, err = cli(["run", str(scene["rerun"])], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, ["cube.zarr/zarr.json", "symbolic link", "Remove the link"])
    assert_outside_untouched(scene["outside"])


def test_segmented_mp4_linked_outside_with_a_file_url_output_gets_nothing_there(scene):
    """Weakness: a file:// output's video was opened by fsspec at its name, through a link."""
    url = "file://" + str(scene["out"])
    plant(scene["out"], "segmented.mp4", scene["outside"] / "new.mp4")  # dangling: repainted
    rerun = write_config(scene["tmp"], scene["video"], url, classes={"dark": [0], "x": [1, 2]})
    assert_ran_or_refused(run_api(rerun), "segmented.mp4")
    assert_outside_untouched(scene["outside"])


# --------------------------------------------------------------------------------------------
# file:// is a local path
def test_file_url_output_holding_the_input_is_refused_in_one_line(tmp_path, capsys):
    """Weakness: `file://` outputs skipped the input-inside-output refusal."""
    out = tmp_path / "out"
    out.mkdir()
    video = write_video(frames(), out / "input.mkv", codec="ffv1")
    config = write_config(tmp_path, "file://" + str(video), "file://" + str(out))
    code, stdout, err = cli(["run", str(config)], capsys)
    assert code == 2 and stdout == ""
    assert_one_line(err, ["is the input folder", "Choose an output folder outside"])
    assert sorted(os.listdir(out)) == ["input.mkv"]


def test_file_url_output_takes_the_exclusive_local_lock(tmp_path):
    """Weakness: a `file://` output's lock was the object-store kind (no O_EXCL create)."""
    out = tmp_path / "out"
    config = load_config(write_config(tmp_path, tmp_path / "in.mkv", "file://" + str(out)))
    assert config.output == str(out)
    lock = OutputLock(Output(config.output, config.output_options), heartbeat=0)
    assert lock._local
    with lock:
        assert (out / ".sediment_xr" / "lock").is_file()
        with pytest.raises(OutputError, match="being written by another"):
            OutputLock(Output("file://" + str(out)), heartbeat=0).acquire()
    assert not (out / ".sediment_xr" / "lock").exists()


# --------------------------------------------------------------------------------------------
# the report steps on hard frames
def test_undecodable_first_frame_with_the_report_gives_no_traceback(tmp_path, capsys):
    """Weakness: the report's window was inferred from frame 0, which may not decode."""
    video = mjpeg_video(tmp_path / "broken.avi", broken=(0,))
    out = tmp_path / "out"
    report = {**REPORT, "png_frames": [0, 1], "example_frame": 0}
    code, _, err = cli(["run", str(write_config(tmp_path, video, out, report=report))], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith(WARNING)] == []
    assert "(frame 0)" in err
    for name in ("report.html", "segmented.mp4", "segmented/frame_000000.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.parametrize(
    "crop", [{"rows": [5, 6]}, {"cols": [5, 6]}, {"rows": [0, 7], "cols": [3, 8]}]
)
def test_one_row_one_column_and_odd_crops_with_the_report_give_no_traceback(
    tmp_path, capsys, crop
):
    """Weakness: a one-row crop ended the report steps in an OpenCV or PyAV exception."""
    video = write_video(frames(), tmp_path / "input.mkv", codec="ffv1")
    out = tmp_path / "out"
    config = write_config(tmp_path, video, out, preprocess={"crop": crop})
    code, _, err = cli(["run", str(config)], capsys)
    assert code == 0, err
    assert err == ""
    rows = crop.get("rows", [0, SIZE])
    cols = crop.get("cols", [0, SIZE])
    with av.open(str(out / "segmented.mp4")) as container:
        first = next(container.decode(video=0))
    # H.264 4:2:0 needs even sizes: an odd window gets one black row or column
    size = [n + n % 2 for n in (rows[1] - rows[0], cols[1] - cols[0])]
    assert [first.height, first.width] == size
    assert (out / "report.html").stat().st_size > 0
