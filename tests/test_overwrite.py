"""Never overwrite silently: a different config is refused, --overwrite replaces only ours."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from pathlib import Path

import pytest

from sediment_xr import cli, pipeline, scheduler
from sediment_xr.config import load_config

CONFIGS = Path(__file__).parents[1] / "configs"


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished(tmp_path) -> Path:
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={tmp_path / 'out'}"])
    config = dataclasses.replace(
        config, report=dataclasses.replace(config.report, png_frames=(0, 1))
    )
    pipeline.run(config, progress=False)
    out = Path(config.output)
    (out / "notes.txt").write_text("field notes of the analyst\n")
    (out / "figures").mkdir()
    (out / "figures" / "fig1.svg").write_text("<svg/>")
    return out


def test_different_config_is_refused_and_nothing_changes(finished, capsys, monkeypatch):
    monkeypatch.setattr(scheduler, "dask_client", lambda *a, **k: contextlib.nullcontext())
    before = _snapshot(finished)
    code = cli.main(
        [
            *("run", str(CONFIGS / "shr_frames.yaml"), "--set", f"output={finished}"),
            *("--set", "cluster.n_clusters=3", "--set", "classes=null"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "different config (changed: cluster.n_clusters)" in err and "--overwrite" in err
    assert _snapshot(finished) == before


def test_overwrite_replaces_only_what_the_tool_created(finished, monkeypatch):
    monkeypatch.setattr(scheduler, "dask_client", lambda *a, **k: contextlib.nullcontext())
    old_model = (finished / "model.json").read_text()
    assert sorted(p.name for p in (finished / "segmented").iterdir()) == [
        "frame_000000.png",
        "frame_000001.png",
    ]
    code = cli.main(
        [
            *("run", str(CONFIGS / "shr_frames.yaml"), "--set", f"output={finished}", "--quiet"),
            *("--set", "ingest.resize=[512, 512]", "--set", "preprocess.crop.rows=[-200, null]"),
            "--overwrite",
        ]
    )
    assert code == 0
    # The analyst's files are untouched...
    assert (finished / "notes.txt").read_text() == "field notes of the analyst\n"
    assert (finished / "figures" / "fig1.svg").read_text() == "<svg/>"
    # ...ours are all new: frames at the new size, a new model, and no PNGs left from the
    # old run (this config asks for none).
    cube = pipeline.Output(str(finished)).open_cube()
    assert cube.attrs["frame_shape"] == [512, 512]  # frames resized to 512 x 512...
    assert cube.sizes["y"] == 200 and cube.sizes["x"] == 512  # ...and the new crop's grid
    assert (finished / "model.json").read_text() != old_model
    assert not (finished / "segmented").exists()
