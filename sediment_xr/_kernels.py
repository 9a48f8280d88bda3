"""Compiled kernels of the labelling: nearest cluster centre of every pixel, and counts.

Numpy in, numpy out, no state.  Compiled by numba on first use (``cache=True``: once per
machine, not once per worker process).  Two ways give identical labels (the same float64
distances and first-minimum tie rule): a loop over the centres, and a lookup table of the
nearest centre of every uint8 colour (256**3 entries, built once per model and then one load
per pixel, ~5x faster on large frames).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["LUT_MIN_PIXELS", "build_lut", "label_frames", "nearest"]

#: Pixels from which labelling through a lookup table pays for building it (~0.08 s for 4
#: centres, about what the loop takes for 20 frames of 1024 x 400).
LUT_MIN_PIXELS = 1_000_000


@numba.njit(cache=True, nogil=True)
def _nearest_loop(pixels, centers, labels, distances):  # pragma: no cover - compiled
    k = centers.shape[0]
    c = pixels.shape[1]
    for i in range(pixels.shape[0]):
        best = 0
        best_d = np.inf
        for j in range(k):
            d = 0.0
            for m in range(c):
                diff = pixels[i, m] - centers[j, m]
                d += diff * diff
            if d < best_d:
                best_d = d
                best = j
        labels[i] = best
        distances[i] = best_d


@numba.njit(cache=True, nogil=True)
def _build_lut(centers):  # pragma: no cover - compiled
    k = centers.shape[0]
    lut = np.empty(256 * 256 * 256, np.int8)
    for a in range(256):
        for b in range(256):
            for c in range(256):
                best = 0
                best_d = np.inf
                for j in range(k):
                    d0 = a - centers[j, 0]
                    d1 = b - centers[j, 1]
                    d2 = c - centers[j, 2]
                    d = d0 * d0 + d1 * d1 + d2 * d2
                    if d < best_d:
                        best_d = d
                        best = j
                lut[(a << 16) | (b << 8) | c] = best
    return lut


@numba.njit(cache=True, nogil=True)
def _lut_labels(pixels, lut, labels):  # pragma: no cover - compiled
    for i in range(pixels.shape[0]):
        key = (
            (np.int64(pixels[i, 0]) << 16) | (np.int64(pixels[i, 1]) << 8) | np.int64(pixels[i, 2])
        )
        labels[i] = lut[key]


def nearest(pixels: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (int64) and its squared distance (float64) of each row of ``pixels``."""
    pixels = np.ascontiguousarray(pixels)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    labels = np.empty(len(pixels), dtype=np.int64)
    distances = np.empty(len(pixels), dtype=np.float64)
    _nearest_loop(pixels, centers, labels, distances)
    return labels, distances


def build_lut(centers: np.ndarray) -> np.ndarray:
    """Nearest centre (int8) of every uint8 colour, indexed by ``(c0 << 16) | (c1 << 8) | c2``."""
    return _build_lut(np.ascontiguousarray(centers, dtype=np.float64))


def label_frames(
    block: np.ndarray, centers: np.ndarray, lut: np.ndarray | None = None
) -> np.ndarray:
    """int8 nearest-centre labels of uint8 pixels ``(..., 3)``, with or without a table."""
    pixels = np.ascontiguousarray(block).reshape(-1, 3)
    if lut is not None:
        labels = np.empty(len(pixels), dtype=np.int8)
        _lut_labels(pixels, np.asarray(lut), labels)
    else:
        labels = nearest(pixels, centers)[0].astype(np.int8)
    return labels.reshape(block.shape[:-1])
