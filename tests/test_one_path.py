"""One path, one answer: ``sediment-xr run`` gives what the notebook's public functions give.

The command line runs on its embedded LocalCluster (two worker processes on 127.0.0.1); the
notebook path runs the public functions with dask's threads, on the same video chunked
differently. A frame of the video cannot be decoded, and the pixel sample is drawn from part
of the series only (``max_frames`` below its length).
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml

import sediment_xr as sx
from sediment_xr.cli import main
from sediment_xr.frames import FRAME_OK, FRAME_UNDECODABLE
from sediment_xr.store import Output
from sediment_xr.testing import synthetic_series

N_FRAMES = 40
BROKEN = 21  # inside the frames the sample is drawn from
SETTINGS = {
    "start_time": "2022-06-01T00:00:00",
    "frame_interval": "17h",
    "rows": [-75, None],
    "sample_size": 20_000,
    "random_state": 3,
    "max_frames": 16,
    "n_clusters": 4,
}


def mjpeg_with_a_broken_frame(path: Path) -> Path:
    """An MJPEG video of a mat-growth series whose frame BROKEN has its JPEG data zeroed."""
    series = synthetic_series(N_FRAMES, size=192, start_cover=20.0, slope=0.5, seed=5)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width = stream.height = 192
        stream.pix_fmt = "yuvj420p"
        for frame in series["frames"].values:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    assert len(starts) == N_FRAMES
    end = data.index(b"\xff\xd9", starts[BROKEN]) + 2
    data[starts[BROKEN] : end] = bytes(end - starts[BROKEN])
    path.write_bytes(bytes(data))
    return path


def notebook_path(video: Path, chunk_frames: int):
    """The lesson's steps with the public functions, as a notebook user writes them."""
    s = SETTINGS
    frames = sx.open_video(
        video,
        start_time=s["start_time"],
        frame_interval=s["frame_interval"],
        chunk_frames=chunk_frames,
    )
    window = sx.crop(frames, rows=s["rows"])
    positions = sx.sample_positions(window.sizes["time"], s["max_frames"])
    light = sx.fit_illumination(window.isel(time=positions))
    features = sx.preprocess(window, illumination=light, color_space="bgr")
    sample = sx.sample_pixels(
        features,
        sample_size=s["sample_size"],
        random_state=s["random_state"],
        max_frames=s["max_frames"],
    )
    model = sx.fit_kmeans(
        sample, n_clusters=s["n_clusters"], random_state=s["random_state"], illumination=light
    )
    cover = sx.cover(sx.label(features, model, median_filter=3)).compute()
    return sample, model, cover


@pytest.mark.distributed
def test_command_line_and_notebook_give_the_same_model_and_cover(tmp_path, capsys):
    video = mjpeg_with_a_broken_frame(tmp_path / "damaged.avi")
    s = SETTINGS
    config = {
        "input": str(video),
        "output": str(tmp_path / "out"),
        "ingest": {
            "start_time": s["start_time"],
            "frame_interval": s["frame_interval"],
            "chunk_frames": 8,
        },
        "preprocess": {"crop": {"rows": s["rows"]}},
        "cluster": {k: s[k] for k in ("n_clusters", "sample_size", "random_state", "max_frames")},
        "report": {"html": False, "video": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0  # a LocalCluster of 2 worker processes
    assert "1 of 40 frames" in capsys.readouterr().err  # the undecodable frame is named
    cube = Output(config["output"]).open_cube()
    stored_model = sx.ClusterModel.load(tmp_path / "out" / "model.json")

    sample, model, cover = notebook_path(video, chunk_frames=5)
    # The same sample whatever the chunks: 16 frames from the middle, the broken one left out.
    assert sx.sample_positions(N_FRAMES, s["max_frames"]).tolist() == list(range(16, 32))
    assert len(sample) == s["sample_size"] - s["sample_size"] // 16
    for chunks in (3, 8, 40):
        np.testing.assert_array_equal(notebook_path(video, chunks)[0], sample)
    # The same model (fitted in the client either way) ...
    assert stored_model.n_frames_sampled == 16 and stored_model.sample_size == len(sample)
    np.testing.assert_allclose(stored_model.centers_array, model.centers_array, atol=0.05)
    np.testing.assert_allclose(  # ... with the same light
        stored_model.illumination.coefficients, model.illumination.coefficients, atol=1e-6
    )
    # ... and the same cover, NaN for the frame that does not decode.
    status = cube["frame_status"].values
    assert status[BROKEN] == FRAME_UNDECODABLE and (np.delete(status, BROKEN) == FRAME_OK).all()
    stored = cube["cover"].values
    np.testing.assert_allclose(stored, cover.values, atol=1e-4, rtol=0)
    assert np.isnan(stored[BROKEN]).all() and np.isnan(cover.values[BROKEN]).all()
    assert np.isfinite(np.delete(stored, BROKEN, axis=0)).all()
    table = pd.read_csv(tmp_path / "out" / "cover.csv")
    np.testing.assert_allclose(
        table.filter(like="cluster_").to_numpy(), cover.values, atol=1e-4, rtol=0
    )
    assert table.loc[BROKEN].filter(like="cluster_").isna().all()
    # One label geometry: the crop's grid with the original pixel positions.
    np.testing.assert_array_equal(cube["y"].values, np.arange(192 - 75, 192))
    assert cube.attrs["crop_rows"] == [117, 192]
