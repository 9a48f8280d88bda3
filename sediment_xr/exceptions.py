"""Exceptions and warnings raised by sediment_xr, and how their messages name settings.

Every error says what was needed, what was seen and how to fix it, in one line, naming the
file, frame or setting involved.  Each subclass also derives from the builtin exception a
Python user would expect (``ValueError``, ``FileNotFoundError``...), so plain
``except ValueError`` keeps working.

Messages name settings the way the Python API spells them (``resize=(64, 48)``,
``frame_interval``), written with :func:`setting`, and the error records which settings it
names in :attr:`SedimentXRError.settings`.  A caller that knows the settings by other names
(the command line, which reads a YAML config) rewords the message with :func:`reworded`,
e.g. ``ingest.resize: [64, 48]``.  Nothing global decides the wording.

A message never holds a secret: it is redacted when the error or warning is made
(:func:`sediment_xr._redact.redact`: URLs lose their user-info and query values), so a URL
with credentials or a presigned signature can be named as the user gave it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sediment_xr._redact import redact

__all__ = [
    "NAMED",
    "ConfigError",
    "InputError",
    "InputNotFoundError",
    "ModelError",
    "OutputError",
    "SedimentXRError",
    "SedimentXRWarning",
    "StorageError",
    "reworded",
    "setting",
]


class _Named:
    def __repr__(self) -> str:
        return "NAMED"


#: The value of a setting a message names without suggesting a value.
NAMED: Any = _Named()


def setting(name: str, value: Any = NAMED) -> str:
    """How a message names a setting: ``resize=(64, 48)``, or ``frame_interval`` alone."""
    return name if value is NAMED else f"{name}={value!r}"


def yaml_value(value: Any) -> str:
    """A value as it is written in a YAML config (``null``, ``[64, 48]``, ``'1h'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def reworded(text: str, settings: Iterable[tuple[str, Any]], keys: Mapping[str, str]) -> str:
    """``text`` with the settings it names written as config keys.

    Parameters
    ----------
    text : str
        A message that names settings with :func:`setting`.
    settings : iterable of (name, value)
        The settings the message names (:attr:`SedimentXRError.settings`): ``name=value``
        is replaced for each value, and the bare name only where the value is :data:`NAMED`.
    keys : mapping of str to str
        Config key of each setting name, e.g. ``{"resize": "ingest.resize"}``.

    Returns
    -------
    str
        E.g. ``"... with ingest.resize: [64, 48]"`` for ``"... with resize=(64, 48)"``.
    """
    pairs = [(name, value) for name, value in settings if name in keys]
    held: dict[str, str] = {}  # the values are set aside while bare names are replaced
    for i, (name, value) in enumerate(pairs):
        if value is not NAMED:
            token = f"\x00{i}\x00"
            text = text.replace(setting(name, value), token)
            held[token] = f"{keys[name]}: {yaml_value(value)}"
    for name in dict.fromkeys(name for name, value in pairs if value is NAMED):
        text = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w=])", keys[name], text)
    for token, written in held.items():
        text = text.replace(token, written)
    return text


class _Settings:
    """Mixin: a message plus the settings it names; survives pickling (worker processes).

    The message is redacted (:func:`sediment_xr._redact.redact`) when it is made.
    """

    def __init__(self, message: str = "", *, settings: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__(redact(str(message)))
        self.settings: tuple[tuple[str, Any], ...] = tuple(settings)

    def __reduce__(self):
        return (_rebuild, (type(self), str(self), self.settings))

    def reworded(self, keys: Mapping[str, str]) -> str:
        """The message with its settings named by ``keys`` (see :func:`reworded`)."""
        return reworded(str(self), self.settings, keys)


def _rebuild(cls: type, message: str, settings: tuple[tuple[str, Any], ...]) -> Exception:
    return cls(message, settings=settings)


class SedimentXRError(_Settings, Exception):
    """Base class of every error raised on purpose by sediment_xr.

    Parameters
    ----------
    message : str
        One line: what was needed, what was seen, and the fix.
    settings : iterable of (name, value), optional
        The settings the message names (by their Python argument name) and the value it
        suggests for each, or :data:`NAMED`.
    """


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


class SedimentXRWarning(_Settings, UserWarning):
    """Something worth knowing that does not stop the computation."""
