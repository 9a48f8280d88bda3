"""sediment_xr: percent cover of seafloor time-lapse imagery, lazily on xarray, Zarr and Dask.

The pipeline, as plain functions on xarray objects::

    frames = sediment_xr.open_video("shr.mp4", fps=10, start_time="2022-06-01",
                                    frame_interval="17h")
    features = sediment_xr.preprocess(frames, rows=[-400, None], color_space="bgr")
    model = sediment_xr.fit_kmeans(sediment_xr.sample_pixels(features), n_clusters=4)
    labels = sediment_xr.label(features, model)
    cover = sediment_xr.cover(labels)               # (time, cluster), percent
    bio = sediment_xr.merge_classes(cover, {"bio": [2, 3], "bg": [0, 1]})
    sediment_xr.fit_trends(bio)

and the check against what people labelled::

    table = sediment_xr.evaluate_run("results/run1", masks="masks/", mapping={"bio": 255, "bg": 0})
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sediment_xr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from sediment_xr import accessor  # noqa: F401  (registers the .sediment accessor)
from sediment_xr.changes import change_table, seasonal_decomposition
from sediment_xr.cluster import NO_DATA, fit_kmeans, label, sample_pixels, sample_positions
from sediment_xr.coverage import classes_from_names, cover, merge_classes
from sediment_xr.evaluate import (
    evaluate_cover,
    evaluate_labels,
    evaluate_points,
    evaluate_run,
    match_clusters,
    read_mask,
    read_points,
)
from sediment_xr.exceptions import (
    ConfigError,
    InputError,
    InputNotFoundError,
    ModelError,
    OutputError,
    SedimentXRError,
    SedimentXRWarning,
)
from sediment_xr.illumination import Illumination, fit_illumination
from sediment_xr.io import open_frames
from sediment_xr.model import ClusterModel
from sediment_xr.preprocess import crop, enhance, preprocess, to_color_space
from sediment_xr.recordings import open_recordings
from sediment_xr.results import open_cover, open_results
from sediment_xr.stills import open_images
from sediment_xr.trend import fit_trends
from sediment_xr.video import open_video

__all__ = [
    "NO_DATA",
    "ClusterModel",
    "ConfigError",
    "Illumination",
    "InputError",
    "InputNotFoundError",
    "ModelError",
    "OutputError",
    "SedimentXRError",
    "SedimentXRWarning",
    "__version__",
    "change_table",
    "classes_from_names",
    "cover",
    "crop",
    "enhance",
    "evaluate_cover",
    "evaluate_labels",
    "evaluate_points",
    "evaluate_run",
    "fit_illumination",
    "fit_kmeans",
    "fit_trends",
    "label",
    "match_clusters",
    "merge_classes",
    "open_cover",
    "open_frames",
    "open_images",
    "open_recordings",
    "open_results",
    "open_video",
    "preprocess",
    "read_mask",
    "read_points",
    "sample_pixels",
    "sample_positions",
    "seasonal_decomposition",
    "to_color_space",
]
