"""The finished cube as cloud readers see it: one metadata read, small reads, CF/ACDD metadata."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
import zarr.storage
from packaging.version import Version

from sediment_xr import pipeline
from sediment_xr.config import load_config
from sediment_xr.results import missing
from sediment_xr.store import Output

CONFIGS = Path(__file__).parents[1] / "configs"
METADATA = ("zarr.json", ".zmetadata", ".zgroup", ".zattrs", ".zarray")


@contextlib.contextmanager
def no_warnings():
    """Every warning is an error, but zarr 3.0's own about its string codec.

    zarr 3.0 warns on every read of a string array (``class``, ``statistic``) that its
    ``vlen-utf8`` codec is not part of the v3 specification yet; zarr 3.1 and newer do not.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if Version(zarr.__version__) < Version("3.1"):
            warnings.filterwarnings("ignore", message="The codec `vlen-utf8`")
        yield


class CountingStore(zarr.storage.WrapperStore):
    """A read-only store that records every read: key, byte range, bytes returned."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[tuple[str, object, int | None]] = []

    async def get(self, key, prototype, byte_range=None):
        value = await self._store.get(key, prototype, byte_range)
        self.reads.append((key, byte_range, None if value is None else len(value.to_bytes())))
        return value

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        values = await self._store.get_partial_values(prototype, key_ranges)
        for (key, byte_range), value in zip(key_ranges, values, strict=True):
            size = None if value is None else len(value.to_bytes())
            self.reads.append((key, byte_range, size))
        return values


def counting(path: Path) -> CountingStore:
    return CountingStore(zarr.storage.LocalStore(str(path), read_only=True))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The bundled SHR frames, one time chunk of 4 frames, frames stored."""
    out = tmp_path_factory.mktemp("cube") / "run"
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={out}"])
    ingest = dataclasses.replace(config.ingest, chunk_frames=4, store_frames=True)
    config = dataclasses.replace(config, ingest=ingest)
    pipeline.run(config, progress=False)
    return config, out / "cube.zarr"


def test_open_zarr_warns_nothing_and_reads_metadata_once(finished):
    """Done-when: ``xr.open_zarr(path)`` of a finished cube: no warning, one metadata read."""
    _, path = finished
    store = counting(path)
    with no_warnings():
        ds = xr.open_zarr(store)
    found = [key for key, _, size in store.reads if size is not None and key.endswith(METADATA)]
    assert found == ["zarr.json"], store.reads
    assert {"labels", "cover", "class_cover", "frames", "cluster_trend"} <= set(ds.variables)
    # The same with a plain path (what a user types).
    with no_warnings():
        xr.open_zarr(path).close()


@pytest.mark.parametrize("name", ["labels", "frames"])
def test_one_frame_reads_one_small_byte_range(finished, name):
    """Done-when: one frame of labels (or frames) fetches a small part of its time chunk."""
    _, path = finished
    store = counting(path)
    ds = xr.open_zarr(store)
    store.reads.clear()
    one = ds[name].isel(time=2).values
    reads = [(k, r, n) for k, r, n in store.reads if k.startswith(f"{name}/")]
    assert {k for k, _, _ in reads} == {f"{name}/c/0/0/0" + ("/0" if name == "frames" else "")}
    shard = (path / reads[0][0]).stat().st_size
    fetched = sum(n for _, _, n in reads)
    assert all(r is not None for _, r, _ in reads)  # byte ranges, never the whole object
    assert fetched < shard / 3, (fetched, shard)  # 4 frames per shard: about a quarter
    # ... and the values are those of the frame.
    whole = xr.open_zarr(path)[name].values[2]
    np.testing.assert_array_equal(one, whole)


def test_per_frame_series_are_one_object(finished):
    """cover, class_cover and frame_status: one chunk along time, not one per time chunk."""
    config, path = finished
    group = zarr.open_group(str(path), mode="r")
    for name in ("cover", "class_cover", "frame_status"):
        array = group[name]
        assert array.chunks == array.shape, name
        assert [p.name for p in (path / name / "c").rglob("*") if p.is_file()] == ["0"]
    cube = xr.open_zarr(path)
    table = pd.read_csv(Path(config.output) / "cover.csv")
    np.testing.assert_allclose(cube["cover"].values, table.filter(like="cluster_"), atol=1e-6)
    assert (cube["frame_status"].values == 1).all()


def test_cf_and_acdd_metadata(finished):
    """Every coordinate described; cover is an area fraction with valid cell_methods."""
    _, path = finished
    cube = xr.open_zarr(path)
    for name, coord in cube.coords.items():
        assert "long_name" in coord.attrs or "standard_name" in coord.attrs, name
    assert {cube[d].attrs.get("axis") for d in ("time", "y", "x")} == {"T", "Y", "X"}
    for name in ("cover", "class_cover"):
        attrs = cube[name].attrs
        assert attrs["standard_name"] == "area_fraction"
        assert attrs["units"] == "percent"
        # "name: method" pairs name dims of the variable or CF's "area"
        names = re.findall(r"([A-Za-z_]+):\s+(?:point|mean|sum)", attrs["cell_methods"])
        assert names and set(names) <= set(cube[name].dims) | {"area"}, attrs["cell_methods"]
    attrs = cube.attrs
    assert "ACDD-1.3" in attrs["Conventions"] and "CF-1.10" in attrs["Conventions"]
    times = pd.DatetimeIndex(cube["time"].values)
    assert attrs["time_coverage_start"] == times[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert attrs["time_coverage_end"] == times[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert pd.Timestamp(attrs["date_created"]) <= pd.Timestamp.now(tz="UTC")


def test_trends_in_the_cube_equal_trend_csv(finished):
    config, path = finished
    cube = xr.open_zarr(path)
    trend = pd.read_csv(Path(config.output) / "trend.csv").set_index("name")
    for statistic in ("slope_per_day", "p_value_hac", "n"):
        clusters = cube["cluster_trend"].sel(statistic=statistic).values
        expected = trend.loc[[f"cluster_{i}" for i in cube["cluster"].values], statistic]
        np.testing.assert_allclose(clusters, expected, rtol=1e-6)
        classes = cube["class_trend"].sel(statistic=statistic).values
        np.testing.assert_allclose(classes, trend.loc[list(cube["class"].values), statistic], 1e-6)


def test_a_changed_run_drops_the_consolidated_copy_then_writes_it_again(tmp_path):
    """The copy of the metadata never outlives a change: a rerun removes it first."""
    out = tmp_path / "run"
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={out}"])
    pipeline.run(config, progress=False)
    root = out / "cube.zarr" / "zarr.json"
    assert json.loads(root.read_text()).get("consolidated_metadata")
    stored = Output(str(out))
    stored.set_state(stored.state(), complete=False)  # a rerun's first write
    assert not json.loads(root.read_text()).get("consolidated_metadata")
    with pytest.warns(RuntimeWarning, match="consolidated metadata"):
        xr.open_zarr(out / "cube.zarr").close()  # readers are told, not misled
    # A rerun with other classes: the new copy names the new classes.
    again = dataclasses.replace(config, classes={"all": (0, 1, 2, 3)})
    pipeline.run(again, progress=False)
    with no_warnings():
        cube = xr.open_zarr(out / "cube.zarr")
    assert list(cube["class"].values) == ["all"]
    np.testing.assert_allclose(cube["class_cover"].values, 100.0, atol=1e-6)
    assert cube["class_trend"].sizes["class"] == 1
    item = json.loads((out / "item.json").read_text())
    assert item["properties"]["sediment_xr:classes"] == ["all"]


def test_a_rerun_stopped_after_its_first_change_never_looks_finished(tmp_path, monkeypatch):
    """Turning store_frames off removes an array: the cube says incomplete before that."""
    import sediment_xr as sx

    out = tmp_path / "run"
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={out}"])
    stored = dataclasses.replace(
        config, ingest=dataclasses.replace(config.ingest, store_frames=True)
    )
    pipeline.run(stored, progress=False)

    def killed(self, *names):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Output, "remove_variables", killed)
        with pytest.raises(KeyboardInterrupt):
            pipeline.run(config, progress=False)  # store_frames off
    assert missing(str(out))
    assert not json.loads((out / "cube.zarr" / "zarr.json").read_text()).get(
        "consolidated_metadata"
    )
    with pytest.raises(sx.OutputError, match="incomplete"):
        sx.open_results(str(out))
    pipeline.run(config, progress=False)
    assert "frames" not in sx.open_results(str(out))


def test_complete_but_not_consolidated_is_not_finished(tmp_path):
    """A run stopped between marking the cube complete and consolidating it is resumed."""
    import sediment_xr as sx

    out = tmp_path / "run"
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={out}"])
    pipeline.run(config, progress=False)
    root = out / "cube.zarr" / "zarr.json"
    meta = json.loads(root.read_text())
    meta.pop("consolidated_metadata")
    root.write_text(json.dumps(meta))  # what a kill between the two writes leaves
    assert missing(str(out)) == [
        "the final write (the run stopped before consolidating the metadata)"
    ]
    with pytest.raises(sx.OutputError, match="consolidating"):
        sx.open_results(str(out))
    assert pipeline.run(config, progress=False).computed == ()
    assert missing(str(out)) == []
    assert json.loads(root.read_text()).get("consolidated_metadata")


def test_incomplete_cube_is_read_from_its_chunks(tmp_path, monkeypatch):
    """A run killed after labelling: open_results(allow_incomplete) shows the chunks done."""
    import sediment_xr as sx

    out = tmp_path / "run"
    config = load_config(CONFIGS / "shr_frames.yaml", [f"output={out}"])

    def killed(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Output, "gather_per_frame", killed)
        with pytest.raises(KeyboardInterrupt):
            pipeline.run(config, progress=False)
    with pytest.warns(sx.SedimentXRWarning, match="incomplete"):
        cube = sx.open_results(str(out), allow_incomplete=True)
    assert np.isfinite(cube["cover"].values).all()
    assert (cube["frame_status"].values == 1).all()
    with pytest.warns(RuntimeWarning, match="consolidated metadata"):
        raw = xr.open_zarr(out / "cube.zarr")
    assert np.isnan(raw["cover"].values).all()  # not gathered yet: nothing looks complete
    pipeline.run(config, progress=False)  # the rerun gathers them
    with no_warnings():
        np.testing.assert_allclose(
            xr.open_zarr(out / "cube.zarr")["cover"].values, cube["cover"].values
        )


def test_stac_item_validates_and_opens_the_cube(finished):
    """Done-when: the run's STAC Item validates with pystac and opens the cube via its asset."""
    import dask.dataframe as dd
    import pystac

    import sediment_xr as sx

    config, path = finished
    item = pystac.Item.from_file(str(Path(config.output) / "item.json"))
    item.validate()  # the core Item schema (bundled with pystac: no network)
    assert item.id == config.run_name
    times = pd.DatetimeIndex(xr.open_zarr(path)["time"].values)
    assert pd.Timestamp(item.properties["start_datetime"]) == times[0].tz_localize("UTC")
    assert pd.Timestamp(item.properties["end_datetime"]) == times[-1].tz_localize("UTC")
    cube_asset = item.assets["cube"]
    assert cube_asset.media_type == "application/vnd+zarr"
    with no_warnings():
        ds = xr.open_dataset(
            cube_asset.get_absolute_href(), **cube_asset.extra_fields["xarray:open_kwargs"]
        )
    xr.testing.assert_identical(ds.load(), sx.open_results(config.output).load())
    reopened = xr.open_dataset(
        cube_asset.get_absolute_href(), **cube_asset.extra_fields["xarray:open_kwargs"]
    )
    assert reopened["labels"].chunks[0] == (4,)  # a task per shard, not per frame
    cover = dd.read_parquet(item.assets["cover"].get_absolute_href()).compute()
    assert set(cover["run"]) == {config.run_name}
    assert {"report.html", "trend.csv"} <= {Path(a.href).name for a in item.assets.values()}
    text = (Path(config.output) / "item.json").read_text()
    assert str(Path(config.output)) not in text  # relative hrefs: the folder can move
