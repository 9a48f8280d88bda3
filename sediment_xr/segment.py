"""Segmented images and video: every pixel painted with the colour of its cluster centre.

Painting reads the stored labels; nothing is clustered again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from sediment_xr._fs import exclusive_temp, is_url, local_path

__all__ = ["overlay", "paint", "write_segmented_pngs", "write_segmented_video"]


def _palette(colors: np.ndarray, no_data_color: Sequence[int]) -> np.ndarray:
    """Lookup table indexed by ``label + 1`` (row 0 is no-data)."""
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    return np.concatenate([np.asarray(no_data_color, np.uint8).reshape(1, 3), colors])


def _paint_block(block: np.ndarray, palette: np.ndarray) -> np.ndarray:
    if block.dtype == np.int8 and len(palette) <= 256:
        # One lookup by the label's byte: 0..k-1 are the clusters, -1 (byte 255) and any
        # other value are no data. ~4x faster than the int16 index and mask below.
        full = np.repeat(palette[:1], 256, axis=0)
        full[: len(palette) - 1] = palette[1:]
        return full[block.view(np.uint8)]
    index = block.astype(np.int16) + 1
    index[(index < 0) | (index >= len(palette))] = 0
    return palette[index]


def paint(
    labels: xr.DataArray,
    colors: np.ndarray | Sequence[Sequence[int]],
    *,
    no_data_color: Sequence[int] = (0, 0, 0),
) -> xr.DataArray:
    """Paint labels with one RGB colour per cluster (the segmented image of the lesson).

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels ``(..., y, x)``; ``-1`` (no data) is painted ``no_data_color``.
    colors : array-like, shape (n_clusters, 3)
        uint8 RGB per cluster, e.g. ``ClusterModel.center_rgb``.
    no_data_color : (int, int, int), default black

    Returns
    -------
    xarray.DataArray
        uint8 RGB ``(..., y, x, channel)`` named ``segmented``.

    Notes
    -----
    Lazy: a lookup per chunk.
    """
    palette = _palette(np.asarray(colors), no_data_color)
    out = xr.apply_ufunc(
        _paint_block,
        labels,
        kwargs={"palette": palette},
        output_core_dims=[["channel"]],
        dask="parallelized",
        output_dtypes=[np.uint8],
        dask_gufunc_kwargs={"output_sizes": {"channel": 3}},
        keep_attrs=True,  # the coordinates' attrs; the array's own are set below
    )
    out.name = "segmented"
    out.attrs = {"long_name": "pixels painted with their cluster centre colour"}
    return out


def overlay(frames: xr.DataArray, segmented: xr.DataArray, *, alpha: float = 0.5) -> xr.DataArray:
    """Blend segmented colours over the frames (``alpha`` = weight of the segmentation)."""
    blended = (1 - alpha) * frames.astype(np.float32) + alpha * segmented.astype(np.float32)
    out = blended.round().clip(0, 255).astype(np.uint8)
    out.name = "overlay"
    return out


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad an image ``(y, x, 3)`` with black to even sizes (H.264 with 4:2:0 colour)."""
    pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
    return np.pad(frame, pad) if any(p[1] for p in pad) else frame


#: Container formats of the segmented video by file suffix (others: MP4).
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def _encode(
    handle: Any,
    labels: xr.DataArray,
    palette: np.ndarray,
    *,
    container_format: str,
    fps: int,
    crf: int,
    preset: str,
) -> int:
    """Paint and encode every label frame as H.264 into an open binary file; the count."""
    import av

    height, width = (
        labels.sizes["y"] + labels.sizes["y"] % 2,
        labels.sizes["x"] + labels.sizes["x"] % 2,
    )
    chunks = labels.chunks[0] if labels.chunks is not None else (labels.sizes["time"],)
    count = 0
    with av.open(handle, mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # x264's default preset (medium) spent ~19 ms per 1024 x 400 frame here, serially in
        # the client after labelling; veryfast ~9 ms, for flat painted colours at the same crf.
        stream.options = {"crf": str(crf), "preset": preset}
        start = 0
        for size in chunks:
            block = np.asarray(labels.isel(time=slice(start, start + size)).values)
            start += size
            for frame in _paint_block(block, palette):
                vf = av.VideoFrame.from_ndarray(_pad_even(frame), format="rgb24")
                container.mux(stream.encode(vf))
                count += 1
        container.mux(stream.encode())
    return count


def write_segmented_video(
    labels: xr.DataArray,
    colors: np.ndarray,
    path: str | os.PathLike[str],
    *,
    fps: int = 10,
    crf: int = 20,
    preset: str = "veryfast",
    storage_options: dict | None = None,
) -> int:
    """Write every frame of labels ``(time, y, x)``, painted, as an H.264 video (PyAV).

    Chunks of labels are read one at a time, so memory stays at one chunk. H.264 needs even
    sizes: an odd window gets one black row or column. ``path`` may be an fsspec URL (the
    video is written locally, then copied). A local video is written into a new file of
    unpredictable name beside ``path``, created exclusively, and renamed onto ``path`` when
    complete: a link planted at either name is never written through.

    Returns
    -------
    int
        Number of frames written (one per label frame).
    """
    palette = _palette(np.asarray(colors), (0, 0, 0))
    target = local_path(os.fspath(path))
    suffix = os.path.splitext(target)[1].lower()
    options = {
        "container_format": _FORMATS.get(suffix, "mp4"),
        "fps": fps,
        "crf": crf,
        "preset": preset,
    }
    if not is_url(target):
        folder = os.path.realpath(os.path.dirname(os.path.abspath(target)))
        final = os.path.join(folder, os.path.basename(target))
        fd, tmp = exclusive_temp(final)
        try:
            with os.fdopen(fd, "wb") as handle:
                count = _encode(handle, labels, palette, **options)
            os.replace(tmp, final)
        except BaseException:  # a failed video leaves the old one, and no partial one
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return count
    import fsspec

    with tempfile.TemporaryDirectory(prefix="sediment_xr_") as tmpdir:
        local = os.path.join(tmpdir, "segmented" + suffix)
        with open(local, "wb") as handle:
            count = _encode(handle, labels, palette, **options)
        with fsspec.open(target, "wb", **(storage_options or {})) as dst, open(local, "rb") as src:
            dst.write(src.read())
    return count


def write_segmented_pngs(
    labels: xr.DataArray,
    colors: np.ndarray,
    positions: Sequence[int],
    write_bytes,
) -> list[str]:
    """Write painted frames at ``positions`` as PNGs through ``write_bytes(name, data)``."""
    import cv2

    palette = _palette(np.asarray(colors), (0, 0, 0))
    names = []
    for pos in positions:
        frame = _paint_block(np.asarray(labels.isel(time=int(pos)).values), palette)
        ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
            raise RuntimeError("PNG encoding failed")
        name = f"segmented/frame_{int(pos):06d}.png"
        write_bytes(name, data.tobytes())
        names.append(name)
    return names
