"""Plots of cover, trends, cluster colours and an example frame render with Bokeh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sediment_xr as sx

hv = pytest.importorskip("holoviews")
pytest.importorskip("bokeh")
from bokeh.models import DatetimeAxis, GlyphRenderer, HoverTool, Quad, VBar  # noqa: E402

from sediment_xr import plot  # noqa: E402

CENTERS = np.array([[12, 20, 14], [40, 52, 38], [90, 110, 85], [210, 232, 218]], np.uint8)


def make_cover(n_time: int = 10, k: int = 4, seed: int = 0) -> xr.DataArray:
    """A (time, cluster) percent cover series with a planted trend in the last cluster."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(5, 10, size=(n_time, k))
    raw[:, -1] += np.linspace(0, 10, n_time)
    values = 100 * raw / raw.sum(axis=1, keepdims=True)
    time = pd.date_range("2022-06-01", periods=n_time, freq="17h")
    return xr.DataArray(
        values,
        dims=("time", "cluster"),
        coords={"time": time, "cluster": np.arange(k), "frame": ("time", np.arange(n_time))},
        name="cover",
        attrs={"units": "percent"},
    )


@pytest.fixture(scope="module")
def cover() -> xr.DataArray:
    return make_cover()


@pytest.fixture(scope="module")
def class_cover(cover) -> xr.DataArray:
    return sx.merge_classes(cover, {"bg": [0, 1], "bio": [2], "mat & 'white'": [3]})


def render(obj):
    return hv.render(obj, backend="bokeh")


def quads(figure) -> list[GlyphRenderer]:
    return [
        r for r in figure.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, Quad)
    ]


def vbars(figure) -> GlyphRenderer:
    (renderer,) = [
        r for r in figure.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, VBar)
    ]
    return renderer


@pytest.mark.parametrize("k", [2, 3, 4])
def test_stacked_cover_bars_stack_in_series_order(k):
    cover = make_cover(k=k)
    obj = plot.stacked_cover(cover, colors=CENTERS[:k])
    assert isinstance(obj, hv.Bars)  # drawn by hvplot.bar(stacked=True)
    figure = render(obj)
    assert isinstance(figure.xaxis[0], DatetimeAxis)
    renderer = vbars(figure)
    data = {key: np.asarray(value) for key, value in renderer.data_source.data.items()}
    n = cover.sizes["time"]
    assert len(data["series"]) == n * k
    # Each series is stacked on the ones before it, in cluster order, frame by frame.
    previous_top = np.zeros(n)
    for j in range(k):
        rows = data["series"] == f"cluster_{j}"
        order = np.argsort(data["frame"][rows])
        np.testing.assert_array_equal(data["frame"][rows][order], np.arange(n))
        np.testing.assert_allclose(data["bottom"][rows][order], previous_top)
        np.testing.assert_allclose(data["cover"][rows][order], cover.values[:, j])
        previous_top = data["top"][rows][order]
    np.testing.assert_allclose(previous_top, 100.0)
    mapper = renderer.glyph.fill_color.transform
    assert list(mapper.factors) == [f"cluster_{j}" for j in range(k)]
    assert list(mapper.palette) == ["#{:02x}{:02x}{:02x}".format(*c) for c in CENTERS[:k]]
    tooltips = [dict(tool.tooltips) for tool in figure.select(type=HoverTool)]
    assert tooltips and all({"cluster", "time", "frame", "cover"} <= set(t) for t in tooltips)


def test_stacked_cover_classes_and_bar_width(class_cover):
    figure = render(plot.stacked_cover(class_cover, title="classes"))
    renderer = vbars(figure)
    assert list(renderer.glyph.fill_color.transform.factors) == ["bg", "bio", "mat & 'white'"]
    assert figure.title.text == "classes"
    width = pd.Timedelta(milliseconds=renderer.glyph.width)
    assert width == pd.Timedelta("17h") * 0.8  # bars do not overlap, frames 17 h apart


def test_stacked_cover_skips_frames_without_cover(cover):
    gappy = cover.copy()
    gappy[2] = np.nan
    data = vbars(render(plot.stacked_cover(gappy))).data_source.data
    assert len(data["frame"]) == (cover.sizes["time"] - 1) * cover.sizes["cluster"]
    assert 2 not in set(data["frame"])


def test_stacked_cover_checks_inputs(cover):
    with pytest.raises(sx.InputError, match=r"one RGB colour per series, shape \(4, 3\)"):
        plot.stacked_cover(cover, colors=CENTERS[:3])
    with pytest.raises(sx.InputError, match=r"dims \(time, cluster\)"):
        plot.stacked_cover(cover.isel(cluster=0))


def test_cover_trends_annotates_equation_and_r2(cover, class_cover):
    trend = sx.fit_trends(xr.Dataset({"cover": cover, "class_cover": class_cover}))
    for series in (cover, class_cover):
        figure = render(plot.cover_trends(series, trend))
        labels = [item.label.value for item in figure.legend[0].items]
        dim = "cluster" if "cluster" in series.dims else "class"
        names = [f"cluster_{v}" if dim == "cluster" else str(v) for v in series[dim].values]
        for name in names:
            row = trend.set_index("name").loc[name]
            equation = (
                f"{name}: y = {row.slope_per_day:.3g} x/day "
                f"{'-' if row.intercept < 0 else '+'} {abs(row.intercept):.1f}, "
                f"R² = {row.r2:.2f}"
            )
            assert equation in labels
        # The fitted line goes from the intercept at the first frame to the last frame.
        fits = [r for r in figure.renderers if getattr(r.glyph, "line_dash", None) == [6]]
        assert len(fits) == len(names)
        first = fits[0].data_source.data
        row = trend.set_index("name").loc[names[0]]
        days = (series["time"].values[-1] - series["time"].values[0]) / np.timedelta64(1, "D")
        np.testing.assert_allclose(
            first["cover"], [row.intercept, row.intercept + row.slope_per_day * days]
        )


def test_cover_trends_planted_slope(cover):
    trend = sx.fit_trends(cover)
    labels = plot.trend_equations(trend)
    assert set(labels) == {f"cluster_{i}" for i in range(4)}
    assert labels["cluster_3"].startswith("y = ")
    assert float(labels["cluster_3"].split()[2]) > 0  # cluster 3 was planted to grow


def test_cover_trends_marks_an_abrupt_change_only(cover):
    """A planted +15 pp step gets a dotted line at its break; a smooth trend gets none."""
    from bokeh.models import Span

    rng = np.random.default_rng(3)
    n = 120
    step = np.where(np.arange(n) >= 80, 45.0, 30.0) + rng.normal(0, 1.5, n)
    smooth = np.linspace(20, 35, n) + rng.normal(0, 1.5, n)
    series = xr.DataArray(
        np.stack([step, smooth], axis=1),
        dims=("time", "class"),
        coords={
            "time": pd.date_range("2022-01-01", periods=n, freq="17h"),
            "class": ["stepped", "smooth"],
        },
    )
    trend = sx.fit_trends(series).set_index("name")
    assert trend.loc["stepped", "cusum_p_value_hac"] < 0.01
    assert trend.loc["smooth", "cusum_p_value_hac"] > 0.05
    figure = render(plot.cover_trends(series, trend.reset_index()))
    spans = [r for r in [*figure.renderers, *figure.center] if isinstance(r, Span)]
    assert len(spans) == 1
    break_ms = pd.Timestamp(trend.loc["stepped", "break_time"]).value / 1e6
    assert spans[0].location == pytest.approx(break_ms)
    assert trend.loc["stepped", "break_frame"] == 80


def test_cover_trends_without_fit_draws_points_only(cover):
    trend = sx.fit_trends(cover.isel(time=slice(0, 2)))  # < 3 frames: NaN statistics
    figure = render(plot.cover_trends(cover.isel(time=slice(0, 2)), trend))
    labels = [item.label.value for item in figure.legend[0].items]
    assert labels == [f"cluster_{i}" for i in range(4)]


def test_cover_trends_needs_trend_table(cover):
    with pytest.raises(sx.InputError, match=r"table of sediment_xr\.fit_trends"):
        plot.cover_trends(cover, pd.DataFrame({"a": [1]}))


def test_swatches_label_id_name_and_share():
    clusters = [
        {"id": i, "name": n, "center_rgb": CENTERS[i].tolist(), "share_percent": s}
        for i, (n, s) in enumerate(
            zip(["bg", "bg", "bio", "white mat"], [40, 30.5, 9.5, 20], strict=True)
        )
    ]
    figure = render(plot.swatches(clusters))
    rects = quads(figure)
    assert len(rects) == 1
    data = rects[0].data_source.data
    assert list(data["color"]) == ["#{:02x}{:02x}{:02x}".format(*c) for c in CENTERS]
    texts = [r for r in figure.renderers if "text" in r.data_source.data]
    assert list(texts[0].data_source.data["text"]) == [
        "0: bg\n40.0 %",
        "1: bg\n30.5 %",
        "2: bio\n9.5 %",
        "3: white mat\n20.0 %",
    ]
    with pytest.raises(sx.InputError, match="center_rgb"):
        plot.swatches([{"id": 0, "name": "x"}])


def test_example_frame_four_images_side_by_side():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (30, 70, 3), dtype=np.uint8) for _ in range(4)]
    obj = plot.example_frame(*images)
    assert isinstance(obj, hv.Layout)
    assert [el.label for el in obj] == ["original crop", "light corrected", "segmented", "overlay"]
    grid = render(obj)
    figures = [child[0] for child in grid.children]
    assert [f.title.text for f in figures] == list(plot.EXAMPLE_TITLES)
    assert [(child[1], child[2]) for child in grid.children] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert all(f.frame_height == round(300 * 30 / 70) for f in figures)
    with pytest.raises(sx.InputError, match=r"needs a uint8 RGB image"):
        plot.example_frame(images[0], images[1], images[2][..., 0], images[3])
