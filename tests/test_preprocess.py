"""Crop, CLAHE and colour spaces: numpy vs dask, laziness, known answers, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import xarray as xr
from conftest import LESSON, as_dask, assert_identical_except_history

import sediment_xr as sx
from sediment_xr.exceptions import ConfigError, InputError
from sediment_xr.preprocess import COLOR_SPACES, to_rgb
from sediment_xr.testing import raise_if_dask_computes


def lesson_preprocess(bgr: np.ndarray) -> np.ndarray:
    """The lesson's preprocess_image, verbatim in behaviour (OpenCV BGR in and out)."""
    cropped = bgr[-400:, :, :]
    hsv = cv2.cvtColor(cropped, cv2.COLOR_BGR2HSV)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    hsv[:, :, 2] = clahe.apply(hsv[:, :, 2])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


@pytest.mark.parametrize(
    ("rows", "cols", "shape"),
    [
        ([-400, None], None, (400, 1024)),
        ([None, 10], [5, -5], (10, 1014)),
        ([100, 200], [None, None], (100, 1024)),
        (None, [-1, None], (1024, 1)),
    ],
)
def test_crop_has_python_slice_semantics(shr_frames, rows, cols, shape):
    out = sx.crop(shr_frames, rows=rows, cols=cols)
    assert out.shape[1:3] == shape
    ys = slice(*(rows or [None, None]))
    xs = slice(*(cols or [None, None]))
    np.testing.assert_array_equal(out.values, shr_frames.values[:, ys, xs])
    # original pixel positions are kept as coordinates
    np.testing.assert_array_equal(out.y.values, np.arange(1024)[ys])


@pytest.mark.parametrize("rows", [[-9000, -8000], [2000, None], [500, 100]])
def test_crop_outside_the_frame_is_refused(shr_frames, rows):
    with pytest.raises(InputError, match=r"crop needs rows inside the frame \(1024 rows\)"):
        sx.crop(shr_frames, rows=rows)


@pytest.mark.parametrize("rows", ["abc", [1, 2, 3], [1.5, None], [True, None]])
def test_crop_bad_bounds(shr_frames, rows):
    with pytest.raises(ConfigError, match="rows needs"):
        sx.crop(shr_frames, rows=rows)


def test_enhance_matches_the_lesson_clahe(shr_frames):
    """CLAHE on V in RGB order equals the lesson's BGR code, up to hue rounding."""
    rgb = shr_frames.values[0]
    ours = sx.enhance(sx.crop(shr_frames.isel(time=[0]), rows=[-400, None])).values[0]
    lesson = lesson_preprocess(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    lesson_rgb = cv2.cvtColor(lesson, cv2.COLOR_BGR2RGB)
    # V (the max channel) is exactly the lesson's; channels differ by hue rounding only.
    np.testing.assert_array_equal(ours.max(-1), lesson_rgb.max(-1))
    assert np.abs(ours.astype(int) - lesson_rgb).max() <= 3
    assert np.mean(ours != lesson_rgb) < 0.02


@pytest.mark.parametrize("color_space", COLOR_SPACES)
def test_preprocess_numpy_equals_dask(shr_frames, color_space):
    kwargs = {**LESSON, "color_space": color_space}
    expected = sx.preprocess(shr_frames, **kwargs)
    lazy = sx.preprocess(as_dask(shr_frames, 1), **kwargs)
    assert lazy.chunks is not None
    assert lazy.chunks[0] == (1, 1, 1, 1)
    assert_identical_except_history(lazy.compute(), expected)
    assert expected.dtype == np.uint8
    assert expected.attrs["color_space"] == color_space


def test_preprocess_is_lazy(shr_frames):
    lazy_in = as_dask(shr_frames)
    with raise_if_dask_computes():
        out = sx.preprocess(lazy_in, **LESSON)
        sx.enhance(lazy_in)
        sx.to_color_space(lazy_in, "lab")
    assert out.chunks[0] == (2, 2)
    # spatially chunked input is made whole-frame (CLAHE needs whole frames)
    odd = shr_frames.chunk({"time": 1, "y": 256})
    np.testing.assert_array_equal(sx.enhance(odd).values, sx.enhance(shr_frames).values)


@pytest.mark.parametrize("color_space", ["rgb", "bgr", "hsv", "lab"])
def test_color_space_round_trip(color_space):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(1, 16, 16, 3), dtype=np.uint8)
    frames = xr.DataArray(rgb, dims=("time", "y", "x", "channel"))
    feats = sx.to_color_space(frames, color_space).values
    back = to_rgb(feats, color_space)
    # 8-bit HSV and Lab quantise: saturated random colours come back a few levels off.
    error = np.abs(back.astype(int) - rgb)
    assert error.max() <= {"rgb": 0, "bgr": 0, "hsv": 8, "lab": 16}[color_space]
    assert error.mean() <= {"rgb": 0, "bgr": 0, "hsv": 1.5, "lab": 1.5}[color_space]
    if color_space == "bgr":
        np.testing.assert_array_equal(feats, rgb[..., ::-1])


def test_bad_arguments(shr_frames):
    with pytest.raises(ConfigError, match="color_space needs one of bgr, rgb, hsv, lab"):
        sx.to_color_space(shr_frames, "xyz")
    with pytest.raises(ConfigError, match="clip_limit needs a positive finite number"):
        sx.enhance(shr_frames, clip_limit=-1)
    with pytest.raises(ConfigError, match="tile_grid_size needs"):
        sx.enhance(shr_frames, tile_grid_size=(0, 8))
    with pytest.raises(InputError, match="needs uint8 frames"):
        sx.enhance(shr_frames.astype(float))
    with pytest.raises(InputError, match=r"dims \(time, y, x, channel\)"):
        sx.enhance(shr_frames.isel(channel=0))


@pytest.mark.parametrize("color_space", COLOR_SPACES)
def test_preprocess_equals_its_steps(shr_frames, color_space):
    """The one-task kernel gives the pixels of crop -> enhance -> to_color_space."""
    frames = shr_frames.isel(time=[0, 3])
    steps = sx.to_color_space(sx.enhance(sx.crop(frames, rows=[-400, None])), color_space)
    fused = sx.preprocess(frames, rows=[-400, None], illumination="clahe", color_space=color_space)
    np.testing.assert_array_equal(fused.values, steps.values)
    assert fused.attrs["crop_rows"] == [624, 1024] and fused.attrs["color_space"] == color_space
