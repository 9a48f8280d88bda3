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

__all__ = [
    "LUT_MIN_PIXELS",
    "block_means",
    "boundary_counts",
    "build_lut",
    "build_partner_lut",
    "count_labels",
    "half_sample_mode",
    "label_frames",
    "nearest",
    "paint_bytes",
    "scale_pixels",
]

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


@numba.njit(cache=True, nogil=True)
def _half_sample_mode(values):  # pragma: no cover - compiled
    x = np.sort(values[np.isfinite(values)])
    if x.shape[0] == 0:
        return 0.0
    while x.shape[0] > 3:
        n = x.shape[0]
        half = (n + 1) // 2
        start = 0
        best = np.inf
        for i in range(n - half + 1):  # the first narrowest run of `half` values
            width = x[i + half - 1] - x[i]
            if width < best:
                best = width
                start = i
        x = x[start : start + half]
    return np.median(x)


def half_sample_mode(values: np.ndarray) -> float:
    """The half-sample mode (Bickel) of the finite values; 0 when there are none."""
    return float(_half_sample_mode(np.asarray(values, dtype=np.float64).ravel()))


@numba.njit(cache=True, nogil=True)
def _block_sums(frame, size, sums, saturation):  # pragma: no cover - compiled
    # Each block row's pixel rows are added into one row of integer sums (contiguous,
    # vectorised: 4-5x faster than summing block by block), then cut into blocks. The
    # saturated pixels are counted branch-free, only when asked.
    rows, cols = sums.shape[0], sums.shape[1]
    width = cols * size * 3
    acc = np.zeros(width, np.int64)
    saturated = 0
    for by in range(rows):
        acc[:] = 0
        for y in range(by * size, (by + 1) * size):
            row = frame[y].reshape(-1)
            for j in range(width):
                acc[j] += row[j]
            if saturation:
                n = 0
                for x in range(cols * size):
                    n += max(row[3 * x], max(row[3 * x + 1], row[3 * x + 2])) >= 250
                saturated += n
        for bx in range(cols):
            s0 = 0
            s1 = 0
            s2 = 0
            for x in range(bx * size, (bx + 1) * size):
                s0 += acc[3 * x]
                s1 += acc[3 * x + 1]
                s2 += acc[3 * x + 2]
            sums[by, bx, 0] += s0
            sums[by, bx, 1] += s1
            sums[by, bx, 2] += s2
    return saturated


def block_means(frame: np.ndarray, size: int, saturated: bool = False):
    """float64 means of whole ``size`` x ``size`` blocks of a uint8 ``(h, w, 3)`` frame.

    With ``saturated``, also the share of the blocks' pixels with a channel at 250 or more.
    """
    size = int(size)
    sums = np.zeros((frame.shape[0] // size, frame.shape[1] // size, 3), dtype=np.int64)
    count = _block_sums(np.ascontiguousarray(frame), size, sums, bool(saturated))
    out = sums * (1.0 / (size * size))
    if saturated:
        return out, count / max(out.shape[0] * out.shape[1] * size * size, 1)
    return out


@numba.njit(cache=True, nogil=True)
def _scale_pixels(frame, inv_field, gains, reverse, out):  # pragma: no cover - compiled
    # Row by row, over the row's interleaved values as one contiguous run: the field and the
    # gains repeated per channel, so the loop has no channel logic and is vectorised (~4x
    # faster than three channels per pixel); BGR is a swap of the finished row. Rounding as
    # numpy's float32(value) * float32(field) -> float64 * gain + 0.5, clamped, truncated.
    h, w = frame.shape[0], frame.shape[1]
    n = 3 * w
    g = np.empty(n, np.float64)
    f3 = np.empty(n, np.float32)
    row = np.empty(n, np.uint8)
    for x in range(w):
        g[3 * x], g[3 * x + 1], g[3 * x + 2] = gains[0], gains[1], gains[2]
    for y in range(h):
        src = frame[y].reshape(-1)
        dst = out[y].reshape(-1)
        f = inv_field[y]
        for x in range(w):
            f3[3 * x] = f[x]
            f3[3 * x + 1] = f[x]
            f3[3 * x + 2] = f[x]
        done = row if reverse else dst
        for j in range(n):
            v = np.float64(np.float32(src[j]) * f3[j]) * g[j] + 0.5
            done[j] = np.uint8(min(max(v, 0.0), 255.0))
        if reverse:
            for x in range(w):
                dst[3 * x] = row[3 * x + 2]
                dst[3 * x + 1] = row[3 * x + 1]
                dst[3 * x + 2] = row[3 * x]


def scale_pixels(
    frame: np.ndarray, inv_field: np.ndarray, gains: np.ndarray, reverse: bool, out: np.ndarray
) -> np.ndarray:
    """``frame * inv_field * gains`` rounded into uint8 ``out``, channels reversed or not."""
    target = out if out.flags.c_contiguous else np.empty(out.shape, np.uint8)
    _scale_pixels(
        np.ascontiguousarray(frame),
        np.ascontiguousarray(inv_field, dtype=np.float32),
        np.asarray(gains, dtype=np.float64),
        bool(reverse),
        target,
    )
    if target is not out:
        out[...] = target
    return out


@numba.njit(cache=True, nogil=True)
def _second(pixel, centers, margin):  # pragma: no cover - compiled
    k = centers.shape[0]
    best, second = 0, -1
    d_best, d_second = np.inf, np.inf
    for j in range(k):
        d = 0.0
        for m in range(3):
            diff = pixel[m] - centers[j, m]
            d += diff * diff
        if d < d_best:
            second, d_second = best if j > 0 else -1, d_best
            best, d_best = j, d
        elif d < d_second:
            second, d_second = j, d
    if second >= 0 and np.sqrt(d_second) - np.sqrt(d_best) < margin:
        return best, second
    return best, -1


@numba.njit(cache=True, nogil=True)
def _build_partner_lut(centers, margin):  # pragma: no cover - compiled
    # one entry per colour: label + 128 * (partner + 1), one memory access per pixel
    lut = np.empty(256 * 256 * 256, np.int16)
    pixel = np.empty(3, np.float64)
    for a in range(256):
        for b in range(256):
            for c in range(256):
                pixel[0], pixel[1], pixel[2] = a, b, c
                best, partner = _second(pixel, centers, margin)
                lut[(a << 16) | (b << 8) | c] = best + 128 * (partner + 1)
    return lut


@numba.njit(cache=True, nogil=True)
def _pair_counts(pixels, centers, margin, lut, counts):  # pragma: no cover
    k = counts.shape[0]
    hist = np.zeros(128 * (k + 1), np.int64)  # by code: label + 128 * (partner + 1)
    if lut.shape[0] > 0:
        for i in range(pixels.shape[0]):
            key = (
                (np.int64(pixels[i, 0]) << 16)
                | (np.int64(pixels[i, 1]) << 8)
                | np.int64(pixels[i, 2])
            )
            hist[lut[key]] += 1
    else:
        pixel = np.empty(3, np.float64)
        for i in range(pixels.shape[0]):
            pixel[0], pixel[1], pixel[2] = pixels[i, 0], pixels[i, 1], pixels[i, 2]
            best, j = _second(pixel, centers, margin)
            hist[best + 128 * (j + 1)] += 1
    for code in range(hist.shape[0]):
        n = hist[code]
        if n:
            best, j = code % 128, code // 128 - 1
            counts[best, best] += n  # the diagonal: every pixel by its own (unfiltered) label
            if j >= 0:
                counts[best, j] += n


def build_partner_lut(centers: np.ndarray, margin: float) -> np.ndarray:
    """Nearest and boundary partner of every uint8 colour, as int16 ``label + 128 (p + 1)``.

    ``p`` is the second-nearest centre when the colour's distances to its two nearest centres
    differ by less than ``margin``, else -1. Indexed like :func:`build_lut`; up to 127
    clusters.
    """
    return _build_partner_lut(np.ascontiguousarray(centers, dtype=np.float64), float(margin))


def boundary_counts(
    frame: np.ndarray,
    centers: np.ndarray,
    margin: float,
    lut: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels near a boundary of a uint8 frame ``(..., 3)``, by their two nearest centres.

    Returns int64 ``(k, k)``: ``[i, j]`` counts the pixels labelled ``i`` whose distance to
    centre ``j`` exceeds their distance to ``i`` by less than ``margin``; ``[i, i]`` counts
    all pixels labelled ``i``.
    """
    k = len(centers)
    counts = np.zeros((k, k), dtype=np.int64)
    _pair_counts(
        np.ascontiguousarray(frame).reshape(-1, 3),
        np.ascontiguousarray(centers, dtype=np.float64),
        float(margin),
        np.empty(0, np.int16) if lut is None else np.asarray(lut),
        counts,
    )
    return counts


@numba.njit(cache=True, nogil=True)
def _paint_bytes(codes, table, out):  # pragma: no cover - compiled
    for i in range(codes.shape[0]):
        c = codes[i]
        out[i, 0] = table[c, 0]
        out[i, 1] = table[c, 1]
        out[i, 2] = table[c, 2]


def paint_bytes(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(..., 3)`` of uint8 ``codes``: ``table[codes]`` (``table`` 256 x 3).

    ~10x faster than numpy's fancy indexing, which copies each pixel's row separately.
    """
    flat = np.ascontiguousarray(codes).reshape(-1)
    out = np.empty((flat.shape[0], 3), dtype=np.uint8)
    _paint_bytes(flat, np.ascontiguousarray(table, dtype=np.uint8).reshape(256, 3), out)
    return out.reshape((*codes.shape, 3))
