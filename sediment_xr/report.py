"""One self-contained HTML report of a run: plots, tables, an example frame, the config.

:func:`build_report` returns a single HTML document that works offline: BokehJS is inlined
(``bokeh.resources.INLINE``, no CDN), the interactive plots of :mod:`sediment_xr.plot` are
embedded as Bokeh documents, and the example frame is inlined as base64 PNG images. Every
string that comes from the user (cluster and class names, paths, config text, summary values,
labels) is HTML-escaped; inside the plots Bokeh draws them as text.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sediment_xr._redact import redact
from sediment_xr.exceptions import InputError

__all__ = ["build_report"]

_EXAMPLE_KEYS = ("original", "enhanced", "segmented", "overlay")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2329; background: #ffffff; }
header { background: #0b3d5c; color: #ffffff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 1.6em; }
header p { margin: 0; opacity: 0.85; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
section { margin-top: 28px; }
h2 { font-size: 1.25em; border-bottom: 2px solid #0b3d5c; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #ccd3da; padding: 4px 10px; text-align: right; }
th { background: #eef2f5; }
td.text, th.text { text-align: left; }
td { white-space: nowrap; }
.wide { overflow-x: auto; max-width: 100%; }
.swatch { display: inline-block; width: 28px; height: 16px; border: 1px solid #444444;
          vertical-align: middle; }
.frames { display: grid; gap: 12px; max-width: 1300px;
          grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #ccd3da; }
figcaption { font-size: 0.9em; margin-top: 4px; }
pre { background: #f5f7f9; border: 1px solid #ccd3da; padding: 10px; overflow-x: auto; }
.note { color: #4a5560; font-size: 0.9em; }
.plot { margin: 8px 0 16px 0; }
"""


def _e(value: Any) -> str:
    """HTML-escape anything, quotes included."""
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or value is pd.NaT:
        return "–"
    if isinstance(value, pd.Timestamp):
        return _e(value.strftime("%Y-%m-%d %H:%M"))
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            return "–"
        return f"{float(value):.{digits}g}"
    return _e(value)


def _table(frame: pd.DataFrame, *, index: bool, text_columns: Sequence[str] = ()) -> str:
    """An escaped HTML table of a small DataFrame."""
    head = f'<th class="text">{_e(frame.index.name or "")}</th>' if index else ""
    head += "".join(
        f'<th class="{"text" if c in text_columns else ""}">{_e(c)}</th>' for c in frame.columns
    )
    rows = []
    for label, row in frame.iterrows():
        cells = f'<th class="text">{_e(label)}</th>' if index else ""
        for column, value in row.items():
            if column in text_columns:
                cells += f'<td class="text">{_e(value)}</td>'
            else:
                cells += f"<td>{_number(value)}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _mapping_table(mapping: Mapping[Any, Any], key: str, value: str) -> str:
    rows = "".join(
        f'<tr><th class="text">{_e(k)}</th><td class="text">{_e(v)}</td></tr>'
        for k, v in mapping.items()
    )
    return (
        f'<table><thead><tr><th class="text">{_e(key)}</th><th class="text">{_e(value)}</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _png_data_uri(image: Any, name: str) -> str:
    import cv2

    array = np.asarray(image.values if isinstance(image, xr.DataArray) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise InputError(
            f"the report's example {name!r} needs a uint8 RGB image (y, x, 3), but got dtype "
            f"{array.dtype} and shape {array.shape}. Pass one frame as a numpy array."
        )
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError(f"PNG encoding of the example {name!r} failed")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _clusters_table(clusters: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for i, item in enumerate(clusters):
        rgb = [int(v) for v in np.asarray(item["center_rgb"]).reshape(-1)[:3]]
        color = "#{:02x}{:02x}{:02x}".format(*rgb)
        share = item.get("share_percent")
        rows.append(
            "<tr>"
            f"<td>{_e(item.get('id', i))}</td>"
            f'<td class="text"><span class="swatch" style="background:{color}"></span></td>'
            f'<td class="text">{_e(item.get("name", f"cluster_{i}"))}</td>'
            f'<td class="text">{_e(color)} ({", ".join(str(v) for v in rgb)})</td>'
            f"<td>{_number(share)}</td>"
            f"<td>{_number(item.get('stability_pp'))}</td>"
            "</tr>"
        )
    return (
        '<table><thead><tr><th>id</th><th class="text">colour</th><th class="text">name</th>'
        '<th class="text">centre (RGB)</th><th>mean cover (%)</th>'
        "<th>stability (pp)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


#: Most flagged frames listed in the report (all are counted, and all are in cover.csv).
MAX_FLAGGED_ROWS = 500


def _quality_html(cover: xr.DataArray, quality: Sequence[str] | None) -> str:
    if quality is None:
        return '<p class="note">No frame quality flags for this run.</p>'
    flags = pd.Series(list(quality), dtype=object)
    counts = flags.value_counts()
    note = (
        '<p class="note">Each frame is measured against the light and the scene expected at '
        "its time; flagged frames keep their cover in the cube and <code>cover.csv</code> "
        "(column <code>quality</code>) and are left out of the trends and summary statistics "
        "(unless <code>quality.include_flagged</code>).</p>"
    )
    table = _mapping_table({k: int(v) for k, v in counts.items()}, "flag", "frames")
    bad = np.flatnonzero(flags.to_numpy() != "ok")
    if len(bad) == 0:
        return f"{note}{table}"
    times = pd.DatetimeIndex(cover["time"].values)
    numbers = cover["frame"].values if "frame" in cover.coords else np.arange(len(times))
    rows = "".join(
        f'<tr><td class="text">{_e(times[i].isoformat())}</td><td>{int(numbers[i])}</td>'
        f'<td class="text">{_e(flags.iloc[i])}</td></tr>'
        for i in bad[:MAX_FLAGGED_ROWS]
    )
    more = (
        f'<p class="note">First {MAX_FLAGGED_ROWS} of {len(bad)} flagged frames.</p>'
        if len(bad) > MAX_FLAGGED_ROWS
        else ""
    )
    listing = (
        '<h3>Flagged frames</h3><table><thead><tr><th class="text">time</th><th>frame</th>'
        f'<th class="text">flag</th></tr></thead><tbody>{rows}</tbody></table>{more}'
    )
    return f"{note}{table}{listing}"


def _example_html(example: Mapping[str, Any] | None) -> str:
    from sediment_xr.plot import EXAMPLE_TITLES

    if example is None:
        return '<p class="note">No example frame.</p>'
    missing = [k for k in _EXAMPLE_KEYS if k not in example]
    if missing:
        raise InputError(
            f"the report's example needs the images {', '.join(_EXAMPLE_KEYS)}, but "
            f"{', '.join(missing)} are missing. Pass a dict with these keys and a label."
        )
    figures = []
    for key, caption in zip(_EXAMPLE_KEYS, EXAMPLE_TITLES, strict=True):
        uri = _png_data_uri(example[key], key)
        figures.append(
            f'<figure><img src="{uri}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    label = example.get("label")
    caption = f"<p>Frame: {_e(label)}</p>" if label is not None else ""
    return f'{caption}<div class="frames">{"".join(figures)}</div>'


def _bokeh_parts(plots: Mapping[str, Any]) -> tuple[str, str, dict[str, str]]:
    """Inline BokehJS and CSS, the embedding script, and one div per plot."""
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    if not plots:
        return "", "", {}
    # Only the inline parts: BokehJS itself and the extensions the plots use. Packages that
    # register Bokeh models (panel) add CDN links for models these plots never use; leave out.
    bundle = bundle_for_objs_and_resources(list(plots.values()), INLINE)
    js = bundle.scripts(tag=True)
    css = "".join(f"<style>{text}</style>" for text in bundle.css_raw)
    script, divs = components(dict(plots))
    return js + css, script, divs


def build_report(
    *,
    cover: xr.DataArray,
    class_cover: xr.DataArray | None,
    trend: pd.DataFrame,
    stats: pd.DataFrame,
    clusters: Sequence[Mapping[str, Any]],
    example: Mapping[str, Any] | None,
    summary: Mapping[str, str],
    config_yaml: str,
    versions: Mapping[str, str],
    title: str = "sediment_xr report",
    quality: Sequence[str] | None = None,
) -> str:
    """Build the run's report: one self-contained HTML document that works offline.

    Parameters
    ----------
    cover : xarray.DataArray
        Percent cover ``(time, cluster)`` with a ``frame`` coordinate.
    class_cover : xarray.DataArray or None
        Percent cover ``(time, class)``, or None when no classes are configured.
    trend : pandas.DataFrame
        :func:`sediment_xr.fit_trends` of the cluster (and class) cover; shown in full.
    stats : pandas.DataFrame
        :func:`sediment_xr.trend.summary_statistics`: rows count, mean, std, min, quartiles,
        max; one column per series.
    clusters : list of dict
        The ``clusters`` entries of ``clusters.json`` (``id``, ``name``, ``center_rgb``,
        ``share_percent``).
    example : dict or None
        uint8 RGB images ``(y, x, 3)`` ``original``, ``enhanced``, ``segmented``,
        ``overlay`` of one frame, and its ``label`` (e.g. its time) or None.
    summary : dict of str to str
        Run summary shown first (input, frames, time span, output...); URLs are shown
        without user-info or query values (:func:`sediment_xr._redact.redact`).
    config_yaml : str
        The resolved config (:func:`sediment_xr.config.dump_config`), shown verbatim but
        for the URLs in it, redacted as in the summary.
    versions : dict of str to str
        Package versions.
    title : str, default "sediment_xr report"
    quality : sequence of str, optional
        Each frame's quality flag (``ok``, ``dark`` ...); flagged frames are counted and
        listed (the first :data:`MAX_FLAGGED_ROWS`).

    Returns
    -------
    str
        The HTML document (UTF-8 text). BokehJS is inlined (about 1.3 MB) and the example
        images are base64 PNGs; nothing is fetched over the network when it is opened.

    Notes
    -----
    Computes: loads ``cover`` and ``class_cover`` (small).
    """
    import holoviews as hv
    from bokeh.models import Plot

    from sediment_xr.plot import cover_trends, stacked_cover, swatches

    if not isinstance(cover, xr.DataArray) or "cluster" not in cover.dims:
        raise InputError(
            "build_report needs cover with dims (time, cluster), but got "
            f"{getattr(cover, 'dims', type(cover).__name__)}. Pass sediment_xr.cover(...)."
        )
    clusters = list(clusters)
    colors = None
    if clusters and len(clusters) == cover.sizes["cluster"]:
        colors = np.array([np.asarray(c["center_rgb"]).reshape(3) for c in clusters], np.uint8)
    names = {
        int(c.get("id", i)): str(c.get("name", f"cluster_{i}")) for i, c in enumerate(clusters)
    }
    cluster_title = "Percent cover per cluster (bars in the cluster colours)"
    plots: dict[str, Any] = {}
    if clusters:
        plots["swatches"] = swatches(clusters, title="Cluster colours (centre, as preprocessed)")
    plots["stacked_clusters"] = stacked_cover(cover, colors=colors, title=cluster_title)
    if class_cover is not None:
        plots["stacked_classes"] = stacked_cover(class_cover, title="Percent cover per class")
        plots["trend_classes"] = cover_trends(class_cover, trend)
    # Default colours for the trend lines: centre colours (near black, near white) hide lines.
    plots["trend_clusters"] = cover_trends(cover, trend)
    models = {key: hv.render(obj, backend="bokeh") for key, obj in plots.items()}
    for model in models.values():
        # Plain canvas: WebGL needs a GPU or a software fallback that browsers are dropping,
        # and these plots are small. It also keeps BokehJS's WebGL bundle out of the file.
        for figure in model.select(type=Plot):
            figure.output_backend = "canvas"
    resources, script, divs = _bokeh_parts(models)

    def plot(key: str) -> str:
        return f'<div class="plot">{divs[key]}</div>' if key in divs else ""

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary, config_yaml = redact(summary), redact(config_yaml)  # no URL credentials
    cluster_names = ", ".join(f"{i} = {name}" for i, name in sorted(names.items()))
    class_part = ""
    if class_cover is not None:
        class_part = (
            "<h3>Classes</h3>"
            '<p class="note">Classes are sums of clusters (the lesson\'s rename-and-merge).</p>'
            f"{plot('stacked_classes')}"
        )
    trend_classes = (
        f"<h3>Classes</h3>{plot('trend_classes')}<h3>Clusters</h3>"
        if class_cover is not None
        else ""
    )
    body = f"""
<header><h1>{_e(title)}</h1><p>sediment_xr percent-cover report, generated {_e(stamp)}</p>
</header>
<main>
<section id="summary"><h2>Run summary</h2>{_mapping_table(summary, "item", "value")}</section>
<section id="clusters"><h2>Clusters</h2>
<p class="note">Clusters are numbered darkest first. {_e(cluster_names)}</p>
{plot("swatches")}
{_clusters_table(clusters)}
</section>
<section id="example"><h2>Example frame</h2>{_example_html(example)}</section>
<section id="quality"><h2>Frame quality</h2>{_quality_html(cover, quality)}</section>
<section id="cover"><h2>Percent cover over time</h2>
<p class="note">One bar per frame; hover for time, frame and value.</p>
{plot("stacked_clusters")}
{class_part}
</section>
<section id="trend"><h2>Trends</h2>
<p class="note">Ordinary least squares of cover on days since the first frame (dashed lines);
x = days since the first frame, y = cover in percent. A time-lapse series is autocorrelated:
see the HAC (Newey-West) columns and Durbin-Watson in the table. Dotted vertical lines mark
an abrupt change: the best single mean-shift split (<code>break_time</code>, <code>shift</code>
in percentage points) of a series whose OLS-residual CUSUM test of stability rejects at 5 %
with autocorrelation-robust scaling (<code>cusum_p_value_hac</code>); the split alone is only
a location, the p-value is the evidence. <code>seasonal_amplitude</code> is the range of the
mean seasonal cycle (STL of 5-day means) when the frames span two years or more.</p>
{trend_classes}{plot("trend_clusters")}
<h3>Trend table</h3>
<div class="wide">{_table(trend, index=False, text_columns=("name",))}</div>
</section>
<section id="statistics"><h2>Summary statistics (percent cover)</h2>
<div class="wide">{_table(stats, index=True)}</div>
</section>
<section id="config"><h2>Configuration</h2><pre>{_e(config_yaml)}</pre></section>
<section id="versions"><h2>Versions</h2>{_mapping_table(versions, "package", "version")}
</section>
</main>
"""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n{resources}\n</head>\n"
        f"<body>{body}{script}\n</body>\n</html>\n"
    )
