"""Provenance: CF ``history`` lines and the versions of the packages a result came from."""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = [
    "PACKAGES",
    "append_history",
    "call_repr",
    "coverage_attrs",
    "history_line",
    "package_versions",
]

#: Packages whose versions a run records (report, provenance).
PACKAGES = (
    "sediment_xr",
    "numpy",
    "xarray",
    "dask",
    "distributed",
    "zarr",
    "scikit-learn",
    "dask-ml",
    "opencv-python-headless",
    "av",
    "statsmodels",
    "hvplot",
    "bokeh",
)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_line(text: str) -> str:
    """One CF ``history`` line: an ISO 8601 UTC timestamp, the package and what was done.

    The text is redacted (:func:`sediment_xr._redact.redact`): a URL it names keeps no
    user-info and no query values.
    """
    from sediment_xr._redact import redact

    return f"{_utc_now()} sediment_xr: {redact(text)}"


def coverage_attrs(times: Any) -> dict[str, str]:
    """ACDD attributes of a finished result: time coverage of its frames, date created.

    Parameters
    ----------
    times : array-like of datetime64
        The frames' times (UTC); NaT are ignored.

    Returns
    -------
    dict
        ``time_coverage_start``, ``time_coverage_end`` (ISO 8601, when there are times) and
        ``date_created`` (now).
    """
    import numpy as np

    valid = np.asarray(times, dtype="datetime64[s]")
    valid = valid[~np.isnat(valid)]
    attrs = {"date_created": _utc_now()}
    if len(valid):
        attrs["time_coverage_start"] = f"{valid.min()}Z"
        attrs["time_coverage_end"] = f"{valid.max()}Z"
    return attrs


def append_history(attrs: dict[str, Any], text: str) -> dict[str, Any]:
    """Return a copy of ``attrs`` with a :func:`history_line` of ``text`` appended."""
    out = dict(attrs)
    previous = out.get("history", "")
    line = history_line(text)
    out["history"] = f"{previous}\n{line}" if previous else line
    return out


def call_repr(func: str, source: str, **options: Any) -> str:
    """``func('source', key=value, ...)`` for a history line.

    Storage options are never shown, nor a URL's query (a presigned URL's signature) or
    user-info; the options' values are redacted too (:func:`sediment_xr._redact.redact`).
    """
    from sediment_xr._fs import without_query
    from sediment_xr._redact import redact

    parts = [repr(redact(without_query(source)) if isinstance(source, str) else source)]
    for key, value in options.items():
        if not isinstance(value, str | int | float | tuple | list | type(None)):
            value = str(value)
        parts.append(f"{key}={redact(value) if isinstance(value, str) else value!r}")
    return f"{func}({', '.join(parts)})"


def package_versions() -> dict[str, str]:
    """Installed version of each of :data:`PACKAGES` (``not installed`` when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
