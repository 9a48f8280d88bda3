"""The fitted cluster model: a small frozen object, saved as JSON (never pickle).

A :class:`ClusterModel` holds what is needed to label any frame of the same camera: the
centres, their colour space and the preprocessing they were fitted with.  Clusters are
numbered by the brightness of their centre, darkest first, so ids mean the same thing from
one run to the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from typing import Any

import numpy as np

from sediment_xr._fs import is_url, url_to_fs
from sediment_xr._validate import COLOR_SPACES, MAX_CLUSTERS
from sediment_xr.exceptions import ModelError
from sediment_xr.illumination import Illumination
from sediment_xr.preprocess import to_rgb

__all__ = ["MAX_MODEL_BYTES", "ClusterModel"]

_MODEL_FORMAT = "sediment_xr.ClusterModel/1"
#: A model.json holds at most 100 centres and a small reference light (tens of kilobytes).
#: Larger files are not models.
MAX_MODEL_BYTES = 1_000_000
_REFIT = "Refit the model (sediment-xr run --overwrite)."


def _checksum(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class ClusterModel:
    """Fitted colour clusters: what is needed to label any frame of the same camera.

    Attributes
    ----------
    centers : tuple of tuple of float
        Cluster centres in the feature space, shape ``(n_clusters, 3)``, darkest first.
    color_space : str
        Feature space of the centres (see :data:`sediment_xr.preprocess.COLOR_SPACES`).
    preprocess : dict
        Preprocessing the centres were fitted with (crop rows/cols, CLAHE clip limit and
        tile grid size). Apply the model to frames preprocessed the same way.
    random_state, sample_size : int
        Seed and number of sampled pixels of the fit.
    n_frames_sampled : int
        Number of frames the sample was drawn from.
    inertia : float
        Mean squared distance of the sample's pixels to their centre.
    n_epochs : int
        Passes of MiniBatch KMeans over the sample until the centres settled.
    stability : dict, optional
        Bootstrap refits of the fit (:func:`sediment_xr.cluster.refit_stability`):
        ``refit_cover`` (the sample's cover per refit and cluster, clusters matched to these
        centres), ``cover_spread`` (its standard deviation, percentage points) and
        ``center_shift`` (RMS shift of each centre between refits).
    illumination : Illumination, optional
        The light the features were corrected with (``preprocess.illumination: flat_field``):
        the same field and reference light are applied to every frame the model labels.
    """

    centers: tuple[tuple[float, ...], ...]
    color_space: str
    preprocess: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    random_state: int = 0
    sample_size: int = 0
    n_frames_sampled: int = 0
    inertia: float = float("nan")
    n_epochs: int = 0
    illumination: Illumination | None = None
    stability: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        centers = np.asarray(self.centers, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[1] != 3 or not 2 <= len(centers) <= MAX_CLUSTERS:
            raise ModelError(
                f"a cluster model needs 2 to {MAX_CLUSTERS} centres of 3 values, but got shape "
                f"{centers.shape}. {_REFIT}"
            )
        if not np.all(np.isfinite(centers)) or centers.min() < 0 or centers.max() > 255:
            raise ModelError(
                "a cluster model needs finite centres within 0-255, but got "
                f"{centers.round(2).tolist()}. {_REFIT}"
            )
        if self.color_space not in COLOR_SPACES:
            raise ModelError(
                f"a cluster model needs a color_space in {', '.join(COLOR_SPACES)}, but got "
                f"{self.color_space!r}. {_REFIT}"
            )
        object.__setattr__(self, "centers", tuple(tuple(float(v) for v in c) for c in centers))
        object.__setattr__(self, "preprocess", dict(self.preprocess))

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return len(self.centers)

    @property
    def centers_array(self) -> np.ndarray:
        """Centres as a float64 array ``(n_clusters, 3)`` in the feature space."""
        return np.asarray(self.centers, dtype=np.float64)

    @property
    def center_rgb(self) -> np.ndarray:
        """Centres as uint8 RGB ``(n_clusters, 3)``, as they look in the preprocessed image."""
        pixels = np.clip(np.rint(self.centers_array), 0, 255).astype(np.uint8)
        return to_rgb(pixels.reshape(-1, 1, 3), self.color_space).reshape(-1, 3)

    def matched_to(self, reference: ClusterModel) -> ClusterModel:
        """The model with its clusters renumbered to match ``reference``'s (Hungarian).

        Cluster ``i`` of the result is the one closest to ``reference``'s cluster ``i`` (the
        pairing with the least total squared distance between centres), so that
        ``classes`` keep their meaning from run to run.
        """
        if reference.n_clusters != self.n_clusters or reference.color_space != self.color_space:
            raise ModelError(
                f"cluster.reference has {reference.n_clusters} {reference.color_space} clusters, "
                f"but this model has {self.n_clusters} {self.color_space} ones. Use a reference "
                "model fitted with the same n_clusters and color_space."
            )
        from sediment_xr.cluster import match_centers

        order = match_centers(self.centers_array, reference.centers_array)
        stability = self.stability
        if stability and stability.get("refit_cover"):
            stability = {
                **stability,
                **{
                    key: np.asarray(stability[key])[..., order].tolist()
                    for key in ("refit_cover", "cover_spread", "center_shift")
                },
            }
        return dataclasses.replace(
            self, centers=tuple(map(tuple, self.centers_array[order])), stability=stability
        )

    def __repr__(self) -> str:
        rgb = ", ".join("#{:02x}{:02x}{:02x}".format(*c) for c in self.center_rgb)
        return (
            f"<ClusterModel n_clusters={self.n_clusters} color_space={self.color_space!r} "
            f"sample_size={self.sample_size} random_state={self.random_state} "
            f"centres(RGB)=[{rgb}]>"
        )

    # -- persistence (JSON, never pickle) -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the model, with a checksum of its content."""
        body = {
            "format": _MODEL_FORMAT,
            "centers": [list(c) for c in self.centers],
            "center_rgb": self.center_rgb.tolist(),
            "color_space": self.color_space,
            "n_clusters": self.n_clusters,
            "preprocess": dict(self.preprocess),
            "random_state": self.random_state,
            "sample_size": self.sample_size,
            "n_frames_sampled": self.n_frames_sampled,
            "inertia": self.inertia,
            "n_epochs": self.n_epochs,
            "illumination": None if self.illumination is None else self.illumination.to_dict(),
            "stability": None if self.stability is None else dict(self.stability),
        }
        body["sha256"] = _checksum(body)
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "model") -> ClusterModel:
        """Rebuild a model from :meth:`to_dict` output, checking its format and checksum."""
        if not isinstance(data, Mapping) or data.get("format") != _MODEL_FORMAT:
            raise ModelError(
                f"{source} is not a sediment_xr cluster model (needs format {_MODEL_FORMAT!r}). "
                "Point to a model.json written by sediment_xr, or refit."
            )
        if data.get("sha256") != _checksum({k: v for k, v in data.items() if k != "sha256"}):
            raise ModelError(
                f"{source} was modified after it was written (its checksum does not match). "
                "Restore the original file, or fit a new model (leave out cluster.model, or "
                "run with --overwrite)."
            )
        try:
            return cls(
                centers=tuple(tuple(c) for c in data["centers"]),
                color_space=data["color_space"],
                preprocess=data.get("preprocess", {}),
                random_state=int(data.get("random_state", 0)),
                sample_size=int(data.get("sample_size", 0)),
                n_frames_sampled=int(data.get("n_frames_sampled", 0)),
                inertia=float(data.get("inertia", float("nan"))),
                n_epochs=int(data.get("n_epochs", 0)),
                illumination=(
                    None
                    if data.get("illumination") is None
                    else Illumination.from_dict(data["illumination"])
                ),
                stability=data.get("stability"),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f"{source} is not a valid cluster model ({err}). Refit with sediment-xr run."
            ) from err

    def to_json(self) -> str:
        """Return the model as a JSON string."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "model") -> ClusterModel:
        """Read a model from a JSON string written by :meth:`to_json`."""
        if isinstance(text, str | bytes) and len(text) > MAX_MODEL_BYTES:
            raise ModelError(
                f"{source} is {len(text)} bytes, but a model.json is a few kilobytes (at most "
                f"{MAX_MODEL_BYTES}). Point to the model.json written by sediment_xr."
            )
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as err:
            # ValueError: not JSON (JSONDecodeError) or not UTF-8; RecursionError: nested
            # thousands of levels deep.
            raise ModelError(
                f"{source} is not valid JSON ({type(err).__name__}: {err}). Point to the "
                "model.json written by sediment_xr, restore it, or refit."
            ) from err
        return cls.from_dict(data, source=source)

    def save(
        self, path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Write the model as JSON to a local path or an fsspec URL."""
        target = os.fspath(path)
        fs, fs_path = url_to_fs(target, storage_options)
        fs.pipe(fs_path, self.to_json().encode("utf-8"))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> ClusterModel:
        """Read a model saved with :meth:`save` (a local path or an fsspec URL).

        Only regular files of at most :data:`MAX_MODEL_BYTES` are read: a FIFO, a device or
        a huge file given as a model is refused before reading it.
        """
        source = os.fspath(path)
        fs, fs_path = url_to_fs(source, storage_options)
        if is_url(source):
            info = fs.info(fs_path) if fs.exists(fs_path) else None
            regular = info is not None and info.get("type") == "file"
            size = (info or {}).get("size") or 0
        else:
            try:
                st = os.stat(source)
            except OSError:
                st = None
            regular = st is not None and stat.S_ISREG(st.st_mode)
            size = st.st_size if st is not None else 0
        if not regular:
            what = "does not exist" if not fs.exists(fs_path) else "is not a regular file"
            raise ModelError(
                f"model file {source} {what}. Give the path of the model.json of an earlier run."
            )
        if size > MAX_MODEL_BYTES:
            raise ModelError(
                f"model file {source} is {size} bytes, but a model.json is a few kilobytes (at "
                f"most {MAX_MODEL_BYTES}). Give the model.json of an earlier run."
            )
        raw = _read_at_most(source, fs, fs_path, MAX_MODEL_BYTES + 1)
        if len(raw) > MAX_MODEL_BYTES:  # it grew since its size was read
            raise ModelError(
                f"model file {source} holds more than {MAX_MODEL_BYTES} bytes, but a "
                "model.json is a few kilobytes. Give the model.json of an earlier run."
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelError(
                f"model file {source} is not UTF-8 text. Give the model.json of an earlier run."
            ) from err
        return cls.from_json(text, source=source)

    def mismatches(self, *, n_clusters: int, **preprocess: Any) -> dict[str, str]:
        """How the model differs from other settings, e.g. ``{"n_clusters": "model 4, given 3"}``.

        Parameters
        ----------
        n_clusters : int
            The number of clusters asked for.
        **preprocess
            ``color_space`` and the preprocessing settings asked for (``rows``, ``cols``,
            ``clip_limit``, ``tile_grid_size``). Settings the model does not record (a model
            fitted without them, e.g. in a notebook) are not compared.

        Returns
        -------
        dict of str to str
            Empty when the model can be applied as asked.
        """

        def plain(value: Any) -> Any:
            value = list(value) if isinstance(value, list | tuple) else value
            return None if value == [None, None] else value  # the whole axis either way

        seen = {"color_space": self.color_space, "n_clusters": self.n_clusters}
        seen |= {k: self.preprocess[k] for k in preprocess if k in self.preprocess}
        wanted = {"n_clusters": n_clusters, **preprocess}
        return {
            k: f"model {plain(seen[k])!r}, given {plain(wanted[k])!r}"
            for k in seen
            if plain(seen[k]) != plain(wanted[k])
        }


def _read_at_most(source: str, fs: Any, fs_path: str, limit: int) -> bytes:
    """Up to `limit` bytes of a file; a local one only if it is (still) a regular file.

    Opened without blocking, so that a FIFO put in the file's place after it was checked
    cannot hang the read, and checked again once open.
    """
    if is_url(source):
        with fs.open(fs_path, "rb") as handle:
            return handle.read(limit)
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(
                f"model file {source} is not a regular file. Give the path of the model.json "
                "of an earlier run."
            )
        return handle.read(limit)
