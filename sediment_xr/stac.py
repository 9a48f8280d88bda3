"""A STAC Item per run (``item.json``), so catalogue tools find runs and open their data.

The Item has no geometry (a seafloor camera's position is not in the video) and spans the
frames' times (``start_datetime``/``end_datetime``). Its assets are the output folder's
files, by relative href: the cube carries ``xarray:open_kwargs`` (what
``xarray.open_dataset`` needs, as xpystac and intake-stac read them) and the Parquet cover
its columns. Storage options are never written (they may hold credentials): readers pass
their own; the source URL is written without user-info or query values
(:func:`sediment_xr._redact.redact`).

The Item is self-contained, like STAC's self-contained catalogs: relative hrefs and no
``self`` link, so the folder can be copied or moved (a STAC API that needs absolute hrefs
resolves them against where it found ``item.json``). ``xarray:open_kwargs`` (xarray-assets)
and ``table:columns`` (table) are written without listing those extensions in
``stac_extensions``: validating an Item that lists them needs their schemas from the
network, and xpystac reads ``xarray:open_kwargs`` either way.

>>> import pystac, xarray as xr                                          # doctest: +SKIP
>>> item = pystac.Item.from_file("results/shr/item.json")
>>> cube = item.assets["cube"]
>>> ds = xr.open_dataset(cube.get_absolute_href(), **cube.extra_fields["xarray:open_kwargs"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from sediment_xr._redact import redact

__all__ = ["ASSETS", "CUBE_OPEN_KWARGS", "item_json", "run_item"]

#: What ``xarray.open_dataset`` needs to open a finished cube (consolidated metadata); a
#: run's Item adds ``chunks={"time": <frames per chunk>}`` (one dask chunk per shard).
CUBE_OPEN_KWARGS: dict[str, Any] = {
    "engine": "zarr",
    "chunks": {},
    "consolidated": True,
    "zarr_format": 3,
}
#: The output files an Item lists when they exist: name -> (media type, roles, title).
ASSETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cube.zarr": ("application/vnd+zarr", ("data",), "labels and percent cover (Zarr v3)"),
    "cover.parquet": (
        "application/vnd.apache.parquet",
        ("data",),
        "percent cover per frame, long form (run, time, frame, kind, name, cover)",
    ),
    "cover.csv": ("text/csv", ("data",), "percent cover per frame, one column per series"),
    "trend.csv": ("text/csv", ("data",), "trends of cover over time"),
    "model.json": ("application/json", ("metadata",), "the fitted cluster model"),
    "clusters.json": ("application/json", ("metadata",), "cluster colours and summaries"),
    "report.html": ("text/html", ("overview",), "report"),
    "segmented.mp4": ("video/mp4", ("visual",), "frames painted with their labels"),
}
_KEYS = {"cube.zarr": "cube", "cover.parquet": "cover"}


def run_item(
    cube: xr.Dataset,
    *,
    run: str,
    files: Sequence[str],
    classes: Sequence[str] | None = None,
    time_chunk: int | None = None,
    properties: Mapping[str, Any] | None = None,
):
    """The STAC Item of a run.

    Parameters
    ----------
    cube : xarray.Dataset
        The run's cube (its ``time`` coordinate and attributes are read).
    run : str
        The run's name: the Item's id.
    files : sequence of str
        Names of the output folder's files to list as assets (see :data:`ASSETS`); hrefs
        are relative to the folder, where ``item.json`` is written.
    classes : sequence of str, optional
        The run's class names (default: the cube's ``class`` coordinate).
    time_chunk : int, optional
        Frames per shard of ``labels``: the cube's ``chunks`` in ``xarray:open_kwargs``, so
        that a dask task reads a shard (the default gives a task per frame).
    properties : mapping, optional
        More Item properties.

    Returns
    -------
    pystac.Item
    """
    import pystac

    times = pd.DatetimeIndex(cube["time"].values).dropna()
    if len(times) == 0:
        raise ValueError("a STAC Item needs at least one frame time")
    start, end = (t.tz_localize("UTC").to_pydatetime() for t in (times.min(), times.max()))
    props: dict[str, Any] = {
        "title": f"sediment_xr run {run}",
        "description": cube.attrs.get("title", "sediment_xr cube"),
        "created": cube.attrs.get("date_created"),
        "sediment_xr:source": redact(cube.attrs.get("source")),
        "sediment_xr:frames": int(cube.sizes["time"]),
        "sediment_xr:clusters": int(cube.sizes.get("cluster", 0)),
    }
    if classes is None and "class" in cube.coords:
        classes = [str(c) for c in cube["class"].values]
    if classes:
        props["sediment_xr:classes"] = [str(c) for c in classes]
    props.update(properties or {})
    item = pystac.Item(
        id=run,
        geometry=None,
        bbox=None,
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties={k: v for k, v in props.items() if v is not None},
    )
    for name in files:
        if name not in ASSETS:
            continue
        media_type, roles, title = ASSETS[name]
        extra: dict[str, Any] = {}
        if name == "cube.zarr":
            chunks = {"time": int(time_chunk)} if time_chunk else {}
            extra["xarray:open_kwargs"] = {**CUBE_OPEN_KWARGS, "chunks": chunks}
        elif name == "cover.parquet":
            extra["table:columns"] = [
                {"name": "run", "type": "string"},
                {"name": "time", "type": "timestamp"},
                {"name": "frame", "type": "int64"},
                {"name": "kind", "type": "string", "description": "cluster or class"},
                {"name": "name", "type": "string"},
                {"name": "cover", "type": "float64", "description": "percent"},
                {"name": "quality", "type": "string", "description": "the frame's flag"},
            ]
        item.add_asset(
            _KEYS.get(name, name.replace(".", "_")),
            pystac.Asset(
                href=f"./{name}",
                media_type=media_type,
                roles=list(roles),
                title=title,
                extra_fields=extra,
            ),
        )
    return item


def item_json(item) -> str:
    """The Item as JSON text, with relative asset hrefs and no self link."""
    import json

    return json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2)
