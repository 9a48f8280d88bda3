"""Helpers for testing and demonstrating sediment_xr: scenes with known cover, tiny videos.

:func:`synthetic_series` starts from a real frame of the OOI Southern Hydrate Ridge camera,
grows white bacterial mat over it by a known area per frame, adds lighting flicker and sensor
noise, and records the true mat cover of every frame. :func:`write_video` and
:func:`write_images` turn frames into the inputs a user would have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._scene import EVENTS

__all__ = [
    "EVENTS",
    "raise_if_dask_computes",
    "realistic_series",
    "sample_frame",
    "sample_frames_dir",
    "synthetic_series",
    "write_images",
    "write_video",
]

#: Colour (RGB) of white Beggiatoa mat under the camera's lights, from the SHR sample frames.
MAT_RGB = np.array([214.0, 236.0, 222.0])


def sample_frames_dir() -> Path:
    """Folder of the bundled Southern Hydrate Ridge frames (NSF-OOI / UW RCA)."""
    return Path(str(resources.files("sediment_xr") / "data" / "shr_frames"))


def sample_frame(name: str = "frame_0006.png") -> np.ndarray:
    """One bundled real SHR frame as uint8 RGB ``(1024, 1024, 3)``."""
    import cv2

    path = sample_frames_dir() / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:  # pragma: no cover - packaging error
        raise FileNotFoundError(f"bundled sample frame {path} is missing; reinstall sediment_xr")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    field = rng.standard_normal(shape).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def synthetic_series(
    n_frames: int = 24,
    *,
    size: int = 1024,
    crop_rows: int | None = None,
    start_cover: float = 20.0,
    slope: float = 0.25,
    flicker: float = 0.05,
    noise: float = 2.5,
    start_time: str = "2022-06-01T00:00:00",
    frame_interval: str = "17h",
    seed: int = 0,
) -> xr.Dataset:
    """Build a time series of frames whose white-mat cover grows by a known amount per frame.

    The scene is the bundled real frame ``frame_0006.png``, resized to ``size`` x ``size``.
    In the analysed area (the bottom ``crop_rows`` rows) the real sediment is kept but darkened
    so that only the planted mat is white; mat patches then grow, following a smooth random
    field seeded by where the real mats are, so that exactly
    ``start_cover + slope * frame`` percent of the analysed area is mat in each frame.
    Every frame gets a global lighting gain ``1 + flicker * (sin + noise)`` and Gaussian sensor
    noise of standard deviation ``noise`` (in 0-255 units).

    Parameters
    ----------
    n_frames : int, default 24
        Number of frames.
    size : int, default 1024
        Width and height of the frames in pixels.
    crop_rows : int, optional
        Height of the analysed bottom strip; by default ``400 / 1024`` of ``size`` (the
        lesson's ``rows: [-400, null]``).
    start_cover, slope : float
        True mat cover of the first frame (percent) and its change per frame (percentage
        points).
    flicker, noise : float
        Relative amplitude of the lighting flicker and sensor noise level.
    start_time, frame_interval : str
        Time of the first frame and time between frames.
    seed : int
        Seed of the mat pattern, flicker and noise.

    Returns
    -------
    xarray.Dataset
        ``frames`` uint8 ``(time, y, x, channel)`` and ``true_cover`` (percent, ``(time,)``);
        attrs ``crop_rows``, ``slope_per_frame``, ``slope_per_day``.
    """
    import cv2

    if crop_rows is None:
        crop_rows = round(size * 400 / 1024)
    end_cover = start_cover + slope * (n_frames - 1)
    if not (0 <= start_cover <= 100 and 0 <= end_cover <= 100):
        raise ValueError(f"cover must stay within 0-100 %, got {start_cover} to {end_cover}")
    rng = np.random.default_rng(seed)
    base = sample_frame().astype(np.float32)
    if size != base.shape[0]:
        base = cv2.resize(base, (size, size), interpolation=cv2.INTER_AREA)
    strip = base[-crop_rows:]
    # Darken the real sediment so that only planted mat is white: keep its texture and hue.
    luma = strip @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    strip_dark = strip * 0.42
    # Where mat grows: real bright patches first, then a smooth random field.
    bright = cv2.GaussianBlur(luma, (0, 0), sigmaX=max(size / 128, 1.0))
    bright = (bright - bright.mean()) / (bright.std() + 1e-12)
    priority = bright + 0.8 * _smooth_noise(luma.shape, max(size / 48, 1.0), rng)
    order = np.argsort(-priority, axis=None, kind="stable")
    n_pix = priority.size
    texture = np.clip(0.94 + 0.06 * luma / max(luma.max(), 1.0), 0.0, 1.0)[..., None]
    mat = MAT_RGB[None, None, :].astype(np.float32) * texture
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    truth = np.empty(n_frames)
    phase = rng.uniform(0, 2 * np.pi)
    for t in range(n_frames):
        n_mat = round((start_cover + slope * t) / 100 * n_pix)
        mask = np.zeros(n_pix, dtype=bool)
        mask[order[:n_mat]] = True
        mask = mask.reshape(luma.shape)
        truth[t] = 100.0 * n_mat / n_pix
        img = base.copy()
        img[-crop_rows:] = np.where(mask[..., None], mat, strip_dark)
        gain = 1.0 + flicker * (np.sin(phase + 2 * np.pi * t / 7.0) + 0.5 * rng.standard_normal())
        img = img * gain + rng.normal(0.0, noise, img.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    time = pd.date_range(start_time, periods=n_frames, freq=pd.Timedelta(frame_interval))
    per_day = slope / (pd.Timedelta(frame_interval) / pd.Timedelta(days=1))
    coords = {"time": time, "frame": ("time", np.arange(n_frames))}
    ds = xr.Dataset(
        {
            "frames": (("time", "y", "x", "channel"), frames, {"channel_order": "RGB"}),
            "true_cover": (
                ("time",),
                truth,
                {"long_name": "true white-mat cover of the analysed area", "units": "percent"},
            ),
        },
        coords={**coords, "y": np.arange(size), "x": np.arange(size)},
        attrs={
            "crop_rows": int(crop_rows),
            "slope_per_frame": float(slope),
            "slope_per_day": float(per_day),
            "source": "sediment_xr.testing.synthetic_series from NSF-OOI / UW RCA frame_0006",
        },
    )
    return ds


def write_video(
    frames: np.ndarray | xr.DataArray,
    path: str | Path,
    *,
    codec: str = "libx264",
    fps: int = 10,
    crf: int = 18,
) -> Path:
    """Write uint8 RGB frames ``(time, y, x, 3)`` as a video with PyAV.

    ``codec="libx264"`` writes H.264 (yuv420p, ``crf`` quality) in .mp4; ``codec="ffv1"``
    writes lossless FFV1 (use a .mkv path), which round-trips pixels exactly.
    """
    import av

    data = np.asarray(frames.values if isinstance(frames, xr.DataArray) else frames)
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = data.shape[1], data.shape[2]
        if codec == "ffv1":
            stream.pix_fmt = "bgr0"
        else:
            stream.pix_fmt = "yuv420p"
            # one encoder thread: the same frames give the same bytes (x264's threads do not)
            stream.options = {"crf": str(crf), "g": "8", "threads": "1"}
        for frame in data:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_images(
    frames: xr.DataArray,
    folder: str | Path,
    *,
    prefix: str = "CAMDSB103_10.33.9.6",
    ext: str = "png",
) -> list[Path]:
    """Write frames as stills named with their time in the OOI pattern.

    File names look like ``CAMDSB103_10.33.9.6_20220601T000000_UTC.png``.
    """
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in zip(pd.DatetimeIndex(frames["time"].values), frames.values, strict=True):
        path = folder / f"{prefix}_{t:%Y%m%dT%H%M%S}_UTC.{ext}"
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


class _CountingScheduler:
    """A dask scheduler that counts computes and fails past a maximum."""

    def __init__(self, max_computes: int) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were scheduled: {self.total_computes} > "
                f"{self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Fail if more than ``max_computes`` dask computations run inside the block.

    >>> with raise_if_dask_computes():
    ...     lazy = sediment_xr.preprocess(frames)  # doctest: +SKIP
    """
    import dask

    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def realistic_series(
    n_frames: int = 48,
    *,
    size: int = 1024,
    crop_rows: int | None = None,
    start_cover: float = 12.0,
    end_cover: float = 30.0,
    flicker: float = 0.10,
    vignetting: float = 0.35,
    lamp_ageing: float = 0.0,
    noise: float = 3.0,
    pebbles: float = 0.04,
    compression: str | None = "mjpeg",
    quality: int = 80,
    events: Mapping[str, Sequence[int]] | float = 0.0,
    start_time: str = "2022-06-01T00:00:00",
    frame_interval: str = "17h",
    seed: int = 0,
) -> xr.Dataset:
    """A planted-truth series as hard as a real camera's: the test scene of sediment_xr.

    Built from the bundled real SHR frame ``frame_0006.png``. In the analysed strip (the
    bottom ``crop_rows`` rows):

    - **sediment** keeps the real frame's texture (its real mats and shells filled in from the
      surroundings, its lighting divided out), with large-scale mottling;
    - **pale pebbles and shells** cover ``pebbles`` of the strip, each with a colour 35-70 % of
      the way from the sediment's to the mat's;
    - **mat** has coarse and fine texture, noisy colour, dark specks and soft edges (mixed
      pixels), and grows linearly from ``start_cover`` to ``end_cover`` percent, first where
      the real frame has mat, then along a smooth random field.

    Light is then applied as a camera sees it: radial **vignetting** (light lost at the edge of
    the beam), per-frame **flicker**, **lamp ageing** (by the last frame the lamp has lost
    ``lamp_ageing`` x (55, 85, 140) % of its red, green and blue light: darker and warmer),
    Gaussian **sensor noise**, and **compression** (per-frame JPEG as in MJPEG, or an H.264
    round trip). **Events** are injected into chosen frames (see :data:`EVENTS`): ``dark``,
    ``moved`` (shift plus rotation; the truth moves with the scene), ``occluded`` (a fish or a
    tether; the hidden pixels are marked in the mask), ``turbid`` and ``overexposed``.

    Parameters
    ----------
    n_frames : int, default 48
        Number of frames.
    size : int, default 1024
        Width and height of the frames.
    crop_rows : int, optional
        Height of the analysed strip; by default ``400 / 1024`` of ``size`` (the lesson's
        ``rows: [-400, null]``).
    start_cover, end_cover : float, default 12, 30
        True mat cover (percent of the strip) of the first and last frame.
    flicker : float, default 0.10
        Relative amplitude of the per-frame lighting gain.
    vignetting : float, default 0.35
        Share of the light lost at the edge of the lamps' beam.
    lamp_ageing : float, default 0
        Light lost by the last frame (0.3: about 17 % of red, 26 % of green, 42 % of blue).
    noise : float, default 3
        Standard deviation of the sensor noise (0-255 units).
    pebbles : float, default 0.04
        Share of the strip covered by pale pebbles and shells (under the mat where it grows).
    compression : {"mjpeg", "h264", None}, default "mjpeg"
        Compression round trip of the frames.
    quality : int, default 80
        JPEG quality (``mjpeg``) or H.264 ``crf`` (``h264``).
    events : mapping or float, default 0
        ``{"dark": [5, 17], ...}`` puts events in those frames; a number in ``[0, 0.5)`` is
        the share of frames (after the first) given an event, the kinds in turn.
    start_time, frame_interval : str
        Time of the first frame and the time between frames.
    seed : int, default 0
        Seed of everything random.

    Returns
    -------
    xarray.Dataset
        ``frames`` uint8 RGB ``(time, y, x, channel)``; ``mask`` int8 ``(time, y_strip, x)``
        on the strip's rows (0 sediment, 1 mat, -1 hidden by an occluder); ``true_cover``
        percent mat of the strip (the scene's, also under an occluder); ``event`` (``ok`` or
        the event's name). Attributes ``crop_rows``, ``slope_per_frame`` and
        ``slope_per_day`` (the planted trend) and the settings.

    Examples
    --------
    >>> scene = realistic_series(24, size=256, lamp_ageing=0.3, events=0.15)  # doctest: +SKIP
    >>> scene["true_cover"].values[[0, -1]]  # doctest: +SKIP
    array([12., 30.])
    """
    from sediment_xr import _scene

    if crop_rows is None:
        crop_rows = round(size * 400 / 1024)
    if not (0 <= start_cover <= 100 and 0 <= end_cover <= 100):
        raise ValueError(f"cover must stay within 0-100 %, got {start_cover} to {end_cover}")
    if not 0 < crop_rows <= size:
        raise ValueError(f"crop_rows must be in 1..{size}, got {crop_rows}")
    settings = {
        "start_cover": float(start_cover),
        "end_cover": float(end_cover),
        "flicker": float(flicker),
        "vignetting": float(vignetting),
        "lamp_ageing": float(lamp_ageing),
        "noise": float(noise),
        "pebbles": float(pebbles),
        "compression": str(compression),
        "quality": int(quality),
        "seed": int(seed),
    }
    frames, masks, truth, event = _scene.realistic_frames(
        n_frames,
        size=size,
        crop_rows=crop_rows,
        start_cover=start_cover,
        end_cover=end_cover,
        flicker=flicker,
        vignetting=vignetting,
        lamp_ageing=lamp_ageing,
        noise=noise,
        pebbles=pebbles,
        compression=compression,
        quality=quality,
        events=events,
        seed=seed,
        base=sample_frame(),
    )
    return _scene.realistic_dataset(
        frames,
        masks,
        truth,
        event,
        start_time=start_time,
        frame_interval=frame_interval,
        attrs=settings,
    )
