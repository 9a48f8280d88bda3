"""The HTML report: self-contained, offline, escaped, and really rendered by a browser."""

from __future__ import annotations

import base64
import contextlib
import html
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sediment_xr as sx
from sediment_xr import segment
from sediment_xr.report import build_report
from sediment_xr.testing import synthetic_series
from sediment_xr.trend import summary_statistics

EVIL = "<script>alert(1)</script>"
CLASS_NAME = "mat & \"white\" 'Beggiatoa'"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()
# CI installs chromium (.ci/run): there a missing browser is a failure, not a skip.
needs_browser = pytest.mark.skipif(
    not HAVE_BROWSER and not os.environ.get("CI"),
    reason=(
        "the browser test needs Debian's chromium and chromium-driver "
        f"({CHROMIUM}, {CHROMEDRIVER}); install them with "
        "`apt-get update && apt-get install -y chromium chromium-driver`"
    ),
)


@pytest.fixture(scope="module")
def report_inputs() -> dict:
    """Inputs as the pipeline has them, made with the public functions on a synthetic series."""
    ds = synthetic_series(8, size=256)
    frames = ds["frames"]
    rows = [-100, None]
    features = sx.preprocess(frames, rows=rows, color_space="bgr")
    model = sx.fit_kmeans(
        sx.sample_pixels(features, sample_size=20_000), n_clusters=4, color_space="bgr"
    )
    labels = sx.label(features, model)
    cover = sx.cover(labels).assign_coords(frame=("time", ds["frame"].values)).load()
    classes = {"bg": [0, 1], CLASS_NAME: [2, 3]}
    class_cover = sx.merge_classes(cover, classes).load()
    series = xr.Dataset({"cover": cover, "class_cover": class_cover})
    trend = sx.fit_trends(series)
    stats = summary_statistics(series)
    names = ["bg", EVIL, CLASS_NAME, CLASS_NAME]
    share = cover.mean("time").values
    clusters = [
        {
            "id": i,
            "name": names[i],
            "center_rgb": [int(v) for v in model.center_rgb[i]],
            "share_percent": round(float(share[i]), 4),
        }
        for i in range(model.n_clusters)
    ]
    original = sx.crop(frames, rows=rows)
    enhanced = sx.enhance(original)
    segmented = segment.paint(labels, model.center_rgb)
    blended = segment.overlay(original, segmented)
    pick = {"time": 3}
    example = {
        "original": original.isel(pick).values,
        "enhanced": enhanced.isel(pick).values,
        "segmented": segmented.isel(pick).values,
        "overlay": blended.isel(pick).values,
        "label": f"{str(cover['time'].values[3])[:19]} (frame 3) {EVIL}",
    }
    return {
        "cover": cover,
        "class_cover": class_cover,
        "trend": trend,
        "stats": stats,
        "clusters": clusters,
        "example": example,
        "summary": {
            "input": f"/data/{EVIL}/shr & co.mp4",
            "frames": "8",
            "time span": "2022-06-01 00:00 to 2022-06-05 23:00",
            "output": "results/shr",
        },
        "config_yaml": f"input: shr.mp4\nclasses:\n  '{CLASS_NAME}': [2, 3]\n# {EVIL}\n",
        "versions": {"sediment_xr": sx.__version__, "bokeh": "3.9.2"},
        "title": f"report of {EVIL}",
    }


@pytest.fixture(scope="module")
def report_html(report_inputs) -> str:
    return build_report(**report_inputs)


@pytest.fixture(scope="module")
def report_file(report_html, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(report_html, encoding="utf-8")
    return path


def test_report_is_one_offline_document(report_html):
    assert report_html.startswith("<!DOCTYPE html>")
    assert report_html.rstrip().endswith("</html>")
    # Nothing is loaded from elsewhere: no element with a script, link, image or frame
    # source outside the file (BokehJS's own code mentions URLs it never loads here).
    tags = re.findall(r"<(?:script|link|img|iframe|source|embed)\b[^>]*>", report_html, re.I)
    assert tags
    for tag in tags:
        assert not re.search(r"\b(?:src|href)\s*=\s*(?![\"']?data:)", tag, re.I), tag
    assert not re.search(r"<script[^>]*src=[\"']?https?:", report_html, re.I)
    assert "cdn.bokeh.org" not in report_html
    assert "BEGIN bokeh-gl" not in report_html  # canvas only
    assert "Bokeh.embed" in report_html  # BokehJS is inlined
    assert len(report_html) > 500_000


def test_report_sections_and_tables(report_inputs, report_html):
    for heading in (
        "Run summary",
        "Clusters",
        "Example frame",
        "Percent cover over time",
        "Trends",
        "Trend table",
        "Summary statistics",
        "Configuration",
        "Versions",
    ):
        assert f"<h2>{heading}" in report_html or f"<h3>{heading}</h3>" in report_html
    # 5 plots: swatches, stacked clusters and classes, trends of classes and clusters.
    assert report_html.count("data-root-id") == 5
    # The trend table shows every column of the trend table, and every series.
    trend = report_inputs["trend"]
    for column in trend.columns:
        assert f">{column}</th>" in report_html
    for name in trend["name"]:
        assert f">{html.escape(name)}</td>" in report_html
    # Four inline PNG images that decode.
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report_html)
    assert len(images) == 4
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)


def test_report_escapes_user_strings(report_html):
    assert EVIL not in report_html
    assert html.escape(EVIL) in report_html  # in the clusters table, summary, config, title
    assert CLASS_NAME not in report_html
    assert html.escape(CLASS_NAME) in report_html
    assert "<script>alert" not in report_html.lower()
    # Bokeh's embedded JSON carries the names escaped too.
    script = report_html[report_html.find("const docs_json") :]
    assert script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in script


def test_report_without_classes_or_example(report_inputs):
    inputs = dict(report_inputs, class_cover=None, example=None)
    text = build_report(**inputs)
    assert text.count("data-root-id") == 3
    assert "No example frame." in text
    assert "<img" not in text


def test_report_rejects_bad_example(report_inputs):
    example = dict(report_inputs["example"], overlay=np.zeros((4, 4), np.float32))
    with pytest.raises(sx.InputError, match=r"example 'overlay' needs a uint8 RGB image"):
        build_report(**dict(report_inputs, example=example))


def _count_rendered(driver) -> dict:
    """Bokeh roots and the canvases drawn inside them (Bokeh 3 renders in shadow DOM)."""
    return driver.execute_script(
        """
        function canvases(node) {
            let n = 0;
            const kids = node.querySelectorAll('*');
            for (const el of kids) {
                if (el.tagName === 'CANVAS' && el.width > 0 && el.height > 0) n += 1;
                if (el.shadowRoot) n += canvases(el.shadowRoot);
            }
            return n;
        }
        const roots = document.querySelectorAll('[data-root-id]');
        let drawn = 0;
        for (const root of roots) { if (canvases(root) > 0) drawn += 1; }
        const views = (window.Bokeh && Bokeh.index) ? Object.keys(Bokeh.index).length : 0;
        return {roots: roots.length, drawn: drawn, views: views};
        """
    )


@contextlib.contextmanager
def chromium(tmp_path: Path):
    """A headless Debian Chromium driven by Selenium (no network, a fresh profile)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    assert HAVE_BROWSER, (
        f"{CHROMIUM} or {CHROMEDRIVER} is missing (CI is set, so this does not skip): "
        "install them with `apt-get install -y chromium chromium-driver` (.ci/run does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@needs_browser
def test_report_renders_in_headless_chromium(report_file, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    with chromium(tmp_path) as driver:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        driver.get(report_file.as_uri())
        deadline = time.monotonic() + 30
        state = _count_rendered(driver)
        while time.monotonic() < deadline and not (
            state["roots"] == 5 and state["drawn"] == 5 and state["views"] >= 5
        ):
            time.sleep(0.25)
            state = _count_rendered(driver)
        assert state["roots"] == 5, state
        assert state["drawn"] == 5, f"not every Bokeh plot drew a canvas: {state}"
        assert state["views"] >= 5, state

        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe

        loaded = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0)"
            ".map(i => i.naturalWidth)"
        )
        assert len(loaded) == 4
        assert all(width == 256 for width in loaded)

        text = driver.find_element(By.TAG_NAME, "body").text
        assert EVIL in text  # shown as text, not run
        assert CLASS_NAME in text
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018

        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 1000
    assert float(image.std()) > 20
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 100


def year_of_stills(n: int = 50_000) -> xr.Dataset:
    """Cover of n frames 10 minutes apart (a year of stills is 52,560): slow trend, noise."""
    rng = np.random.default_rng(0)
    time_ = np.datetime64("2022-01-01") + np.arange(n) * np.timedelta64(10, "m")
    mat = 20 + 10 * np.arange(n) / n + rng.normal(0, 1.5, n)
    shares = np.stack([40 - mat / 2, 30 - mat / 4, 30 - mat / 4, mat], axis=1)
    cover = xr.DataArray(
        shares,
        dims=("time", "cluster"),
        coords={"time": time_, "frame": ("time", np.arange(n)), "cluster": np.arange(4)},
        name="cover",
    )
    class_cover = sx.merge_classes(cover, {"sediment": [0, 1, 2], "mat": [3]})
    return xr.Dataset({"cover": cover, "class_cover": class_cover})


@needs_browser
def test_report_of_a_year_of_stills_is_small_and_opens(tmp_path):
    """Done-when: 50,000 frames give a report.html under 20 MB that opens without errors."""
    series = year_of_stills()
    clusters = [
        {
            "id": i,
            "name": f"cluster_{i}",
            "center_rgb": [40 * i, 50 * i, 45 * i],
            "share_percent": 25,
        }
        for i in range(4)
    ]
    html_text = build_report(
        cover=series["cover"],
        class_cover=series["class_cover"],
        trend=sx.fit_trends(series),
        stats=summary_statistics(series),
        clusters=clusters,
        example=None,
        summary={"frames": "50000"},
        config_yaml="input: stills\n",
        versions={"sediment_xr": sx.__version__},
    )
    path = tmp_path / "report.html"
    path.write_text(html_text, encoding="utf-8")
    assert path.stat().st_size < 20 * 2**20, path.stat().st_size
    assert "mean of each 12h bin" in html_text  # binned (347 days in < 1000 bins), not 50,000 bars
    with chromium(tmp_path) as driver:
        driver.set_page_load_timeout(60)
        started = time.monotonic()
        driver.get(path.as_uri())
        state = _count_rendered(driver)
        while time.monotonic() < started + 60 and not (state["roots"] and state["drawn"] == 5):
            time.sleep(0.25)
            state = _count_rendered(driver)
        assert state["drawn"] == 5, state
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe


def test_a_short_dense_series_is_binned_finely():
    """3,000 frames of a 10 fps video (5 minutes): bins of seconds, not one bin of an hour."""
    from sediment_xr.plot import bin_cover

    n = 3000
    cover = xr.DataArray(
        np.random.default_rng(0).uniform(0, 100, (n, 2)),
        dims=("time", "cluster"),
        coords={"time": pd.date_range("2022-01-01", periods=n, freq="100ms"), "cluster": [0, 1]},
    )
    binned, width = bin_cover(cover)
    assert width == "1s"
    assert binned.sizes["time"] == 300
