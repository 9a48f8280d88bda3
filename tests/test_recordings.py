"""Many recordings, one series: a folder, glob or list of videos named by their start times.

Observatory archives (OOI CamHD) keep many video files, each named by the time it starts
(``CAMHDA301-20220101T000000Z.mov``).  Each test writes small real recordings with PyAV and
opens them with :func:`sediment_xr.open_frames` or runs ``sediment-xr run`` on them with
``--scheduler synchronous``; each names the weakness it guards.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import sediment_xr as sx
from sediment_xr.cli import main
from sediment_xr.exceptions import ConfigError, InputError, SedimentXRWarning
from sediment_xr.frames import FRAME_OK, FRAME_UNDECODABLE

ERROR = "sediment-xr: error: "
RUN = ["--scheduler", "synchronous", "--quiet"]
SIZE = 64
RATE = 10  # frames per second of every recording written here
QUICK = {
    "ingest": {"chunk_frames": 2},
    "cluster": {"n_clusters": 3, "sample_size": 2000},
    "report": {"html": False, "video": False},
}


# --------------------------------------------------------------------------------------------
# recordings written at test time
def frames(n: int, seed: int) -> np.ndarray:
    """RGB frames with many colours, different in each recording and each frame."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack(
        [
            np.stack([(x * 3 + 7 * k + 50 * seed) % 256, (y * 5) % 256, np.full_like(x, 30 * k)])
            .transpose(1, 2, 0)
            .astype(np.uint8)
            for k in range(n)
        ]
    )


def recording(path: Path, n: int = 5, seed: int = 0, metadata: dict | None = None) -> Path:
    """A lossless FFV1 (.mkv) or H.264 (other names) recording of `n` frames at 10 fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lossless = path.suffix == ".mkv"
    with av.open(str(path), mode="w") as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream("ffv1" if lossless else "libx264", rate=RATE)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "bgr0" if lossless else "yuv420p"
        if not lossless:
            stream.options = {"crf": "18", "g": "4", "threads": "1"}
        for frame in frames(n, seed):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def mjpeg_avi(path: Path, n: int = 5, seed: int = 0, broken: tuple[int, ...] = ()) -> Path:
    """An MJPEG AVI like the lesson's video; frames at `broken` have their JPEG data zeroed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
        for frame in frames(n, seed):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    assert len(starts) == n
    for k in broken:
        end = data.index(b"\xff\xd9", starts[k]) + 2
        data[starts[k] : end] = bytes(end - starts[k])
    path.write_bytes(bytes(data))
    return path


def camhd(stamp: str, ext: str = "mkv") -> str:
    return f"CAMHDA301-{stamp}Z.{ext}"


def three_recordings(folder: Path, n: int = 5) -> Path:
    """Three recordings half an hour apart, written in another order than their times."""
    for seed, stamp in ((2, "20220101T010000"), (0, "20220101T000000"), (1, "20220101T003000")):
        recording(folder / camhd(stamp), n=n, seed=seed)
    return folder


def expected_times(starts: list[str], offsets_s: list[float]) -> np.ndarray:
    return np.array(
        [pd.Timestamp(s) + pd.Timedelta(seconds=o) for s in starts for o in offsets_s],
        dtype="datetime64[ns]",
    )


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_config(tmp_path: Path, input_path, **ingest) -> Path:
    data = {"input": input_path, "output": str(tmp_path / "out"), **QUICK}
    data["ingest"] = {**QUICK["ingest"], **ingest}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def assert_refused(code: int, out: str, err: str, words: list[str]) -> str:
    """One error line naming the problem and the fix, exit 2, no traceback."""
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


# --------------------------------------------------------------------------------------------
# one series
def test_folder_of_three_recordings_is_one_series_in_time_order(tmp_path):
    """Weakness: a folder of videos was read as a folder of stills (no images found)."""
    folder = three_recordings(tmp_path / "archive")
    arr = sx.open_frames(folder, chunk_frames=2)
    starts = ["2022-01-01T00:00", "2022-01-01T00:30", "2022-01-01T01:00"]
    np.testing.assert_array_equal(
        arr["time"].values, expected_times(starts, [0, 0.1, 0.2, 0.3, 0.4])
    )
    names = [camhd(s) for s in ("20220101T000000", "20220101T003000", "20220101T010000")]
    assert arr["file"].values.tolist() == [name for name in names for _ in range(5)]
    assert arr["frame"].values.tolist() == [0, 1, 2, 3, 4] * 3
    assert arr["time"].attrs["time_source"] == "file_name+stream"
    assert arr.chunks[0] == (2,) * 7 + (1,)  # regular chunks, as the run's stores need
    loaded = arr.compute()
    assert (loaded["frame_status"].values == FRAME_OK).all()
    for name in names:  # the same pixels as each file opened alone
        alone = sx.open_video(folder / name, start_time="2022-01-01", frame_interval="1s").values
        np.testing.assert_array_equal(loaded.where(loaded.file == name, drop=True).values, alone)


def test_start_times_from_camhd_and_stills_names_and_the_container(tmp_path):
    """Weakness: a recording's start came only from one name pattern, or not at all."""
    files = [
        recording(tmp_path / "CAMHDA301-20220101T000000Z.mp4", n=3),
        recording(tmp_path / "CAMDSB106_10.33.9.6_20220101T003000_UTC.mkv", n=3, seed=1),
        recording(
            tmp_path / "dive.mkv", n=3, seed=2, metadata={"creation_time": "2022-01-01T01:00:00Z"}
        ),
    ]
    arr = sx.open_frames([str(f) for f in reversed(files)])
    starts = ["2022-01-01T00:00", "2022-01-01T00:30", "2022-01-01T01:00"]
    np.testing.assert_array_equal(arr["time"].values, expected_times(starts, [0, 0.1, 0.2]))
    assert arr["file"].values.tolist()[::3] == [f.name for f in files]
    assert arr["time"].attrs["time_source"] == "creation_time+file_name+stream"


def test_glob_of_recordings_is_one_series(tmp_path):
    """Weakness: a glob of videos was taken for a glob of stills."""
    three_recordings(tmp_path / "archive")
    recording(tmp_path / "archive" / camhd("20220102T000000"), n=2, seed=3)
    arr = sx.open_frames(str(tmp_path / "archive" / "*20220101T*.mkv"))
    assert arr.sizes["time"] == 15
    assert len(set(arr["file"].values.tolist())) == 3


def test_recording_without_a_start_time_is_refused_by_name(tmp_path):
    """Weakness: a recording without a time in its name or container was put at 1970."""
    recording(tmp_path / camhd("20220101T000000"))
    recording(tmp_path / "untimed.mkv", seed=1)
    with pytest.raises(InputError, match=r"untimed\.mkv has no start time in its name"):
        sx.open_frames(tmp_path)


def test_start_time_with_recordings_is_refused(tmp_path):
    """Weakness: start_time was silently ignored (or overrode every file's own start)."""
    three_recordings(tmp_path)
    with pytest.raises(ConfigError, match="Remove start_time"):
        sx.open_frames(tmp_path, start_time="2022-06-01")


# --------------------------------------------------------------------------------------------
# sampling inside each recording
def test_window_takes_the_same_offsets_in_every_recording(tmp_path):
    """Weakness: a time window inside each recording could not be asked for."""
    folder = three_recordings(tmp_path)
    arr = sx.open_frames(folder, window=["00:00:00.1", "00:00:00.4"])
    starts = ["2022-01-01T00:00", "2022-01-01T00:30", "2022-01-01T01:00"]
    np.testing.assert_array_equal(arr["time"].values, expected_times(starts, [0.1, 0.2, 0.3]))
    assert arr["frame"].values.tolist() == [1, 2, 3] * 3
    sampled = sx.open_frames(folder, window=[0.1, 0.5], fps=5)
    np.testing.assert_array_equal(sampled["time"].values, expected_times(starts, [0.1, 0.3]))


def test_window_that_some_recordings_miss_leaves_them_out_with_a_warning(tmp_path):
    """Weakness: a short recording without a frame in the window vanished without a word."""
    three_recordings(tmp_path)
    recording(tmp_path / camhd("20220101T013000"), n=2, seed=3)
    with pytest.warns(SedimentXRWarning, match="1 of the 4 recordings"):
        arr = sx.open_frames(tmp_path, window=[0.3, 0.5])
    assert arr.sizes["time"] == 6
    assert camhd("20220101T013000") not in arr["file"].values


def test_window_config_end_before_start_is_refused_in_one_line(tmp_path, capsys):
    """Weakness: a window whose end is not after its start gave an empty series."""
    three_recordings(tmp_path / "archive")
    config = write_config(tmp_path, str(tmp_path / "archive"), window=["00:05:10", "00:05:00"])
    code, out, err = run(["run", str(config)], capsys)
    assert_refused(code, out, err, ["ingest.window", "end after its start", "00:05:00"])
    assert not (tmp_path / "out").exists()


def test_window_outside_every_recording_is_refused_in_one_line(tmp_path, capsys):
    """Weakness: a window past the end of every recording gave an empty series."""
    three_recordings(tmp_path / "archive")
    config = write_config(tmp_path, str(tmp_path / "archive"), window=["00:05:00", "00:05:10"])
    code, out, err = run(["run", str(config)], capsys)
    assert_refused(code, out, err, ["ingest.window", "holds no frame", "00:00:00.4"])
    assert not (tmp_path / "out").exists()


def test_window_on_a_single_video_is_refused(tmp_path):
    """Weakness: a window given for one video was silently ignored."""
    video = recording(tmp_path / "one.mkv")
    with pytest.raises(ConfigError, match="list of one recording"):
        sx.open_frames(video, window=[0, 1])


# --------------------------------------------------------------------------------------------
# duplicates and overlaps
def test_two_recordings_with_the_same_start_are_refused_with_both_names(tmp_path, capsys):
    """Weakness: two files of the same start made repeated times (or one hid the other)."""
    three_recordings(tmp_path / "archive")
    recording(tmp_path / "archive" / camhd("20220101T003000", "mp4"), seed=4)
    config = write_config(tmp_path, str(tmp_path / "archive"))
    code, out, err = run(["run", str(config)], capsys)
    words = [camhd("20220101T003000"), camhd("20220101T003000", "mp4"), "both start at"]
    assert_refused(code, out, err, words)


def test_recording_running_past_the_next_start_is_refused_with_both_names(tmp_path):
    """Weakness: frames of two overlapping recordings were interleaved without a word."""
    first = recording(tmp_path / camhd("20220101T000000"), n=30)  # 2.9 s long
    second = recording(tmp_path / camhd("20220101T000002"), seed=1)
    with pytest.raises(InputError) as caught:
        sx.open_frames([str(first), str(second)])
    message = str(caught.value)
    assert first.name in message and second.name in message and "past the start" in message
    assert "\n" not in message


def test_same_file_twice_in_a_list_is_refused(tmp_path):
    """Weakness: a file listed twice doubled its frames."""
    first = recording(tmp_path / camhd("20220101T000000"))
    with pytest.raises(InputError, match="given twice"):
        sx.open_frames([str(first), str(first)])


# --------------------------------------------------------------------------------------------
# damage and formats
def test_damaged_file_among_good_ones_is_refused_by_name(tmp_path, capsys):
    """Weakness: one damaged recording failed the run with a traceback, or was dropped.

    As for a single video, a file that cannot be opened refuses the input, naming it; frames
    that fail inside a good file are marked instead (next test).
    """
    folder = three_recordings(tmp_path / "archive")
    bad = folder / camhd("20220101T020000", "mp4")
    bad.write_bytes(b"<html>404 Not Found</html>" * 40)
    config = write_config(tmp_path, str(folder))
    code, out, err = run(["run", str(config)], capsys)
    assert_refused(code, out, err, [bad.name, "cannot be opened by FFmpeg"])
    assert not (tmp_path / "out").exists()


def test_damaged_frames_in_one_recording_are_marked_undecodable(tmp_path):
    """Weakness: a frame damaged in one recording stopped the series or went unmarked."""
    three_recordings(tmp_path)
    mjpeg_avi(tmp_path / camhd("20220101T013000", "avi"), seed=3, broken=(2,))
    arr = sx.open_frames(tmp_path, chunk_frames=3)
    status = arr["frame_status"].values
    damaged = (arr["file"].values == camhd("20220101T013000", "avi")) & (arr["frame"] == 2)
    assert status[damaged].tolist() == [FRAME_UNDECODABLE]
    assert (status[~damaged] == FRAME_OK).all()


def test_mjpeg_avi_is_one_of_the_recordings(tmp_path):
    """Weakness: the lesson's own format (MJPEG in AVI) was not taken among recordings."""
    three_recordings(tmp_path)
    avi = mjpeg_avi(tmp_path / camhd("20220101T013000", "avi"), seed=3)
    arr = sx.open_frames(tmp_path, chunk_frames=4)
    assert arr["file"].values.tolist()[-5:] == [avi.name] * 5
    np.testing.assert_array_equal(
        arr["time"].values[-5:], expected_times(["2022-01-01T01:30"], [0, 0.1, 0.2, 0.3, 0.4])
    )
    alone = sx.open_video(avi, start_time="2022-01-01", frame_interval="1s").values
    np.testing.assert_array_equal(arr.values[-5:], alone)


# --------------------------------------------------------------------------------------------
# the command line, end to end
def test_cli_runs_a_folder_of_three_recordings_end_to_end(tmp_path, capsys):
    """Weakness: the run could not take many recordings, or lost where each frame came from."""
    folder = three_recordings(tmp_path / "archive")
    config = write_config(tmp_path, str(folder), window=["00:00:00.1", "00:00:00.4"])
    code, out, err = run(["run", str(config)], capsys)
    assert code == 0, err
    assert (out.strip(), err) == (str(tmp_path / "out"), "")
    starts = ["2022-01-01T00:00", "2022-01-01T00:30", "2022-01-01T01:00"]
    times = expected_times(starts, [0.1, 0.2, 0.3])
    names = [camhd(s) for s in ("20220101T000000", "20220101T003000", "20220101T010000")]
    cover = pd.read_csv(tmp_path / "out" / "cover.csv")
    assert cover["time"].tolist() == [str(t)[:23] for t in times]
    assert cover["file"].tolist() == [name for name in names for _ in range(3)]
    assert cover["frame"].tolist() == [1, 2, 3] * 3
    assert cover[["cluster_0", "cluster_1", "cluster_2"]].notna().all().all()
    cube = xr.open_zarr(tmp_path / "out" / "cube.zarr", zarr_format=3, consolidated=False)
    np.testing.assert_array_equal(cube["time"].values, times)
    assert cube["file"].values.tolist() == cover["file"].tolist()
    assert (cube["frame_status"].values == FRAME_OK).all()
    long = pd.read_parquet(tmp_path / "out" / "cover.parquet")
    assert set(long["file"]) == set(names)


def test_cli_takes_a_list_of_recordings_relative_to_the_config(tmp_path, capsys):
    """Weakness: a config's input could only be one path, not a list of recordings."""
    three_recordings(tmp_path / "archive")
    listed = [f"archive/{camhd(s)}" for s in ("20220101T010000", "20220101T000000")]
    config = write_config(tmp_path, listed, window=[0.2, 0.4])
    code, out, err = run(["run", str(config)], capsys)
    assert code == 0, err
    assert (out.strip(), err) == (str(tmp_path / "out"), "")
    cover = pd.read_csv(tmp_path / "out" / "cover.csv")
    starts = ["2022-01-01T00:00", "2022-01-01T01:00"]
    assert cover["time"].tolist() == [str(t)[:23] for t in expected_times(starts, [0.2, 0.3])]
    assert cover["file"].tolist()[::2] == [camhd("20220101T000000"), camhd("20220101T010000")]
    resolved = yaml.safe_load((tmp_path / "out" / "config.resolved.yaml").read_text())
    assert resolved["input"] == [str(tmp_path / name) for name in listed]


def test_list_input_inside_the_output_folder_is_refused(tmp_path, capsys):
    """Weakness: the output-folder checks looked at a single input only."""
    folder = three_recordings(tmp_path / "out" / "segmented")
    listed = [str(p) for p in sorted(folder.iterdir())]
    config = write_config(tmp_path, listed)
    code, out, err = run(["run", str(config)], capsys)
    assert_refused(code, out, err, ["segmented of the output folder", listed[0]])


def test_example_camhd_config_parses(tmp_path):
    """Weakness: the example config of an archive of recordings could rot unread."""
    from sediment_xr.config import load_config

    path = Path(__file__).parents[1] / "configs" / "camhd_recordings.yaml"
    config = load_config(path)
    assert config.input == str(path.parents[1] / "data" / "camhd")
    assert config.ingest.window == ("00:05:00", "00:05:10")
    assert config.ingest.fps == 1
