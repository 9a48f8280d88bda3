"""A per-time-chunk map that hands each task its blocks as they are, without copying them.

``xr.apply_ufunc(..., dask="parallelized")`` treats core dimensions as contracted: dask then
wraps every input block in ``concatenate_axes``, which copies it into a new array even when
the core dimensions are a single chunk. Our frames are chunked along ``time`` only, so those
copies (a window of frames read by three kernels, a 32 MiB colour table per chunk) were about
5 % of a worker's time. :func:`apply_per_chunk` builds the same graph with
``concatenate=False``: a task receives the one block of each core dimension as a list of one,
which is unwrapped, not copied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

__all__ = ["apply_per_chunk", "one_block"]


def apply_per_chunk(
    func: Callable[..., np.ndarray],
    *args: xr.DataArray,
    input_core_dims: Sequence[Sequence[str]],
    output_core_dims: Sequence[str],
    dtype: Any,
    output_sizes: Mapping[str, int] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    keep_attrs: bool = False,
) -> xr.DataArray:
    """``xr.apply_ufunc`` of a numpy kernel, one task per time chunk for dask inputs.

    Parameters
    ----------
    func : callable
        ``func(*blocks, **kwargs)`` on numpy arrays whose core dimensions are last, with at
        most ``time`` before them; returns ``(time, *output_core_dims)``.
    *args : xarray.DataArray
        Arrays with a ``time`` dimension, or without one (e.g. a colour table).
    input_core_dims : sequence of sequence of str
        Core dimensions of each argument; every dimension but ``time``.
    output_core_dims : sequence of str
        The result's dimensions after ``time``.
    dtype : numpy dtype
        The result's dtype.
    output_sizes : mapping of str to int, optional
        Sizes of output core dimensions that no input has.
    kwargs : mapping, optional
        Keyword arguments of `func`.
    keep_attrs : bool, default False
        Passed to :func:`xarray.apply_ufunc`.

    Returns
    -------
    xarray.DataArray
        Lazy (one task per time chunk) if any argument is; computed otherwise.
    """
    kwargs = dict(kwargs or {})
    cores = [tuple(dims) for dims in input_core_dims]
    out_core = tuple(output_core_dims)
    sizes = dict(output_sizes or {})

    def dispatch(*data: Any) -> Any:
        if not any(isinstance(d, da.Array) for d in data):
            return func(*data, **kwargs)
        return _blockwise(func, data, cores, out_core, dtype, sizes, kwargs)

    return xr.apply_ufunc(
        dispatch,
        *args,
        input_core_dims=[list(c) for c in cores],
        output_core_dims=[list(out_core)],
        dask="allowed",
        keep_attrs=keep_attrs,
    )


def _blockwise(
    func: Callable[..., np.ndarray],
    data: Sequence[Any],
    cores: Sequence[tuple[str, ...]],
    out_core: tuple[str, ...],
    dtype: Any,
    sizes: dict[str, int],
    kwargs: dict[str, Any],
) -> da.Array:
    """The dask graph: the leading axis is ``time``; core axes are whole single chunks."""
    pairs: list[Any] = []
    known: dict[str, int] = {}
    for array, core in zip(data, cores, strict=True):
        array = da.asarray(array)
        lead = array.ndim - len(core)
        if lead not in (0, 1):
            raise ValueError(f"{func.__name__}: an argument has {lead} non-core dimensions")
        whole = {axis: -1 for axis in range(lead, array.ndim)}
        array = array.rechunk(whole) if whole else array
        known.update(zip(core, array.shape[lead:], strict=True))
        pairs += [array, ("time", *core)[1 - lead :]]
    new_axes = {d: sizes[d] for d in out_core if d not in known}
    return da.blockwise(
        functools.partial(_unwrapped, func),
        ("time", *out_core),
        *pairs,
        token=getattr(func, "__name__", "apply").strip("_").replace("_", "-"),
        concatenate=False,
        new_axes=new_axes,
        dtype=dtype,
        meta=np.empty((0,) * (1 + len(out_core)), dtype),
        **kwargs,
    )


def _unwrapped(func: Callable[..., np.ndarray], *blocks: Any, **kwargs: Any) -> np.ndarray:
    """Call ``func`` on the blocks; a contracted core axis comes as a list of one block."""
    return func(*(one_block(b) for b in blocks), **kwargs)


def one_block(block: Any) -> Any:
    """The block of a contracted axis that has one chunk (dask passes a list of one)."""
    while isinstance(block, list):
        if len(block) != 1:
            raise ValueError(f"expected one block of a core dimension, got {len(block)}")
        block = block[0]
    return block
