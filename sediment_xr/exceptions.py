"""Exceptions and warnings raised by sediment_xr.

Every error says what was needed, what was seen and how to fix it, in one line, naming the
file, frame or configuration key involved.  Each subclass also derives from the builtin
exception a Python user would expect (``ValueError``, ``FileNotFoundError``...), so plain
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "InputNotFoundError",
    "ModelError",
    "OutputError",
    "SedimentXRError",
    "SedimentXRWarning",
    "StorageError",
]


class SedimentXRError(Exception):
    """Base class of every error raised on purpose by sediment_xr."""


class InputError(SedimentXRError, ValueError):
    """An input video, image or image folder cannot be used as given."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path or URL does not exist."""


class ConfigError(SedimentXRError, ValueError):
    """A configuration value or keyword argument is invalid."""


class ModelError(SedimentXRError, ValueError):
    """A fitted cluster model is invalid, tampered with or does not fit the data."""


class OutputError(SedimentXRError, ValueError):
    """An output location cannot be written as asked (exists with other settings, incomplete)."""


class StorageError(SedimentXRError, OSError):
    """A file system or object store refuses access, cannot be reached or times out."""


class SedimentXRWarning(UserWarning):
    """Something worth knowing that does not stop the computation."""
