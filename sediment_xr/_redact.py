"""Secrets out of everything sediment_xr writes or says: one function, :func:`redact`.

Redaction is by structure, not by key words (a secret can sit under any key: ``foo``,
``connection_string``, ``headers.Authorization``, ``client_kwargs.aws_session_token``):

* every value under a ``storage_options`` mapping (any key ending in ``storage_options``:
  the shared one, the input's, the output's, any other) or a ``headers`` mapping is replaced
  by :data:`REDACTED`, its keys kept, at any depth (``client_kwargs``, ``config_kwargs``,
  lists). Kept are only values that cannot carry a credential: ``true``/``false`` and
  ``null`` anywhere, and under the few structural keys of :data:`HARMLESS` a number, a short
  name (``region_name: us-east-1``) or, for ``endpoint_url``, the URL's scheme, host and
  port (where the data went, not how it got in);
* in any text, every URL (``scheme://...``: input, output, model, reference, endpoint, or a
  URL quoted by an error of a library underneath) loses its user-info
  (``s3://***@bucket``, ``https://***@host``) and the values of its query and fragment
  (``?X-Amz-Signature=***&X-Amz-Credential=***``, ``?sig=***``, ``?sv=***&sig=***``). An
  ``http(s)`` URL's ``?`` always starts a query; elsewhere (``s3://b/frame_??.jpg``, a glob)
  only when ``name=`` follows it.

Every writer and message path goes through :func:`redact`: ``config.resolved.yaml`` and the
run state (:func:`sediment_xr.config.redacted_dict`), the cube's attributes (history lines,
``source``), the report, the STAC Item, every :class:`~sediment_xr.exceptions.SedimentXRError`
and :class:`~sediment_xr.exceptions.SedimentXRWarning` message (redacted when it is made),
the stage messages that name a URL and what the command line prints.  On top of that,
:func:`redact` takes the secret values of a config (:func:`secret_values`) to replace
wherever they appear in text: the command line passes them for the messages of libraries
underneath that echo an option's value outside a URL.  Nothing here keeps state.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HARMLESS", "REDACTED", "redact", "redact_options", "secret_values"]

#: What a secret is replaced by.
REDACTED = "***"

#: Keys of storage options whose value is kept when it is a number or a short name (they
#: choose how to reach the storage, never who you are): fsspec's and s3fs' switches and
#: sizes, botocore's time-outs and retries, the region; ``endpoint_url`` keeps its host.
HARMLESS = frozenset(
    {
        "anon",
        "use_ssl",
        "requester_pays",
        "version_aware",
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "cache_regions",
        "asynchronous",
        "region_name",
        "connect_timeout",
        "read_timeout",
        "max_attempts",
        "max_pool_connections",
        "endpoint_url",
    }
)
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`\\]+")
_TRAILING = ".,;:!)]}"
_PARAM = re.compile(r"[^=&/#?]+=")
_MIN_HIDDEN = 8  # shorter values are not replaced in text (they would mangle words)
_MIN_WORD = 16  # nor the words of a value (``Bearer <token>``, ``AccountKey=<key>``)


def redact(value: Any, secrets: Collection[str] = ()) -> Any:
    """``value`` without secrets: text, a URL, or config data (mappings and lists).

    Parameters
    ----------
    value : Any
        A string (a message, a path or a URL), or plain data such as
        :meth:`sediment_xr.config.Config.to_dict`; other values are returned unchanged.
    secrets : collection of str, optional
        Values to replace wherever they appear in text, e.g. :func:`secret_values` of the
        config that is running (values shorter than 8 characters are left alone: they would
        mangle ordinary words).

    Returns
    -------
    Any
        A copy: URLs without user-info and with their query values as :data:`REDACTED`,
        ``storage_options`` and ``headers`` mappings with their values redacted (see the
        module's docstring), and `secrets` replaced.
    """
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: redact_options(v) if _holds_options(k) else redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    return value


def redact_options(options: Any, key: str = "") -> Any:
    """Storage options (or headers) with every value but a harmless one redacted, keys kept.

    Parameters
    ----------
    options : Any
        A mapping of options (nested mappings and lists are walked), or one value.
    key : str, optional
        The key `options` is the value of (a key of :data:`HARMLESS` may keep its value).

    Returns
    -------
    Any
        The same layout with every value :data:`REDACTED` but ``true``, ``false``,
        ``null``, and under a key of :data:`HARMLESS` a number, a short name or (for
        ``endpoint_url``) the URL's scheme, host and port.
    """
    if isinstance(options, Mapping):
        return {k: redact_options(v, str(k)) for k, v in options.items()}
    if isinstance(options, list | tuple):
        return [redact_options(v, key) for v in options]
    if options is None or isinstance(options, bool):
        return options
    if key in HARMLESS:
        if key == "endpoint_url" and isinstance(options, str):
            return _host_of(options)
        if isinstance(options, int | float) or (
            isinstance(options, str) and _NAME.fullmatch(options)
        ):
            return options
    return REDACTED


def secret_values(data: Any) -> set[str]:
    """The secret strings of config data: what :func:`redact` replaces, as given.

    Parameters
    ----------
    data : Any
        Config data, e.g. :meth:`sediment_xr.config.Config.to_dict`.

    Returns
    -------
    set of str
        The values of ``storage_options`` and ``headers`` mappings that
        :func:`redact_options` replaces (and their long words: the token of ``Bearer
        <token>``, the key of ``AccountKey=<key>``), and the user-info and query values of
        URLs; only those of 8 characters or more (see :func:`redact`'s ``secrets``).
    """
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            if _holds_options(key):
                found |= _option_values(value)
            else:
                found |= secret_values(value)
    elif isinstance(data, list | tuple):
        for value in data:
            found |= secret_values(value)
    elif isinstance(data, str):
        for match in _URL.finditer(data):
            found |= _url_secrets(match.group(0))
    return {s for s in found if len(s) >= _MIN_HIDDEN}


def _holds_options(key: Any) -> bool:
    name = str(key).lower()
    return name.endswith("storage_options") or name == "headers"


def _option_values(value: Any, key: str = "") -> set[str]:
    """The strings of storage options that :func:`redact_options` replaces."""
    if isinstance(value, Mapping):
        return set().union(*(_option_values(v, str(k)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return set().union(*(_option_values(v, key) for v in value))
    if not isinstance(value, str) or redact_options(value, key) != REDACTED:
        return set()
    words = {w for w in re.split(r"[;=,\s]+", value) if len(w) >= _MIN_WORD}
    return {value, *words}


def _host_of(url: str) -> str:
    """``scheme://host:port`` of a URL; :data:`REDACTED` when it has no host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def _split_url(url: str) -> tuple[str, str, str, str, str]:
    """``url`` as scheme://, user-info, the rest of the address, query, fragment."""
    scheme, rest = url.split("://", 1)
    end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, _, host = authority.rpartition("@")
    http = scheme.lower() in ("http", "https")
    query = fragment = ""
    if "#" in tail:
        tail, fragment = tail.split("#", 1)
    mark = tail.find("?")
    while mark != -1 and not http and not _PARAM.match(tail, mark + 1):
        mark = tail.find("?", mark + 1)
    if mark != -1:
        tail, query = tail[:mark], tail[mark + 1 :]
    return f"{scheme}://", userinfo, host + tail, query, fragment


def _redact_params(text: str) -> str:
    parts = []
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and value else part if eq else REDACTED)
    return "&".join(parts)


def _redact_url(url: str) -> str:
    start, userinfo, address, query, fragment = _split_url(url)
    out = start + (f"{REDACTED}@" if userinfo else "") + address
    if query:
        out += "?" + _redact_params(query)
    if fragment:
        out += "#" + (_redact_params(fragment) if "=" in fragment else REDACTED)
    return out


def _url_secrets(url: str) -> set[str]:
    _, userinfo, _, query, fragment = _split_url(url.rstrip(_TRAILING))
    found = set(userinfo.split(":")) if userinfo else set()
    for text in (query, fragment):
        found |= {part.partition("=")[2] or part for part in text.split("&") if part}
    return found


def _url_match(match: re.Match) -> str:
    text = match.group(0)
    url = text.rstrip(_TRAILING)
    return _redact_url(url) + text[len(url) :]


def _redact_text(text: str, secrets: Collection[str]) -> str:
    if "://" in text:
        text = _URL.sub(_url_match, text)
    for value in sorted(secrets, key=len, reverse=True):
        if isinstance(value, str) and len(value) >= _MIN_HIDDEN:
            text = text.replace(value, REDACTED)
    return text
