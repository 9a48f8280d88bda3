"""Segmented images and video, painted from stored labels."""

from __future__ import annotations

import av
import numpy as np
import xarray as xr

from sediment_xr.segment import overlay, paint, write_segmented_pngs, write_segmented_video
from sediment_xr.testing import raise_if_dask_computes

COLORS = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 0]], dtype=np.uint8)


def labels_da(n=5, height=13, width=25, seed=0) -> xr.DataArray:
    """Labels of an analysed window of 13 x 25 pixels (rows 7-19 of the frame)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 3, size=(n, height, width)).astype(np.int8)
    values[1, 0, 0] = -1  # a pixel without data
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords={"y": np.arange(7, 7 + height), "x": range(width)}
    )


def test_paint_known_answer_and_no_data():
    lab = xr.DataArray(np.array([[[0, 1], [2, -1]]], np.int8), dims=("time", "y", "x"))
    out = paint(lab, COLORS, no_data_color=(1, 2, 3)).values
    np.testing.assert_array_equal(out[0, 0, 0], COLORS[0])
    np.testing.assert_array_equal(out[0, 0, 1], COLORS[1])
    np.testing.assert_array_equal(out[0, 1, 0], COLORS[2])
    np.testing.assert_array_equal(out[0, 1, 1], [1, 2, 3])


def test_paint_of_every_label_byte_is_the_palette_lookup():
    """The compiled painting gives each int8 label its colour, and every value that is not
    a cluster (-1, other negatives, k and above) the no-data colour, like numpy's lookup."""
    lab = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)
    out = paint(xr.DataArray(lab, dims=("time", "y", "x")), COLORS, no_data_color=(1, 2, 3))
    expected = np.where(
        ((lab >= 0) & (lab < len(COLORS)))[..., None], COLORS[np.clip(lab, 0, 2)], [1, 2, 3]
    )
    np.testing.assert_array_equal(out.values, expected)


def test_paint_numpy_equals_dask_and_is_lazy():
    lab = labels_da()
    with raise_if_dask_computes():
        lazy = paint(lab.chunk({"time": 2}), COLORS)
    np.testing.assert_array_equal(lazy.values, paint(lab, COLORS).values)
    assert lazy.dims == ("time", "y", "x", "channel")


def test_overlay_blends():
    frames = xr.DataArray(np.full((1, 2, 2, 3), 100, np.uint8), dims=("time", "y", "x", "channel"))
    seg = xr.DataArray(np.full((1, 2, 2, 3), 200, np.uint8), dims=("time", "y", "x", "channel"))
    np.testing.assert_array_equal(overlay(frames, seg, alpha=0.25).values, 125)


def test_segmented_video_has_one_frame_per_label_frame(tmp_path):
    lab = labels_da(n=7).chunk({"time": 3})
    path = tmp_path / "segmented.mp4"
    assert write_segmented_video(lab, COLORS, path, fps=5) == 7
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 7
    # an odd window (13 x 25) gets a black row and column for H.264
    assert frames[0].shape == (14, 26, 3)
    inside = frames[0][:13, :25].mean()
    assert frames[0][13].mean() < inside / 2 and frames[0][:, 25].mean() < inside / 2
    assert not list(tmp_path.glob("*.partial*"))


def test_segmented_video_of_a_one_row_window(tmp_path):
    lab = labels_da(n=3, height=1, width=5)
    assert write_segmented_video(lab, COLORS, tmp_path / "thin.mp4", fps=5) == 3
    with av.open(str(tmp_path / "thin.mp4")) as container:
        shapes = {f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)}
    assert shapes == {(2, 6, 3)}


def test_segmented_pngs(tmp_path):
    import cv2

    written = {}
    names = write_segmented_pngs(labels_da(), COLORS, [0, 3], written.__setitem__)
    assert names == ["segmented/frame_000000.png", "segmented/frame_000003.png"]
    image = cv2.imdecode(np.frombuffer(written[names[1]], np.uint8), cv2.IMREAD_COLOR)
    expected = paint(labels_da().isel(time=3), COLORS).values
    np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), expected)
