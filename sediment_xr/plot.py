"""Interactive plots for the analyst: stacked cover, trends, cluster colours, an example frame.

Plain functions that take the pipeline's small results (cover series, the trend table,
``clusters.json`` entries, a few uint8 images) and return HoloViews objects drawn with the
Bokeh backend. The cover charts are made with hvplot (``hvPlot(table).bar(stacked=True)``,
``.line``, ``.scatter``) from a tidy table; the swatches and example frames are HoloViews
elements, hvplot's own building blocks. They display interactively in Jupyter (after
``hv.extension("bokeh")`` or ``import hvplot.xarray``) and render to Bokeh models with
``hv.render(obj, backend="bokeh")``, which is what :func:`sediment_xr.report.build_report`
embeds.

Importing this module is cheap; the first plot loads HoloViews, hvplot and Bokeh (about a
second). Nothing else in the package imports it except the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr.exceptions import InputError

__all__ = [
    "MAX_PLOTTED_FRAMES",
    "bin_cover",
    "cover_trends",
    "example_frame",
    "stacked_cover",
    "swatches",
    "trend_equations",
]

#: Colours of series without given colours (Bokeh's Category10).
DEFAULT_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_BACKGROUND = "#e9ecef"
_TIME_FORMAT = "%Y-%m-%d %H:%M"
_TIME_TOOLTIP = "@{time}{%F %H:%M}"
#: Frames above which the cover plots show means over time bins (with the minimum and maximum
#: of each bin) instead of every frame: a year of 10-minute stills is 52,560 frames.
MAX_PLOTTED_FRAMES = 2000
_BIN_WIDTHS = (
    *("1s", "2s", "5s", "10s", "30s", "1min", "2min", "5min", "10min", "30min"),
    *("1h", "3h", "6h", "12h", "1D", "2D", "7D", "14D", "30D", "91D", "365D"),
)


def bin_cover(series: xr.DataArray, max_bins: int = 1000) -> tuple[xr.Dataset, str]:
    """Mean, minimum and maximum cover over time bins, at most ``max_bins`` of them.

    Parameters
    ----------
    series : xarray.DataArray
        Percent cover ``(time, cluster)`` or ``(time, class)``.
    max_bins : int, default 1000
        Most bins over the series' time span.

    Returns
    -------
    (xarray.Dataset, str)
        ``mean``, ``min`` and ``max`` ``(time, series dim)`` at the start of each bin (bins
        without frames dropped), and the bin width (e.g. ``"1D"``): the narrowest of 1 s
        to 30 min (a video at its frame rate), 1 h, 3 h, 6 h, 12 h, 1, 2, 7, 14, 30, 91 and
        365 days that gives few enough bins.

    Notes
    -----
    Computes: loads ``series``.
    """
    times = pd.DatetimeIndex(series["time"].values)
    span = (times.max() - times.min()) if len(times) else pd.Timedelta(0)
    width = next((w for w in _BIN_WIDTHS if span / pd.Timedelta(w) < max_bins), _BIN_WIDTHS[-1])
    series = series.load().sortby("time")
    binned = series.resample(time=width)
    out = xr.Dataset({"mean": binned.mean(), "min": binned.min(), "max": binned.max()})
    return out.dropna("time", how="all", subset=["mean"]), width


def _hv():
    """HoloViews with its Bokeh backend registered (without switching the notebook's)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh backend

    return hv


def _hvplot(table: pd.DataFrame):
    """``table.hvplot`` without patching pandas for the whole session."""
    _hv()
    from hvplot import hvPlot

    return hvPlot(table)


def _series_dim(series: xr.DataArray, what: str) -> str:
    if not isinstance(series, xr.DataArray) or "time" not in series.dims or series.ndim != 2:
        dims = getattr(series, "dims", type(series).__name__)
        raise InputError(
            f"{what} needs a DataArray with dims (time, cluster) or (time, class), but got "
            f"{dims}. Pass sediment_xr.cover(...) or sediment_xr.merge_classes(...)."
        )
    return next(d for d in series.dims if d != "time")


def _series_name(dim: str, value: Any) -> str:
    """Name of a series as in :func:`sediment_xr.fit_trends` (``cluster_0``, class names)."""
    return f"cluster_{int(value)}" if dim == "cluster" else str(value)


def _frames_of(series: xr.DataArray) -> np.ndarray:
    if "frame" in series.coords:
        return np.asarray(series["frame"].values, dtype=np.int64)
    return np.arange(series.sizes["time"], dtype=np.int64)


def _hex(rgb: Sequence[int]) -> str:
    r, g, b = (int(np.clip(round(float(v)), 0, 255)) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _colors(colors: Any, n: int, what: str) -> list[str]:
    """``n`` hex colours from an ``(n, 3)`` RGB array, a list of hex strings, or defaults."""
    if colors is None:
        return [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(n)]
    if isinstance(colors, np.ndarray) or (
        isinstance(colors, Sequence) and colors and not isinstance(colors[0], str)
    ):
        rgb = np.asarray(colors)
        if rgb.ndim != 2 or rgb.shape != (n, 3):
            raise InputError(
                f"{what} needs one RGB colour per series, shape ({n}, 3), but got colours of "
                f"shape {rgb.shape}. Pass e.g. model.center_rgb."
            )
        return [_hex(c) for c in rgb]
    out = [str(c) for c in colors]
    if len(out) != n:
        raise InputError(
            f"{what} needs one colour per series ({n}), but got {len(out)} colours. "
            "Pass e.g. model.center_rgb."
        )
    return out


def stacked_cover(
    cover: xr.DataArray,
    *,
    colors: np.ndarray | Sequence[Any] | None = None,
    title: str | None = None,
    width: int = 700,
    height: int = 320,
):
    """Stacked bars of percent cover per frame over time (the lesson's stacked bar chart).

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)`` or ``(time, class)`` with a datetime64 ``time``
        coordinate; a ``frame`` coordinate is shown in the hover.
    colors : array-like, optional
        One colour per series: uint8 RGB ``(n, 3)`` (e.g. ``ClusterModel.center_rgb``, so bars
        look like the segmented image) or hex strings. Category10 by default.
    title : str, optional
        Plot title; by default "Percent cover per cluster" (or class). Above
        :data:`MAX_PLOTTED_FRAMES` frames the bars are the means of time bins
        (:func:`bin_cover`), and the title says so.
    width, height : int
        Size of the plot area in pixels (the legend comes on the right of it).

    Returns
    -------
    holoviews.Bars
        Drawn by ``hvplot.bar(stacked=True)`` on a datetime axis (bars are 80 % of the
        shortest gap between frames wide, so irregular sampling shows), stacked in series
        order; the hover shows series, time, frame and cover.

    Notes
    -----
    Computes: loads ``cover`` (it is small). Frames without analysed pixels (all NaN) get no
    bar.
    """
    dim = _series_dim(cover, "stacked_cover")
    cover = cover.transpose("time", dim)
    names = [_series_name(dim, v) for v in cover[dim].values]
    palette = _colors(colors, len(names), "stacked_cover")
    title = title if title is not None else f"Percent cover per {dim}"
    hover = ["frame"]
    if cover.sizes["time"] > MAX_PLOTTED_FRAMES:  # one bar per time bin, not per frame
        binned, bin_width = bin_cover(cover)
        cover = binned["mean"].assign_coords(frame=("time", np.full(binned.sizes["time"], -1)))
        title += f" (mean of each {bin_width} bin)"
        hover = []
    values = np.asarray(cover.values, dtype=np.float64)
    keep = ~np.all(np.isnan(values), axis=1)  # frames without analysed pixels: no bar
    table = _tidy(cover, names)
    table = table[np.repeat(keep, len(names))]
    top = float(np.nansum(values[keep], axis=1).max()) if keep.any() else 100.0
    bars = _hvplot(table).bar(
        x="time",
        y="cover",
        by="series",
        stacked=True,
        color=palette,
        hover_cols=hover,
        legend="right",
    )
    return bars.opts(
        backend="bokeh",
        title=title,
        frame_width=width,
        frame_height=height,
        xlabel="time",
        ylabel="cover (%)",
        ylim=(0, max(100.0, top)),
        toolbar="above",
        bgcolor=_BACKGROUND,
        show_grid=False,
        line_color="#ffffff" if keep.sum() <= 80 else None,
        line_width=0.4,
        hover_tooltips=_tooltips(dim, frame=bool(hover)),
        hover_formatters={"@{time}": "datetime"},
    )


def _tooltips(dim: str, frame: bool = True) -> list[tuple[str, str]]:
    return [
        (dim, "@{series}"),
        ("time", _TIME_TOOLTIP),
        *([("frame", "@{frame}")] if frame else []),
        ("cover", "@{cover}{0.00} %"),
    ]


def _tidy(series: xr.DataArray, names: Sequence[str]) -> pd.DataFrame:
    """Long table ``time, series, frame, cover`` (series as an ordered categorical)."""
    n_time, n_series = series.shape
    return pd.DataFrame(
        {
            "time": np.repeat(pd.DatetimeIndex(series["time"].values), n_series),
            "series": pd.Categorical(np.tile(names, n_time), categories=list(names)),
            "frame": np.repeat(_frames_of(series), n_series),
            "cover": np.asarray(series.values, dtype=np.float64).reshape(-1),
        }
    )


def _equation(slope: float, intercept: float, r2: float) -> str:
    """``y = 0.35 x/day + 18.0, R² = 0.99`` (x = days since the first frame)."""
    sign = "-" if intercept < 0 else "+"
    return f"y = {slope:.3g} x/day {sign} {abs(intercept):.1f}, R² = {r2:.2f}"


def trend_equations(trend: pd.DataFrame) -> dict[str, str]:
    """Equation and R² of every fitted row of a :func:`sediment_xr.fit_trends` table."""
    out = {}
    for _, row in trend.iterrows():
        values = [row.get(k, np.nan) for k in ("slope_per_day", "intercept", "r2")]
        if all(np.isfinite(float(v)) for v in values):
            out[str(row["name"])] = _equation(*(float(v) for v in values))
    return out


def cover_trends(
    series: xr.DataArray,
    trend: pd.DataFrame,
    *,
    colors: np.ndarray | Sequence[Any] | None = None,
    title: str | None = None,
    width: int = 700,
    height: int = 320,
):
    """Cover over time with its fitted OLS line, labelled with the equation and R².

    Parameters
    ----------
    series : xarray.DataArray
        Percent cover ``(time, cluster)`` or ``(time, class)``.
    trend : pandas.DataFrame
        The table of :func:`sediment_xr.fit_trends` (columns ``name``, ``slope_per_day``,
        ``intercept``, ``r2``...; the intercept is the cover at the first time of
        ``series``). Series without a fitted row are drawn without a line.
    colors : array-like, optional
        One colour per series, as in :func:`stacked_cover`.
    title : str, optional
        Plot title; by default it says what ``x`` is in the equations.
    width, height : int
        Size of the plot area in pixels (the legend comes on the right of it).

    Returns
    -------
    holoviews.Overlay
        Per series: points and a line of the cover, and a dashed fitted line whose legend
        entry reads ``name: y = 0.35 x/day + 18.0, R² = 0.99`` (x = days since the first
        frame).

    Notes
    -----
    Computes: loads ``series`` (it is small).
    """
    dim = _series_dim(series, "cover_trends")
    if not isinstance(trend, pd.DataFrame) or not {"name", "slope_per_day", "intercept"} <= set(
        trend.columns
    ):
        raise InputError(
            "cover_trends needs the table of sediment_xr.fit_trends (columns name, "
            f"slope_per_day, intercept, r2), but got {type(trend).__name__}. "
            "Pass sediment_xr.fit_trends(series)."
        )
    series = series.transpose("time", dim)
    names = [_series_name(dim, v) for v in series[dim].values]
    palette = _colors(colors, len(names), "cover_trends")
    times = pd.DatetimeIndex(series["time"].values)
    t0 = times[0] if len(times) else pd.Timestamp(0)
    style = {"x": "time", "y": "cover", "by": "series", "color": palette, "legend": "right"}
    if series.sizes["time"] > MAX_PLOTTED_FRAMES:  # bin means, and their min-max bands
        binned, bin_width = bin_cover(series)
        means = binned["mean"].assign_coords(frame=("time", np.full(binned.sizes["time"], -1)))
        points = _tidy(means, names).dropna(subset=["cover"])
        bands = points.assign(
            low=np.asarray(binned["min"].values, dtype=np.float64).reshape(-1)[points.index],
            high=np.asarray(binned["max"].values, dtype=np.float64).reshape(-1)[points.index],
        )
        plot = _hvplot(bands).area(
            x="time", y="low", y2="high", by="series", color=palette, alpha=0.25, hover=False
        ) * _hvplot(points).line(**style, hover=False, line_width=1.5)
        note = f"; mean, minimum and maximum of each {bin_width} bin"
    else:
        note = ""
        points = _tidy(series, names).dropna(subset=["cover"])
        lines = _hvplot(points).line(**style, hover=False, line_width=1.5, alpha=0.6)
        dots = (
            _hvplot(points)
            .scatter(**style, hover_cols=["frame"], size=6)
            .opts(
                "Scatter", hover_tooltips=_tooltips(dim), hover_formatters={"@{time}": "datetime"}
            )
        )
        plot = lines * dots
    equations = trend_equations(trend)
    rows = {str(r["name"]): r for _, r in trend.iterrows()}
    fitted = [j for j, name in enumerate(names) if name in equations and len(times)]
    if fitted:
        ends = pd.DatetimeIndex([t0, times[-1]])
        days = np.asarray((ends - t0) / pd.Timedelta(days=1))
        labels = [f"{names[j]}: {equations[names[j]]}" for j in fitted]
        fits = pd.DataFrame(
            {
                "time": np.tile(ends, len(fitted)),
                "cover": np.concatenate(
                    [
                        float(rows[names[j]]["intercept"])
                        + float(rows[names[j]]["slope_per_day"]) * days
                        for j in fitted
                    ]
                ),
                "fit": pd.Categorical(np.repeat(labels, 2), categories=labels),
            }
        )
        plot = plot * _hvplot(fits).line(
            x="time",
            y="cover",
            by="fit",
            color=[palette[j] for j in fitted],
            legend="right",
            hover=False,
            line_dash="dashed",
            line_width=2.5,
        )
    import holoviews as hv

    for j, name in enumerate(names):  # the located break of a series that changed abruptly
        row = rows.get(name)
        if row is not None and _changed_abruptly(row):
            plot = plot * hv.VLine(pd.Timestamp(row["break_time"])).opts(
                color=palette[j], line_dash="dotted", line_width=2
            )
    if title is None:
        title = (
            f"Percent cover per {dim} with OLS trend (x = days since {t0:{_TIME_FORMAT}}{note})"
        )
    return plot.opts(
        backend="bokeh",
        title=title,
        frame_width=width,
        frame_height=height,
        xlabel="time",
        ylabel="cover (%)",
        legend_position="right",
        toolbar="above",
        show_grid=True,
        padding=0.05,
    )


def _changed_abruptly(row: Mapping[str, Any], alpha: float = 0.05) -> bool:
    """Whether a trend row's CUSUM test (autocorrelation-robust) rejects stability."""
    p_value = row.get("cusum_p_value_hac", np.nan)
    when = row.get("break_time", pd.NaT)
    return bool(np.isfinite(p_value) and p_value < alpha and not pd.isna(when))


def _check_clusters(clusters: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(clusters):
        if not isinstance(item, Mapping) or "center_rgb" not in item:
            raise InputError(
                f"cluster entry {i} needs the keys id, name, center_rgb and share_percent (as in "
                f"clusters.json), but got {item!r}. Pass the 'clusters' list of clusters.json."
            )
        rgb = np.asarray(item["center_rgb"], dtype=np.float64).reshape(-1)
        if rgb.shape != (3,):
            raise InputError(
                f"cluster entry {i} needs center_rgb of 3 values, but got {item['center_rgb']!r}."
            )
        cid = item.get("id", i)
        share = item.get("share_percent")
        out.append(
            {
                "id": int(cid),
                "name": str(item.get("name", f"cluster_{cid}")),
                "color": _hex(rgb),
                "share": float(share) if share is not None else float("nan"),
            }
        )
    return out


def _shorten(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def swatches(clusters: Sequence[Mapping[str, Any]], *, title: str = "Clusters", height: int = 200):
    """One colour swatch per cluster, labelled with its id, name and share of the cover.

    Parameters
    ----------
    clusters : list of dict
        Entries of ``clusters.json``: ``id``, ``name``, ``center_rgb`` (RGB as seen in the
        preprocessed image) and ``share_percent`` (mean cover over the series).
    title : str, default "Clusters"
    height : int, default 200

    Returns
    -------
    holoviews.Overlay
        Rectangles filled with the centre colours and text labels below them.
    """
    hv = _hv()
    items = _check_clusters(clusters)
    frame = pd.DataFrame(
        {
            "x0": [i + 0.05 for i in range(len(items))],
            "y0": 0.0,
            "x1": [i + 0.95 for i in range(len(items))],
            "y1": 1.0,
            "id": [c["id"] for c in items],
            "name": [c["name"] for c in items],
            "color": [c["color"] for c in items],
            "share": [c["share"] for c in items],
        }
    )
    text = [f"{c['id']}: {_shorten(c['name'])}\n{c['share']:.1f} %" for c in items]
    labels = pd.DataFrame({"x": [i + 0.5 for i in range(len(items))], "y": -0.1, "text": text})
    rects = hv.Rectangles(
        frame, kdims=["x0", "y0", "x1", "y1"], vdims=["id", "name", "color", "share"]
    ).opts(
        backend="bokeh",
        color="color",
        line_color="#444444",
        tools=["hover"],
        hover_tooltips=[
            ("id", "@{id}"),
            ("name", "@{name}"),
            ("RGB", "@{color}"),
            ("share", "@{share}{0.00} %"),
        ],
    )
    text_el = hv.Labels(labels, ["x", "y"], "text").opts(
        backend="bokeh", text_baseline="top", text_font_size="11pt", text_color="#222222"
    )
    return (rects * text_el).opts(
        backend="bokeh",
        title=title,
        width=max(320, 190 * len(items)),
        height=height,
        xaxis=None,
        yaxis=None,
        xlim=(0, max(len(items), 1)),
        ylim=(-0.65, 1.05),
        toolbar=None,
        show_frame=False,
    )


def _check_rgb(image: Any, name: str) -> np.ndarray:
    array = np.asarray(image.values if isinstance(image, xr.DataArray) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise InputError(
            f"{name} needs a uint8 RGB image (y, x, 3), but got dtype {array.dtype} and shape "
            f"{array.shape}. Pass one frame, e.g. frames.isel(time=0).values."
        )
    return array


EXAMPLE_TITLES = ("original crop", "light corrected", "segmented", "overlay")


def example_frame(
    original: np.ndarray,
    enhanced: np.ndarray,
    segmented: np.ndarray,
    overlay: np.ndarray,
    *,
    cols: int = 4,
    frame_width: int = 300,
):
    """One frame at four stages, side by side: crop, CLAHE, segmentation, overlay.

    Parameters
    ----------
    original, enhanced, segmented, overlay : numpy.ndarray
        uint8 RGB images ``(y, x, 3)``: the cropped frame, the same with its light corrected (RGB),
        its labels painted with the cluster colours (:func:`sediment_xr.segment.paint`) and
        the blend of both (:func:`sediment_xr.segment.overlay`).
    cols : int, default 4
        Images per row.
    frame_width : int, default 300
        Width of each image in pixels (heights follow the aspect ratio).

    Returns
    -------
    holoviews.Layout
        Four ``RGB`` elements titled "original crop", "light corrected", "segmented", "overlay",
        with linked zoom.
    """
    hv = _hv()
    images = []
    for title, image in zip(EXAMPLE_TITLES, (original, enhanced, segmented, overlay), strict=True):
        array = _check_rgb(image, f"example_frame {title!r}")
        height, width = array.shape[:2]
        images.append(
            hv.RGB(array, bounds=(0, 0, width, height), label=title).opts(
                backend="bokeh",
                title=title,
                frame_width=frame_width,
                frame_height=max(1, round(frame_width * height / max(width, 1))),
                xaxis=None,
                yaxis=None,
                tools=[],
            )
        )
    return hv.Layout(images).cols(cols)
