"""A seafloor scene as hard as a real camera's, with planted truth (see ``realistic_series``).

The analysed strip is built from the real bundled SHR frame: its sediment texture (with the
real mats and shells filled in from their surroundings and the real lighting divided out),
pale pebbles and shells whose colour lies between sediment and mat, and textured mat with
noisy colour and soft edges that grows by a known area.  Light is then put back as a camera
sees it: vignetting from the lamps, flicker, a lamp that ages (loses light, blue first),
sensor noise and compression.  Events (lights off, bumped camera, a fish or a tether in the
view, turbid water, an over-exposed flash) are injected into chosen frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

#: Events :func:`realistic_series` can inject, with what each does to a frame.
EVENTS = {
    "dark": "lights off: a few percent of the light and the noise",
    "moved": "bumped camera: the scene shifted by 2-4 % of the frame and rotated 1-3 degrees",
    "occluded": "a fish or a tether over the analysed area",
    "turbid": "a cloud of sediment: a grey veil over the frame and lost detail",
    "overexposed": "a flash: three times the light, clipped",
}
#: Mask value of pixels hidden by an occluder (neither sediment nor mat is seen there).
HIDDEN = -1
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Mat reflectance (RGB, 0-255 under new lamps at the centre of the light).
_MAT = np.array([212.0, 234.0, 220.0], dtype=np.float32)


def _smooth(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    field = rng.standard_normal(shape).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _sediment(strip: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Sediment reflectance from a real strip: bright patches filled, lighting divided out."""
    import cv2

    luma = strip @ _LUMA
    bright = (luma > np.percentile(luma, 80)).astype(np.uint8)
    bright = cv2.dilate(bright, np.ones((5, 5), np.uint8)).astype(np.float32)
    keep = 1.0 - bright
    filled = np.zeros_like(strip)
    done = np.zeros(luma.shape, bool)
    for sigma in (6.0 * scale + 1.0, 24.0 * scale + 1.0, 96.0 * scale + 1.0):  # fine to coarse
        weight = cv2.GaussianBlur(keep, (0, 0), sigma)
        use = ~done & (weight > 0.2)
        for c in range(3):
            part = cv2.GaussianBlur(strip[..., c] * keep, (0, 0), sigma) / (weight + 1e-6)
            filled[..., c] = np.where(use, part, filled[..., c])
        done |= use
    filled[~done] = np.median(strip[keep > 0], axis=0)
    # Inside the filled patches, borrow the fine texture of the kept sediment elsewhere.
    fine = strip - cv2.GaussianBlur(strip, (0, 0), 2.0 * scale + 0.5)
    shifted = np.roll(fine, (int(37 * scale) + 1, int(91 * scale) + 1), axis=(0, 1))
    sediment = np.where(bright[..., None] > 0, filled + shifted, strip)
    light = cv2.GaussianBlur(sediment @ _LUMA, (0, 0), 60.0 * scale + 1.0)
    flat = sediment / (light[..., None] + 1e-3)
    mottle = 1.0 + 0.10 * _smooth(luma.shape, 25.0 * scale + 1.0, rng)
    colour = np.array([0.9, 1.0, 0.82], dtype=np.float32) * 100.0  # greenish grey ooze
    return np.clip(flat, 0.4, 1.8) * mottle[..., None] * colour


def _pebbles(
    shape: tuple[int, int], scale: float, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pale pebbles and shells: a coverage weight ``(y, x)`` and how pale each pixel is."""
    import cv2

    weight = np.zeros(shape, np.float32)
    pale = np.zeros(shape, np.float32)
    area = shape[0] * shape[1]
    while weight.mean() < share:
        ry = max(1, round(rng.uniform(1.5, 5.0) * scale * 1.6))
        rx = max(1, round(ry * rng.uniform(1.0, 1.8)))
        centre = (int(rng.integers(shape[1])), int(rng.integers(shape[0])))
        angle = float(rng.uniform(0, 180))
        blob = np.zeros(shape, np.uint8)
        cv2.ellipse(blob, centre, (rx, ry), angle, 0, 360, 255, -1, lineType=cv2.LINE_AA)
        alpha = blob.astype(np.float32) / 255.0
        weight = np.maximum(weight, alpha)
        pale = np.where(alpha > 0, rng.uniform(0.35, 0.7), pale)
        if weight.sum() > area:  # pragma: no cover - bounded loop
            break
    return weight, pale.astype(np.float32)


def _mat_texture(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Mat reflectance ``(y, x, 3)``: smooth and fine texture, noisy colour, dark specks."""
    coarse = 1.0 + 0.06 * _smooth(shape, 8.0 * scale + 0.5, rng)
    fine = 1.0 + 0.05 * _smooth(shape, 1.0, rng)
    specks = np.where(rng.random(shape) < 0.02, 0.72, 1.0).astype(np.float32)
    tint = 1.0 + 0.035 * np.stack([_smooth(shape, 3.0 * scale + 0.5, rng) for _ in range(3)], -1)
    return _MAT * (coarse * fine * specks)[..., None] * tint


def _vignetting(shape: tuple[int, int], strength: float) -> np.ndarray:
    """Light fall-off from lamps above the lens: 1 at the centre of the beam, less outwards."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - 0.5 * w) / (0.75 * w)) ** 2 + ((yy - 0.62 * h) / (0.75 * h)) ** 2
    return (1.0 - strength * np.clip(r2, 0.0, 1.0)).astype(np.float32)


def _move(image: np.ndarray, mask: np.ndarray, scale_px: int, rng: np.random.Generator):
    """Shift (2-4 % of the frame) and rotate (1-3 degrees) an image and its mask."""
    import cv2

    h, w = image.shape[:2]
    angle = rng.uniform(1.0, 3.0) * rng.choice([-1, 1])
    shift = rng.uniform(0.02, 0.04, 2) * scale_px * rng.choice([-1, 1], 2)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += shift
    moved = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    moved_mask = cv2.warpAffine(
        mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
    )
    return moved, moved_mask


def _occlude(image: np.ndarray, top: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a fish or a tether over the analysed rows; returns the hidden pixels."""
    import cv2

    h, w = image.shape[:2]
    hidden = np.zeros((h, w), np.uint8)
    rows = h - top
    if rng.random() < 0.6:  # a fish: a silvery ellipse covering 4-10 % of the strip
        area = rng.uniform(0.04, 0.10) * rows * w
        ry = int(np.sqrt(area / (np.pi * 3.0)))
        centre = (int(rng.uniform(0.2, 0.8) * w), int(top + rng.uniform(0.3, 0.7) * rows))
        cv2.ellipse(hidden, centre, (3 * ry, ry), float(rng.uniform(-20, 20)), 0, 360, 1, -1)
        body = np.array([150.0, 158.0, 165.0], np.float32) * rng.uniform(0.6, 1.1)
    else:  # a tether: a dark cable across the strip
        width = max(2, round(0.012 * w))
        x0, x1 = (int(v) for v in rng.uniform(0, w, 2))
        cv2.line(hidden, (x0, top - 5), (x1, h + 5), 1, width)
        body = np.array([30.0, 28.0, 26.0], np.float32)
    shade = 0.8 + 0.4 * np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    image[:] = np.where(hidden[..., None] > 0, body * shade, image)
    return hidden.astype(bool)


def _compress(frames: np.ndarray, compression: str | None, quality: int) -> np.ndarray:
    if compression is None:
        return frames
    if compression == "mjpeg":
        import cv2

        out = np.empty_like(frames)
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        for i, rgb in enumerate(frames):
            _, buf = cv2.imencode(".jpg", rgb[..., ::-1], params)
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return out
    if compression == "h264":
        import tempfile
        from pathlib import Path

        import av

        from sediment_xr.testing import write_video

        with tempfile.TemporaryDirectory() as tmp:
            path = write_video(frames, Path(tmp) / "scene.mp4", crf=int(quality))
            with av.open(str(path)) as container:
                decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return np.stack(decoded)
    raise ValueError(f"compression must be None, 'mjpeg' or 'h264', got {compression!r}")


def _event_positions(
    n_frames: int, events: Mapping[str, Sequence[int]] | float, rng: np.random.Generator
) -> np.ndarray:
    names = np.full(n_frames, "ok", dtype=object)
    if isinstance(events, Mapping):
        for name, positions in events.items():
            if name not in EVENTS:
                raise ValueError(f"unknown event {name!r}; use one of {sorted(EVENTS)}")
            names[list(positions)] = name
        return names
    rate = float(events)
    if not 0 <= rate < 0.5:
        raise ValueError(f"event rate must be in [0, 0.5), got {rate}")
    count = round(rate * n_frames)
    chosen = rng.choice(np.arange(1, n_frames), size=min(count, n_frames - 1), replace=False)
    kinds = sorted(EVENTS)
    for i, pos in enumerate(np.sort(chosen)):
        names[pos] = kinds[i % len(kinds)]
    return names


def realistic_frames(
    n_frames: int,
    *,
    size: int,
    crop_rows: int,
    start_cover: float,
    end_cover: float,
    flicker: float,
    vignetting: float,
    lamp_ageing: float,
    noise: float,
    pebbles: float,
    compression: str | None,
    quality: int,
    events: Mapping[str, Sequence[int]] | float,
    seed: int,
    base: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames, masks of the strip, true cover and event of each frame (see the public API)."""
    import cv2

    rng = np.random.default_rng(seed)
    scale = size / 1024
    base = base.astype(np.float32)
    if size != base.shape[0]:
        base = cv2.resize(base, (size, size), interpolation=cv2.INTER_AREA)
    top = size - crop_rows
    strip = base[top:]
    shape = strip.shape[:2]
    sediment = _sediment(strip, scale, rng)
    weight, pale = _pebbles(shape, scale, pebbles, rng)
    pebble_rgb = sediment + pale[..., None] * (_MAT * 0.92 - sediment)
    ground = sediment + weight[..., None] * (pebble_rgb - sediment)
    mat = _mat_texture(shape, scale, rng)
    # Where mat grows: the real mats first, then a smooth random field with ragged edges.
    real = cv2.GaussianBlur(strip @ _LUMA, (0, 0), 10.0 * scale + 1.0)
    real = (real - real.mean()) / (real.std() + 1e-12)
    priority = (
        0.6 * real
        + _smooth(shape, 30.0 * scale + 1.0, rng)
        + 0.25 * _smooth(shape, 3.0 * scale + 0.5, rng)
    )
    ranked = np.sort(priority, axis=None)[::-1]
    n_pix = priority.size
    edge = 0.04  # width of the soft mat edge in units of the priority field
    # Above the strip the scene is the real frame (water and far seafloor, not analysed).
    upper = base[:top]
    light = _vignetting((size, size), vignetting)
    event = _event_positions(n_frames, events, rng)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    masks = np.empty((n_frames, crop_rows, size), np.int8)
    truth = np.empty(n_frames)
    phase = rng.uniform(0, 2 * np.pi)
    for t in range(n_frames):
        share = (start_cover + (end_cover - start_cover) * t / max(n_frames - 1, 1)) / 100
        n_mat = round(share * n_pix)
        threshold = ranked[n_mat - 1] if n_mat > 0 else np.inf
        alpha = np.clip((priority - threshold) / edge + 0.5, 0.0, 1.0)
        mask = (priority >= threshold).astype(np.int8)
        scene = np.empty((size, size, 3), np.float32)
        scene[:top] = upper
        scene[top:] = ground + alpha[..., None] * (mat - ground)
        if event[t] == "moved":  # the strip moves (what comes in is mirrored strip)
            scene[top:], mask = _move(scene[top:], mask, size, rng)
        truth[t] = 100.0 * float(mask.mean())
        if event[t] == "occluded":
            hidden = _occlude(scene, top, rng)[top:]
            mask = np.where(hidden, HIDDEN, mask).astype(np.int8)
        s = t / max(n_frames - 1, 1)
        gain = 1.0 + flicker * (
            0.6 * np.sin(phase + 2 * np.pi * t / 9.0) + 0.4 * rng.standard_normal()
        )
        # An ageing lamp loses light and turns warmer: blue fades first, red last.
        tint = 1.0 - lamp_ageing * s * np.array([0.55, 0.85, 1.4], np.float32)
        image = scene * light[..., None] * np.float32(gain) * tint
        if event[t] == "dark":
            image *= 0.04
        elif event[t] == "overexposed":
            image *= 3.0
        elif event[t] == "turbid":
            veil = np.array([120.0, 135.0, 130.0], np.float32)
            image = 0.45 * cv2.GaussianBlur(image, (0, 0), 3.0 * scale + 0.5) + 0.55 * veil
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        masks[t] = mask
    return _compress(frames, compression, quality), masks, truth, event


def realistic_dataset(
    frames: np.ndarray,
    masks: np.ndarray,
    truth: np.ndarray,
    event: np.ndarray,
    *,
    start_time: str,
    frame_interval: str,
    attrs: dict,
) -> xr.Dataset:
    """The generator's arrays as a labelled Dataset."""
    n_frames, size = frames.shape[:2]
    crop_rows = masks.shape[1]
    time = pd.date_range(start_time, periods=n_frames, freq=pd.Timedelta(frame_interval))
    step = pd.Timedelta(frame_interval) / pd.Timedelta(days=1)
    per_frame = float(attrs["end_cover"] - attrs["start_cover"]) / max(n_frames - 1, 1)
    return xr.Dataset(
        {
            "frames": (("time", "y", "x", "channel"), frames, {"channel_order": "RGB"}),
            "mask": (
                ("time", "y_strip", "x"),
                masks,
                {
                    "long_name": "true class of each pixel of the analysed strip",
                    "flag_values": [HIDDEN, 0, 1],
                    "flag_meanings": "hidden sediment mat",
                },
            ),
            "true_cover": (
                ("time",),
                truth,
                {"long_name": "true white-mat cover of the analysed area", "units": "percent"},
            ),
            "event": (("time",), event.astype(str), {"long_name": "injected event"}),
        },
        coords={
            "time": time,
            "frame": ("time", np.arange(n_frames)),
            "y": np.arange(size),
            "x": np.arange(size),
            "y_strip": np.arange(size - crop_rows, size),
        },
        attrs={
            **attrs,
            "crop_rows": int(crop_rows),
            "slope_per_frame": per_frame,
            "slope_per_day": per_frame / step,
            "source": "sediment_xr.testing.realistic_series from NSF-OOI / UW RCA frame_0006",
        },
    )
