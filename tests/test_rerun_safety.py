"""Never damage what is finished: a rerun checks everything before it changes a file.

Each case reruns the real command line (``sediment_xr.cli.main`` with ``--scheduler
synchronous``: no cluster starts) or ``pipeline.run`` on a copy of a finished run's output
folder (a 6-frame FFV1 video, report, segmented video and PNGs on):

* a rerun refused for a setting that only the frames, the model file or the output folder can
  tell about leaves every byte of the finished output as it was, and the output still opens
  with ``sediment_xr.open_results`` (it is still complete);
* a model file among the output's own files is refused, never deleted by the run that reads it;
* a damaged ``model.json``, ``zarr.json`` or run state gives one line naming what is damaged and
  that ``--overwrite`` starts afresh, and ``--overwrite`` does recover: the rerun completes with
  the same cover as the undamaged run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.cli import main
from sediment_xr.config import load_config
from sediment_xr.exceptions import InputError, OutputError
from sediment_xr.store import COMPLETE_ATTR
from sediment_xr.testing import write_video

ERROR = "sediment-xr: error: "
RUN = ["--scheduler", "synchronous", "--quiet"]
INGEST = {"start_time": "2022-06-01T00:00:00", "frame_interval": "1h", "chunk_frames": 2}
SETTINGS = {
    "ingest": INGEST,
    "preprocess": {"crop": {"rows": [-32, None]}},
    "cluster": {"n_clusters": 3, "sample_size": 2000},
    "report": {"html": True, "video": True, "png_frames": [0, 1]},
}


def frames(n: int = 6, size: int = 64) -> np.ndarray:
    """RGB frames with many colours, each frame different."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack(
        [
            np.stack([(x * 3 + 7 * k) % 256, (y * 5) % 256, np.full_like(x, 40 * k)], -1)
            for k in range(n)
        ]
    ).astype(np.uint8)


def write_config(folder: Path, video: Path, output: Path, **sections) -> Path:
    """The config of the finished run, its sections updated key by key by `sections`."""
    data = {"input": str(video), "output": str(output)}
    for name, value in SETTINGS.items():
        data[name] = {**value, **sections.pop(name, {})}
    data |= sections
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def is_complete(output: Path) -> bool:
    root = json.loads((output / "cube.zarr" / "zarr.json").read_text())
    return root["attributes"].get(COMPLETE_ATTR) is True


def rerun(tmp_path: Path, video: Path, output: Path, capsys, *options: str, **sections):
    """Run the command line on `output`; returns the exit code and stderr."""
    config = write_config(tmp_path, video, output, **sections)
    code = main(["run", str(config), *RUN, *options])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, words: list[str]) -> None:
    """Exit code 2, one error line naming the problem and the fix, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


def assert_untouched(output: Path, before: dict[str, str]) -> None:
    """Every file byte for byte as before, and the output still opens as complete."""
    assert snapshot(output) == before, "a refused rerun changed the finished output"
    assert is_complete(output)
    sx.open_results(str(output))  # raises for an unfinished output


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(frames(), tmp_path_factory.mktemp("video") / "video.mkv", codec="ffv1")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, video) -> Path:
    """The output folder of a finished run of the 6 frames (report, video and PNGs)."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["run", str(write_config(root, video, root / "out")), *RUN]) == 0
    assert is_complete(root / "out")
    return root / "out"


@pytest.fixture()
def out(tmp_path, finished) -> Path:
    """A copy of the finished output folder."""
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    return copy


# --------------------------------------------------------------------------------------------
# settings that only the frames or a model file tell about are checked before any change
def test_report_frame_beyond_the_frames_given_to_run_changes_nothing(tmp_path, video, out):
    """Weakness: ``run(config, frames=...)`` checked report.png_frames only when writing the
    PNGs, after marking the output incomplete and removing the old PNGs."""
    config = load_config(write_config(tmp_path, video, out))
    opened = pipeline.check(config)  # as a notebook does before run
    bad = dataclasses.replace(
        config, report=dataclasses.replace(config.report, png_frames=(0, 99))
    )
    before = snapshot(out)
    with pytest.raises(Exception) as raised:
        pipeline.run(bad, frames=opened, progress=False)
    assert_untouched(out, before)
    assert isinstance(raised.value, InputError), raised.value
    assert "report.png_frames and report.example_frame need positions below 6" in str(raised.value)


def test_model_fitted_on_another_window_size_with_overwrite_changes_nothing(
    tmp_path, video, out, capsys
):
    """Weakness: a cluster.model whose light correction is of another window size (same crop
    rows, another ingest.resize) was refused only when labelling, after --overwrite had marked
    the output incomplete, removed its model.json and its label marks."""
    other = tmp_path / "resized"
    other.mkdir()
    fitted = write_config(
        other,
        video,
        other / "out",
        ingest={"resize": [128, 128]},
        report={"html": False, "video": False, "png_frames": []},
    )
    assert main(["run", str(fitted), *RUN]) == 0
    capsys.readouterr()
    before = snapshot(out)
    model = str(other / "out" / "model.json")
    code, err = rerun(tmp_path, video, out, capsys, "--overwrite", cluster={"model": model})
    assert_one_line(code, err, ["corrects the light of a 32 x 128 window", "crop gives 32 x 64"])
    assert_untouched(out, before)


# --------------------------------------------------------------------------------------------
# files the run reads are never among those it replaces
def test_output_own_model_as_cluster_model_is_refused_and_kept(tmp_path, video, out, capsys):
    """Weakness: cluster.model naming the output's own model.json, with --overwrite, deleted
    it (a new model's labels start empty) and then failed to read it."""
    before = snapshot(out)
    model = str(out / "model.json")
    code, err = rerun(tmp_path, video, out, capsys, "--overwrite", cluster={"model": model})
    assert_one_line(
        code, err, [f"cluster.model {model} is model.json of the output folder", "Copy it out"]
    )
    assert_untouched(out, before)


def test_output_own_model_as_cluster_reference_is_refused_and_kept(tmp_path, video, out, capsys):
    """Weakness: cluster.reference naming the output's own model.json, for a refit with
    --overwrite, deleted it before the fit read it."""
    before = snapshot(out)
    model = str(out / "model.json")
    code, err = rerun(
        tmp_path,
        video,
        out,
        capsys,
        "--overwrite",
        cluster={"reference": model, "random_state": 1},
    )
    assert_one_line(
        code, err, [f"cluster.reference {model} is model.json of the output", "Copy it out"]
    )
    assert_untouched(out, before)


def test_input_among_the_output_own_files_is_refused_by_run(tmp_path, out):
    """Weakness: only the command line refused an input among the files a run replaces;
    ``pipeline.run(..., overwrite=True)`` on the output's own segmented PNGs deleted them
    (a new cube starts without the old files) and then failed to read them."""
    config = load_config(
        write_config(
            tmp_path,
            out / "segmented",
            out,
            report={"html": False, "video": False, "png_frames": []},
        )
    )
    before = snapshot(out)
    with pytest.raises(Exception) as raised:
        pipeline.run(config, overwrite=True, progress=False)
    assert_untouched(out, before)
    assert isinstance(raised.value, InputError), raised.value
    assert "is segmented of the output folder" in str(raised.value)


# --------------------------------------------------------------------------------------------
# damaged records: one line, and --overwrite starts afresh
def damage_model(output: Path) -> None:
    path = output / "model.json"
    path.write_text(path.read_text()[:100])  # cut short, as by a full disk


def damage_zarr_json(output: Path) -> None:
    path = output / "cube.zarr" / "zarr.json"
    path.write_text(path.read_text()[:200])


def damage_state(output: Path) -> None:
    path = output / "cube.zarr" / "zarr.json"
    root = json.loads(path.read_text())
    root["attributes"]["sediment_xr_state"] = root["attributes"]["sediment_xr_state"][:50]
    path.write_text(json.dumps(root))


def damage_array_metadata(output: Path) -> None:
    path = output / "cube.zarr" / "cover" / "zarr.json"
    path.write_text(path.read_text()[:50])


def assert_recovers(tmp_path, video, out, finished, capsys, damage, what: str) -> None:
    """A rerun is refused in one line naming `what`; with --overwrite it completes."""
    damage(out)
    before = snapshot(out)
    code, err = rerun(tmp_path, video, out, capsys)
    assert_one_line(code, err, [f"is damaged: {what} cannot be read", "--overwrite"])
    assert snapshot(out) == before  # refused: nothing changed, not even the damaged files
    code, err = rerun(tmp_path, video, out, capsys, "--overwrite")
    assert code == 0 and "Traceback" not in err, err
    assert is_complete(out)
    cube = sx.open_results(str(out))
    assert cube.sizes["time"] == 6
    assert (out / "cover.csv").read_text() == (finished / "cover.csv").read_text()
    assert json.loads((out / "model.json").read_text()) == json.loads(
        (finished / "model.json").read_text()
    )


def test_damaged_model_json_is_one_line_and_overwrite_recovers(
    tmp_path, video, out, finished, capsys
):
    """Weakness: a damaged model.json raised on every rerun, --overwrite included (the config
    had not changed, so the stored model was read again), and marked the output incomplete."""
    assert_recovers(tmp_path, video, out, finished, capsys, damage_model, "model.json")


def test_damaged_zarr_json_is_one_line_and_overwrite_recovers(
    tmp_path, video, out, finished, capsys
):
    """Weakness: a damaged cube.zarr/zarr.json gave a JSONDecodeError traceback."""
    assert_recovers(
        tmp_path, video, out, finished, capsys, damage_zarr_json, "cube.zarr/zarr.json"
    )


def test_damaged_state_attribute_is_one_line_and_overwrite_recovers(
    tmp_path, video, out, finished, capsys
):
    """Weakness: a damaged run state (the cube's sediment_xr_state) gave a JSON traceback."""
    assert_recovers(
        tmp_path,
        video,
        out,
        finished,
        capsys,
        damage_state,
        "the run state (sediment_xr_state in cube.zarr/zarr.json)",
    )


def test_damaged_array_metadata_is_one_line_and_overwrite_recovers(
    tmp_path, video, out, finished, capsys
):
    """Weakness: a damaged zarr.json of one array (cover) gave a JSON traceback, after the
    rerun had marked the output incomplete."""
    assert_recovers(
        tmp_path, video, out, finished, capsys, damage_array_metadata, "cube.zarr/cover/zarr.json"
    )


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (damage_zarr_json, "cube.zarr/zarr.json"),
        (damage_state, "the run state (sediment_xr_state in cube.zarr/zarr.json)"),
        (damage_array_metadata, "cube.zarr/cover/zarr.json"),
    ],
    ids=["zarr.json", "state", "array"],
)
def test_open_results_names_the_damage(out, damage, what):
    """Weakness: open_results of a damaged cube raised a JSON error naming no file."""
    damage(out)
    with pytest.raises(OutputError) as raised:
        sx.open_results(str(out))
    message = str(raised.value)
    assert f"output {out} is damaged: {what} cannot be read" in message
    assert "--overwrite" in message and os.linesep not in message


def test_overwrite_with_a_fit_the_data_refuse_changes_nothing(tmp_path, out, capsys):
    """--overwrite onto blank frames: the fit refuses, and the finished output is as it was."""
    before = snapshot(out)
    blank = write_video(
        np.full((6, 64, 64, 3), 90, np.uint8), tmp_path / "blank.mkv", codec="ffv1"
    )
    code, err = rerun(tmp_path, blank, out, capsys, "--overwrite")
    assert_one_line(code, err, ["blank"])
    assert_untouched(out, before)
