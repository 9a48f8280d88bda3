"""Decoding frames: the dask task of each chunk, for videos (PyAV) and stills.

Stills: JPEGs with simplejpeg (libjpeg-turbo), other images and odd JPEGs with OpenCV.

Each task opens its own file or container (nothing open travels in the graph), decodes its
frames and returns them with their ``frame_status``: a frame that cannot be decoded is
skipped (pixels 0, status undecodable), never fatal.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from io import BytesIO
from typing import Any

import av
import numpy as np
from PIL import Image

from sediment_xr._fs import is_url, open_binary, read_bytes, short
from sediment_xr.exceptions import InputError
from sediment_xr.frames import FRAME_OK, FRAME_UNDECODABLE, Window, fit_frame, in_window

__all__ = [
    "av_container",
    "decode_chunk",
    "decode_frames",
    "decode_image",
    "orientation",
    "read_chunk",
]


# --------------------------------------------------------------------------------------------
# videos
# Seeks further back when a seek lands after a chunk's first frame, before decoding it from
# the start of the video.
_SEEK_RETRIES = 2


@contextlib.contextmanager
def av_container(source: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a PyAV input container on a local path or an fsspec URL, and close it."""
    with contextlib.ExitStack() as stack:
        target: Any = source
        if is_url(source):
            target = stack.enter_context(open_binary(source, storage_options))
        container = av.open(target, mode="r")
        stack.callback(container.close)
        yield container


# The last local video a thread decoded, kept open: the next chunk of the same file seeks in
# it instead of opening it again (about 20 ms per chunk, 0.6 ms per frame of a 1024 x 1024
# H.264 video in chunks of 32). Keyed by the file's identity, so a file replaced between two
# tasks is opened afresh; never for URLs.
_HELD = threading.local()


@contextlib.contextmanager
def _container_to_seek(source: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """A container for a pass that seeks first: the thread's last one if it is the same file.

    Closed if the pass fails, kept for the thread's next pass otherwise.
    """
    key = None if is_url(source) else _identity(source)
    held = getattr(_HELD, "container", None)
    _HELD.container = None
    if held is not None and (key is None or held[0] != key):
        held[1].close()
        held = None
    if key is None:
        with av_container(source, storage_options) as container:
            yield container
        return
    container = held[1] if held is not None else av.open(source, mode="r")
    try:
        yield container
    except BaseException:
        container.close()
        raise
    _HELD.container = (key, container)


def _identity(path: str) -> tuple[Any, ...] | None:
    """What changes when a file is replaced or rewritten; None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _forget_held() -> None:
    """In a forked child: the parent's open container shares its file offset, never use it."""
    _HELD.container = None


os.register_at_fork(after_in_child=_forget_held)


def decode_chunk(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    turns: int = 0,
    window: Window | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dask task: decode a chunk of frames, skipping undecodable ones.

    Parameters
    ----------
    source : str
        Local path or fsspec URL.
    wanted_pts : sequence of int
        Presentation timestamps (stream time base), ascending; repeats allowed.
    frame_size : (int, int), optional
        Expected ``(height, width)`` of decoded frames (checked unless `out_size` is given).
    out_size : (int, int), optional
        ``(width, height)`` to resize each frame to.
    storage_options : mapping, optional
        fsspec options for URLs.
    turns : int, default 0
        Quarter turns counter-clockwise that show each frame as the video's display matrix
        says (applied before `frame_size` is checked and `out_size` resized to).
    window : (row_start, row_stop, col_start, col_stop), optional
        Keep only these rows and columns of each (turned, resized) frame: a cropped series
        is decoded without holding or copying the rest of the frame.

    Returns
    -------
    tuple of numpy.ndarray
        ``(len(wanted_pts), height, width, 3)`` uint8 RGB frames (0 where undecodable) and
        their uint8 ``frame_status``; the window's height and width when given.
    """
    try:
        return decode_frames(
            source,
            wanted_pts,
            frame_size=frame_size,
            out_size=out_size,
            storage_options=storage_options,
            turns=turns,
            window=window,
        )
    except av.FFmpegError as err:
        raise InputError(
            f"{source}: reading frames at pts {min(wanted_pts)}..{max(wanted_pts)} failed "
            f"({short(err)}); the file may have changed or become unreadable since it was "
            "opened. Check it with ffprobe and run again."
        ) from err


def decode_frames(
    source: str,
    wanted_pts: Sequence[int],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    errors: list[str] | None = None,
    turns: int = 0,
    window: Window | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames with the given timestamps (0 where not decoded) and their status.

    Each frame is turned by `turns` quarter turns counter-clockwise (``np.rot90``) before
    its size is checked against `frame_size` (as shown) or it is resized to `out_size`.
    Raises ``av.FFmpegError`` if the file cannot be opened or demuxed (errors of single
    packets are skipped, and appended to ``errors``).
    """
    turns %= 4
    if turns:  # the passes check the size as stored; keep() turns, then resizes
        stored = None if frame_size is None else _turned_size(frame_size, turns)
        shown_size, frame_size, out_size = (frame_size, out_size), stored, None
    else:
        shown_size = None
    errors = [] if errors is None else errors
    slots: dict[int, list[int]] = {}
    for position, pts in enumerate(wanted_pts):
        slots.setdefault(int(pts), []).append(position)
    status = np.full(len(wanted_pts), FRAME_UNDECODABLE, dtype=np.uint8)
    frames: list[np.ndarray] = []  # the chunk's array, made at the first decoded frame

    def keep(pts: int, rgb: np.ndarray, windowed: bool = False) -> None:
        if shown_size is not None:
            where = f"{source} (frame at pts {pts})"
            rgb = fit_frame(np.rot90(rgb, turns), where, *shown_size)
        if not windowed:
            rgb = in_window(rgb, window)
        if not frames:
            frames.append(np.empty((len(wanted_pts), *rgb.shape), dtype=np.uint8))
        frames[0][slots[pts]] = rgb
        status[slots[pts]] = FRAME_OK

    # Seek to the key frame at/before the first wanted frame and decode forward.  If the
    # first key frame decoded is after a frame still missing (the seek landed late: MPEG-TS
    # seeks land after the key frame, or the index is off, or the frame's references are
    # before the key frame), seek again further back, at most _SEEK_RETRIES times, then
    # decode from the start, once.  A frame after the key frame a pass decoded from that did
    # not decode is damaged: decoding it again would give the same (each damaged chunk
    # decoded the video from its first frame: quadratic with scattered damage).
    def decode_from(target: int | None) -> list[int]:
        landed: list[int] = []
        _decode_pass(
            source,
            storage_options,
            slots,
            status,
            keep,
            frame_size,
            out_size,
            target,
            errors,
            landed,
            window if shown_size is None and out_size is None else None,
        )
        return landed

    target: int | None = min(slots)
    back = 0
    while True:
        landed = decode_from(target)
        lost = [pts for pts, where in slots.items() if status[where[0]] != FRAME_OK]
        if not lost or target is None or (landed and min(lost) >= landed[0]):
            break
        if landed and back < _SEEK_RETRIES:
            back += 1
            target = min(lost) - 2**back * (landed[0] - min(lost))
        else:  # the seek failed, or still lands late
            target = None
    if shown_size is not None:
        frame_size, out_size = shown_size
    if not frames:
        height, width = frame_size or (0, 0)
        if out_size is not None:
            width, height = out_size
        if window is not None:
            height, width = window[1] - window[0], window[3] - window[2]
        frames.append(np.empty((len(wanted_pts), height, width, 3), dtype=np.uint8))
    out = frames[0]
    out[status != FRAME_OK] = 0
    return out, status


def _turned_size(size: tuple[int, int], turns: int) -> tuple[int, int]:
    """``(height, width)`` of a frame before (or after) `turns` quarter turns."""
    return (size[1], size[0]) if turns % 2 else tuple(size)


#: Pixel formats of decoded frames whose window is converted to RGB alone: 4:2:0, one
#: chroma sample per 2 x 2 pixels (H.264, HEVC, most MJPEG).
_WINDOWED_FORMATS = ("yuv420p", "yuvj420p")


def _rgb_window(
    frame: av.VideoFrame, window: Window | None, frame_size: tuple[int, int] | None
) -> np.ndarray | None:
    """RGB of the `window` of a decoded frame, converting only that part; None if it cannot.

    libswscale converts a 4:2:0 frame two rows and two columns at a time, each pair from its
    own chroma sample, so the window widened to even rows and columns, converted alone and
    cut, has the pixels of the whole frame's conversion (tested): a crop of 400 of 1024 rows
    converts 40 % of the frame. None (convert the whole frame) for other pixel formats, odd
    frame sizes, and a frame that is not `frame_size` (reported by the whole frame's path).
    """
    if window is None or frame.format.name not in _WINDOWED_FORMATS:
        return None
    height, width = frame.height, frame.width
    if height % 2 or width % 2 or (frame_size and (height, width) != tuple(frame_size)):
        return None
    r0, r1, c0, c1 = window
    top, bottom = r0 - r0 % 2, min(r1 + r1 % 2, height)
    left, right = c0 - c0 % 2, min(c1 + c1 % 2, width)
    if not (0 <= top < bottom and 0 <= left < right):
        return None
    parts = []
    for plane, step in zip(frame.planes, (1, 2, 2), strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        parts.append(rows[top // step : bottom // step, left // step : right // step].ravel())
    part = av.VideoFrame.from_ndarray(
        np.concatenate(parts).reshape(-1, right - left), format=frame.format.name
    )
    part.colorspace, part.color_range = frame.colorspace, frame.color_range
    rgb = part.to_ndarray(format="rgb24")
    return rgb[r0 - top : r1 - top, c0 - left : c1 - left]


def _decode_pass(
    source: str,
    storage_options: Mapping[str, Any] | None,
    slots: Mapping[int, list[int]],
    status: np.ndarray,
    keep: Any,
    frame_size: tuple[int, int] | None,
    out_size: tuple[int, int] | None,
    seek_to: int | None,
    errors: list[str],
    landed: list[int],
    window: Window | None = None,
) -> None:
    """Decode forward from the key frame at/before `seek_to`, or from the start if None.

    ``keep(pts, rgb)`` takes each wanted frame, or ``keep(pts, rgb, True)`` only its
    `window` when that alone could be converted to RGB.  The timestamp of the first key
    frame the pass decodes from is appended to `landed`.
    """
    last = max(slots)
    opened = av_container if seek_to is None else _container_to_seek
    with opened(source, storage_options) as container:
        stream = container.streams.video[0]
        if not stream.codec_context.is_open:
            stream.codec_context.thread_count = 1
        if seek_to is not None:
            try:
                container.seek(seek_to, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return  # input cannot seek: the caller decodes from the start instead
        for packet in container.demux(stream):
            if not landed and packet.is_keyframe and packet.pts is not None:
                landed.append(int(packet.pts))
            try:
                decoded = packet.decode()
            except av.FFmpegError as err:
                errors.append(f"pts {packet.pts}: {short(err)}")
                continue
            for frame in decoded:
                pts = frame.pts
                if pts is None:
                    continue
                if pts > last:
                    return
                if pts in slots and status[slots[pts][0]] != FRAME_OK:
                    part = _rgb_window(frame, window, frame_size)
                    if part is not None:
                        keep(pts, part, True)
                    else:
                        where = f"{source} (frame at pts {pts})"
                        rgb = frame.to_ndarray(format="rgb24")
                        keep(pts, fit_frame(rgb, where, frame_size, out_size))
                    if (status == FRAME_OK).all():
                        return


# --------------------------------------------------------------------------------------------
# stills
#: Pillow modes of the JPEGs decoded by simplejpeg; others (CMYK, YCCK) by OpenCV, as before.
_SIMPLEJPEG_MODES = ("RGB", "L")
#: Reduced-size decoding of JPEGs: the scale divisor, largest first, and its OpenCV flag.
_REDUCED_FLAGS = (
    (8, "IMREAD_REDUCED_COLOR_8"),
    (4, "IMREAD_REDUCED_COLOR_4"),
    (2, "IMREAD_REDUCED_COLOR_2"),
)


def read_chunk(
    files: Sequence[str],
    *,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    window: Window | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dask task: read and decode a chunk of images, skipping undecodable ones.

    Parameters
    ----------
    files : sequence of str
        Local paths or fsspec URLs.
    frame_size : (int, int), optional
        Expected ``(height, width)`` of decoded images (checked unless `out_size` is given).
    out_size : (int, int), optional
        ``(width, height)`` to resize each image to.  A JPEG at least twice as large is
        decoded at 1/2, 1/4 or 1/8 of its size first (see :func:`decode_image`).
    storage_options : mapping, optional
        fsspec options for URLs.
    window : (row_start, row_stop, col_start, col_stop), optional
        Keep only these rows and columns of each (resized) image.

    Returns
    -------
    tuple of numpy.ndarray
        ``(len(files), height, width, 3)`` uint8 RGB images, EXIF orientation applied (0
        where undecodable), and their uint8 ``frame_status``; the window's height and width
        when given.

    Notes
    -----
    Each image is copied into the chunk's array as soon as it is decoded (when the size is
    known from `frame_size` or `out_size`): a task holds one whole decoded image at a time,
    not the whole of every image of its chunk.
    """
    if out_size is not None:
        shape: tuple[int, ...] | None = (out_size[1], out_size[0], 3)
    elif frame_size is not None:
        shape = (*frame_size, 3)
    else:
        shape = None
    if shape is not None and window is not None:
        shape = (window[1] - window[0], window[3] - window[2], 3)
    status = np.full(len(files), FRAME_UNDECODABLE, dtype=np.uint8)
    out = None if shape is None else np.zeros((len(files), *shape), dtype=np.uint8)
    held: list[tuple[int, np.ndarray]] = []  # only while the size is not known yet
    for position, name in enumerate(files):
        rgb = decode_image(read_bytes(name, storage_options), out_size=out_size)
        if rgb is None:
            continue
        rgb = in_window(fit_frame(rgb, name, frame_size, out_size), window)
        status[position] = FRAME_OK
        if out is None:
            held.append((position, np.ascontiguousarray(rgb)))
        else:
            out[position] = rgb
        del rgb  # not held while the next image decodes
    if out is None:
        shape = held[0][1].shape if held else (0, 0, 3)
        out = np.zeros((len(files), *shape), dtype=np.uint8)
        for position, rgb in held:
            out[position] = rgb
    return out, status


def decode_image(raw: bytes, out_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """RGB uint8 pixels of encoded image bytes as shown (EXIF orientation applied), or None.

    JPEGs (colour or grey) are decoded by simplejpeg (libjpeg-turbo, straight to RGB); other
    formats, CMYK JPEGs and any JPEG that simplejpeg refuses (truncated, 12-bit) by OpenCV,
    as before (straight to RGB where OpenCV can: ``IMREAD_COLOR_RGB``, in OpenCV 5.0 but not
    4.10). Pixels are decoded as stored, then turned by the EXIF orientation tag read with
    Pillow, so that the size read from the header and the pixels always agree.

    Parameters
    ----------
    raw : bytes
        The encoded image (PNG, JPEG, TIFF, ...).
    out_size : (int, int), optional
        ``(width, height)``, as shown, that the caller resizes the image to.  A JPEG at
        least twice that size (stored size divided by 2, 4 or 8, rounded up, still at least
        `out_size`) is decoded at the smallest such scale (libjpeg's scaled inverse DCT,
        which averages the pixels it drops): the caller resizes the rest of the way.  Other
        formats, and a JPEG whose reduced decoding fails, are decoded whole.

    Returns
    -------
    numpy.ndarray or None
        ``(height, width, 3)`` uint8 RGB, or None if the bytes do not decode.

    Notes
    -----
    The reader was chosen by measurement (benchmarks/README.md, "Stills"): both give the
    same pixels on the bundled real frames (0 difference, at every scale); alone on a quiet
    machine both take 3.3 ms for a 1024 x 1024 still, but in two busy processes, as two
    workers decode, OpenCV took 5.8-6.5 ms of CPU per still and simplejpeg 3.1-3.3 ms.
    """
    if not raw:
        return None
    fmt, stored, turn, mode = _header(raw)
    divisor = 1
    if out_size is not None and fmt == "JPEG" and stored is not None:
        shown = (out_size[1], out_size[0]) if turn in (5, 6, 7, 8) else tuple(out_size)
        divisor = _jpeg_divisor(stored, shown)
    pixels = None
    if fmt == "JPEG" and stored is not None and mode in _SIMPLEJPEG_MODES:
        pixels = _simplejpeg(raw, stored, divisor)
    if pixels is None and divisor > 1:
        pixels = _imdecode(raw, dict(_REDUCED_FLAGS)[divisor])
    if pixels is None:
        pixels = _imdecode(raw, "IMREAD_COLOR")
    if pixels is None:
        return None
    return _orient(pixels, turn)


def _simplejpeg(raw: bytes, stored: tuple[int, int], divisor: int) -> np.ndarray | None:
    """RGB pixels of a JPEG decoded by simplejpeg at 1/`divisor` of its size, or None.

    None when libjpeg-turbo reports any error, even one it could recover from (a truncated
    file), or when simplejpeg is not installed (a conda environment installed with
    ``pip install --no-deps``): OpenCV then decodes the image as it always did.
    """
    try:
        import simplejpeg
    except ImportError:
        return None
    width, height = stored
    try:
        return simplejpeg.decode_jpeg(
            raw,
            colorspace="RGB",
            min_height=-(-height // divisor) if divisor > 1 else 0,
            min_width=-(-width // divisor) if divisor > 1 else 0,
            strict=True,
        )
    except ValueError:
        return None


def _imdecode(raw: bytes, mode: str) -> np.ndarray | None:
    """RGB pixels decoded by ``cv2.imdecode`` with the colour flag ``mode``, as stored."""
    import cv2

    flags = getattr(cv2, mode) | cv2.IMREAD_IGNORE_ORIENTATION
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if rgb_flag is not None:  # straight to RGB: the colour flag's BGR bit swapped
        flags = (flags & ~cv2.IMREAD_COLOR) | rgb_flag
    try:
        pixels = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), flags)
    except cv2.error:
        return None
    if pixels is None:
        return None
    if rgb_flag is None:  # in place: no second copy of the image
        cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    return pixels


def _jpeg_divisor(stored: tuple[int, int], wanted: tuple[int, int]) -> int:
    """Largest of 8, 4, 2 whose reduced ``(width, height)`` still covers ``wanted``; else 1.

    libjpeg rounds a reduced size up: ``ceil(size / divisor)``.
    """
    for divisor, _ in _REDUCED_FLAGS:
        if all(-(-size // divisor) >= want for size, want in zip(stored, wanted, strict=True)):
            return divisor
    return 1


def _header(raw: bytes) -> tuple[str | None, tuple[int, int] | None, int, str | None]:
    """Format and mode (Pillow's names), stored ``(width, height)`` and EXIF orientation.

    ``(None, None, 1, None)`` when Pillow cannot read the header (OpenCV may still decode it).
    """
    try:
        with Image.open(BytesIO(raw)) as image:
            size = (int(image.size[0]), int(image.size[1]))
            return image.format, size, orientation(image), image.mode
    except Exception:
        return None, None, 1, None


def orientation(raw: bytes | Image.Image) -> int:
    """EXIF orientation tag (1-8) of image bytes or an open image; 1 when absent or invalid."""
    try:
        if isinstance(raw, Image.Image):
            value = raw.getexif().get(0x0112, 1)
        else:
            # No DecompressionBombWarning: sizes were checked against MAX_FRAME_PIXELS, which
            # is below Pillow's warning limit, and catching warnings is not thread-safe.
            with Image.open(BytesIO(raw)) as image:
                value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(image: np.ndarray, turn: int) -> np.ndarray:
    """Apply an EXIF orientation to pixels stored as ``(y, x, channel)``.

    The same transposes as :func:`PIL.ImageOps.exif_transpose`: 2 mirror, 3 rotate 180, 4 flip,
    5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    """
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, k=1),
    }
    if turn in turns:
        image = turns[turn](image)
    return np.ascontiguousarray(image)
