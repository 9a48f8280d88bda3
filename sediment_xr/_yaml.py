"""Strict YAML for configs: plain data only, no duplicate keys, no anchors or aliases."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sediment_xr.exceptions import ConfigError

__all__ = ["apply_overrides", "dump", "parse"]


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys."""


def _mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"config key {key!r} appears twice (line {key_node.start_mark.line + 1}). "
                "Keep one of them."
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates
)


def parse(text: str, source: str) -> Any:
    """Parse YAML text as plain data (a safe loader), refusing aliases and duplicate keys."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"{source} uses a YAML alias (*{event.anchor}); sediment_xr configs do not "
                    "allow anchors and aliases. Write the values out."
                )
        loader = _StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"{source} is not valid YAML{where}: {problem}. Fix the syntax (indent with "
            "spaces, 'key: value')."
        ) from err


def dump(data: Mapping[str, Any]) -> str:
    """Plain data as YAML text, keys in their order."""
    return yaml.safe_dump(dict(data), sort_keys=False)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to config data."""
    out = copy.deepcopy(dict(data)) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set needs section.key=value, but got {item!r}. "
                "Use e.g. --set cluster.n_clusters=5."
            )
        dotted, raw = item.split("=", 1)
        keys = [k.strip() for k in dotted.split(".")]
        if not all(keys):
            raise ConfigError(f"--set needs a key like cluster.n_clusters, but got {dotted!r}.")
        value = parse(raw, f"--set {dotted}") if raw.strip() else None
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return out
