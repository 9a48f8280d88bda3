"""Secrets are never written: not to a file of the output, a message, a warning or a log line.

Distinct random tokens are planted in every ``storage_options`` mapping of a config (the
shared one, the input's and the output's; flat and nested: ``client_kwargs``, ``headers:
{Authorization: ...}``, ``connection_string``, ``account_key``, ``secret``, ``token``, and a
key with a harmless-looking name, ``foo``) and in the input URL (user-info and a query
signature).  The run reads its video from a real HTTP server on 127.0.0.1 that checks the
URL's basic-auth credentials (so the credentials are really used) and writes to a local
folder or to a real S3 API (moto) on 127.0.0.1; it goes through the real command line
(``sediment_xr.cli.main``, in this process, dask's synchronous scheduler).  Then every byte
of every file written (walked on disk or listed in the bucket, zarr chunks and metadata
included), stdout, stderr (warnings and stage messages are printed there) and the
``sediment_xr`` log records are searched for each token.  Refused runs are checked the same
way on their one error line.

Each test names the weakness it guards.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from conftest import moto_s3

from sediment_xr.cli import main

ERROR = "sediment-xr: error: "
WARNING = "sediment-xr: warning: "
SIZE = 64
USER = "camera"
RUN = ["--scheduler", "synchronous"]
BUCKET = "sediment-xr-secrets"
# Small and quick, with the report and its video (they show the config and the input).
QUICK = {
    "ingest": {"start_time": "2022-06-01T00:00:00", "frame_interval": "1h", "chunk_frames": 4},
    "cluster": {"n_clusters": 3, "sample_size": 2000, "n_refits": 1},
    "report": {"html": True, "video": True},
}


def token() -> str:
    """A random secret nobody could find by chance in an output."""
    return "tok" + secrets.token_hex(12)


# --------------------------------------------------------------------------------------------
# a real HTTP server on 127.0.0.1: files of a folder, basic auth, byte ranges
class _Files(BaseHTTPRequestHandler):
    """Serves ``server.folder`` to requests carrying ``server.auth``; 401 otherwise."""

    def log_message(self, *args) -> None:  # no request lines on stderr
        pass

    def _file(self) -> Path | None:
        expected = "Basic " + base64.b64encode(self.server.auth.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        path = self.server.folder / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return path

    def do_HEAD(self) -> None:
        path = self._file()
        if path is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

    def do_GET(self) -> None:
        path = self._file()
        if path is None:
            return
        data = path.read_bytes()
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted:
            start = int(wanted[1])
            end = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start : end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data)


def mjpeg_video(path: Path, n: int = 8, broken: tuple[int, ...] = (5,)) -> Path:
    """An MJPEG video whose frames at `broken` are zeroed: they do not decode (a warning)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
        for k in range(n):
            rgb = np.stack([(x * 3 + 7 * k) % 256, (y * 5) % 256, np.full_like(x, 30 * k)], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    for k in broken:
        end = data.index(b"\xff\xd9", starts[k]) + 2
        data[starts[k] : end] = bytes(end - starts[k])
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def http(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """An HTTP server on 127.0.0.1 serving a video to one user: its address and password."""
    folder = tmp_path_factory.mktemp("served")
    mjpeg_video(folder / "video.avi")
    password = token()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.folder, server.auth = folder, f"{USER}:{password}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", password
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[object, str]]:
    """A moto S3 server on 127.0.0.1 with an empty bucket: its s3fs filesystem and endpoint."""
    with moto_s3(BUCKET, skip_instance_cache=True) as (fs, options):
        yield fs, options["client_kwargs"]["endpoint_url"]


# --------------------------------------------------------------------------------------------
# planted secrets
def secret_url(address: str, password: str, planted: list[str], name: str = "video.avi") -> str:
    """The video's URL with the password as user-info and signatures in its query."""
    query = {
        "X-Amz-Credential": token(),
        "X-Amz-Signature": token(),
        "sig": token(),
        "token": token(),
        "sv": "2024-01-01",
    }
    new = [password, *[v for k, v in query.items() if k != "sv"]]
    planted += [v for v in new if v not in planted]
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return f"http://{USER}:{password}@{address}/{name}?{text}"


def http_options(planted: list[str]) -> dict:
    """Options an HTTP input takes (request keywords): a header that holds a secret."""
    options = {"headers": {"X-Api-Key": token()}}
    planted.append(options["headers"]["X-Api-Key"])
    return options


def s3_options(endpoint: str, planted: list[str]) -> dict:
    """s3fs options the output is written with, with secrets flat and nested."""
    options = {
        "key": token(),
        "secret": token(),
        "token": token(),
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"user_agent_extra": token()},  # sent to the server, never written
        "skip_instance_cache": True,
    }
    planted += [
        options["key"],
        options["secret"],
        options["token"],
        options["config_kwargs"]["user_agent_extra"],
    ]
    return options


def unused_options(planted: list[str]) -> dict:
    """``storage_options`` both sides replace: never used, still never written.

    Secrets under keys no key-word list knows (``foo``), nested ones, an ``Authorization``
    header and Azure's ``connection_string`` and ``account_key`` (keys s3fs would refuse).
    """
    options = {
        "foo": token(),
        "password": token(),
        "connection_string": f"AccountName=acct;AccountKey={token()}",
        "account_key": token(),
        "headers": {"Authorization": f"Bearer {token()}"},
        "client_kwargs": {"aws_secret_access_key": token()},
        "nested": {"deeper": [token(), {"x": token()}]},
    }
    planted += [
        options["foo"],
        options["password"],
        options["connection_string"].rsplit("=", 1)[1],
        options["account_key"],
        options["headers"]["Authorization"].split()[1],
        options["client_kwargs"]["aws_secret_access_key"],
        options["nested"]["deeper"][0],
        options["nested"]["deeper"][1]["x"],
    ]
    return options


def write_config(tmp_path: Path, **data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**QUICK, **data}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# searching
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture()
def log_lines() -> Iterator[list[str]]:
    """Every record of the ``sediment_xr`` logger (and its children), formatted."""
    handler = _Records()
    logger = logging.getLogger("sediment_xr")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def local_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (zarr chunks and metadata included), by relative path."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


def bucket_files(fs, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix` in the bucket, by key."""
    fs.invalidate_cache()
    return {key: fs.cat_file(key) for key in fs.find(prefix)}


def leaks(planted: list[str], files: dict[str, bytes], *texts: str) -> list[str]:
    """`secret in where` for each planted secret found in a file's bytes or a text."""
    assert len(set(planted)) == len(planted) > 0
    found = []
    for secret in planted:
        raw = secret.encode()
        found += [f"{secret} in {name}" for name, data in files.items() if raw in data]
        found += [f"{secret} in message {text[:300]!r}" for text in texts if secret in text]
    return found


def assert_refused_without_secrets(code, out, err, planted, words) -> None:
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    found = leaks(planted, {}, err)
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------------------------
# finished runs
def test_secrets_of_options_and_input_url_reach_no_file_message_or_log_of_a_local_run(
    tmp_path, http, capsys, log_lines
):
    """Weakness: redaction by key words let ``foo``, ``connection_string``, headers, nested
    options and URL user-info or signatures through to config.resolved.yaml, the cube's
    attributes, report.html, item.json, the warnings and the stage messages."""
    planted: list[str] = []
    address, password = http
    output = tmp_path / "out"
    cfg = write_config(
        tmp_path,
        input=secret_url(address, password, planted),
        output=str(output),
        storage_options=unused_options(planted),
        input_storage_options=http_options(planted),
    )
    code, out, err = run(["run", str(cfg)], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    # the broken frame is named in a warning that names the input (without its secrets)
    warned = [line for line in err.split("\n") if line.startswith(WARNING)]
    assert any("cannot be decoded" in line and address in line for line in warned), err
    files = local_files(output)
    for name in ("config.resolved.yaml", "report.html", "item.json", "cover.parquet"):
        assert name in files
    assert "cube.zarr/zarr.json" in files and "segmented.mp4" in files
    found = leaks(planted, files, out, err, *log_lines)
    assert not found, "\n".join(found)
    # what is left says where the input was, and that something was there
    resolved = yaml.safe_load(files["config.resolved.yaml"])
    assert resolved["input"].startswith("http://") and address in resolved["input"]
    assert set(resolved["input_storage_options"]["headers"]) == {"X-Api-Key"}


def test_secrets_of_options_and_input_url_reach_no_object_of_an_s3_output(
    tmp_path, http, s3, capsys, log_lines
):
    """Weakness: the output's own storage options (s3fs credentials, a session token in
    ``client_kwargs``, an ``Authorization`` header, an Azure ``connection_string``) were
    written into the bucket they give access to, and the input URL's signature with them."""
    fs, endpoint = s3
    planted: list[str] = []
    address, password = http
    output = f"s3://{BUCKET}/run"
    cfg = write_config(
        tmp_path,
        ingest={**QUICK["ingest"], "chunk_frames": 8},  # fewer objects: moto is slow
        report={"html": True, "video": False},
        input=secret_url(address, password, planted),
        output=output,
        storage_options=unused_options(planted),
        input_storage_options=http_options(planted),
        output_storage_options=s3_options(endpoint, planted),
    )
    code, out, err = run(["run", str(cfg)], capsys)
    assert code == 0, err
    assert out.strip() == output
    files = bucket_files(fs, f"{BUCKET}/run")
    for name in ("config.resolved.yaml", "report.html", "item.json", "cover.parquet"):
        assert f"{BUCKET}/run/{name}" in files
    assert f"{BUCKET}/run/cube.zarr/zarr.json" in files
    found = leaks(planted, files, out, err, *log_lines)
    assert not found, "\n".join(found)
    # the endpoint's host stays (it is where the data went), the credentials do not
    resolved = yaml.safe_load(files[f"{BUCKET}/run/config.resolved.yaml"])
    kept = resolved["output_storage_options"]
    assert kept["client_kwargs"]["endpoint_url"] == endpoint
    assert set(kept) == {"key", "secret", "token", "client_kwargs", "config_kwargs"} | {
        "skip_instance_cache"
    }
    assert kept["key"] == kept["token"] == kept["config_kwargs"]["user_agent_extra"] == "***"
    assert kept["client_kwargs"]["region_name"] == "us-east-1"
    assert set(resolved["storage_options"]["headers"]) == {"Authorization"}


# --------------------------------------------------------------------------------------------
# refused runs
def test_missing_input_url_is_named_without_its_credentials_or_signature(tmp_path, http, capsys):
    """Weakness: the refusal of an input that is not there repeated the URL as given,
    user-info and presigned query included."""
    planted: list[str] = []
    address, password = http
    cfg = write_config(
        tmp_path,
        input=secret_url(address, password, planted, "missing.avi"),
        output=str(tmp_path / "out"),
        input_storage_options=http_options(planted),
    )
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused_without_secrets(code, out, err, planted, ["missing.avi"])


def test_missing_output_bucket_is_named_without_the_credentials_in_its_url(
    tmp_path, http, s3, capsys
):
    """Weakness: credentials written as a URL's user-info (``s3://key:secret@bucket``)
    came back in the refusal of the output."""
    _, endpoint = s3
    planted: list[str] = []
    address, password = http
    key, secret = token(), token()
    planted += [key, secret]
    cfg = write_config(
        tmp_path,
        input=secret_url(address, password, planted),
        output=f"s3://{key}:{secret}@no-such-bucket/run",
        input_storage_options=http_options(planted),
        output_storage_options=s3_options(endpoint, planted),
    )
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused_without_secrets(code, out, err, planted, ["output s3://"])


def test_refused_model_url_is_named_without_its_credentials_or_signature(tmp_path, http, capsys):
    """Weakness: a refused setting (a cluster.model that is not there) echoed its URL with
    the password and the signature."""
    planted: list[str] = []
    address, password = http
    cfg = write_config(
        tmp_path,
        input=secret_url(address, password, planted),
        output=str(tmp_path / "out"),
        input_storage_options=http_options(planted),
        cluster={**QUICK["cluster"], "model": secret_url(address, password, planted, "m.json")},
    )
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused_without_secrets(code, out, err, planted, ["m.json"])


# --------------------------------------------------------------------------------------------
# the Python API: the same redaction without the command line
def test_python_error_names_the_url_without_its_credentials_or_signature(http):
    """Weakness: a notebook user's error (no command line to clean it) showed the URL's
    password and signature; the message is redacted when the error is made."""
    import sediment_xr as sx

    planted: list[str] = []
    address, password = http
    url = secret_url(address, password, planted, "missing.avi")
    with pytest.raises(sx.InputError) as caught:
        sx.open_frames(url)
    message = str(caught.value)
    assert f"http://***@{address}/missing.avi?X-Amz-Credential=***" in message
    found = leaks(planted, {}, message, repr(caught.value))
    assert not found, "\n".join(found)


def test_history_of_frames_read_from_a_url_holds_no_credentials(http):
    """Weakness: the ``history`` attribute of frames opened from a URL kept its user-info
    (only the query was dropped), and it is written wherever the frames are saved.
    (``source`` and ``source_files`` keep the URL: the run reads the files through them.)"""
    import sediment_xr as sx

    planted: list[str] = []
    address, password = http
    url = secret_url(address, password, planted)
    frames = sx.open_frames(url, start_time="2022-06-01", frame_interval="1h")
    assert f"http://***@{address}/video.avi" in frames.attrs["history"]
    found = leaks(planted, {"history": frames.attrs["history"].encode()})
    assert not found, "\n".join(found)


def test_redacted_config_keeps_keys_and_only_harmless_values():
    """Weakness: values were redacted by the words of their keys, so ``foo``, ``profile``
    or a nested ``endpoint_url`` with credentials were written as given; now every value is
    redacted but switches, numbers and names under a few structural keys, and the
    endpoint's host."""
    from sediment_xr.config import Config, redacted_dict

    planted = [token(), token(), token(), token()]
    config = Config(
        input="in.mp4",
        output="out",
        storage_options={
            "anon": True,
            "foo": planted[0],
            "profile": planted[1],
            "client_kwargs": {
                "endpoint_url": f"https://minio:{planted[2]}@minio.example:9000/x?k={planted[3]}",
                "region_name": "eu-west-1",
            },
            "config_kwargs": {"connect_timeout": 60, "retries": {"max_attempts": 1}},
            "default_cache_type": "none",
            "anon_list": [True, None],
        },
    )
    assert redacted_dict(config)["storage_options"] == {
        "anon": True,
        "foo": "***",
        "profile": "***",
        "client_kwargs": {
            "endpoint_url": "https://minio.example:9000",
            "region_name": "eu-west-1",
        },
        "config_kwargs": {"connect_timeout": 60, "retries": {"max_attempts": 1}},
        "default_cache_type": "none",
        "anon_list": [True, None],
    }


def test_urls_of_a_config_lose_user_info_and_query_values_but_keep_globs():
    """Weakness: ``cluster.model`` and ``cluster.reference`` URLs (a versioned object, an
    Azure SAS ``sv=...&sig=...``) were written with their query; a glob's ``?`` is no query
    and stays."""
    from sediment_xr.config import ClusterConfig, Config, dump_config, redacted_dict

    planted = [token(), token(), token()]
    config = Config(
        input="s3://bucket/frames/img_??.jpg",
        output=f"s3://bucket/run?versionId={planted[0]}",
        cluster=ClusterConfig(
            reference=f"https://acct.blob.core.windows.net/c/model.json?sv=2024-01-01&sig={planted[1]}",
        ),
        input_storage_options={"account_key": planted[2]},
    )
    data = redacted_dict(config)
    assert data["input"] == "s3://bucket/frames/img_??.jpg"
    assert data["output"] == "s3://bucket/run?versionId=***"
    assert data["cluster"]["reference"] == (
        "https://acct.blob.core.windows.net/c/model.json?sv=***&sig=***"
    )
    found = leaks(planted, {"config.resolved.yaml": dump_config(config).encode()})
    assert not found, "\n".join(found)


def test_run_name_from_an_output_url_holds_no_signature_or_user_info():
    """Weakness: a run named after its output folder took the URL's query or user-info
    into the ``run`` column of cover.parquet and the id of item.json."""
    from sediment_xr.config import Config

    secret = token()
    names = [
        Config(input="in.mp4", output=url).run_name
        for url in (
            f"s3://bucket/run?versionId={secret}",
            f"https://camera:{secret}@host/runs/run/",
            f"s3://key:{secret}@bucket",
            "results/run",
        )
    ]
    assert names == ["run", "run", "bucket", "run"]
