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

__all__ = ["LUT_MIN_PIXELS", "build_lut", "count_labels", "label_frames", "nearest"]

#: Pixels from which labelling through a lookup table pays for building it: the table takes
#: ~0.06 s for 4 centres, what the loop over the centres takes for ~20 million pixels
#: (50 frames of 1024 x 400); then it is ~5x faster per pixel.
LUT_MIN_PIXELS = 20_000_000


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


@numba.njit(cache=True, nogil=True)
def _count(rows, counts):  # pragma: no cover - compiled
    # Four byte histograms, filled in turn: no branch and no chain of increments of one
    # counter, ~6x faster than np.bincount on a frame of labels.
    k = counts.shape[1]
    for t in range(rows.shape[0]):
        h0 = np.zeros(256, np.int64)
        h1 = np.zeros(256, np.int64)
        h2 = np.zeros(256, np.int64)
        h3 = np.zeros(256, np.int64)
        row = rows[t]
        n = row.shape[0]
        i = 0
        while i + 4 <= n:
            h0[row[i]] += 1
            h1[row[i + 1]] += 1
            h2[row[i + 2]] += 1
            h3[row[i + 3]] += 1
            i += 4
        while i < n:
            h0[row[i]] += 1
            i += 1
        for j in range(k):
            counts[t, j] = h0[j] + h1[j] + h2[j] + h3[j]


def count_labels(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Pixels of each label per frame: int labels ``(t, ...)`` -> int64 ``(t, n_clusters)``.

    Labels outside ``0 .. n_clusters - 1`` (no data) are not counted.
    """
    rows = np.ascontiguousarray(labels).reshape(labels.shape[0], -1)
    if rows.dtype.itemsize != 1:  # any other integers: outside 0..k-1 becomes byte 255
        rows = np.where((rows >= 0) & (rows < n_clusters), rows, 255)
    counts = np.zeros((rows.shape[0], int(n_clusters)), dtype=np.int64)
    _count(
        rows.astype(np.uint8, copy=False) if rows.dtype != np.int8 else rows.view(np.uint8), counts
    )
    return counts


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
