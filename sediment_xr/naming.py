"""Name the clusters and merge them into classes: the lesson's rename-and-merge step.

In the lesson the analyst looks at the cluster colours, decides which clusters are bacterial
mat and which are bare sediment, and renames them; clusters given the same name merge. Here
that decision becomes the ``classes:`` mapping that ``sediment-xr run`` reads:

* :func:`classes_yaml` turns one name per cluster into that YAML text;
* :func:`cluster_samples` shows what each cluster is made of (random pixels of a frame);
* :func:`naming_widget` is the notebook form (Panel): swatch, pixel sample, share and a
  text box per cluster, and a button that shows and saves ``classes.yaml``.

For example, in a notebook::

    import json, panel as pn, xarray as xr, sediment_xr as sx
    from sediment_xr.naming import cluster_samples, naming_widget
    pn.extension()
    info = json.load(open("results/shr/clusters.json"))
    cube = xr.open_zarr("results/shr/cube.zarr", zarr_format=3, consolidated=False)
    labels = cube.labels.isel(time=0).values
    frames = sx.open_video("shr.mp4", start_time="2022-01-01", frame_interval="17h")
    # the frame that was labelled, on the labels' grid (the crop), or cube.frames if stored
    frame = frames.isel(time=0).sel(y=cube.y, x=cube.x).values
    samples = cluster_samples(labels, frame, info["n_clusters"])
    naming_widget(info["clusters"], samples, path="classes.yaml")
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sediment_xr.coverage import classes_from_names
from sediment_xr.exceptions import ConfigError, InputError

__all__ = ["NamingWidget", "classes_yaml", "cluster_samples", "naming_widget"]

#: Colour of the sample of a cluster without any pixel in the frame.
EMPTY_SAMPLE_RGB = (128, 128, 128)


def classes_yaml(names: Sequence[str]) -> str:
    r"""YAML text of the ``classes:`` mapping for one name per cluster; equal names merge.

    Parameters
    ----------
    names : sequence of str
        The name of cluster 0, 1, ... (clusters are numbered darkest first).

    Returns
    -------
    str
        E.g. ``"classes:\n  bg: [0, 1]\n  bio: [2, 3]\n"`` for
        ``["bg", "bg", "bio", "bio"]``: paste it into a run config (names YAML would read as
        something else, like ``yes`` or ``1``, are quoted).

    Raises
    ------
    ConfigError
        If a name is empty.
    """
    import yaml

    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ConfigError(
            f"classes_yaml needs one name per cluster, but got {names!r}. "
            "Use e.g. ['bg', 'bg', 'bio', 'bio']."
        )
    classes = classes_from_names(names)
    return yaml.safe_dump(
        {"classes": {name: list(ids) for name, ids in classes.items()}},
        default_flow_style=None,
        sort_keys=False,
        allow_unicode=True,
        width=1000,
    )


def cluster_samples(
    labels: Any, frame: Any, n_clusters: int, *, size: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """A small mosaic of random pixels of each cluster, to see what a cluster is made of.

    Parameters
    ----------
    labels : array-like of int, shape (y, x)
        Cluster labels of one frame (``-1`` = no data, ignored).
    frame : array-like of uint8, shape (y, x, 3)
        The same frame, RGB (the cropped frame, or the frame after CLAHE).
    n_clusters : int
        Number of clusters.
    size : int, default 8
        Each mosaic is ``size`` x ``size`` pixels.
    seed : int, default 0
        Seed of the random choice of pixels.

    Returns
    -------
    list of numpy.ndarray
        One uint8 ``(size, size, 3)`` mosaic per cluster, made only of pixels of that cluster
        (drawn with replacement when the cluster has fewer pixels); plain grey
        (:data:`EMPTY_SAMPLE_RGB`) for a cluster without pixels in the frame.
    """
    labels = np.asarray(getattr(labels, "values", labels))
    frame = np.asarray(getattr(frame, "values", frame))
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"cluster_samples needs integer labels (y, x) of one frame, but got dtype "
            f"{labels.dtype} and shape {labels.shape}. Use e.g. labels.isel(time=0).values."
        )
    if frame.dtype != np.uint8 or frame.shape != (*labels.shape, 3):
        raise InputError(
            f"cluster_samples needs a uint8 RGB frame of the labels' shape {(*labels.shape, 3)}, "
            f"but got dtype {frame.dtype} and shape {frame.shape}. Crop the frame like the "
            "labels (the analysed window)."
        )
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"cluster_samples needs a positive whole size, but got {size!r}.")
    rng = np.random.default_rng(seed)
    flat_labels = labels.reshape(-1)
    pixels = frame.reshape(-1, 3)
    n = int(size) * int(size)
    out = []
    for cluster in range(int(n_clusters)):
        where = np.flatnonzero(flat_labels == cluster)
        if not len(where):
            out.append(np.full((size, size, 3), EMPTY_SAMPLE_RGB, dtype=np.uint8))
            continue
        chosen = rng.choice(where, size=n, replace=len(where) < n)
        out.append(pixels[chosen].reshape(size, size, 3).copy())
    return out


def _hex(rgb: Sequence[Any]) -> str:
    r, g, b = (int(np.clip(round(float(v)), 0, 255)) for v in np.asarray(rgb).reshape(-1)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _png(image: np.ndarray, scale: int) -> bytes:
    import cv2

    big = np.repeat(np.repeat(np.asarray(image, np.uint8), scale, axis=0), scale, axis=1)
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(big), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


class NamingWidget:
    """Notebook form to name clusters and save the resulting ``classes`` (see naming_widget).

    Attributes
    ----------
    inputs : list of panel.widgets.TextInput
        One text box per cluster, prefilled with its current name.
    save_button : panel.widgets.Button
        "Save classes": computes the classes, shows the YAML and writes ``path``.
    yaml_pane : panel.pane.Str
        The YAML of the last save.
    status : panel.pane.Alert
        What the last save did (or why it failed).
    layout : panel.Column
        The whole form; displaying the widget displays this.
    path : pathlib.Path or None
        Where "Save classes" writes the YAML.
    yaml : str or None
        The YAML text of the last successful save.
    """

    def __init__(
        self,
        clusters: Sequence[Mapping[str, Any]],
        samples: Sequence[np.ndarray] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        import panel as pn

        clusters = list(clusters)
        if not clusters:
            raise InputError(
                "naming_widget needs the clusters of a run, but got none. Pass the 'clusters' "
                "list of clusters.json."
            )
        if samples is not None and len(samples) != len(clusters):
            raise InputError(
                f"naming_widget needs one sample per cluster ({len(clusters)}), but got "
                f"{len(samples)}. Use cluster_samples(labels, frame, {len(clusters)})."
            )
        self.clusters = clusters
        self.path = Path(path) if path is not None else None
        self.yaml: str | None = None
        self.inputs = []
        rows = []
        # panel 1.9 renamed a widget's name to label and Button's button_type to color
        label = "label" if "label" in pn.widgets.TextInput.param else "name"
        primary = {"color" if "color" in pn.widgets.Button.param else "button_type": "primary"}
        for i, item in enumerate(clusters):
            if not isinstance(item, Mapping) or "center_rgb" not in item:
                raise InputError(
                    f"cluster entry {i} needs the keys id, name, center_rgb and share_percent "
                    f"(as in clusters.json), but got {item!r}."
                )
            cid = int(item.get("id", i))
            text = pn.widgets.TextInput(
                **{label: f"name of cluster {cid}"},
                value=str(item.get("name", f"cluster_{cid}")),
                width=240,
            )
            self.inputs.append(text)
            swatch = pn.pane.HTML(
                f'<div style="width:56px;height:56px;background:{_hex(item["center_rgb"])};'
                'border:1px solid #444"></div>',
                width=64,
            )
            parts = [pn.pane.Markdown(f"**{cid}**", width=40), swatch]
            if samples is not None:
                sample = np.asarray(samples[i], dtype=np.uint8)
                scale = max(1, 56 // max(sample.shape[0], 1))
                parts.append(pn.pane.PNG(io.BytesIO(_png(sample, scale)), width=64))
            share = item.get("share_percent")
            share_text = f"{float(share):.1f} %" if share is not None else "–"
            parts += [pn.pane.Markdown(share_text, width=80), text]
            rows.append(pn.Row(*parts))
        self.save_button = pn.widgets.Button(**{label: "Save classes"}, **primary)
        self.save_button.on_click(self._on_click)
        self.status = pn.pane.Alert("", alert_type="info", visible=False)
        self.yaml_pane = pn.pane.Str("", visible=False)
        target = f" and writes it to `{self.path}`" if self.path is not None else ""
        header = pn.pane.Markdown(
            "### Name the clusters\n"
            "Type a name per cluster; clusters with the same name merge into one class. "
            f"*Save classes* shows the `classes:` YAML{target}: paste it into the run "
            "config and run it again (only class cover, trends and files are recomputed).",
            width=720,
        )
        columns = pn.Row(
            pn.pane.Markdown("**id**", width=40),
            pn.pane.Markdown("**colour**", width=64),
            *([pn.pane.Markdown("**pixels**", width=64)] if samples is not None else []),
            pn.pane.Markdown("**share**", width=80),
            pn.pane.Markdown("**name**", width=240),
        )
        self.layout = pn.Column(
            header, columns, *rows, self.save_button, self.status, self.yaml_pane
        )

    @property
    def names(self) -> list[str]:
        """The names typed in, one per cluster."""
        return [str(box.value) for box in self.inputs]

    @property
    def classes(self) -> dict[str, list[int]]:
        """The classes mapping of the typed names (equal names merge)."""
        return classes_from_names(self.names)

    def save(self) -> str:
        """Compute the classes of the typed names, show the YAML, write ``path``; return it.

        Raises
        ------
        ConfigError
            If a name is empty.
        """
        text = classes_yaml(self.names)
        if self.path is not None:
            self.path.write_text(text, encoding="utf-8")
        self.yaml = text
        self.yaml_pane.object = text
        self.yaml_pane.visible = True
        where = f"Saved to `{self.path}`." if self.path is not None else "Copy it into the config."
        n = len(self.classes)
        self.status.object = f"{n} class{'es' if n != 1 else ''}. {where}"
        self.status.alert_type = "success"
        self.status.visible = True
        return text

    def _on_click(self, event: Any = None) -> None:
        try:
            self.save()
        except (ConfigError, OSError) as err:
            self.status.object = str(err)
            self.status.alert_type = "danger"
            self.status.visible = True

    def __panel__(self):
        """The Panel layout (so ``pn.panel(widget)`` and ``pn.Column(widget)`` work)."""
        return self.layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.layout._repr_mimebundle_(include, exclude)

    def servable(self, title: str | None = None):
        """Mark the form servable (``panel serve``)."""
        return self.layout.servable(title=title)

    def __repr__(self) -> str:
        return f"<NamingWidget clusters={len(self.inputs)} names={self.names!r} path={self.path}>"


def naming_widget(
    clusters: Sequence[Mapping[str, Any]],
    samples: Sequence[np.ndarray] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
) -> NamingWidget:
    """Notebook form to name the clusters and save the ``classes`` mapping (Panel).

    One row per cluster: id, colour swatch (its centre), a mosaic of its pixels, its share of
    the cover and a text box prefilled with its current name. "Save classes" computes the
    classes from the typed names (equal names merge), shows their YAML and writes it to
    ``path``.

    Parameters
    ----------
    clusters : list of dict
        The ``clusters`` entries of ``clusters.json`` (``id``, ``name``, ``center_rgb``,
        ``share_percent``).
    samples : list of numpy.ndarray, optional
        One uint8 RGB mosaic per cluster, from :func:`cluster_samples`.
    path : path-like, optional
        Where to write ``classes.yaml`` on save.

    Returns
    -------
    NamingWidget
        Displays as the form in Jupyter (run ``pn.extension()`` first). Its ``inputs``,
        ``save_button``, ``save()``, ``yaml`` and ``classes`` drive and read it from Python.
    """
    return NamingWidget(clusters, samples, path=path)
