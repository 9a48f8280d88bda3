"""The ``.sediment`` xarray accessor: the pipeline's functions as methods, for chaining.

>>> cover = (frames.sediment.preprocess(rows=[-400, None])   # doctest: +SKIP
...                .sediment.label(model)
...                .sediment.cover())

Every method forwards to the plain function of the same name (the source of truth) and
holds no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from sediment_xr import cluster, coverage, preprocess

__all__ = ["SedimentAccessor"]


@xr.register_dataarray_accessor("sediment")
class SedimentAccessor:
    """Pipeline steps as methods of a DataArray (``da.sediment.<step>(...)``)."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def crop(self, **kwargs: Any) -> xr.DataArray:
        """See :func:`sediment_xr.crop`."""
        return preprocess.crop(self._obj, **kwargs)

    def enhance(self, **kwargs: Any) -> xr.DataArray:
        """See :func:`sediment_xr.enhance`."""
        return preprocess.enhance(self._obj, **kwargs)

    def preprocess(self, **kwargs: Any) -> xr.DataArray:
        """See :func:`sediment_xr.preprocess`."""
        return preprocess.preprocess(self._obj, **kwargs)

    def sample_pixels(self, **kwargs: Any):
        """See :func:`sediment_xr.sample_pixels` (computes)."""
        return cluster.sample_pixels(self._obj, **kwargs)

    def label(self, model: cluster.ClusterModel) -> xr.DataArray:
        """See :func:`sediment_xr.label`."""
        return cluster.label(self._obj, model)

    def cover(self, **kwargs: Any) -> xr.DataArray:
        """See :func:`sediment_xr.cover`."""
        return coverage.cover(self._obj, **kwargs)

    def merge_classes(self, classes: Mapping[str, Sequence[int]]) -> xr.DataArray:
        """See :func:`sediment_xr.merge_classes`."""
        return coverage.merge_classes(self._obj, classes)
