"""The whole run: outputs, reuse and resume, known answers on real and synthetic data."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import sediment_xr as sx
from sediment_xr import pipeline, store, video
from sediment_xr.config import ClusterConfig, Config, CropConfig, IngestConfig, load_config
from sediment_xr.exceptions import OutputError
from sediment_xr.frames import FRAME_OK
from sediment_xr.store import COMPLETE_ATTR, Output
from sediment_xr.testing import sample_frames_dir, synthetic_series, write_video

CONFIGS = Path(__file__).parents[1] / "configs"


def shr_config(tmp_path, **changes) -> Config:
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={tmp_path / 'out'}"])
    return dataclasses.replace(config, **changes)


def open_cube(config: Config) -> xr.Dataset:
    return Output(config.output).open_cube()


@pytest.fixture(scope="module")
def shr_run(tmp_path_factory):
    config = shr_config(tmp_path_factory.mktemp("shr"))
    return config, pipeline.run(config, progress=False)


def test_output_folder_layout(shr_run):
    config, _result = shr_run
    out = Path(config.output)
    for name in ("cube.zarr", "cover.csv", "trend.csv", "clusters.json", "model.json"):
        assert (out / name).exists(), name
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["cluster"]["n_clusters"] == 4
    assert resolved["preprocess"]["crop"]["rows"] == [-400, None]

    cover = pd.read_csv(out / "cover.csv")
    assert list(cover.columns) == [
        "time",
        "frame",
        "cluster_0",
        "cluster_1",
        "cluster_2",
        "cluster_3",
        "bg",
        "bio",
        "quality",
    ]
    assert (cover["quality"] == "ok").all()  # lesson mode: only undecodable frames are flagged
    assert cover["time"].tolist() == [
        "2022-01-01T00:00:00",
        "2022-01-01T17:00:00",
        "2022-01-02T10:00:00",
        "2022-01-03T03:00:00",
    ]
    np.testing.assert_allclose(cover.filter(like="cluster_").sum(axis=1), 100.0)
    np.testing.assert_allclose(cover["bio"], cover["cluster_2"] + cover["cluster_3"], atol=1e-5)

    trend = pd.read_csv(out / "trend.csv")
    assert list(trend.columns)[:9] == [
        "name",
        "slope_per_day",
        "slope_per_frame",
        "intercept",
        "r2",
        "p_value",
        "ci_low",
        "ci_high",
        "n",
    ]
    assert trend["name"].tolist() == [f"cluster_{i}" for i in range(4)] + ["bg", "bio"]

    clusters = json.loads((out / "clusters.json").read_text())
    assert clusters["n_clusters"] == 4
    assert clusters["color_space"] == "bgr"
    assert [c["name"] for c in clusters["clusters"]] == ["bg", "bg", "bio", "bio"]
    assert all(len(c["center_rgb"]) == 3 for c in clusters["clusters"])
    np.testing.assert_allclose(
        sum(c["share_percent"] for c in clusters["clusters"]), 100, atol=0.01
    )


def test_lesson_shares_on_the_shr_frames(shr_run):
    """Done-when: shares sorted by brightness near the lesson's 43/33/16/7 %, bio ~23 %."""
    config, _ = shr_run
    clusters = json.loads((Path(config.output) / "clusters.json").read_text())["clusters"]
    shares = [c["share_percent"] for c in clusters]  # ids are darkest first
    np.testing.assert_allclose(shares, [43, 33, 16, 7], atol=3.0)
    assert abs(shares[2] + shares[3] - 23.0) < 3.0


def test_cube_is_cf_labelled_and_complete(shr_run):
    config, _ = shr_run
    cube = open_cube(config)
    assert cube.attrs[COMPLETE_ATTR] is True
    assert "frames" not in cube  # ingest.store_frames is off by default
    assert (cube["frame_status"].values == FRAME_OK).all()
    assert cube["labels"].dtype == np.int8
    assert cube["labels"].attrs["flag_values"] == [-1, 0, 1, 2, 3]
    assert cube["cover"].attrs["units"] == "percent"
    assert cube["time"].dtype.kind == "M"
    # one shard per time chunk (what one task writes), one inner chunk per frame; the dask
    # chunks of the opened cube are the time chunks
    assert cube["labels"].encoding["chunks"] == (1, 400, 1024)
    assert cube["labels"].encoding["shards"] == (2, 400, 1024)
    assert cube["labels"].chunks[0] == (2, 2)
    assert list(cube["class"].values) == ["bg", "bio"]
    # the labels are on the crop's grid, with the original pixel positions; the crop is data
    np.testing.assert_array_equal(cube["y"].values, np.arange(624, 1024))
    np.testing.assert_array_equal(cube["x"].values, np.arange(1024))
    assert cube.attrs["crop_rows"] == [624, 1024] and cube.attrs["crop_cols"] == [0, 1024]
    assert cube.attrs["frame_shape"] == [1024, 1024]
    assert cube["labels"].attrs["crop_rows"] == [624, 1024]
    assert (cube["labels"] >= 0).all()


def test_pipeline_equals_the_lazy_api(shr_run):
    """The fused per-chunk pipeline gives exactly the labels and cover of the public API."""
    config, result = shr_run
    cube = open_cube(config)
    features = sx.preprocess(
        pipeline.check(config), rows=[-400, None], illumination="clahe", color_space="bgr"
    )
    labels = sx.label(features, result.model)
    np.testing.assert_array_equal(cube["labels"].values, labels.values)
    xr.testing.assert_equal(cube["labels"]["y"], labels["y"])
    xr.testing.assert_allclose(
        cube["cover"].load().reset_coords(drop=True),
        sx.cover(labels).compute().reset_coords(drop=True),
    )


def test_rerun_reuses_and_classes_recompute_only_outputs(tmp_path):
    config = shr_config(tmp_path, classes=None)
    first = pipeline.run(config, progress=False)
    assert first.computed == ("fit", "label", "video")
    assert "bio" not in first.cover.columns
    chunk = Path(config.output, "cube.zarr", "labels", "c", "0", "0", "0")
    assert chunk.exists()
    stamp = chunk.stat().st_mtime_ns
    again = pipeline.run(config, progress=False)
    assert again.computed == ()
    with_classes = dataclasses.replace(config, classes={"bio": (2, 3), "bg": (0, 1)})
    third = pipeline.run(with_classes, progress=False)
    assert third.computed == ()
    assert chunk.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(
        third.cover.filter(like="cluster_"), first.cover.filter(like="cluster_")
    )
    np.testing.assert_allclose(
        third.cover["bio"], first.cover[["cluster_2", "cluster_3"]].sum(axis=1)
    )
    assert "bio" in third.trend["name"].tolist()


def test_changed_config_is_refused_unless_overwrite(tmp_path):
    config = shr_config(tmp_path)
    pipeline.run(config, progress=False)
    changed = dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, n_clusters=3), classes=None
    )
    with pytest.raises(OutputError, match=r"different config \(changed: cluster.n_clusters\)"):
        pipeline.run(changed, progress=False)
    assert open_cube(config).attrs[COMPLETE_ATTR] is True  # the old output is untouched
    result = pipeline.run(changed, overwrite=True, progress=False)
    assert result.computed == ("fit", "label", "video")  # frames are reused: same input and ingest
    assert open_cube(config).sizes["cluster"] == 3


def test_interrupted_label_stage_resumes(tmp_path, monkeypatch):
    config = shr_config(tmp_path)
    reference = pipeline.run(config, progress=False)
    expected = open_cube(config)["labels"].values
    # Simulate a crash: chunk 1 lost its mark and its data were never written.
    out = Output(config.output)
    (marks,) = Path(config.output, ".sediment_xr", "progress").glob("label-*")
    (marks / "000001").unlink()
    out.fs.rm(out.path("cube.zarr", "labels", "c", "1"), recursive=True)
    out.update_attrs(**{COMPLETE_ATTR: False})
    calls = []
    original = store._write_block

    def counting(positions, *blocks, **kwargs):
        calls.append(int(positions[0]))
        return original(positions, *blocks, **kwargs)

    monkeypatch.setattr(store, "_write_block", counting)
    resumed = pipeline.run(config, progress=False)
    assert calls == [2]  # the first frame of chunk 1: only that chunk is written again
    assert resumed.computed == ("label", "video")
    np.testing.assert_array_equal(open_cube(config)["labels"].values, expected)
    pd.testing.assert_frame_equal(resumed.cover, reference.cover)


def test_failed_run_does_not_look_complete(tmp_path, monkeypatch):
    config = shr_config(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(store, "_write_block", broken)
    with pytest.raises(RuntimeError, match="worker lost"):
        pipeline.run(config, progress=False)
    cube = open_cube(config)
    assert cube.attrs[COMPLETE_ATTR] is False
    assert not Path(config.output, "cover.csv").exists()
    monkeypatch.undo()
    assert pipeline.run(config, progress=False).computed == ("label", "video")
    assert open_cube(config).attrs[COMPLETE_ATTR] is True


def test_output_on_an_fsspec_url(tmp_path):
    local = shr_config(tmp_path)
    remote = dataclasses.replace(local, output="memory://sediment-xr-test/out")
    a = pipeline.run(local, progress=False)
    b = pipeline.run(remote, progress=False)
    pd.testing.assert_frame_equal(a.cover, b.cover)
    cube = Output(remote.output).open_cube()
    np.testing.assert_array_equal(cube["labels"].values, open_cube(local)["labels"].values)
    import fsspec

    fs = fsspec.filesystem("memory")
    assert (
        fs.cat("/sediment-xr-test/out/cover.csv").decode()
        == Path(local.output, "cover.csv").read_text()
    )
    fs.rm("/sediment-xr-test", recursive=True)


@pytest.mark.slow
def test_known_mat_trend_is_recovered(tmp_path):
    """Done-when: on a generated series the trend is within 10 % and each frame within 2 pp."""
    series = synthetic_series(24, size=512, start_cover=20.0, slope=0.5, seed=7)
    video = write_video(series["frames"], tmp_path / "mat.mp4", codec="libx264", crf=18)
    config = Config(
        input=str(video),
        output=str(tmp_path / "out"),
        ingest=IngestConfig(start_time="2022-06-01", frame_interval="17h", chunk_frames=8),
        # lesson mode: synthetic_series paints its mat without the frame's light, which a
        # flat field then bends (the realistic scene's accuracy is in test_accuracy.py)
        preprocess=dataclasses.replace(
            Config(input="x", output="y").preprocess,
            crop=CropConfig(rows=(-series.attrs["crop_rows"], None)),
            illumination="clahe",
        ),
        cluster=ClusterConfig(n_clusters=4, median_filter=0),
        classes={"sediment": (0, 1, 2), "mat": (3,)},
    )
    result = pipeline.run(config, progress=False)
    truth = series["true_cover"].values
    error = np.abs(result.cover["mat"].to_numpy() - truth)
    assert error.max() < 2.0, error
    mat = result.trend.set_index("name").loc["mat"]
    planted = series.attrs["slope_per_day"]
    assert abs(mat["slope_per_day"] - planted) < 0.1 * planted, (mat["slope_per_day"], planted)


def test_check_refuses_bad_crop_before_writing(tmp_path):
    config = shr_config(tmp_path)
    bad = dataclasses.replace(
        config,
        preprocess=dataclasses.replace(config.preprocess, crop=CropConfig(rows=(-9000, -8000))),
    )
    with pytest.raises(sx.InputError, match="crop needs rows inside the frame"):
        pipeline.run(bad, progress=False)
    assert not Path(config.output).exists()


def test_sample_frames_dir_is_bundled():
    assert len(list(sample_frames_dir().glob("frame_*.png"))) == 4


def test_a_stored_model_is_applied_to_another_run(shr_run, tmp_path):
    """cluster.model applies an earlier run's model.json: no refit, identical labels."""
    config, first = shr_run
    model_path = str(Path(config.output) / "model.json")
    reuse = dataclasses.replace(
        config,
        output=str(tmp_path / "reuse"),
        cluster=dataclasses.replace(config.cluster, model=model_path, random_state=99),
    )
    result = pipeline.run(reuse, progress=False)
    assert result.computed == ("model", "label", "video")
    assert result.model == first.model
    pd.testing.assert_frame_equal(result.cover, first.cover)
    mismatch = dataclasses.replace(
        reuse,
        output=str(tmp_path / "mismatch"),
        preprocess=dataclasses.replace(config.preprocess, color_space="lab"),
    )
    with pytest.raises(sx.InputError, match=r"fitted with other settings \(preprocess\.color_sp"):
        pipeline.run(mismatch, progress=False)
    assert not Path(mismatch.output).exists()


def test_files_it_did_not_write_are_never_replaced(tmp_path):
    config = shr_config(tmp_path)
    out = Path(config.output)
    out.mkdir()
    (out / "cover.csv").write_text("mine\n")
    with pytest.raises(OutputError, match=r"already holds cover.csv, not written by"):
        pipeline.run(config, progress=False)
    assert (out / "cover.csv").read_text() == "mine\n"


def test_credentials_are_not_stored(tmp_path):
    config = shr_config(tmp_path, storage_options={"key": "AKIA123", "secret": "SUPERSECRET"})
    pipeline.run(dataclasses.replace(config, storage_options={}), progress=False)
    from sediment_xr.config import dump_config, redacted_dict

    assert "SUPERSECRET" not in dump_config(config)
    assert redacted_dict(config)["storage_options"] == {"key": "***", "secret": "***"}


def test_chunks_too_big_for_a_task_are_refused():
    import dask.array as da

    from sediment_xr.config import DaskConfig
    from sediment_xr.scheduler import check_task_memory

    frames = xr.DataArray(
        da.zeros((200, 1024, 1024, 3), dtype=np.uint8, chunks=(100, -1, -1, -1)),
        dims=("time", "y", "x", "channel"),
    )
    expected = (
        "chunk_frames=100 puts 100 frames of 1024x1024 pixels in each task, about 800.00 MiB, "
        "more than the 512.00 MiB a task may use (half of memory_limit='1GiB' / "
        "threads_per_worker=1). Use chunk_frames=64 or fewer"
    )
    with pytest.raises(sx.ConfigError, match=re.escape(expected)):
        check_task_memory(frames, chunk_frames=100, dask_config=DaskConfig(memory_limit="1GiB"))
    check_task_memory(frames, chunk_frames=100)  # 800 MiB under the default 1 GiB: fine
    with pytest.raises(sx.ConfigError, match=r"where the workers' limit is unknown"):
        check_task_memory(frames.chunk({"time": 200}), chunk_frames=200)


def test_changed_input_files_are_noticed(tmp_path):
    import shutil

    stills = tmp_path / "stills"
    shutil.copytree(sample_frames_dir(), stills)
    config = dataclasses.replace(shr_config(tmp_path), input=str(stills))
    pipeline.run(config, progress=False)
    assert pipeline.run(config, progress=False).computed == ()  # unchanged: nothing to do
    # A file gained: refused, not mixed into the stored frames.
    shutil.copy(stills / "frame_0006.png", stills / "frame_0013.png")
    with pytest.raises(OutputError, match=r"other input files \(names, sizes or modification"):
        pipeline.run(config, progress=False)
    assert open_cube(config).sizes["time"] == 4  # the stored result is untouched
    result = pipeline.run(config, overwrite=True, progress=False)
    assert "label" in result.computed and open_cube(config).sizes["time"] == 5
    # A file replaced under the same name (new size and time): refused too.
    (stills / "frame_0013.png").write_bytes((stills / "frame_0010.png").read_bytes())
    with pytest.raises(OutputError, match=r"other input files"):
        pipeline.run(config, progress=False)


def test_refit_interrupted_after_overwrite_never_reuses_the_old_model(tmp_path, monkeypatch):
    """An --overwrite stopped while fitting leaves the finished output as it was (the fit
    comes before the output is touched: issue 14); the changed config then still needs
    --overwrite, and gets a new model, never the old one."""
    config = shr_config(tmp_path)
    pipeline.run(config, progress=False)
    model = Path(config.output, "model.json").read_bytes()
    changed = dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, n_clusters=3), classes=None
    )

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while fitting the new model

    monkeypatch.setattr(pipeline, "fit_kmeans", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(changed, overwrite=True, progress=False)
    assert Path(config.output, "model.json").read_bytes() == model  # the finished output
    assert open_cube(config).attrs[COMPLETE_ATTR] is True
    monkeypatch.undo()
    with pytest.raises(OutputError, match=r"different config \(changed: cluster.n_clusters\)"):
        pipeline.run(changed, progress=False)
    result = pipeline.run(changed, overwrite=True, progress=False)
    assert "fit" in result.computed and result.model.n_clusters == 3
    assert json.loads(Path(config.output, "clusters.json").read_text())["n_clusters"] == 3
    assert open_cube(config).sizes["cluster"] == 3


@pytest.mark.parametrize(
    ("max_frames", "store_frames", "sampled", "decoded"),
    [
        (240, False, [0, 1, 2], [0, 1, 2]),  # the sample's chunks are kept for labelling
        (4, False, [1], [0, 1, 2]),
        (4, True, [1], [0, 1, 2]),  # the frames stored come from the kept chunks too
    ],
)
def test_each_frame_is_decoded_once(
    small_series, tmp_path, monkeypatch, max_frames, store_frames, sampled, decoded
):
    """The sample decodes only its whole chunks, and labelling does not decode them again."""
    path = write_video(small_series["frames"], tmp_path / "v.mp4", codec="libx264", crf=20)
    calls = []
    original = video.decode_chunk

    def counting(source, wanted_pts, **kwargs):
        calls.append(tuple(wanted_pts))
        return original(source, wanted_pts, **kwargs)

    monkeypatch.setattr(video, "decode_chunk", counting)
    default = Config(input="x", output="y")
    config = Config(
        input=str(path),
        output=str(tmp_path / "out"),
        ingest=IngestConfig(
            start_time="2022-06-01",
            frame_interval="17h",
            chunk_frames=4,
            store_frames=store_frames,
        ),
        preprocess=dataclasses.replace(
            default.preprocess, crop=CropConfig(rows=(-small_series.attrs["crop_rows"], None))
        ),
        cluster=dataclasses.replace(default.cluster, max_frames=max_frames),
        report=dataclasses.replace(default.report, html=False, video=False),
    )
    assert pipeline.check(config).data.chunks[0] == (4, 4, 4)  # 12 frames in 3 chunks
    calls.clear()
    result = pipeline.run(config, progress=False)
    assert result.model.n_frames_sampled == 4 * len(sampled)
    starts = sorted({int(c[0]) for c in calls})  # the first frame's pts names the chunk
    assert sorted(starts.index(int(c[0])) for c in calls) == decoded
    first = calls[: len(sampled)]  # the sample is decoded (and fitted) before any labelling
    assert sorted(starts.index(int(c[0])) for c in first) == sampled
    # Kept or decoded again, the labelling gives the same answer.
    monkeypatch.setattr(pipeline, "KEEP_SAMPLE_BYTES", 0)
    again = dataclasses.replace(config, output=str(tmp_path / "again"))
    reference = pipeline.run(again, progress=False)
    pd.testing.assert_frame_equal(result.cover, reference.cover)
    assert result.model == reference.model


def test_changed_report_section_is_applied_on_rerun(tmp_path):
    import av

    config = shr_config(tmp_path)
    config = dataclasses.replace(
        config, report=dataclasses.replace(config.report, png_frames=(0, 1))
    )
    pipeline.run(config, progress=False)
    out = Path(config.output)
    slower = dataclasses.replace(
        config, report=dataclasses.replace(config.report, video_fps=2, png_frames=(), html=False)
    )
    assert pipeline.run(slower, progress=False).computed == ("video",)  # no relabelling
    with av.open(str(out / "segmented.mp4")) as container:
        assert container.streams.video[0].average_rate == 2
    assert not (out / "segmented").exists() and not (out / "report.html").exists()
    no_video = dataclasses.replace(slower, report=dataclasses.replace(slower.report, video=False))
    pipeline.run(no_video, progress=False)
    assert not (out / "segmented.mp4").exists()


def test_toggling_store_frames_never_refits_or_relabels(tmp_path):
    config = shr_config(tmp_path)
    first = pipeline.run(config, progress=False)
    stored = dataclasses.replace(
        config, ingest=dataclasses.replace(config.ingest, store_frames=True)
    )
    again = pipeline.run(stored, progress=False)  # no --overwrite needed
    assert again.computed == ("frames",)  # the frames are written; no fit, no new labels
    assert again.model == first.model
    pd.testing.assert_frame_equal(again.cover, first.cover)
    cube = open_cube(config)
    window = sx.crop(pipeline.check(config), rows=[-400, None])
    np.testing.assert_array_equal(cube["frames"].values, window.values)
    off = pipeline.run(config, progress=False)
    assert off.computed == () and "frames" not in open_cube(config)
    assert sx.open_results(config.output).attrs["sediment_xr_complete"] is True


def test_changing_only_the_report_or_dask_settings_recomputes_nothing(tmp_path):
    config = shr_config(tmp_path)
    pipeline.run(config, progress=False)
    quiet = dataclasses.replace(
        config,
        report=dataclasses.replace(config.report, html=False),
        dask=dataclasses.replace(config.dask, n_workers=3),
    )
    assert pipeline.run(quiet, progress=False).computed == ()
    assert not Path(config.output, "report.html").exists()


def test_changed_classes_replace_the_class_coordinate(tmp_path):
    config = shr_config(tmp_path)
    pipeline.run(config, progress=False)
    renamed = dataclasses.replace(config, classes={"a": (0,), "b": (1, 2, 3)})
    assert pipeline.run(renamed, progress=False).computed == ()
    cube = sx.open_results(config.output)
    assert list(cube["class"].values) == ["a", "b"]
    np.testing.assert_allclose(
        cube["class_cover"].sel({"class": "b"}),
        cube["cover"].isel(cluster=[1, 2, 3]).sum("cluster"),
    )
    three = dataclasses.replace(config, classes={"x": (0,), "y": (1,), "z": (2, 3)})
    result = pipeline.run(three, progress=False)
    assert list(sx.open_results(config.output)["class"].values) == ["x", "y", "z"]
    assert list(result.cover.columns[-4:]) == ["x", "y", "z", "quality"]
    pipeline.run(config, progress=False)  # and back
    assert list(sx.open_results(config.output)["class"].values) == ["bg", "bio"]


def test_frame_numbers_survive_turning_store_frames_off(small_series, tmp_path):
    """The frame coordinate (source frame numbers, here of an fps-sampled video) stays."""
    path = write_video(small_series["frames"], tmp_path / "v.mp4", codec="libx264", fps=10)
    default = Config(input="x", output="y")
    config = Config(
        input=str(path),
        output=str(tmp_path / "out"),
        ingest=IngestConfig(
            fps=4, start_time="2022-06-01", frame_interval="17h", chunk_frames=2, store_frames=True
        ),
        preprocess=dataclasses.replace(
            default.preprocess, crop=CropConfig(rows=(-small_series.attrs["crop_rows"], None))
        ),
        report=dataclasses.replace(default.report, html=False, video=False),
    )
    first = pipeline.run(config, progress=False)
    assert first.cover["frame"].tolist() == [0, 2, 5, 7, 10]
    off = dataclasses.replace(
        config, ingest=dataclasses.replace(config.ingest, store_frames=False)
    )
    again = pipeline.run(off, progress=False)
    assert again.cover["frame"].tolist() == [0, 2, 5, 7, 10]
    cube = sx.open_results(config.output)
    assert {"frame", "frame_status"} <= set(cube.coords) and "frames" not in cube


def test_a_notebook_model_and_a_changed_model_file(shr_run, tmp_path):
    """A model saved in a notebook (no preprocessing recorded) applies; a new file refits."""
    config, first = shr_run
    notebook = sx.ClusterModel(centers=first.model.centers, color_space="bgr")
    path = tmp_path / "notebook_model.json"
    notebook.save(path)
    reuse = dataclasses.replace(
        config,
        output=str(tmp_path / "reuse"),
        cluster=dataclasses.replace(config.cluster, model=str(path)),
    )
    result = pipeline.run(reuse, progress=False)
    assert result.computed[:2] == ("model", "label")
    pd.testing.assert_frame_equal(result.cover, first.cover)
    # The same path, another model in it: the stored labels no longer follow from it.
    centers = np.asarray(first.model.centers) * 0.9
    sx.ClusterModel(centers=tuple(map(tuple, centers)), color_space="bgr").save(path)
    with pytest.raises(OutputError, match=r"different config|other input"):
        pipeline.run(reuse, progress=False)
    again = pipeline.run(reuse, overwrite=True, progress=False)
    assert again.model.centers != first.model.centers


def test_reports_follow_the_model_and_the_report_section_after_interruptions(
    tmp_path, monkeypatch
):
    import av

    from sediment_xr import visuals

    config = shr_config(tmp_path)
    pipeline.run(config, progress=False)
    video = Path(config.output, "segmented.mp4")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies before it writes the report files

    # A refit whose run dies before the report: the old video is not kept.
    monkeypatch.setattr(pipeline, "write_report_files", killed)
    three = dataclasses.replace(config, cluster=ClusterConfig(n_clusters=3), classes=None)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(three, overwrite=True, progress=False)
    assert not video.exists()
    monkeypatch.undo()
    assert "video" in pipeline.run(three, progress=False).computed
    # A changed report section whose run dies: the next run still applies it.
    slow = dataclasses.replace(three, report=dataclasses.replace(three.report, video_fps=5))
    monkeypatch.setattr(pipeline, "write_report_files", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(slow, progress=False)
    monkeypatch.setattr(pipeline, "write_report_files", visuals.write_report_files)
    pipeline.run(slow, progress=False)
    with av.open(str(video)) as container:
        assert container.streams.video[0].average_rate == 5


@pytest.mark.parametrize(
    "report", [{"png_frames": (0, 4)}, {"example_frame": 99}], ids=["png", "example"]
)
def test_report_frames_that_do_not_exist_are_refused_before_writing(tmp_path, report):
    config = shr_config(tmp_path)
    bad = dataclasses.replace(config, report=dataclasses.replace(config.report, **report))
    with pytest.raises(sx.InputError, match=r"need positions below 4 \(the number of frames\)"):
        pipeline.run(bad, progress=False)
    assert not Path(config.output).exists()
