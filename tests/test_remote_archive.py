"""Remote archives of stills: an http(s) directory listing and an object-store prefix.

The OOI raw-data server serves plain https index pages (one folder per instrument / year /
month / day) of stills named like ``CAMDSB106_10.33.9.6_20210824T031618_UTC.jpg``. Here a
real ``http.server`` on 127.0.0.1 (started in a thread by the fixture, stopped at the end)
serves small stills with such names, and a real moto S3 server on 127.0.0.1 holds the same
files. Each test names the weakness it guards:

* an http(s) listing was refused as "a single file";
* the links of an index page (parent, sort order, sub-folders, queries, other hosts, files
  that are not images) must not become frames;
* a missing or empty listing must be one line on stderr, not a traceback;
* the client read each image's header by itself (one or two requests per still): opening a
  series must cost the client a few requests whatever the number of stills, the headers
  being read by the workers of a real ``distributed.LocalCluster``;
* a remote series must give the same cover, and the same refusals, as local copies.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import yaml
from conftest import moto_s3

import sediment_xr as sx
from sediment_xr import pipeline
from sediment_xr.cli import main
from sediment_xr.config import (
    ClusterConfig,
    Config,
    IngestConfig,
    ReportConfig,
)
from sediment_xr.exceptions import InputError
from sediment_xr.testing import synthetic_series

ERROR = "sediment-xr: error: "
N_STILLS = 12
WIDTH, HEIGHT = 96, 64
BUCKET = "sediment-xr-archive"
# Small and quick: no report, 3 clusters from a small sample.
QUICK = {
    "ingest": {"chunk_frames": 4},
    "cluster": {"n_clusters": 3, "sample_size": 4000, "n_refits": 0},
    "report": {"html": False, "video": False},
}


def ooi_name(k: int) -> str:
    """An OOI seafloor still's name, one every 10 minutes from 2021-08-24 03:16:18."""
    minutes = 16 + 10 * k
    return f"CAMDSB106_10.33.9.6_20210824T{3 + minutes // 60:02d}{minutes % 60:02d}18_UTC.jpg"


def write_stills(folder: Path, n: int = N_STILLS) -> list[str]:
    """``n`` 96 x 64 JPEGs of a scene whose white mat grows, with OOI names."""
    folder.mkdir(parents=True, exist_ok=True)
    series = synthetic_series(n, size=WIDTH, start_cover=20.0, slope=1.0, seed=3)
    names = []
    for k, rgb in enumerate(series["frames"].values):
        names.append(ooi_name(k))
        ok = cv2.imwrite(str(folder / names[-1]), rgb[-HEIGHT:, :, ::-1].copy())
        assert ok
    return names


# --------------------------------------------------------------------------------------------
# a real http server, counting the requests of this process (the client)
class _Handler(SimpleHTTPRequestHandler):
    """Serves the server's folder and logs ``(method, path, from this process)``."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> None:
        peer, server = tuple(self.client_address[:2]), tuple(self.server.server_address[:2])
        # A connection of this process from the peer's address to the server: the client's.
        # (The port alone is not enough: this process's scheduler has connections of its
        # own, to other ends, that may share a worker's local port number.)
        own = any(
            c.laddr and c.raddr and tuple(c.laddr) == peer and tuple(c.raddr) == server
            for c in psutil.Process().net_connections()
        )
        self.server.requests.append((self.command, self.path, own))

    def do_GET(self) -> None:
        self._record()
        if self.path.startswith("/broken/"):
            self.send_error(500, "disk failure")
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        self._record()
        super().do_HEAD()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[ThreadingHTTPServer, Path, str]]:
    """An http server on 127.0.0.1 serving a folder with its listings: server, folder, URL."""
    folder = tmp_path_factory.mktemp("archive")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=folder))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def day(served) -> tuple[Path, str, list[str]]:
    """A day folder of the archive (plus a text file and a sub-folder): folder, URL, names."""
    _, root, url = served
    folder = root / "CAMDSB106" / "2021" / "08" / "24"
    names = write_stills(folder)
    (folder / "CAMDSB106_20210824.txt").write_text("not an image\n")
    write_stills(folder / "thumbnails", 2)
    return folder, f"{url}/CAMDSB106/2021/08/24/", names


def write_config(tmp_path: Path, source: str, output: Path, **extra: object) -> Path:
    data = {"input": source, "output": str(output), **QUICK, **extra}
    path = tmp_path / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_cli(config: Path, capsys) -> tuple[int, str]:
    code = main(["run", str(config), "--scheduler", "synchronous", "--quiet"])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, words: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


# --------------------------------------------------------------------------------------------
# tests
def test_http_listing_gives_the_same_cover_as_local_copies(day, tmp_path, capsys):
    """Weakness: an http(s) directory listing was refused as 'a single file'."""
    folder, url, _ = day
    local = tmp_path / "local"
    shutil.copytree(folder, local)
    for source, name in ((url, "remote"), (str(local), "copy"), (url.rstrip("/"), "no_slash")):
        code, err = run_cli(write_config(tmp_path, source, tmp_path / name), capsys)
        assert code == 0, err
    cover = (tmp_path / "copy" / "cover.csv").read_bytes()
    assert cover.count(b"\n") == N_STILLS + 1
    assert (tmp_path / "remote" / "cover.csv").read_bytes() == cover
    assert (tmp_path / "no_slash" / "cover.csv").read_bytes() == cover
    assert (tmp_path / "remote" / "trend.csv").read_bytes() == (
        tmp_path / "copy" / "trend.csv"
    ).read_bytes()


def test_listing_keeps_only_the_pages_own_image_links(served, tmp_path):
    """Weakness: parent, sort-order, sub-folder, query and foreign links taken as frames."""
    _, root, url = served
    folder = root / "apache"
    names = write_stills(folder, 3)
    links = [
        "../",
        "/",
        "?C=N;O=D",
        "?C=M;O=A",
        "#top",
        "thumbnails/",
        f"thumbnails/{names[0]}",
        f"{names[0]}?download=1",
        f"http://example.org/apache/{ooi_name(7)}",
        f"{url}/other/{ooi_name(8)}",
        "readme.txt",
        names[0],  # relative
        f"/apache/{names[1]}",  # absolute path on this server
        f"{url}/apache/{names[2]}",  # full URL
        names[0],  # twice on the page
    ]
    page = "".join(f'<tr><td><a href="{link}">{link}</a></td></tr>\n' for link in links)
    (folder / "index.html").write_text(f"<html><body><table>\n{page}</table></body></html>")
    frames = sx.open_frames(f"{url}/apache/")
    assert frames.attrs["source_files"] == [f"{url}/apache/{n}" for n in names]
    local = sx.open_frames(str(folder))
    np.testing.assert_array_equal(frames.values, local.values)
    np.testing.assert_array_equal(frames["time"].values, local["time"].values)


def test_quoted_names_of_a_listing_are_the_files_names(served):
    """Weakness: ``a%20b.jpg`` of an index page kept as the name (its time lost)."""
    _, root, url = served
    folder = root / "quoted"
    names = write_stills(folder, 3)
    renamed = [name.replace("CAMDSB106_", "CAM DSB+106 ") for name in names]
    for old, new in zip(names, renamed, strict=True):
        (folder / old).rename(folder / new)
    frames = sx.open_frames(f"{url}/quoted/")
    assert frames.attrs["source_files"] == [f"{url}/quoted/{n}" for n in renamed]
    local = sx.open_frames(str(folder))
    np.testing.assert_array_equal(frames["time"].values, local["time"].values)
    np.testing.assert_array_equal(frames.values, local.values)
    assert (frames["frame_status"].values == 1).all()


def test_missing_listing_is_one_line_error(served, tmp_path, capsys):
    """Weakness: a 404 listing URL ended in a traceback or in a video error."""
    _, _, url = served
    source = f"{url}/CAMDSB106/2021/13/"
    code, err = run_cli(write_config(tmp_path, source, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, [f"{source} does not exist", "Check the URL"])
    assert not (tmp_path / "out").exists()


def test_empty_listing_is_one_line_error(served, tmp_path, capsys):
    """Weakness: a listing without images (an empty day) was not named as such."""
    _, root, url = served
    (root / "empty_day").mkdir()
    (root / "empty_day" / "notes.txt").write_text("camera off\n")
    source = f"{url}/empty_day/"
    code, err = run_cli(write_config(tmp_path, source, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, [f"no image files found in {source}", ".jpg"])


@pytest.mark.parametrize("end", ["/", ""], ids=["slash", "no-slash"])
def test_server_error_is_not_called_a_missing_folder(served, tmp_path, capsys, end):
    """Weakness: a listing the server failed to give (500) gave a traceback."""
    _, _, url = served
    source = f"{url}/broken/CAMDSB106{end}"
    code, err = run_cli(write_config(tmp_path, source, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, [source, "500", "answered with an error"])
    assert "does not exist" not in err


def test_client_requests_do_not_grow_with_the_number_of_stills(served, tmp_path):
    """Weakness: the client read every still's header itself (one or two GETs per still)."""
    distributed = pytest.importorskip("distributed")
    server, root, url = served
    sources = {}
    for n in (6, 24):
        write_stills(root / f"n{n}", n)
        sources[n] = f"{url}/n{n}/"
    opened, computed = {}, {}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        for n, source in sources.items():
            server.requests.clear()
            frames = sx.open_frames(source, chunk_frames=4)
            opened[n] = list(server.requests)
            server.requests.clear()
            frames.compute()
            computed[n] = list(server.requests)
    for n in sources:
        mine = [r for r in opened[n] if r[2]]
        # the listing and the first image, whatever the number of stills
        assert [(method, path) for method, path, _ in mine] == [
            ("GET", f"/n{n}/"),
            ("GET", f"/n{n}/{ooi_name(0)}"),
        ], mine
        # every header was read, by the workers
        headers = {path for _, path, own in opened[n] if not own}
        assert headers == {f"/n{n}/{ooi_name(k)}" for k in range(n)}
        # the pixels are read by the workers, one GET each
        assert not [r for r in computed[n] if r[2]]
        assert sorted(path for _, path, own in computed[n] if not own) == sorted(
            f"/n{n}/{ooi_name(k)}" for k in range(n)
        )


def test_remote_image_of_another_size_is_refused_at_opening_like_a_local_one(served):
    """Weakness: header checks moved off the client must still refuse before computing."""
    _, root, url = served
    folder = root / "mixed"
    names = write_stills(folder, 5)
    image = cv2.imread(str(folder / names[3]))
    cv2.imwrite(str(folder / names[3]), cv2.resize(image, (WIDTH // 2, HEIGHT)))
    with pytest.raises(InputError) as local:
        sx.open_frames(str(folder))
    with pytest.raises(InputError) as remote:
        sx.open_frames(f"{url}/mixed/")
    prefix = f"{url}/mixed/"
    assert str(remote.value) == str(local.value).replace(f"{folder}/", prefix)
    assert f"{prefix}{names[3]} is 48x64 pixels" in str(remote.value)


# --------------------------------------------------------------------------------------------
# an object-store prefix on a real S3 server (moto)
@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[object, dict]]:
    """A moto S3 server on 127.0.0.1 (free port) with an empty bucket; stopped afterwards."""
    with moto_s3(BUCKET) as (fs, options):
        yield fs, options


def test_s3_prefix_gives_the_same_cover_as_local(s3, tmp_path):
    """Weakness: stills under an object-store prefix must give the local copies' cover."""
    fs, options = s3
    folder = tmp_path / "day"
    write_stills(folder)
    (folder / "notes.txt").write_text("not an image\n")
    fs.put(f"{folder}/", f"{BUCKET}/CAMDSB106/2021/08/24/", recursive=True)
    local = Config(
        input=str(folder),
        output=str(tmp_path / "local"),
        ingest=IngestConfig(chunk_frames=4),
        cluster=ClusterConfig(n_clusters=3, sample_size=4000, n_refits=0),
        report=ReportConfig(html=False, video=False),
    )
    a = pipeline.run(local, progress=False)
    assert len(a.cover) == N_STILLS
    expected = (tmp_path / "local" / "cover.csv").read_bytes()
    for source in ("CAMDSB106/2021/08/24/", "CAMDSB106/2021/08/24"):
        remote = dataclasses.replace(
            local,
            input=f"s3://{BUCKET}/{source}",
            output=str(tmp_path / source.replace("/", "_")),
            input_storage_options=options,
        )
        pipeline.run(remote, progress=False)
        assert (Path(remote.output) / "cover.csv").read_bytes() == expected


def listings(caplog) -> list[str]:
    """The bucket listings (ListObjectsV2) the moto server logged."""
    return [r.getMessage() for r in caplog.records if f"/{BUCKET}?list-type=2" in r.getMessage()]


def test_each_opening_of_an_s3_prefix_lists_it_once_and_afresh(s3, tmp_path, caplog):
    """Weakness: a prefix was listed from fsspec's cache, so stills added since were unseen."""
    s3fs = pytest.importorskip("s3fs")
    _, options = s3
    folder = tmp_path / "day"
    names = write_stills(folder, 4)
    writer = s3fs.S3FileSystem(**options, skip_instance_cache=True)  # the camera's uploader
    source = f"s3://{BUCKET}/growing/"
    for name in names[:3]:
        writer.put(str(folder / name), f"{source}{name}")
    caplog.set_level(logging.INFO, logger="werkzeug")
    caplog.clear()
    assert sx.open_frames(source, storage_options=options).sizes["time"] == 3
    assert len(listings(caplog)) == 1, listings(caplog)
    writer.put(str(folder / names[3]), f"{source}{names[3]}")
    caplog.clear()
    frames = sx.open_frames(source, storage_options=options)
    assert len(listings(caplog)) == 1, listings(caplog)
    assert frames.attrs["source_files"] == [f"{source}{name}" for name in names]
