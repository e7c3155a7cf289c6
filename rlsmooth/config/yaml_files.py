"""Config files: YAML with ``base:`` includes, ``key.sub=value`` overrides, and hostile input refused.

Duplicate keys and aliases that expand beyond a small bound (a "billion laughs" document) are
refused with one line naming the file, before any value is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rlsmooth.errors import ConfigError
from rlsmooth.files import read_text


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` on top of ``base``; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"
"""The checkout's presets (configs/): what the bench and compare read an agent's defaults from."""

MAX_NODES = 100_000
"""Values in one YAML document once its aliases are expanded (a config has a few hundred)."""


def expanded_size(node: yaml.Node, memo: dict[int, int] | None = None) -> int:
    """Nodes in ``node`` with every alias expanded, counted without expanding anything; a count
    above MAX_NODES stops early (an alias that contains itself counts as too many)."""
    memo = {} if memo is None else memo
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_NODES + 1
    size = 1
    children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else [])
    for child in children:
        size += expanded_size(child, memo)
        if size > MAX_NODES:
            break
    memo[id(node)] = min(size, MAX_NODES + 1)
    return memo[id(node)]


def _load_document(text: str) -> Any:
    """One YAML document; yaml.YAMLError if it does not parse, ConfigError if it is hostile."""
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise ConfigError(f"its aliases expand to more than {MAX_NODES:,} values")
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError("nested too deeply to be a config") from None
    finally:
        loader.dispose()


def parse_yaml(text: str, path: str | Path) -> Any:
    """YAML with duplicate keys and alias bombs refused; errors name the file and line."""
    try:
        return _load_document(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML {path}: {' '.join(str(exc).split())}") from None


def load_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a config; a top-level ``base: other.yaml`` (relative to this file) is loaded first."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config {path} includes itself through 'base'")
    data = parse_yaml(read_text(path, "config file"), path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config sections")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: 'base' must be a path to another YAML config")
        data = deep_merge(load_yaml(path.parent / base, _seen + (path.resolve(),)), data)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = _load_document(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw   # not YAML: the text itself
        except ConfigError as exc:
            raise ConfigError(f"override '{key}': {exc}") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a config section")
            node = child
        node[parts[-1]] = value
    return data
