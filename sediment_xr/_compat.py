"""Small helpers shared by the stage modules (not public API)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

try:  # threadpoolctl is a dependency of scikit-learn; keep a safe fallback anyway.
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def is_dask(obj: xr.DataArray | np.ndarray) -> bool:
    """Return True when ``obj`` (or its ``.data``) is a dask array."""
    data = obj.data if isinstance(obj, xr.DataArray) else obj
    return hasattr(data, "dask") and hasattr(data, "chunks") and not isinstance(data, np.ndarray)


def single_threaded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a numpy kernel with OpenCV and BLAS limited to one thread.

    Dask already runs one task per core; letting OpenCV or OpenBLAS start their own thread
    pools inside each task oversubscribes the machine.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import cv2

        cv2.setNumThreads(1)
        if threadpool_limits is None:  # pragma: no cover
            return func(*args, **kwargs)
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    return wrapper


def history_line(text: str) -> str:
    """One CF ``history`` line: an ISO 8601 UTC timestamp, the package and what was done."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{now} sediment_xr: {text}"


def append_history(attrs: dict[str, Any], text: str) -> dict[str, Any]:
    """Return a copy of ``attrs`` with ``text`` appended to its ``history``."""
    out = dict(attrs)
    previous = out.get("history", "")
    line = history_line(text)
    out["history"] = f"{previous}\n{line}" if previous else line
    return out
