"""Segmented images and video: every pixel painted with the colour of its cluster centre.

Painting reads the stored labels; nothing is clustered again.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from sediment_xr._fs import exclusive_temp, is_url, local_path

if TYPE_CHECKING:
    from sediment_xr.lock import LockFence
    from sediment_xr.store import Output

__all__ = [
    "PRESET",
    "SEGMENTS",
    "X264_PARAMS",
    "concat_segments",
    "encode_segment",
    "overlay",
    "paint",
    "segment_tasks",
    "write_segmented_pngs",
    "write_segmented_video",
    "write_segmented_video_in_output",
]


#: x264 preset of the segmented video. Measured on a run's painted labels (1024 x 400, the
#: model's colours, crf 20, one thread): medium ~19 ms of CPU per frame; veryfast 8.7 ms and
#: 19 kB; ultrafast 2.6 ms and 45 kB; ultrafast with :data:`X264_PARAMS` 4.3 ms and 33 kB,
#: the same error against the painted colours (1.8 of 255). The video costs as much as the
#: labelling with veryfast; it is a picture of the labels, which the cube keeps exactly.
PRESET = "ultrafast"
#: Kept from the slower presets: CABAC and B-frames (26 % smaller than plain ultrafast for
#: 1.6 ms of CPU per frame; a no-op with veryfast and slower presets, which use both).
X264_PARAMS = "cabac=1:bframes=3"


def _palette(colors: np.ndarray, no_data_color: Sequence[int]) -> np.ndarray:
    """Lookup table indexed by ``label + 1`` (row 0 is no-data)."""
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    return np.concatenate([np.asarray(no_data_color, np.uint8).reshape(1, 3), colors])


def _paint_block(block: np.ndarray, palette: np.ndarray) -> np.ndarray:
    if block.dtype == np.int8 and len(palette) <= 256:
        # One lookup by the label's byte: 0..k-1 are the clusters, -1 (byte 255) and any
        # other value are no data. ~4x faster than the int16 index and mask below.
        from sediment_xr._kernels import paint_bytes

        full = np.repeat(palette[:1], 256, axis=0)
        full[: len(palette) - 1] = palette[1:]
        return paint_bytes(block.view(np.uint8), full)
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
#: Folder of the output's staging area where the chunk tasks write the video's segments.
SEGMENTS = ".sediment_xr/segments"


def encode_segment(
    block: np.ndarray,
    palette: np.ndarray,
    *,
    container_format: str = "mp4",
    fps: int = 10,
    crf: int = 20,
    preset: str = PRESET,
) -> bytes:
    """Paint labels ``(time, y, x)`` and encode them as one H.264 segment, in memory.

    Parameters
    ----------
    block : numpy.ndarray
        Integer labels of consecutive frames (one time chunk); ``-1`` is no data.
    palette : numpy.ndarray
        Lookup table of :func:`_palette` (row 0: the no-data colour).
    container_format, fps, crf, preset
        The video's container, frame rate and x264 settings.

    Returns
    -------
    bytes
        A complete video whose first frame is a keyframe (a new encoder per segment), so
        segments are joined by :func:`concat_segments` without decoding them.
    """
    import av

    buffer = io.BytesIO()
    size = (block.shape[1] + block.shape[1] % 2, block.shape[2] + block.shape[2] % 2)
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = _h264_stream(container, size, fps=fps, crf=crf, preset=preset)
        for frame in _paint_block(np.asarray(block), palette):
            vf = av.VideoFrame.from_ndarray(_pad_even(frame), format="rgb24")
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return buffer.getvalue()


def _h264_stream(container: Any, size: tuple[int, int], *, fps: int, crf: int, preset: str) -> Any:
    """The video's H.264 stream (yuv420p, ``size`` = height, width) in an output container.

    The segments are encoded into it, and joined into one of the same settings: its
    encoder then has the segments' parameter sets (SPS/PPS), which the joined video carries.
    """
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    # One thread: each segment is one task of a worker thread; x264's own frame threads
    # doubled the CPU per frame (12.5 against 6.2 ms; slower in wall time too).
    stream.options = {
        "crf": str(crf),
        "preset": preset,
        "threads": "1",
        "x264-params": X264_PARAMS,
    }
    return stream


def concat_segments(
    segments: Iterable[bytes],
    handle: Any,
    *,
    container_format: str = "mp4",
    fps: int = 10,
    crf: int = 20,
    preset: str = PRESET,
) -> int:
    """Join video segments into one video without encoding again (a remux).

    Each segment's packets are copied in order with their times moved past the end of the
    previous segments. Every segment starts with a keyframe and has the same codec
    parameters (:func:`encode_segment` with the settings given here). The output stream is
    set up as the segments' streams were and given the packets with start codes, as from its
    encoder (:func:`_annex_b`), so its parameter sets (SPS/PPS) are theirs with every PyAV
    version (PyAV 14 opens an encoder even for a stream copied from a template, whose
    parameter sets are not the segments'); one segment joined alone gives its own bytes
    back. x264 delays the decoding times of a segment with B-frames by up to two frames,
    and less in a segment too short for them: a decoding time that would not be after the
    one before it is moved just after it (never past the frame's presentation time), so the
    decoding order stays the packets' order.

    Parameters
    ----------
    segments : iterable of bytes
        The segments in time order (read one at a time).
    handle : binary file
        Where the video is written (open for writing, seekable for MP4).
    container_format : str, default "mp4"
    fps, crf, preset
        The settings the segments were encoded with.

    Returns
    -------
    int
        Number of frames (packets) written.

    Raises
    ------
    ValueError
        When a segment's codec, size or parameters differ from the first's, or from what
        the settings give (such a video would not decode).
    """
    import av

    count, offset, last_dts = 0, 0, None
    with av.open(handle, mode="w", format=container_format) as output:
        target = first = None
        for index, data in enumerate(segments):
            with av.open(io.BytesIO(data), mode="r") as source:
                stream = source.streams.video[0]
                if target is None:
                    ctx = stream.codec_context
                    size = (ctx.height, ctx.width)
                    target = _h264_stream(output, size, fps=fps, crf=crf, preset=preset)
                    first = _codec_of(stream)
                if _codec_of(stream) != first:
                    raise ValueError(
                        f"segment {index} cannot be joined to the first without encoding it "
                        f"again: its codec, size, pixel format, time base or parameters "
                        f"differ ({_codec_of(stream)[:5]} against {first[:5]}). Encode every "
                        "segment with the same settings (encode_segment)."
                    )
                end = offset
                rate = stream.average_rate or stream.guessed_rate
                step = max(1, round(1 / (stream.time_base * rate))) if rate else 1
                for packet in source.demux(stream):
                    if packet.size == 0 or packet.pts is None:
                        continue  # the demuxer's empty packet at the end
                    pts = packet.pts + offset
                    dts = (packet.dts if packet.dts is not None else packet.pts) + offset
                    if last_dts is not None and dts <= last_dts:
                        dts = last_dts + 1
                    if dts > pts:
                        raise ValueError(
                            f"segment {index} cannot be joined: its frame at {packet.pts} "
                            "would be decoded after it is shown. Encode the segments with "
                            "the same settings (encode_segment)."
                        )
                    copy = av.Packet(_annex_b(bytes(packet), first[-1]))
                    copy.pts, copy.dts, copy.time_base = pts, dts, packet.time_base
                    copy.duration, copy.is_keyframe = packet.duration, packet.is_keyframe
                    copy.stream = target
                    end = max(end, pts + (packet.duration or step))
                    output.mux(copy)  # the first opens the output's encoder
                    if count == 0 and not _same_parameter_sets(target, first[-1]):
                        raise ValueError(
                            "the segments cannot be joined: they were encoded with other "
                            "settings than the fps, crf and preset given to concat_segments."
                        )
                    last_dts, count = dts, count + 1
                offset = end
    return count


def _same_parameter_sets(target: Any, extradata: bytes) -> bool:
    """Whether the output encoder's SPS and PPS are those of the segments' ``avcC``."""
    own = bytes(target.codec_context.extradata or b"")
    units = [unit for unit in re.split(b"\x00\x00\x00?\x01", own) if unit]
    return all(unit.rstrip(b"\x00") in extradata for unit in units)


def _annex_b(data: bytes, extradata: bytes) -> bytes:
    """A packet of length-prefixed NAL units (MP4, MKV) with start codes instead (Annex B).

    The output's stream comes from an encoder, whose packets have start codes, and the MP4
    muxer turns start codes into lengths; a packet that has lengths already passes as is
    when ``extradata`` is not an ``avcC`` record (e.g. AVI).
    """
    if not extradata or extradata[0] != 1 or len(extradata) < 5:
        return data
    size = (extradata[4] & 3) + 1
    out, pos = bytearray(), 0
    while pos + size <= len(data):
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        out += b"\x00\x00\x00\x01" + data[pos : pos + length]
        pos += length
    return bytes(out)


def _codec_of(stream: Any) -> tuple[Any, ...]:
    """What segments joined without encoding must share: codec, size, format, time base."""
    ctx = stream.codec_context
    return (
        ctx.name,
        ctx.width,
        ctx.height,
        ctx.format.name if ctx.format is not None else None,
        stream.time_base,
        bytes(ctx.extradata or b""),
    )


def _chunk_blocks(labels: xr.DataArray) -> Iterator[np.ndarray]:
    """The label frames one time chunk at a time (all at once for numpy labels)."""
    chunks = labels.chunks[0] if labels.chunks is not None else (labels.sizes["time"],)
    start = 0
    for size in chunks:
        yield np.asarray(labels.isel(time=slice(start, start + size)).values)
        start += size


def write_segmented_video(
    labels: xr.DataArray,
    colors: np.ndarray,
    path: str | os.PathLike[str],
    *,
    fps: int = 10,
    crf: int = 20,
    preset: str = PRESET,
    storage_options: dict | None = None,
) -> int:
    """Write every frame of labels ``(time, y, x)``, painted, as an H.264 video (PyAV).

    In this process, one time chunk at a time: each chunk is painted and encoded as a
    segment (:func:`encode_segment`) and the segments are joined without encoding again
    (:func:`concat_segments`), as :func:`write_segmented_video_in_output` does on the
    workers of a run, so both give the same video. Memory stays at one chunk. H.264 needs
    even sizes: an odd window gets one black row or column. ``path`` may be an fsspec URL
    (the video is written locally, then copied). A local video is written into a new file
    of unpredictable name beside ``path``, created exclusively, and renamed onto ``path``
    when complete: a link planted at either name is never written through.

    Returns
    -------
    int
        Number of frames written (one per label frame).
    """
    palette = _palette(np.asarray(colors), (0, 0, 0))
    target = local_path(os.fspath(path))
    container_format = _FORMATS.get(os.path.splitext(target)[1].lower(), "mp4")
    options = {"container_format": container_format, "fps": fps, "crf": crf, "preset": preset}
    segments = (encode_segment(block, palette, **options) for block in _chunk_blocks(labels))
    return _place_video(
        target,
        lambda handle: concat_segments(segments, handle, **options),
        storage_options,
    )


def _place_video(
    target: str, write: Callable[[Any], int], storage_options: Mapping[str, Any] | None
) -> int:
    """Write a video with ``write(handle)`` and put it at ``target`` only when complete.

    A local ``target`` gets a new file of unpredictable name beside it, created exclusively
    and renamed onto it; a URL's video is written into a private temporary folder, then
    copied in one upload. Either way nothing is at ``target`` until the video is whole.
    """
    if not is_url(target):
        folder = os.path.realpath(os.path.dirname(os.path.abspath(target)))
        final = os.path.join(folder, os.path.basename(target))
        fd, tmp = exclusive_temp(final)
        try:
            with os.fdopen(fd, "wb") as handle:
                count = write(handle)
            os.replace(tmp, final)
        except BaseException:  # a failed video leaves the old one, and no partial one
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return count
    import fsspec

    with tempfile.TemporaryDirectory(prefix="sediment_xr_") as tmpdir:
        local = os.path.join(tmpdir, "segmented" + os.path.splitext(target)[1])
        with open(local, "wb") as handle:
            count = write(handle)
        with fsspec.open(target, "wb", **(storage_options or {})) as dst, open(local, "rb") as src:
            shutil.copyfileobj(src, dst, 2**22)
    return count


def _write_segment(
    block: np.ndarray,
    palette: np.ndarray,
    *,
    out: Output,
    name: str,
    options: Mapping[str, Any],
    fence: LockFence | None,
) -> int:
    """Task body: paint and encode one chunk, write it as ``name`` of the output."""
    if fence is not None:
        fence.check(f"writing {name}")
    data = encode_segment(block, palette, **options)
    out.write_bytes(name, data)  # local: exclusive temporary name, then renamed
    return int(block.shape[0])


def segment_tasks(
    labels: xr.DataArray,
    colors: np.ndarray,
    out: Output,
    folder: str,
    *,
    fps: int = 10,
    crf: int = 20,
    preset: str = PRESET,
    fence: LockFence | None = None,
) -> tuple[list[Any], list[str]]:
    """One dask task per time chunk of ``labels`` that writes the chunk's video segment.

    Parameters
    ----------
    labels : xarray.DataArray
        Lazy labels ``(time, y, x)`` (e.g. the stored cube's), chunked over time only.
    colors : array-like, shape (n_clusters, 3)
        uint8 RGB per cluster; no data is black.
    out : sediment_xr.store.Output
        The output folder; each task writes ``folder/<chunk>.mp4`` of it in one piece
        (:meth:`Output.write_bytes`: an exclusive temporary name renamed into place on local
        disk, one object on an object store).
    folder : str
        Folder of the segments, relative to ``out`` (e.g. ``.sediment_xr/segments/<id>``).
    fps, crf, preset
        The video's frame rate and x264 settings.
    fence : sediment_xr.lock.LockFence, optional
        Each task writes nothing unless the run still holds the output's lock.

    Returns
    -------
    (list of dask.delayed.Delayed, list of str)
        The tasks (each returns its number of frames; a task run twice writes the same
        segment again) and the names of the segments, in time order.
    """
    import dask

    palette = _palette(np.asarray(colors), (0, 0, 0))
    options = {"container_format": "mp4", "fps": fps, "crf": crf, "preset": preset}
    data = labels.data
    if not hasattr(data, "to_delayed"):  # numpy labels: one chunk
        import dask.array as da

        data = da.from_array(data, chunks=(-1, -1, -1))
    data = data.rechunk({1: -1, 2: -1})
    token = uuid.uuid4().hex  # side effects: never a cached key
    tasks, names = [], []
    for index, block in enumerate(data.to_delayed().ravel()):
        name = f"{folder}/{index:06d}.mp4"
        task = dask.delayed(_write_segment, pure=False)(
            block,
            palette,
            out=out,
            name=name,
            options=options,
            fence=fence,
            dask_key_name=f"sediment-xr-segment-{token}-{index}",
        )
        tasks.append(task)
        names.append(name)
    return tasks, names


def write_segmented_video_in_output(
    labels: xr.DataArray,
    colors: np.ndarray,
    out: Output,
    name: str = "segmented.mp4",
    *,
    fps: int = 10,
    crf: int = 20,
    preset: str = PRESET,
    fence: LockFence | None = None,
    retries: int = 0,
    progress: bool = False,
) -> int:
    """Paint and encode the video on the workers, one segment per chunk, then join them.

    The segments are written by one task per time chunk (:func:`segment_tasks`) into a
    new folder of :data:`SEGMENTS` in the output, computed on the active scheduler (the
    workers of a distributed cluster); this process then joins them without encoding again
    (:func:`concat_segments`) into a video that appears at ``name`` only when complete
    (see :func:`_place_video`), and removes the segments. Segments left by a run that was
    stopped are removed first: the caller holds the output's lock, so no other run writes
    there.

    Parameters
    ----------
    labels : xarray.DataArray
        Lazy labels ``(time, y, x)``, chunked over time.
    colors : array-like, shape (n_clusters, 3)
    out : sediment_xr.store.Output
    name : str, default "segmented.mp4"
        The video's name in the output folder.
    fps, crf, preset
        As :func:`write_segmented_video`.
    fence : sediment_xr.lock.LockFence, optional
        The run's lock, checked by each task before it writes.
    retries : int, default 0
        Runs of a failed task again (distributed scheduler).
    progress : bool, default False
        Show a progress bar of the tasks on stderr.

    Returns
    -------
    int
        Number of frames of the video.
    """
    from sediment_xr.scheduler import compute_tasks

    out.remove(SEGMENTS)  # a stopped run's segments: never joined
    folder = f"{SEGMENTS}/{uuid.uuid4().hex}"
    tasks, names = segment_tasks(
        labels, colors, out, folder, fps=fps, crf=crf, preset=preset, fence=fence
    )
    try:
        compute_tasks(tasks, desc=name, progress=progress, retries=retries)
        fs = out.fs
        segments = (fs.cat_file(out.path(segment)) for segment in names)
        local = not is_url(out.url)
        target = out.local_file(name) if local else out.url_of(name)
        if fence is not None:
            fence.check(f"writing {name}")
        return _place_video(
            target,
            lambda handle: concat_segments(
                segments, handle, container_format="mp4", fps=fps, crf=crf, preset=preset
            ),
            None if local else dict(out.storage_options),
        )
    finally:  # the segments are never read again (a rerun encodes its own)
        with contextlib.suppress(OSError):
            out.remove(SEGMENTS)


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
