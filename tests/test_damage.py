"""Damage to the chunks of a finished output: refused in one line, and recovered by a rerun.

Each case copies one finished output of the real command line (``--scheduler synchronous``),
damages one chunk file of it as a failing disk, a partial copy or a hand edit would, and
checks what the project promises (``sediment_xr.results`` and ``sediment_xr.store``
docstrings): a damaged cube never reads as other numbers, the refusal is one line naming
the damaged file and its fix, and following that fix gives back the uninterrupted result.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from sediment_xr.cli import main
from sediment_xr.exceptions import OutputError
from sediment_xr.results import open_results
from sediment_xr.store import DamagedOutputError
from sediment_xr.testing import synthetic_series, write_video

N_FRAMES = 8
CHUNK = 2


def run(config: Path, out: Path, *extra: str) -> tuple[int, str]:
    """``sediment-xr run`` in this process: exit code and stderr."""
    argv = ["run", str(config), "--set", f"output={out}", "--scheduler", "synchronous", "--quiet"]
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main([*argv, *extra])
    return code, stderr.getvalue()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """A finished output, its config and what it reads as."""
    root = tmp_path_factory.mktemp("damage")
    series = synthetic_series(N_FRAMES, size=64, start_cover=20.0, slope=2.0, seed=3)
    video = write_video(series["frames"], root / "series.mkv", codec="ffv1")
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": str(video),
                "output": str(root / "unused"),
                "ingest": {"start_time": "2022-06-01", "frame_interval": "1h", "chunk_frames": 2},
                "preprocess": {"crop": {"rows": [-series.attrs["crop_rows"], None]}},
                "cluster": {"n_clusters": 3, "sample_size": 2000, "n_refits": 2},
                "report": {"html": False, "video": False},
            }
        )
    )
    out = root / "finished"
    code, err = run(config, out)
    assert code == 0, err
    cube = open_results(str(out))
    return {
        "config": config,
        "out": out,
        "labels": cube["labels"].values,
        "cover": cube["cover"].values,
    }


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished["out"], out)
    return out


def garble(path: Path) -> None:
    """Flip 8 bytes in the middle of a file."""
    data = path.read_bytes()
    start = len(data) // 2
    path.write_bytes(
        data[:start] + bytes(b ^ 0xFF for b in data[start : start + 8]) + data[start + 8 :]
    )


def test_every_array_of_the_cube_and_of_the_staged_series_has_a_checksum(copy):
    """Weakness: the chunks carried no checksum, so changed bytes read as other numbers."""
    folders = [copy / "cube.zarr", copy / ".sediment_xr" / "by_chunk.zarr"]
    unchecked = []
    for meta_file in (p for folder in folders for p in folder.glob("*/zarr.json")):
        meta = json.loads(meta_file.read_text())
        codecs = json.dumps(meta.get("codecs"))
        if meta.get("node_type") == "array" and meta["data_type"] != "string":
            if "crc32c" not in codecs:
                unchecked.append(meta_file.parent.name)
    assert not unchecked


def test_truncated_cover_chunk_is_refused_at_open_in_one_line(copy, finished):
    """Weakness: a cover chunk cut short opened as finished, then raised a raw zstd error
    (a traceback) when read."""
    chunk = copy / "cube.zarr" / "cover" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.raises(DamagedOutputError, match=r"cube\.zarr/cover cannot be read") as info:
        open_results(str(copy))
    assert (
        "\n" not in str(info.value)
        and "run the same `sediment-xr run` again" in str(info.value).lower()
    )
    code, err = run(finished["config"], copy)  # the fix the message gives
    assert code == 0, err
    np.testing.assert_array_equal(open_results(str(copy))["cover"].values, finished["cover"])


def test_emptied_labels_shard_is_refused_at_open_and_a_rerun_recomputes_it(copy, finished):
    """Weakness: an emptied labels shard opened as finished (labels read as no data or a raw
    codec error), and a rerun trusted the chunk's mark and never wrote it again."""
    shard = copy / "cube.zarr" / "labels" / "c" / "1" / "0" / "0"
    shard.write_bytes(b"")
    with pytest.raises(OutputError, match=r"cube\.zarr/labels/c/1/0/0.*missing or empty") as info:
        open_results(str(copy))
    assert "\n" not in str(info.value)
    code, err = run(finished["config"], copy)
    assert code == 0, err
    np.testing.assert_array_equal(open_results(str(copy))["labels"].values, finished["labels"])


def test_garbled_labels_shard_read_raises_one_line_naming_the_shard(copy, finished):
    """Weakness: 8 garbled bytes in a labels shard read as other labels (or a raw codec error
    on read), with no file named and no way back short of recomputing everything."""
    shard = copy / "cube.zarr" / "labels" / "c" / "2" / "0" / "0"
    garble(shard)
    cube = open_results(str(copy))  # the labels are not read at open: the read says it
    with pytest.raises(
        DamagedOutputError, match=r"cube\.zarr/labels/c/2/0/0 cannot be read"
    ) as info:
        cube["labels"].values  # noqa: B018
    assert "\n" not in str(info.value) and "Delete that file" in str(info.value)
    shard.unlink()  # the fix the message gives
    code, err = run(finished["config"], copy)
    assert code == 0, err
    np.testing.assert_array_equal(open_results(str(copy))["labels"].values, finished["labels"])


def test_deleted_staged_cover_chunk_is_recomputed_not_gathered_as_no_data(copy, finished):
    """Weakness: a rerun gathered the by-chunk cover into the cube without checking it: a
    deleted staged chunk (read as NaN) would become a finished cube's cover."""
    (copy / ".sediment_xr" / "by_chunk.zarr" / "cover" / "c" / "3" / "0").unlink()
    code, err = run(finished["config"], copy)
    assert code == 0, err
    np.testing.assert_array_equal(open_results(str(copy))["cover"].values, finished["cover"])
