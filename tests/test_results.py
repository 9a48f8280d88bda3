"""Reading stored results: a finished run opens; an unfinished one says what is missing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import sediment_xr as sx
from sediment_xr import pipeline, store
from sediment_xr.config import load_config
from sediment_xr.results import missing

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture
def config(tmp_path):
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={tmp_path / 'out'}"])
    return dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, chunk_frames=1))


def test_finished_run_opens_lazily(config):
    pipeline.run(config, progress=False)
    assert missing(config.output) == []
    cube = sx.open_results(config.output)
    assert cube["labels"].chunks is not None  # dask-backed
    assert set(cube.data_vars) >= {"labels", "cover", "class_cover"}
    assert "frame_status" in cube.coords
    assert "frames" not in cube  # not stored by default


def test_no_results_yet(tmp_path):
    with pytest.raises(sx.OutputError, match=r"no results in .*cube.zarr does not exist"):
        sx.open_results(str(tmp_path / "nothing"))


def test_unfinished_run_says_what_is_missing(config, monkeypatch):
    original = store._write_block

    def lost_after_two_chunks(positions, *blocks, **kwargs):
        if positions[0] >= 2:  # one frame per chunk: the task "ran" but its writes were lost
            return np.zeros(len(positions), np.int64)
        return original(positions, *blocks, **kwargs)

    monkeypatch.setattr(store, "_write_block", lost_after_two_chunks)
    with pytest.raises(sx.OutputError, match="label did not finish: 2 of 4 chunks are missing"):
        pipeline.run(config, progress=False)
    todo = missing(config.output)
    assert todo[0] == "label: 2 of 4 chunks not done (frames 2-3)"
    assert "cover.csv" in todo and "trend.csv" in todo
    with pytest.raises(sx.OutputError, match=r"incomplete .*label: 2 of 4 chunks not done") as err:
        sx.open_results(config.output)
    assert "Run the same `sediment-xr run` again" in str(err.value)
    with pytest.warns(sx.SedimentXRWarning, match=r"missing: label: 2 of 4 chunks"):
        cube = sx.open_results(config.output, allow_incomplete=True)
    # What was not labelled reads as no data, never as a cluster or a cover value.
    assert (cube["labels"].isel(time=slice(2, 4)).values == sx.NO_DATA).all()
    assert np.isnan(cube["cover"].isel(time=slice(2, 4)).values).all()
    assert np.isfinite(cube["cover"].isel(time=slice(0, 2)).values).all()
    monkeypatch.undo()
    pipeline.run(config, progress=False)
    assert missing(config.output) == []


def test_unfitted_model(config, monkeypatch):
    """A run stopped while fitting has written nothing (the fit comes before the output is
    touched); one stopped before its model.json is written is missing its model."""

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while fitting

    monkeypatch.setattr(pipeline, "fit_kmeans", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    assert missing(config.output) == ["cube.zarr (no run has written this output yet)"]
    monkeypatch.undo()
    write_text = store.Output.write_text

    def model_lost(self, name, text):
        if name == "model.json":
            raise KeyboardInterrupt  # the run dies as it writes its model
        write_text(self, name, text)

    monkeypatch.setattr(store.Output, "write_text", model_lost)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    assert missing(config.output)[:2] == [
        "model.json (the model is not fitted yet)",
        "label: 4 of 4 chunks not done (all frames)",
    ]


def test_unfinished_stored_frames(config, monkeypatch):
    config = dataclasses.replace(
        config, ingest=dataclasses.replace(config.ingest, store_frames=True)
    )
    original = store.Output.mark_done

    def frames_mark_lost_at_chunk_three(self, stage, fingerprint, index, **kwargs):
        if (stage, index) != ("frames", 3):  # killed between the chunk's two marks
            original(self, stage, fingerprint, index, **kwargs)

    monkeypatch.setattr(store.Output, "mark_done", frames_mark_lost_at_chunk_three)
    with pytest.raises(sx.OutputError, match="frames did not finish: 1 of 4 chunks"):
        pipeline.run(config, progress=False)
    todo = missing(config.output)
    assert todo[0] == "frames: 1 of 4 chunks not done (frames 3)"
    assert not any(item.startswith("label") for item in todo)  # labelled all the same
    monkeypatch.undo()
    result = pipeline.run(config, progress=False)
    assert result.computed[0] == "frames" and missing(config.output) == []  # labels were done
    cube = sx.open_results(config.output)
    window = sx.crop(pipeline.check(config), rows=[-400, None])  # the analysed window
    np.testing.assert_array_equal(cube["frames"].values, window.values)
    np.testing.assert_array_equal(cube["frames"]["y"].values, window["y"].values)


def test_run_killed_while_creating_the_cube(config, monkeypatch):
    """The root zarr.json (with the state) is written first, the arrays after it."""
    import json

    import zarr

    from sediment_xr.store import STATE_ATTR, Output

    def killed(self, template, attrs, *, state):
        group = zarr.open_group(self.zarr_store(), mode="w", zarr_format=3)
        group.attrs[STATE_ATTR] = json.dumps(dict(state))
        raise KeyboardInterrupt  # before any array exists

    monkeypatch.setattr(Output, "create_cube", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    assert missing(config.output) == ["cube.zarr (the run stopped while creating it)"]
    with pytest.raises(sx.OutputError, match=r"stopped while creating it"):
        sx.open_results(config.output)
    monkeypatch.undo()
    result = pipeline.run(config, progress=False)  # the same command: created again
    assert result.computed[:2] == ("fit", "label")
    assert missing(config.output) == []
