"""Frames and times are right or refused, and the work is bounded (issue 14).

Each test names the weakness it guards.  Inputs are real files written at test time (short
videos written with PyAV, stills, configs); refusals go through the real command line
(``sediment_xr.cli.main`` with ``--scheduler synchronous``) and must give one line on stderr,
``sediment-xr: error: ...``, naming the problem, what was seen and the fix, with exit code 2
and no traceback.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_bad_input import (
    RUN,
    assert_refused,
    frames,
    good_video,
    write_config,
    write_png,
)

from sediment_xr.cli import main
from sediment_xr.exceptions import ConfigError
from sediment_xr.timeaxis import parse_frame_interval


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([*argv, *RUN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------
# times
def test_times_next_to_the_datetime64_limit_are_refused_not_a_traceback(tmp_path, capsys):
    """Weakness: frames a few hours before 2262-04-11 were taken, and the trend's resampling
    then overflowed after the whole run (a traceback, an unfinished output)."""
    video = good_video(tmp_path / "video.mkv")
    ingest = {"start_time": "2262-04-10T00:00:00", "frame_interval": "1h"}
    cfg = write_config(tmp_path, video, ingest=ingest)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["ingest.start_time", "1678 to 2261"])
    assert not (tmp_path / "out").exists()


def test_frames_run_into_the_limit_are_refused_naming_the_settings(tmp_path, capsys):
    """Weakness: a start well inside the range whose last frames land after 2261 (within
    datetime64[ns], so not wrapped, but too close to its end for the analysis)."""
    video = good_video(tmp_path / "video.mkv")
    ingest = {"start_time": "2261-12-01T00:00:00", "frame_interval": "10D"}
    cfg = write_config(tmp_path, video, ingest=ingest)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(
        code, out, err, ["ingest.start_time", "ingest.frame_interval", "6 frames", "2262-01-20"]
    )


def test_timestamps_in_names_next_to_the_limit_are_refused(tmp_path, capsys):
    """Weakness: stills named with times in 2262 were taken as they are (no start_time)."""
    folder = tmp_path / "stills"
    for hour, image in enumerate(frames(3)):
        write_png(folder / f"CAM_22620405T{hour:02d}0000_UTC.png", image)
    no_times = {"start_time": None, "frame_interval": None, "chunk_frames": 2}
    cfg = write_config(tmp_path, folder, ingest=no_times)
    code, out, err = run(["run", str(cfg)], capsys)
    assert_refused(code, out, err, ["CAM_22620405T000000_UTC.png", "1678 to 2261"])


def test_numpy_timedelta_is_an_interval_with_a_unit():
    """Weakness: np.timedelta64(17, 'h') was refused as "a number without unit"; and one
    too long for datetime64[ns] raised pandas' own error instead of a ConfigError."""
    assert parse_frame_interval(np.timedelta64(17, "h")) == pd.Timedelta(hours=17)
    with pytest.raises(ConfigError, match=r"frame_interval needs .* at most about 292 years"):
        parse_frame_interval(np.timedelta64(10**9, "D"))
