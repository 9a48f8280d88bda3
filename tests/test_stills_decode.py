"""How stills are decoded on the workers: the reader, reduced-size JPEG decoding, fallbacks.

JPEGs are read by simplejpeg (libjpeg-turbo), other formats and odd JPEGs by OpenCV.

Each test names the weakness it guards.  The real frames are the bundled Oregon Offshore
stills (1024 x 1024 JPEGs of the OOI camera CAMDSB106).  The reference for every pixel is
what the stills path did before this reader: ``cv2.imdecode`` to BGR, ``cv2.cvtColor`` to
RGB, then ``cv2.resize(..., INTER_LINEAR)`` to ``resize``.  Tolerances were measured on these
frames: the reader gives the same pixels (0 difference); decoding a JPEG at 1/2, 1/4 or 1/8
of its size (libjpeg's scaled inverse DCT, which averages the pixels it drops) is within a
mean of 0.5 grey levels of an area-average resize of the whole image (``INTER_AREA``), and
within a mean of 5 of the bilinear resize of the whole image, which aliases below half size
(bilinear and area averages of the whole image differ by a mean of 2.4-3.4 there).
"""

from __future__ import annotations

import sys
import tracemalloc
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import sediment_xr
from sediment_xr.decode import decode_image, read_chunk
from sediment_xr.frames import FRAME_OK, fit_frame

REAL = sorted((Path(sediment_xr.__file__).parent / "data" / "oregon_offshore").glob("*.jpg"))


def old_decode(raw: bytes) -> np.ndarray:
    """The stills path's pixels before this reader: OpenCV BGR, then RGB."""
    bgr = cv2.imdecode(
        np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resized(image: np.ndarray, size: tuple[int, int], how: int) -> np.ndarray:
    return cv2.resize(image, size, interpolation=how)


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def real_frame() -> bytes:
    return REAL[0].read_bytes()


def textured(height: int = 240, width: int = 320) -> np.ndarray:
    """An RGB test picture with edges and texture (not flat: resizing it is not trivial)."""
    rng = np.random.default_rng(7)
    image = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (width, height))
    image[::16] = 255
    return image


def encoded(image: np.ndarray, fmt: str, **params) -> bytes:
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **params)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# the reader: same pixels as before
def test_real_jpeg_whole_size_is_read_with_the_same_pixels_as_before():
    """Weakness guarded: a faster reader (or straight-to-RGB flag) that changes the pixels."""
    for path in REAL:
        raw = path.read_bytes()
        expected = old_decode(raw)
        np.testing.assert_array_equal(decode_image(raw), expected)
        # a resize to the image's own size decodes it whole, with the same pixels
        np.testing.assert_array_equal(decode_image(raw, out_size=(1024, 1024)), expected)


@pytest.mark.parametrize("divisor", [1, 2, 4, 8])
def test_real_jpeg_reader_gives_opencvs_pixels_at_every_scale(divisor):
    """Weakness guarded: the JPEG reader (simplejpeg) drifting from OpenCV's pixels.

    Measured on the bundled real frames: 0 difference at full, half, quarter and eighth size.
    """
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2}
    flags |= {4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    side = 1024 // divisor
    for path in REAL:
        raw = path.read_bytes()
        bgr = cv2.imdecode(
            np.frombuffer(raw, np.uint8), flags[divisor] | cv2.IMREAD_IGNORE_ORIENTATION
        )
        np.testing.assert_array_equal(decode_image(raw, out_size=(side, side)), bgr[..., ::-1])


def test_without_simplejpeg_opencv_reads_the_same_pixels(monkeypatch):
    """Weakness guarded: an environment without simplejpeg (conda + pip --no-deps) failing."""
    raw = real_frame()
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import simplejpeg: ImportError
    np.testing.assert_array_equal(decode_image(raw, out_size=(1024, 1024)), old_decode(raw))
    assert decode_image(raw, out_size=(256, 256)).shape == (256, 256, 3)


def test_truncated_jpeg_is_decoded_as_opencv_decodes_it():
    """Weakness guarded: the new reader's errors escaping, or a truncated still read otherwise.

    simplejpeg refuses a JPEG cut at 60 % (strict); OpenCV then decodes it as it did: no
    pixels with OpenCV 5.0; with OpenCV 4.10 the rows it has (the rows after them are not
    written: whatever the memory held, so only the first 400 rows are compared).
    """
    raw = real_frame()
    cut = raw[: len(raw) * 6 // 10]
    bgr = cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR)
    got = decode_image(cut, out_size=(1024, 1024))
    if bgr is None:
        assert got is None
        assert decode_image(cut, out_size=(256, 256)) is None
    else:
        np.testing.assert_array_equal(got[:400], bgr[:400, :, ::-1])
        assert decode_image(cut, out_size=(256, 256)).shape == (256, 256, 3)


# --------------------------------------------------------------------------------------------
# reduced-size decoding of JPEGs
@pytest.mark.parametrize(
    ("size", "decoded"),
    [((512, 512), 512), ((256, 256), 256), ((128, 128), 128), ((300, 300), 512), ((100, 60), 128)],
)
def test_real_jpeg_is_decoded_reduced_and_close_to_full_decode_and_resize(size, decoded):
    """Weakness guarded: a resize to <= half size decoding the whole JPEG, or drifting."""
    raw = real_frame()
    reduced = decode_image(raw, out_size=size)
    assert reduced.shape == (decoded, decoded, 3)  # the smallest scale still >= the size
    got = fit_frame(reduced, "real", None, size)
    full = old_decode(raw)
    exact = 1024 % size[0] == 0 and size[0] == size[1]
    assert mean_diff(got, resized(full, size, cv2.INTER_AREA)) < (0.5 if exact else 2.0)
    assert mean_diff(got, resized(full, size, cv2.INTER_LINEAR)) < 5.0


def test_resize_to_more_than_half_decodes_the_whole_jpeg():
    """Weakness guarded: a reduced decode upscaled back (blurred) for a mild resize."""
    raw = real_frame()
    assert decode_image(raw, out_size=(513, 513)).shape == (1024, 1024, 3)
    assert decode_image(raw, out_size=(1024, 100)).shape == (1024, 1024, 3)


def test_read_chunk_with_resize_gives_reduced_jpegs_close_to_full_decode_and_resize(tmp_path):
    """Weakness guarded: the dask task of a chunk not taking the reduced path (or its sizes)."""
    files = [str(p) for p in REAL]
    out, status = read_chunk(files, frame_size=(1024, 1024), out_size=(256, 256))
    assert out.shape == (len(files), 256, 256, 3)
    assert (status == FRAME_OK).all()
    for frame, path in zip(out, REAL, strict=True):
        full = old_decode(path.read_bytes())
        assert mean_diff(frame, resized(full, (256, 256), cv2.INTER_AREA)) < 0.5


def test_exif_orientation_is_applied_to_a_reduced_jpeg(tmp_path):
    """Weakness guarded: the reduced scale chosen on the shown size, or the turn forgotten.

    Stored 640 x 480 with orientation 6 (shown 480 x 640): a resize to 240 x 320 as shown is
    exactly half of the stored image turned a quarter.
    """
    stored = np.ascontiguousarray(old_decode(REAL[1].read_bytes())[:480, :640])
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(BytesIO(raw)) as pil:
        shown = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
    assert shown.shape == (640, 480, 3)
    got = decode_image(raw, out_size=(240, 320))
    assert got.shape == (320, 240, 3)
    assert mean_diff(got, resized(shown, (240, 320), cv2.INTER_AREA)) < 1.0
    path = tmp_path / "turned_20220601T000000Z.jpg"
    path.write_bytes(raw)
    out, status = read_chunk([str(path)], frame_size=(640, 480), out_size=(240, 320))
    assert status[0] == FRAME_OK
    np.testing.assert_array_equal(out[0], got)


# --------------------------------------------------------------------------------------------
# fallbacks: formats that are not reduced, and odd JPEGs
def _png(image: np.ndarray) -> bytes:
    return encoded(image, "PNG")


def _tiff(image: np.ndarray) -> bytes:
    return encoded(image, "TIFF")


def _grey_png(image: np.ndarray) -> bytes:
    return encoded(image[..., 1], "PNG")


def _rgba_png(image: np.ndarray) -> bytes:
    alpha = np.full((*image.shape[:2], 1), 9, np.uint8)
    return encoded(np.concatenate([image, alpha], -1), "PNG")


def _png_16_bit(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image[..., ::-1].astype(np.uint16) * 257)[1].tobytes()


LOSSLESS = {
    "png": _png,
    "tiff": _tiff,
    "grey png": _grey_png,
    "rgba png": _rgba_png,
    "16-bit png": _png_16_bit,
}


@pytest.mark.parametrize("kind", list(LOSSLESS))
def test_lossless_formats_are_decoded_whole_then_resized_as_before(kind):
    """Weakness guarded: reduced decoding applied to PNG/TIFF (OpenCV's own resize differs)."""
    raw = LOSSLESS[kind](textured())
    decoded = decode_image(raw, out_size=(80, 60))
    assert decoded.shape == (240, 320, 3)  # whole: only JPEGs are decoded reduced
    np.testing.assert_array_equal(decoded, old_decode(raw))
    np.testing.assert_array_equal(
        fit_frame(decoded, kind, None, (80, 60)),
        resized(old_decode(raw), (80, 60), cv2.INTER_LINEAR),
    )


def _grey_jpeg(image: np.ndarray) -> bytes:
    return encoded(image[..., 1], "JPEG", quality=95)


def _progressive_jpeg(image: np.ndarray) -> bytes:
    return encoded(image, "JPEG", quality=95, progressive=True)


def _cmyk_jpeg(image: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(image).convert("CMYK").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


ODD_JPEGS = {"grey": _grey_jpeg, "progressive": _progressive_jpeg, "cmyk": _cmyk_jpeg}


@pytest.mark.parametrize("kind", list(ODD_JPEGS))
def test_odd_jpegs_decode_reduced_like_a_whole_decode_and_resize(kind):
    """Weakness guarded: grey, progressive or CMYK JPEGs lost (None) or wrong when reduced."""
    raw = ODD_JPEGS[kind](textured())
    whole = old_decode(raw)
    np.testing.assert_array_equal(decode_image(raw), whole)
    reduced = decode_image(raw, out_size=(80, 60))
    assert reduced.shape == (60, 80, 3)
    assert mean_diff(reduced, resized(whole, (80, 60), cv2.INTER_AREA)) < 2.0


# --------------------------------------------------------------------------------------------
# memory of a task
def test_a_cropped_chunk_holds_one_whole_image_at_a_time():
    """Weakness guarded: a task keeping every whole decoded image of its chunk (32 x 3 MiB).

    Eight real 1024 x 1024 stills, only their bottom 100 rows kept: the task's peak of
    allocated memory stays below the chunk's output plus two whole images (it held eight).
    """
    files = [str(REAL[i % len(REAL)]) for i in range(8)]
    window = (924, 1024, 0, 1024)
    image_bytes = 1024 * 1024 * 3
    read_chunk(files[:1], frame_size=(1024, 1024), window=window)  # imports, caches
    tracemalloc.start()
    try:
        out, status = read_chunk(files, frame_size=(1024, 1024), window=window)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (status == FRAME_OK).all()
    assert out.shape == (8, 100, 1024, 3)
    assert peak < out.nbytes + 2 * image_bytes, f"peak {peak / 2**20:.1f} MiB"
