"""Compare labels or cover with a reference: labelled masks, point annotations or known cover.

A reference is in the pixels of the input image as shown (its own size, EXIF orientation
applied): a mask of class codes or colours (:func:`read_mask`), or points annotated on the
image, as CoralNet exports them (:func:`read_points`).  The labels of a run live on the grid
of the analysed window (the crop, attributes ``crop_rows``, ``crop_cols``, ``frame_shape``),
so a full-frame reference is cropped to that window (:func:`crop_reference`).

Clusters become classes through a ``classes`` mapping (class name to cluster ids, as in a
config); without one, :func:`match_clusters` gives each cluster the reference class most of
its pixels belong to.

Every scoring function returns one tidy table (:data:`TABLE_COLUMNS`), one value per row:

``name``
    The frame's reference (mask or still name), ``"all"`` in the summary rows.
``frame``
    The frame number (the labels' ``frame`` coordinate); missing (``<NA>``) in summary rows.
``time``
    The frame's time; ``NaT`` in summary rows.
``class``
    The class the value is about; empty for a value about the whole frame.
``metric``
    Per frame: ``pixel_accuracy`` (or ``point_accuracy``), ``mean_iou``; per frame and class:
    ``iou`` (or, for points, ``agreement``: the share of the class's points labelled as the
    class), ``cover_pred``, ``cover_true`` and ``cover_error`` (predicted minus true, in
    percentage points).  Summary rows (``name == "all"``): ``pixel_accuracy``/``iou``
    (``point_accuracy``/``agreement``) pooled over every scored pixel (point) of every
    frame, ``mean_iou`` (the mean of the pooled IoUs), and per class ``cover_mae`` (mean
    absolute cover error over frames, percentage points) and ``cover_bias`` (mean error);
    :func:`evaluate_cover` adds ``cover_rmse``, ``slope_pred``, ``slope_true`` (percentage
    points per day, or per frame without times) and ``slope_ratio``.
``value``
    The number (fractions 0-1 for accuracy, IoU and agreement; percent for cover).
``n``
    What the value is counted over: scored pixels or points (frames for the summary's cover
    errors).
``match``
    How clusters became classes: ``"names"`` (a ``classes`` mapping whose names are the
    reference's) or ``"majority"`` (:func:`match_clusters`).

A pixel is scored when it is labelled (not ``-1``, no data) and has a reference class (not
``-1``, unlabelled).  Cover in these tables is the share of the scored pixels (points), so
predicted and true cover are counted over the same area.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr.exceptions import ConfigError, InputError, InputNotFoundError, setting

__all__ = [
    "MASK_EXTENSIONS",
    "TABLE_COLUMNS",
    "crop_reference",
    "evaluate_cover",
    "evaluate_labels",
    "evaluate_points",
    "evaluate_run",
    "frame_number",
    "match_clusters",
    "read_mask",
    "read_points",
    "summary_text",
]

#: Columns of every table this module returns (see the module's docstring).
TABLE_COLUMNS = ("name", "frame", "time", "class", "metric", "value", "n", "match")
#: File name endings (lower case) of the masks :func:`evaluate_run` reads from a folder.
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
#: Name of the summary rows.
ALL = "all"
_UNLABELLED = -1
_MAPPING_EXAMPLE = "{'bio': 255, 'sediment': 0}"
_COLOUR_EXAMPLE = "{'bio': [255, 255, 255], 'sediment': [[0, 0, 0], [0, 0, 255]]}"
_THRESHOLD = [("threshold", 128)]
_MAJORITY = [("match", "majority")]
_POINT_COLUMNS = {"name": "Name", "row": "Row", "column": "Column", "label": "Label"}
_FRAME_NAME = re.compile(r"(?:frame[_-]?)?(\d+)", re.IGNORECASE)
Match = Literal["auto", "names", "majority"]


# --------------------------------------------------------------------------------------------
# reading references
def _check_mapping(mapping: Any, colour: bool, where: str) -> list[tuple[str, np.ndarray]]:
    """Class name and the pixel codes it merges, in the mapping's order.

    Colours ``[r, g, b]`` are packed as ``r * 65536 + g * 256 + b``.
    """
    example = _COLOUR_EXAMPLE if colour else _MAPPING_EXAMPLE
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(
            f"the mapping of {where} needs class names with their mask values, e.g. {example}, "
            f"but got {mapping!r}. Give one entry per class."
        )
    out: list[tuple[str, np.ndarray]] = []
    seen: dict[int, str] = {}
    for name, value in mapping.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"the mapping of {where} needs non-empty class names, but got {name!r}. "
                f"Use e.g. {example}."
            )
        codes = _colours(name, value, where) if colour else _codes(name, value, where)
        for code in codes:
            if seen.get(code, name) != name:
                shown = _shown(code, colour)
                raise ConfigError(
                    f"the mapping of {where} gives mask value {shown} to two classes "
                    f"({seen[code]!r} and {name!r}). Give each value to one class."
                )
            seen[code] = name
        out.append((name, np.asarray(codes, dtype=np.int64)))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _codes(name: str, value: Any, where: str) -> list[int]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items or not all(_is_int(v) and v >= 0 for v in items):
        raise ConfigError(
            f"the mapping of {where} (a single-channel, palette or threshold-coded mask) needs "
            f"a pixel value (a whole number of 0 or more) or a list of them for class "
            f"{name!r}, but got {value!r}. Use e.g. {_MAPPING_EXAMPLE}."
        )
    return [int(v) for v in items]


def _colours(name: str, value: Any, where: str) -> list[int]:
    def colour(item: Any) -> bool:
        return (
            isinstance(item, list | tuple)
            and len(item) == 3
            and all(_is_int(v) and 0 <= v <= 255 for v in item)
        )

    items = [value] if colour(value) else list(value) if isinstance(value, list | tuple) else []
    if not items or not all(colour(item) for item in items):
        raise ConfigError(
            f"the mapping of {where} (an RGB mask) needs an RGB colour [r, g, b] (0-255) or a "
            f"list of them for class {name!r}, but got {value!r}. Use e.g. {_COLOUR_EXAMPLE}, "
            f"or {setting('threshold', 128)} for a mask coded by thresholded channels.",
            settings=_THRESHOLD,
        )
    return [int(r) * 65536 + int(g) * 256 + int(b) for r, g, b in items]


def _shown(code: int, colour: bool) -> str:
    if not colour:
        return str(code)
    return str([code // 65536, code // 256 % 256, code % 256])


def read_mask(
    path: str | os.PathLike[str],
    mapping: Mapping[str, Any],
    *,
    threshold: int | None = None,
) -> np.ndarray:
    """Read a labelled mask image as class indices.

    Parameters
    ----------
    path : str or os.PathLike
        A PNG (or BMP, TIFF) mask drawn on an image, of the image's size.
    mapping : mapping of str to value
        Class name to the mask values of the class, in the order of the class indices.
        For a single-channel or palette mask (palette indices) and with `threshold`: a pixel
        value or a list of them, e.g. ``{"bio": [5, 2], "sediment": 7}``.  For an RGB mask:
        a colour ``[r, g, b]`` or a list of colours, e.g. ``{"bio": [255, 255, 255]}``.
        Several values of one class are merged.
    threshold : int, optional
        Code an RGB mask by thresholded channels, as SUIM does: a channel is 1 where it is at
        least `threshold`, and the value is ``R * 4 + G * 2 + B`` (0-7).  E.g. 128.

    Returns
    -------
    numpy.ndarray
        int16 ``(y, x)``: the index of each pixel's class in `mapping`, ``-1`` for pixels
        of no class (unlabelled, left out of every score).

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    InputError
        If it is not an image, or no pixel has a value of the mapping.
    ConfigError
        If the mapping does not suit the mask (colours for a single-channel mask, values for
        an RGB mask) or gives one value to two classes.

    Notes
    -----
    Computes: reads the file.  An alpha channel is ignored.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"mask {path} does not exist; a reference mask is an image file (PNG). Check the path."
        )
    try:
        with Image.open(path) as image:
            mode = image.mode
            colour = mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
            data = np.asarray(image.convert("RGB") if colour else image)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(
            f"mask {path} cannot be read as an image ({err}); a reference mask is a PNG, BMP "
            "or TIFF image. Export it again as PNG."
        ) from err
    if data.ndim == 3 and not colour:  # LA, PA: the value channel
        data = data[..., 0]
    if threshold is not None:
        if not _is_int(threshold) or not 1 <= threshold <= 255:
            raise ConfigError(
                f"threshold needs a whole number from 1 to 255, but got {threshold!r}. Use "
                f"e.g. {setting('threshold', 128)}.",
                settings=_THRESHOLD,
            )
        if not colour:
            raise ConfigError(
                f"threshold codes an RGB mask, but {path.name} is a single-channel image "
                f"(mode {mode}). Leave threshold out and map its pixel values."
            )
        bits = (data >= threshold).astype(np.int64)
        data = bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2]
        colour = False
    elif colour:
        wide = data.astype(np.int64)
        data = wide[..., 0] * 65536 + wide[..., 1] * 256 + wide[..., 2]
    entries = _check_mapping(mapping, colour, f"mask {path.name}")
    out = np.full(data.shape, _UNLABELLED, dtype=np.int16)
    for index, (_, codes) in enumerate(entries):
        out[np.isin(data, codes)] = index
    if not (out >= 0).any():
        values, counts = np.unique(data, return_counts=True)
        common = values[np.argsort(-counts, kind="stable")[:5]]
        seen = ", ".join(_shown(int(v), colour) for v in common)
        raise InputError(
            f"mask {path.name} has no pixel of a class of the mapping (its most common values: "
            f"{seen}). Check the mapping's values"
            + (
                f" (or use {setting('threshold', 128)} for a threshold-coded mask)."
                if colour
                else "."
            ),
            settings=_THRESHOLD,
        )
    return out


def read_points(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read point annotations from a CoralNet-style CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        A CSV file with columns ``Name`` (the image's file name), ``Row``, ``Column`` (pixel
        positions counted from 0 at the top left of the image as shown) and ``Label`` (or
        ``Label code``), any case; other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``name`` (str), ``row``, ``column`` (int64) and ``label`` (str), one row per
        point, in the file's order.

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    InputError
        If it has no points, lacks a column, or a row or column is not a whole number of 0
        or more, or a name or label is empty.  The message names the line.

    Notes
    -----
    Computes: reads the file.  Points outside an image are refused by :func:`evaluate_points`
    and :func:`evaluate_run`, which know the image's size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"points file {path} does not exist; point annotations are a CSV file with columns "
            "Name, Row, Column, Label. Check the path."
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            f"points file {path.name} cannot be read as CSV ({' '.join(str(err).split())}); "
            "point annotations are a CSV file with columns Name, Row, Column, Label. Export "
            "them again as CSV."
        ) from err
    columns = {str(c).strip().lower(): c for c in raw.columns}
    if "label" not in columns and "label code" in columns:
        columns["label"] = columns["label code"]
    missing = [shown for key, shown in _POINT_COLUMNS.items() if key not in columns]
    if missing:
        raise InputError(
            f"points file {path.name} needs columns Name, Row, Column and Label (any case), but "
            f"has no {', '.join(missing)} (columns: {', '.join(map(str, raw.columns))}). "
            "Rename its columns, or export the annotations from CoralNet as CSV."
        )
    if raw.empty:
        raise InputError(
            f"points file {path.name} has a header but no points. Give a file with one line per "
            "annotated point."
        )
    table = pd.DataFrame({key: raw[columns[key]].str.strip() for key in _POINT_COLUMNS})
    for key in ("name", "label"):
        empty = np.flatnonzero(table[key].to_numpy() == "")
        if empty.size:
            raise InputError(
                f"points file {path.name}: line {empty[0] + 2} has an empty "
                f"{_POINT_COLUMNS[key]}. Fill it in, or remove the line."
            )
    for key in ("row", "column"):
        text = table[key].to_numpy(dtype=str)
        whole = np.array([bool(re.fullmatch(r"\+?\d+(\.0*)?", v)) for v in text])
        if not whole.all():
            line = int(np.flatnonzero(~whole)[0])
            raise InputError(
                f"points file {path.name}: line {line + 2} has {_POINT_COLUMNS[key]} "
                f"{text[line]!r}, but Row and Column are whole pixel numbers counted from 0 at "
                "the top left of the image. Fix that line."
            )
        table[key] = np.array([int(float(v)) for v in text], dtype=np.int64)
    return table


def frame_number(name: str) -> int | None:
    """The frame number a reference's name gives, or None.

    >>> frame_number("frame_000012.png"), frame_number("12.png"), frame_number("dive_3.png")
    (12, 12, None)
    """
    match = _FRAME_NAME.fullmatch(Path(name).stem)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------
# the window of the labels
def _window(labels: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """``(frame_shape, (row0, col0), window_shape)`` of labels with crop attributes."""
    attrs = getattr(labels, "attrs", {})
    if not all(k in attrs for k in ("crop_rows", "crop_cols", "frame_shape")):
        return None
    rows, cols = attrs["crop_rows"], attrs["crop_cols"]
    height, width = (int(v) for v in attrs["frame_shape"])
    return (height, width), (int(rows[0]), int(cols[0])), labels.shape[-2:]


def crop_reference(
    reference: np.ndarray, labels: xr.DataArray | np.ndarray, *, resize: bool = False
) -> np.ndarray:
    """A reference (class indices) on the grid of labels: cropped to their window.

    Parameters
    ----------
    reference : numpy.ndarray
        Class indices ``(..., y, x)``: of the full frame, or already of the labels' window.
    labels : xarray.DataArray or numpy.ndarray
        Labels ``(..., y, x)``; a DataArray from :func:`sediment_xr.label` or a run's cube
        carries the window in its ``crop_rows``, ``crop_cols`` and ``frame_shape``
        attributes.
    resize : bool, default False
        The frames were resized when read (``resize=``): a reference of another size is
        resized to ``frame_shape`` (nearest neighbour) before cropping.

    Returns
    -------
    numpy.ndarray
        The reference ``(..., y, x)`` with the labels' ``y, x`` shape.

    Raises
    ------
    InputError
        If the reference is neither the frame's nor the window's size (and `resize` is
        False).
    """
    reference = np.asarray(reference)
    size = tuple(labels.shape[-2:])
    if reference.shape[-2:] == size:
        return reference
    window = _window(labels)
    seen = f"{reference.shape[-1]}x{reference.shape[-2]}"
    if window is None:
        raise InputError(
            f"the reference is {seen} pixels (width x height) but the labels are "
            f"{size[1]}x{size[0]} and carry no crop_rows/crop_cols/frame_shape attributes. "
            "Give a reference of the labels' size."
        )
    (height, width), (row0, col0), (win_h, win_w) = window
    if reference.shape[-2:] != (height, width):
        if not resize:
            raise InputError(
                f"the reference is {seen} pixels (width x height), but the run's frames are "
                f"{width}x{height} and its analysed window {win_w}x{win_h}. Give references "
                "of the input images' size (or of the window's)."
            )
        import cv2

        lead = reference.shape[:-2]
        flat = reference.reshape(-1, *reference.shape[-2:]).astype(np.int16)
        flat = np.stack(
            [cv2.resize(f, (width, height), interpolation=cv2.INTER_NEAREST) for f in flat]
        )
        reference = flat.reshape(*lead, height, width)
    return reference[..., row0 : row0 + win_h, col0 : col0 + win_w]


# --------------------------------------------------------------------------------------------
# scoring
def _as_frames(labels: xr.DataArray | np.ndarray, what: str) -> np.ndarray:
    """Labels as an int array ``(time, y, x)``."""
    data = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels)
    if not np.issubdtype(data.dtype, np.integer):
        raise InputError(
            f"{what} needs integer labels, but got dtype {data.dtype}. Use sediment_xr.label "
            "or a run's labels."
        )
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(
            f"{what} needs labels (time, y, x) or (y, x), but got shape {data.shape}. Select "
            "the frames to score."
        )
    return data


def _frame_coords(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers and times of the labels' frames (positions and NaT without coords)."""
    coords = getattr(labels, "coords", {})
    frames = np.arange(n)
    times = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if "time" in coords and coords["time"].ndim == 1 and coords["time"].size == n:
        if np.issubdtype(coords["time"].dtype, np.datetime64):
            times = np.asarray(coords["time"].values, dtype="datetime64[ns]")
    if "frame" in coords and coords["frame"].ndim == 1 and coords["frame"].size == n:
        frames = np.asarray(coords["frame"].values, dtype=np.int64)
    return frames, times


def _n_clusters(labels: Any, data: np.ndarray, n_clusters: int | None) -> int:
    if n_clusters is not None:
        return int(n_clusters)
    values = getattr(labels, "attrs", {}).get("flag_values")
    if values is not None:
        return int(max(values)) + 1
    return int(data.max(initial=-1)) + 1


def _class_lookup(
    classes: Mapping[str, Sequence[int]], names: list[str], n_clusters: int
) -> np.ndarray:
    """Cluster id -> index of its class in `names`; ``len(names)`` for clusters of no class."""
    from sediment_xr.coverage import check_classes

    checked = check_classes(classes, None)
    lookup = np.full(max(n_clusters, 1 + max(max(v) for v in checked.values())), len(names))
    for name, ids in checked.items():
        lookup[ids] = names.index(name)
    return lookup


def _predicted(data: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Class index of each labelled pixel, -1 for no data (and labels past the lookup)."""
    inside = (data >= 0) & (data < lookup.size)
    return np.where(inside, lookup[np.clip(data, 0, lookup.size - 1)], -1)


def _confusion(pred: np.ndarray, ref: np.ndarray, n_ref: int, n_pred: int) -> np.ndarray:
    """Counts ``(n_ref, n_pred)`` of reference class (rows) against predicted (columns)."""
    ok = (pred >= 0) & (ref >= 0)
    index = ref[ok].astype(np.int64) * n_pred + pred[ok].astype(np.int64)
    return np.bincount(index, minlength=n_ref * n_pred).reshape(n_ref, n_pred)


def match_clusters(
    labels: xr.DataArray | np.ndarray,
    reference: np.ndarray,
    *,
    class_names: Sequence[str],
    n_clusters: int | None = None,
) -> dict[str, list[int]]:
    """Name each cluster after the reference class most of its pixels belong to.

    Parameters
    ----------
    labels : xarray.DataArray or numpy.ndarray
        Cluster labels ``(time, y, x)`` or ``(y, x)``, ``-1`` for no data.
    reference : numpy.ndarray
        Reference class indices of the same frames (full frame or the labels' window, see
        :func:`crop_reference`), ``-1`` for unlabelled.
    class_names : sequence of str
        Name of each reference class index.
    n_clusters : int, optional
        Number of clusters; by default the labels' ``flag_values`` or their largest label.

    Returns
    -------
    dict of str to list of int
        A ``classes`` mapping (class name to cluster ids), in the order of `class_names`;
        classes no cluster is matched to are left out, and so are clusters without a scored
        pixel.  Ties go to the first class.

    Notes
    -----
    Computes: loads the labels.
    """
    data = _as_frames(labels, "match_clusters")
    ref = crop_reference(reference, labels)
    names = [str(n) for n in class_names]
    k = _n_clusters(labels, data, n_clusters)
    counts = _confusion(np.where(data < k, data, -1), ref.reshape(data.shape), len(names), k)
    out: dict[str, list[int]] = {}
    best = counts.argmax(axis=0)
    for cluster in range(k):
        if counts[:, cluster].sum() > 0:
            out.setdefault(names[best[cluster]], []).append(cluster)
    return {name: out[name] for name in names if name in out}


def _table(rows: list[dict[str, Any]], match: str) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["frame"] = table["frame"].astype("Int64")
    table["time"] = pd.to_datetime(table["time"])
    table["n"] = table["n"].astype(np.int64)
    table["match"] = match
    return table


def _scores(
    counts: np.ndarray,
    names: list[str],
    frames: np.ndarray,
    times: np.ndarray,
    labels: list[str],
    kind: Literal["pixel", "point"],
) -> list[dict[str, Any]]:
    """Rows of the table from confusion counts ``(frame, n_ref, n_pred)``."""
    rows: list[dict[str, Any]] = []
    accuracy, overlap = f"{kind}_accuracy", "iou" if kind == "pixel" else "agreement"
    k = len(names)

    def add(*fields: Any) -> None:
        rows.append(_row(*fields))

    def one(c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, int]:
        """Accuracy, IoU (agreement) per class, cover ``(pred/true, class)``, count."""
        total = int(c.sum())
        hit = np.diagonal(c)[:k].astype(float)
        true = c[:k].sum(axis=1).astype(float)
        pred = c[:, :k].sum(axis=0).astype(float)
        if not total:
            return np.nan, np.full(k, np.nan), np.full((2, k), np.nan), 0
        with np.errstate(invalid="ignore", divide="ignore"):
            if kind == "pixel":
                score = np.where(true + pred - hit > 0, hit / (true + pred - hit), np.nan)
            else:
                score = np.where(true > 0, hit / true, np.nan)
        return hit.sum() / total, score, np.stack([100 * pred, 100 * true]) / total, total

    def mean(values: np.ndarray) -> float:
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else np.nan

    errors = np.full((len(frames), k), np.nan)
    for i, (frame, time, name) in enumerate(zip(frames, times, labels, strict=True)):
        acc, score, cover, total = one(counts[i])
        add(name, frame, time, "", accuracy, acc, total)
        if kind == "pixel":
            add(name, frame, time, "", "mean_iou", mean(score), total)
        errors[i] = cover[0] - cover[1]
        for j, cls in enumerate(names):
            add(name, frame, time, cls, overlap, score[j], total)
            add(name, frame, time, cls, "cover_pred", cover[0, j], total)
            add(name, frame, time, cls, "cover_true", cover[1, j], total)
            add(name, frame, time, cls, "cover_error", errors[i, j], total)
    acc, score, _, total = one(counts.sum(axis=0))
    add(ALL, pd.NA, pd.NaT, "", accuracy, acc, total)
    if kind == "pixel":
        add(ALL, pd.NA, pd.NaT, "", "mean_iou", mean(score), total)
    scored = np.isfinite(errors[:, 0]) if k else np.zeros(len(frames), bool)
    for j, cls in enumerate(names):
        add(ALL, pd.NA, pd.NaT, cls, overlap, score[j], total)
        add(ALL, pd.NA, pd.NaT, cls, "cover_mae", mean(np.abs(errors[scored, j])), scored.sum())
        add(ALL, pd.NA, pd.NaT, cls, "cover_bias", mean(errors[scored, j]), scored.sum())
    return rows


def evaluate_labels(
    labels: xr.DataArray | np.ndarray,
    reference: np.ndarray,
    *,
    class_names: Sequence[str],
    classes: Mapping[str, Sequence[int]] | None = None,
    names: Sequence[str] | None = None,
    n_clusters: int | None = None,
) -> pd.DataFrame:
    """Score cluster labels against reference class masks, frame by frame.

    Parameters
    ----------
    labels : xarray.DataArray or numpy.ndarray
        Cluster labels ``(time, y, x)`` or ``(y, x)``, ``-1`` for no data; a DataArray's
        ``frame`` and ``time`` coordinates name the rows.
    reference : numpy.ndarray
        Reference class indices of the same frames, ``-1`` for unlabelled (e.g. stacked
        :func:`read_mask` results): of the labels' window, or of the full frame when the
        labels carry their window (:func:`crop_reference`).
    class_names : sequence of str
        Name of each reference class index (e.g. ``list(mapping)``).
    classes : mapping of str to list of int, optional
        Class name to cluster ids, as in a config's ``classes``.  Pixels of clusters in no
        class, and of reference classes that are not among `classes`, count as wrong.
        Default: :func:`match_clusters` on these very frames.
    names : sequence of str, optional
        A name for each frame (the ``name`` column); default ``frame_<frame>``.
    n_clusters : int, optional
        Number of clusters; by default the labels' ``flag_values`` or their largest label.

    Returns
    -------
    pandas.DataFrame
        The tidy table of the module's docstring: per frame ``pixel_accuracy``,
        ``mean_iou``, and per class ``iou``, ``cover_pred``, ``cover_true``,
        ``cover_error``; summary rows named ``"all"``.

    Raises
    ------
    InputError
        If shapes or frame counts differ, or a reference index has no name.

    Notes
    -----
    Computes: loads the labels (as large as the reference, which is in memory).
    """
    data = _as_frames(labels, "evaluate_labels")
    ref = crop_reference(reference, labels)
    ref = ref[None] if ref.ndim == 2 else ref
    if ref.shape != data.shape:
        raise InputError(
            f"evaluate_labels needs a reference for each frame of the labels, but got "
            f"{ref.shape[0]} reference frames for {data.shape[0]} frames of labels. Give one "
            "reference per frame, in the labels' order."
        )
    ref_names = [str(n) for n in class_names]
    if ref.max(initial=-1) >= len(ref_names):
        raise InputError(
            f"the reference holds class index {int(ref.max())}, but class_names names "
            f"{len(ref_names)} classes. Give a name for every class index."
        )
    k = _n_clusters(labels, data, n_clusters)
    match = "names"
    if classes is None:
        classes = match_clusters(data, ref, class_names=ref_names, n_clusters=k)
        match = "majority"
    all_names = [*ref_names, *(c for c in classes if c not in ref_names)]
    pred = _predicted(data, _class_lookup(classes, all_names, k))
    n = len(all_names)
    counts = np.stack([_confusion(p, r, n, n + 1) for p, r in zip(pred, ref, strict=True)])
    frames, times = _frame_coords(labels, data.shape[0])
    labels_ = list(names) if names is not None else [f"frame_{f}" for f in frames]
    table = _table(_scores(counts, all_names, frames, times, labels_, "pixel"), match)
    table.attrs["classes"] = {c: list(v) for c, v in classes.items()}
    return table


def evaluate_points(
    labels: xr.DataArray | np.ndarray,
    points: pd.DataFrame,
    *,
    classes: Mapping[str, Sequence[int]] | None = None,
    n_clusters: int | None = None,
) -> pd.DataFrame:
    """Score cluster labels at annotated points.

    Parameters
    ----------
    labels : xarray.DataArray or numpy.ndarray
        Cluster labels ``(time, y, x)`` or ``(y, x)``, ``-1`` for no data.
    points : pandas.DataFrame
        Columns ``row``, ``column`` (pixel positions in the full frame, counted from 0 at the
        top left), ``label`` (the class name) and ``frame`` (the position of the point's frame
        along the labels' ``time``; may be left out for one frame); optional ``name``.
        Points outside the labels' window or on no-data pixels are not scored.
    classes : mapping of str to list of int, optional
        Class name to cluster ids; points of other labels, and on clusters in no class,
        count as wrong.  Default: :func:`match_clusters` on the points.
    n_clusters : int, optional
        Number of clusters; by default the labels' ``flag_values`` or their largest label.

    Returns
    -------
    pandas.DataFrame
        The tidy table of the module's docstring, one set of rows per frame with points:
        ``point_accuracy``, ``points_not_scored``, and per class ``agreement`` (share of the
        class's points labelled as the class), ``cover_pred``, ``cover_true``,
        ``cover_error`` (percent of the scored points); summary rows named ``"all"``.

    Raises
    ------
    InputError
        If a column is missing, or a point lies outside the frame.

    Notes
    -----
    Computes: reads the labels at the points only.
    """
    need = {"row", "column", "label"}
    lab = labels if isinstance(labels, xr.DataArray) else None
    data_shape = tuple(labels.shape)
    ndim = len(data_shape)
    if ndim == 2 and "frame" not in points:
        points = points.assign(frame=0)
    if ndim not in (2, 3):
        raise InputError(
            f"evaluate_points needs labels (time, y, x) or (y, x), but got shape {data_shape}. "
            "Select the frames to score."
        )
    missing = sorted((need | {"frame"}) - set(points.columns))
    if missing:
        raise InputError(
            f"evaluate_points needs points with columns row, column, label and frame, but "
            f"they lack {', '.join(missing)}. Read them with read_points and add the frame "
            "position of each."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"evaluate_points needs integer labels, but got dtype {labels.dtype}. Use "
            "sediment_xr.label or a run's labels."
        )
    if points.empty:
        raise InputError(
            "evaluate_points needs at least one point, but got none. Give the annotated "
            "points of these frames."
        )
    n_time = 1 if ndim == 2 else data_shape[0]
    window = _window(labels)
    if window is None:
        (height, width), (row0, col0) = data_shape[-2:], (0, 0)
    else:
        (height, width), (row0, col0), _ = window
    rows = points["row"].to_numpy(np.int64)
    cols = points["column"].to_numpy(np.int64)
    frame_pos = points["frame"].to_numpy(np.int64)
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if outside.any() or ((frame_pos < 0) | (frame_pos >= n_time)).any():
        i = int(np.flatnonzero(outside | (frame_pos < 0) | (frame_pos >= n_time))[0])
        where = f" of {points['name'].iloc[i]}" if "name" in points else ""
        raise InputError(
            f"point {i + 1}{where} (row {rows[i]}, column {cols[i]}, frame position "
            f"{frame_pos[i]}) is outside the {width}x{height} frames ({n_time} of them). "
            "Give rows and columns counted from 0 at the top left of the image."
        )
    y, x = rows - row0, cols - col0
    win_h, win_w = data_shape[-2:]
    inside = (y >= 0) & (y < win_h) & (x >= 0) & (x < win_w)
    values = np.full(len(points), -1, dtype=np.int64)
    if inside.any():
        yy, xx, tt = y[inside], x[inside], frame_pos[inside]
        if lab is not None:
            index = {"y": ("p", yy), "x": ("p", xx)}
            if ndim == 3:
                index[lab.dims[0]] = ("p", tt)
            picked = lab.isel({d: xr.DataArray(v[1], dims=v[0]) for d, v in index.items()})
            values[inside] = np.asarray(picked.values, dtype=np.int64)
        else:
            arr = np.asarray(labels)
            values[inside] = arr[yy, xx] if ndim == 2 else arr[tt, yy, xx]
    point_labels = points["label"].astype(str).to_numpy()
    k = _n_clusters(labels, values, n_clusters)
    match = "names"
    if classes is None:
        ref_names = list(dict.fromkeys(point_labels))
        ref = np.array([ref_names.index(v) for v in point_labels])
        classes = match_clusters(values[None], ref[None], class_names=ref_names, n_clusters=k)
        match = "majority"
    else:
        ref_names = [*classes, *(v for v in dict.fromkeys(point_labels) if v not in classes)]
        ref = np.array([ref_names.index(v) for v in point_labels])
    all_names = [*ref_names, *(c for c in classes if c not in ref_names)]
    pred = _predicted(values, _class_lookup(classes, all_names, k))
    n = len(all_names)
    present = sorted(set(frame_pos.tolist()))
    counts = np.stack(
        [_confusion(pred[frame_pos == f], ref[frame_pos == f], n, n + 1) for f in present]
    )
    frames_all, times_all = _frame_coords(labels if ndim == 3 else None, n_time)
    frames, times = frames_all[present], times_all[present]
    if "name" in points:
        first = {f: points["name"].iloc[int(np.flatnonzero(frame_pos == f)[0])] for f in present}
        names = [str(first[f]) for f in present]
    else:
        names = [f"frame_{f}" for f in frames]
    rows_out = _scores(counts, all_names, frames, times, names, "point")
    table = _table(rows_out, match)
    not_scored = [int(((frame_pos == f) & (pred < 0)).sum()) for f in present]
    extra = pd.DataFrame(
        {
            "name": names,
            "frame": frames,
            "time": times,
            "class": "",
            "metric": "points_not_scored",
            "value": np.asarray(not_scored, dtype=float),
            "n": [int((frame_pos == f).sum()) for f in present],
            "match": match,
        }
    )
    table = _insert_after(table, extra, "point_accuracy")
    table.attrs["classes"] = {c: list(v) for c, v in classes.items()}
    return table


def _insert_after(table: pd.DataFrame, extra: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`table` with each row of `extra` right after the `metric` row of its frame."""
    extra = extra.astype({"frame": "Int64"}).assign(time=pd.to_datetime(extra["time"]))
    parts, start = [], 0
    anchors = np.flatnonzero((table["metric"] == metric).to_numpy() & table["frame"].notna())
    for row, anchor in zip(range(len(extra)), anchors, strict=True):
        parts += [table.iloc[start : anchor + 1], extra.iloc[row : row + 1]]
        start = anchor + 1
    parts.append(table.iloc[start:])
    out = pd.concat(parts, ignore_index=True)
    out.attrs = dict(table.attrs)
    return out


def _cover_frame(cover: Any, what: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Cover as a DataFrame (rows: frames, columns: classes) and the frame numbers."""
    frames = None
    if isinstance(cover, xr.DataArray):
        if "frame" in cover.coords and cover["frame"].ndim == 1:
            frames = np.asarray(cover["frame"].values, dtype=np.int64)
        if cover.ndim == 1:
            cover = cover.to_series().rename(cover.name or "cover")
        elif cover.ndim == 2:
            other = next(d for d in cover.dims if d != cover.dims[0])
            cover = cover.transpose(cover.dims[0], other).to_pandas()
            cover.columns = [
                f"cluster_{c}" if other == "cluster" else str(c) for c in cover.columns
            ]
        else:
            raise InputError(
                f"evaluate_cover needs {what} with dims (time,) or (time, class), but got dims "
                f"{cover.dims}. Select one class or give class_cover."
            )
    if isinstance(cover, pd.Series):
        cover = cover.to_frame(str(cover.name) if cover.name is not None else "cover")
    if not isinstance(cover, pd.DataFrame):
        values = np.asarray(cover, dtype=float)
        if values.ndim != 1:
            raise InputError(
                f"evaluate_cover needs {what} as a DataArray, a pandas Series or DataFrame, or "
                f"a 1-d array, but got shape {values.shape}. Give one of these."
            )
        cover = pd.DataFrame({"cover": values})
    if "time" in cover.columns and not isinstance(cover.index, pd.DatetimeIndex):
        cover = cover.set_index(pd.DatetimeIndex(pd.to_datetime(cover.pop("time"))))
    if "frame" in cover.columns:
        frames = cover.pop("frame").to_numpy(np.int64)
    return cover.astype(float), frames


def _slope(times: pd.Index, values: np.ndarray) -> float:
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return np.nan
    if isinstance(times, pd.DatetimeIndex):
        x = (times - times[0]) / pd.Timedelta(days=1)
        x = np.asarray(x, dtype=float)
    else:
        x = np.arange(len(values), dtype=float)
    if np.ptp(x[ok]) == 0:
        return np.nan
    return float(np.polyfit(x[ok], values[ok], 1)[0])


def evaluate_cover(
    cover: Any, reference_cover: Any, *, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Compare a cover series with a known one, frame by frame and over time.

    Parameters
    ----------
    cover : xarray.DataArray, pandas.Series or DataFrame, or array
        Percent cover: ``(time,)``, or ``(time, class)`` such as a run's ``class_cover``
        (``(time, cluster)`` columns are named ``cluster_<id>``); a DataFrame has one column
        per class (an optional ``time`` and ``frame`` column are used as such).
    reference_cover : same kinds
        The true cover, e.g. ``true_cover`` of :func:`sediment_xr.testing.synthetic_series`.
        With one column each, the two are compared whatever their names (under the
        reference's name); otherwise by class name.
    names : sequence of str, optional
        A name for each frame; default ``frame_<frame>``.

    Returns
    -------
    pandas.DataFrame
        The tidy table of the module's docstring: per frame and class ``cover_pred``,
        ``cover_true`` and ``cover_error``; per class in the summary rows ``cover_mae``,
        ``cover_bias``, ``cover_rmse``, ``slope_pred``, ``slope_true`` (percentage points per
        day with times, else per frame) and ``slope_ratio`` (predicted over true slope).

    Raises
    ------
    InputError
        If the two have no time or class in common, or differ in length without times.

    Notes
    -----
    Computes: loads both series.  With a time index (``time`` coordinate) on both, frames are
    matched by time; otherwise by position.
    """
    pred, frames = _cover_frame(cover, "cover")
    true, true_frames = _cover_frame(reference_cover, "reference_cover")
    if pred.shape[1] == 1 and true.shape[1] == 1:
        pred.columns = true.columns
    unknown = [c for c in true.columns if c not in pred.columns]
    if unknown:
        raise InputError(
            f"evaluate_cover: the reference's class {unknown[0]!r} is not in the cover (classes: "
            f"{', '.join(map(str, pred.columns))}). Give cover of the same classes."
        )
    both_times = isinstance(pred.index, pd.DatetimeIndex) and isinstance(
        true.index, pd.DatetimeIndex
    )
    if both_times:
        common = pred.index.intersection(true.index)
        if common.empty:
            raise InputError(
                f"evaluate_cover: the cover ({pred.index[0]} ...) and the reference "
                f"({true.index[0]} ...) have no time in common. Give series of the same frames."
            )
        keep = pred.index.get_indexer(common)
        frames = frames[keep] if frames is not None else None
        pred, true = pred.loc[common], true.loc[common]
    elif len(pred) != len(true):
        raise InputError(
            f"evaluate_cover needs one reference value per frame, but got {len(true)} for "
            f"{len(pred)} frames (and no times on both to match them). Give series of the same "
            "frames."
        )
    n = len(true)
    frames = frames if frames is not None else true_frames
    frames = frames if frames is not None and len(frames) == n else np.arange(n)
    times = pred.index if isinstance(pred.index, pd.DatetimeIndex) else None
    labels = list(names) if names is not None else [f"frame_{f}" for f in frames]
    rows: list[dict[str, Any]] = []
    for cls in true.columns:
        p, t = pred[cls].to_numpy(float), true[cls].to_numpy(float)
        error = p - t
        for i in range(n):
            time = times[i] if times is not None else pd.NaT
            for metric, value in (("cover_pred", p[i]), ("cover_true", t[i])):
                rows.append(_row(labels[i], frames[i], time, cls, metric, value, 1))
            rows.append(_row(labels[i], frames[i], time, cls, "cover_error", error[i], 1))
    for cls in true.columns:
        p, t = pred[cls].to_numpy(float), true[cls].to_numpy(float)
        error = p - t
        ok = np.isfinite(error)
        index = pred.index if times is not None else pd.RangeIndex(n)
        slope_p, slope_t = _slope(index, p), _slope(index, t)
        summary = {
            "cover_mae": np.abs(error[ok]).mean() if ok.any() else np.nan,
            "cover_bias": error[ok].mean() if ok.any() else np.nan,
            "cover_rmse": np.sqrt((error[ok] ** 2).mean()) if ok.any() else np.nan,
            "slope_pred": slope_p,
            "slope_true": slope_t,
            "slope_ratio": slope_p / slope_t if slope_t else np.nan,
        }
        for metric, value in summary.items():
            rows.append(_row(ALL, pd.NA, pd.NaT, cls, metric, value, int(ok.sum())))
    return _table(rows, "names")


def _row(name, frame, time, cls, metric, value, n) -> dict[str, Any]:
    return {
        "name": name,
        "frame": frame,
        "time": time,
        "class": cls,
        "metric": metric,
        "value": float(value),
        "n": int(n),
    }


def summary_text(table: pd.DataFrame) -> str:
    """A few lines from a table's summary rows, e.g. for a terminal.

    >>> print(summary_text(table))  # doctest: +SKIP
    pixel accuracy 0.912 over 460800 pixels of 3 frames (classes matched by names)
    bio: IoU 0.801, cover error: mean absolute 2.1 pp, bias +1.3 pp
    """
    summary = table[table["name"] == ALL]
    frames = table.loc[table["name"] != ALL, "frame"].nunique()
    match = str(table["match"].iloc[0]) if len(table) else "names"
    lines = []
    for metric, what in (("pixel_accuracy", "pixels"), ("point_accuracy", "points")):
        row = summary[(summary["metric"] == metric) & (summary["class"] == "")]
        if len(row):
            lines.append(
                f"{metric.replace('_', ' ')} {row['value'].iloc[0]:.3f} over "
                f"{row['n'].iloc[0]} {what} of {frames} frames (classes matched by {match})"
            )
    for cls in dict.fromkeys(summary.loc[summary["class"] != "", "class"]):
        values = summary[summary["class"] == cls].set_index("metric")["value"]
        score = values.get("iou", values.get("agreement", 0.0))
        if np.isnan(score) and values.get("cover_mae") == 0:
            continue  # in neither the reference nor the prediction
        parts = []
        if "iou" in values:
            parts.append(f"IoU {values['iou']:.3f}")
        if "agreement" in values:
            parts.append(f"agreement {values['agreement']:.3f}")
        parts.append(
            f"cover error: mean absolute {values['cover_mae']:.2f} pp, bias "
            f"{values['cover_bias']:+.2f} pp"
        )
        if "slope_ratio" in values:
            parts.append(f"slope ratio {values['slope_ratio']:.3f}")
        lines.append(f"{cls}: " + ", ".join(parts))
    classes = table.attrs.get("classes")
    if classes and match == "majority":
        shown = ", ".join(f"{c} = clusters {v}" for c, v in classes.items())
        lines.append(f"clusters matched to the reference's classes by majority: {shown}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# a finished run
def _choose_classes(
    reference_names: Sequence[str], run_classes: Mapping[str, Any] | None, match: str, what: str
) -> dict[str, list[int]] | None:
    """The run's classes, or None for :func:`match_clusters` (see :func:`evaluate_run`)."""
    if match not in ("auto", "names", "majority"):
        raise ConfigError(
            f"match needs 'auto', 'names' or 'majority', but got {match!r}. Use e.g. "
            f"{setting('match', 'auto')}.",
            settings=[("match", "auto")],
        )
    if match == "majority":
        return None
    if not run_classes:
        if match == "names":
            raise ConfigError(
                f"{setting('match', 'names')} needs the run's classes, but the run has none "
                f"(its config has no classes). Use {setting('match', 'majority')} to name "
                f"clusters after {what}.",
                settings=[("match", "names"), *_MAJORITY],
            )
        return None
    shared = [n for n in reference_names if n in run_classes]
    unknown = [n for n in reference_names if n not in run_classes]
    if not unknown:
        return {str(k): [int(c) for c in v] for k, v in run_classes.items()}
    if shared or match == "names":
        raise InputError(
            f"{what} has class {unknown[0]!r}, which is not a class of the run "
            f"({', '.join(map(repr, run_classes))}). Rename it to one of them, leave it out "
            f"(its pixels or points are then not scored), or use {setting('match', 'majority')}.",
            settings=_MAJORITY,
        )
    return None


def _run_files(
    cube: xr.Dataset, config: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> list[str] | None:
    """The run's stills in frame order, or None for a video (frames matched by number)."""
    from sediment_xr.exceptions import SedimentXRError
    from sediment_xr.io import is_stills
    from sediment_xr.stills import open_images

    files = cube.attrs.get("source_files")
    source = str(config.get("input"))
    if files:
        return [str(f) for f in files] if len(files) == cube.sizes["time"] else None
    try:
        stills = is_stills(source, storage_options)
    except SedimentXRError:
        stills = False
    if not stills:
        return None
    ingest = config.get("ingest") or {}
    resize = ingest.get("resize")
    try:
        frames = open_images(
            source,
            resize=tuple(resize) if isinstance(resize, list) else resize,
            start_time=ingest.get("start_time"),
            frame_interval=ingest.get("frame_interval"),
            storage_options=storage_options,
        )
    except SedimentXRError as err:
        raise InputError(
            f"references are matched to the run's stills by file name, but the run's input "
            f"cannot be listed again: {err}"
        ) from err
    files = list(frames.attrs["source_files"])
    same = len(files) == cube.sizes["time"] and np.array_equal(
        frames["time"].values, cube["time"].values
    )
    if not same:
        raise InputError(
            f"references are matched to the run's stills by file name, but its input {source} "
            f"now holds {len(files)} images ({cube.sizes['time']} when the run read it, or "
            "other times). Run the same config again, or name references by frame number "
            "(frame_<N>.png)."
        )
    return files


def _original_size(
    position: int,
    files: list[str] | None,
    config: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
    cache: dict[Any, tuple[int, int]],
) -> tuple[int, int]:
    """``(height, width)`` of a frame as shown before the run's resize."""
    from PIL import Image

    from sediment_xr._fs import open_binary
    from sediment_xr.decode import orientation

    key = files[position] if files else "video"
    if key not in cache:
        if files:
            with open_binary(files[position], storage_options) as handle:
                with Image.open(handle) as image:
                    width, height = image.size
                    turned = orientation(image) in (5, 6, 7, 8)
            cache[key] = (width, height) if turned else (height, width)
        else:
            from sediment_xr.video import open_video

            ingest = config.get("ingest") or {}
            video = open_video(
                str(config["input"]),
                fps=ingest.get("fps"),
                start_time=ingest.get("start_time"),
                frame_interval=ingest.get("frame_interval"),
                storage_options=storage_options,
            )
            cache[key] = (video.sizes["y"], video.sizes["x"])
    return cache[key]


def _mask_files(masks: str | os.PathLike[str]) -> list[Path]:
    path = Path(masks)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputNotFoundError(
            f"masks {path} does not exist; give a folder of mask images named after the run's "
            "stills (foo.jpg -> foo.png) or frames (frame_<N>.png). Check the path."
        )
    found = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS and not p.name.startswith(".")
    )
    if not found:
        raise InputNotFoundError(
            f"no mask images found in {path} (looked for names ending in "
            f"{', '.join(MASK_EXTENSIONS)}). Give the folder that holds the masks."
        )
    return found


def _point_mapping(mapping: Any) -> dict[str, str]:
    """Point label code -> class name, from a mapping of class name to codes."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(
            "the mapping of point labels needs class names with their label codes, e.g. "
            f"{{'bio': ['MAT', 'CLAM'], 'sediment': 'SED'}}, but got {mapping!r}. Give one "
            "entry per class."
        )
    out: dict[str, str] = {}
    for name, value in mapping.items():
        items = list(value) if isinstance(value, list | tuple) else [value]
        if not items or not all(isinstance(v, str | int) and str(v).strip() for v in items):
            raise ConfigError(
                f"the mapping of point labels needs a label code or a list of them for class "
                f"{name!r}, but got {value!r}. Use e.g. {{'bio': ['MAT', 'CLAM']}}."
            )
        for code in map(str, items):
            if code.strip() in out:
                raise ConfigError(
                    f"the mapping of point labels gives label {code!r} to two classes "
                    f"({out[code.strip()]!r} and {name!r}). Give each label to one class."
                )
            out[code.strip()] = str(name)
    return out


def evaluate_run(
    output: str,
    *,
    masks: str | os.PathLike[str] | None = None,
    points: str | os.PathLike[str] | None = None,
    mapping: Mapping[str, Any] | None = None,
    threshold: int | None = None,
    match: Match = "auto",
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Score a finished run against reference masks or point annotations.

    Parameters
    ----------
    output : str
        The output folder (path or fsspec URL) of ``sediment-xr run``.
    masks : str or os.PathLike, optional
        A folder of mask images (or one mask), read with :func:`read_mask`.  A mask belongs
        to the still of the same name stem (``foo.png`` -> ``foo.jpg``), else to the frame
        its name numbers (``frame_000012.png``, ``frame12.png`` or ``12.png``: the run's
        ``frame`` 12, the index in a video or the position among the stills).
    points : str or os.PathLike, optional
        A CoralNet-style CSV (:func:`read_points`); its ``Name`` is matched as a mask's.
    mapping : mapping, optional
        For masks (needed): class name to mask values (see :func:`read_mask`).  For points:
        class name to label codes, e.g. ``{"bio": ["MAT", "CLAM"]}``; points of other labels
        are not scored.  Without it a point's label is its class.
    threshold : int, optional
        Threshold of threshold-coded RGB masks (see :func:`read_mask`).
    match : {"auto", "names", "majority"}, default "auto"
        How clusters become the reference's classes: ``"names"``: the run's ``classes``
        (each reference class must be one of them); ``"majority"``:
        :func:`match_clusters` on the scored frames; ``"auto"``: the run's classes when every
        reference class is one, majority when the run has no classes or none of the
        reference's, and an error when only some are.
    storage_options : mapping, optional
        fsspec options of the output (and of the input, for URLs).

    Returns
    -------
    pandas.DataFrame
        The tidy table of :func:`evaluate_labels` or :func:`evaluate_points` (see the
        module's docstring); ``attrs["classes"]`` holds the classes used.

    Raises
    ------
    OutputError
        If the run did not finish.
    InputNotFoundError, InputError, ConfigError
        If a reference is missing, unreadable, matches no frame, or does not fit the run.

    Notes
    -----
    Computes: reads the labels of the referenced frames only.  References are in the
    pixels of the input image as shown: the run's crop is applied to them; when the run
    resized its frames (``ingest.resize``), masks are resized (nearest neighbour) and points
    scaled from the image's own size, read again from the input.  Matching stills by name
    lists the run's input again (it must still be there, unchanged).
    """
    from sediment_xr.results import open_results
    from sediment_xr.store import Output

    if (masks is None) == (points is None):
        raise ConfigError(
            "evaluate_run needs either masks (a folder of mask images) or points (a CSV of point "
            f"annotations), but got {'both' if masks is not None else 'neither'}. Give one "
            "of them."
        )
    if masks is not None and mapping is None:
        raise ConfigError(
            "evaluate_run with masks needs a mapping of class names to mask values, e.g. "
            f"{_MAPPING_EXAMPLE}, but got none. Give mapping=..."
        )
    cube = open_results(output, storage_options=storage_options)
    state = Output(output, dict(storage_options or {})).state() or {}
    config = state.get("config") or {}
    run_classes = config.get("classes") or None
    resized = (config.get("ingest") or {}).get("resize") is not None
    labels = cube["labels"]
    files = _run_files(cube, config, storage_options)
    stems: dict[str, int] = {}
    for i, f in enumerate(files or []):
        stems.setdefault(Path(f.replace("\\", "/").rsplit("/", 1)[-1]).stem, i)
    numbers: dict[int, int] = {}
    for i, f in enumerate(np.asarray(cube["frame"].values)):
        numbers.setdefault(int(f), i)

    def position(name: str) -> int | None:
        stem = Path(name).stem
        if stem in stems:
            return stems[stem]
        number = frame_number(name)
        return numbers.get(number) if number is not None else None

    def unmatched(what: str) -> InputError:
        rule = (
            f"the stills' names ({', '.join(list(stems)[:3])}, ...) or frame_<N>"
            if files
            else f"frame_<N> with N a frame of the run ({min(numbers)} to {max(numbers)})"
        )
        return InputError(
            f"{what} matches no frame of the run in {output}; references are named after "
            f"{rule}. Rename it, or leave it out."
        )

    sizes: dict[Any, tuple[int, int]] = {}
    if masks is not None:
        found: dict[int, Path] = {}
        for path in _mask_files(masks):
            pos = position(path.name)
            if pos is None:
                raise unmatched(f"mask {path.name}")
            if pos in found:
                raise InputError(
                    f"masks {found[pos].name} and {path.name} are both for frame "
                    f"{int(cube['frame'].values[pos])} of the run. Keep one of them."
                )
            found[pos] = path
        order = sorted(found)
        refs = []
        for pos in order:
            ref = read_mask(found[pos], mapping, threshold=threshold)
            if resized:
                shape = _original_size(pos, files, config, storage_options, sizes)
                if ref.shape != shape:
                    raise InputError(
                        f"mask {found[pos].name} is {ref.shape[1]}x{ref.shape[0]} pixels "
                        f"(width x height), but its image is {shape[1]}x{shape[0]}. Give "
                        "masks of their image's size."
                    )
            try:
                refs.append(crop_reference(ref, labels, resize=resized))
            except InputError as err:
                raise InputError(f"mask {found[pos].name}: {err}") from None
        names = list(mapping)  # type: ignore[arg-type]
        classes = _choose_classes(names, run_classes, match, "the mapping")
        return evaluate_labels(
            labels.isel(time=order),
            np.stack(refs),
            class_names=names,
            classes=classes,
            names=[found[pos].name for pos in order],
        )
    table = read_points(points)  # type: ignore[arg-type]
    where = Path(points).name  # type: ignore[arg-type]
    if mapping is not None:
        codes = _point_mapping(mapping)
        label = table["label"].map(codes)
        if label.isna().all():
            seen = ", ".join(map(repr, list(dict.fromkeys(table["label"]))[:5]))
            raise InputError(
                f"points file {where}: no point label is in the mapping (labels seen: {seen}). "
                "Map these labels to classes."
            )
        table = table.assign(label=label).dropna(subset=["label"]).reset_index(drop=True)
        reference_names = list(dict.fromkeys(codes.values()))
    else:
        reference_names = list(dict.fromkeys(table["label"]))
    frame_pos = []
    for name in table["name"]:
        pos = position(name)
        if pos is None:
            raise unmatched(f"image {name!r} of points file {where}")
        frame_pos.append(pos)
    table["frame"] = np.asarray(frame_pos, dtype=np.int64)
    if resized:
        height, width = (int(v) for v in labels.attrs["frame_shape"])
        rows = np.array(table["row"], dtype=np.int64)
        cols = np.array(table["column"], dtype=np.int64)
        for i, pos in enumerate(frame_pos):
            h, w = _original_size(pos, files, config, storage_options, sizes)
            if not (0 <= rows[i] < h and 0 <= cols[i] < w):
                raise InputError(
                    f"points file {where}: point {i + 1} of {table['name'].iloc[i]} (row "
                    f"{rows[i]}, column {cols[i]}) is outside its {w}x{h} image. Give rows "
                    "and columns counted from 0 at the top left of the image."
                )
            rows[i] = min(int((rows[i] + 0.5) * height / h), height - 1)
            cols[i] = min(int((cols[i] + 0.5) * width / w), width - 1)
        table["row"], table["column"] = rows, cols
    classes = _choose_classes(reference_names, run_classes, match, f"points file {where}")
    try:
        return evaluate_points(labels, table, classes=classes)
    except InputError as err:
        raise InputError(f"points file {where}: {err}") from None
