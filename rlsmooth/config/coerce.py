"""Typed values: a nested dict checked against dataclasses, one ConfigError line per problem.

Every config section is a dataclass whose fields carry a docstring (the string literal after the
field) stating meaning and units.  Loading never guesses: an unknown key, a value of the wrong
type at any level or an impossible value raises :class:`ConfigError` with one line naming it.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from rlsmooth.errors import ConfigError

LayerSelection = Union[str, int, list]
"""Layer names or Python-style indices over a network's named layers, a list of them, 'all' or 'none'."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_all(checks: list[tuple[bool, str]]) -> None:
    """Raise ConfigError with the message of the first failed (condition, message) check."""
    for ok, message in checks:
        require(ok, message)


def type_name(tp: Any) -> str:
    if tp is LayerSelection:
        return "layer selection (name, index, list of them, 'all' or 'none')"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        value = int(value)
    if not -2**63 <= value < 2**63:
        raise ConfigError(f"{key}: {value} is out of range (integers must fit in 64 bits)")
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(f"{key}: {value} is out of range") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return number


def _of_type(kind: type, words: str):
    def check(value: Any, key: str):
        if not isinstance(value, kind):
            raise ConfigError(f"{key}: expected {words}, got {value!r}")
        return value
    return check


SCALARS = {bool: _bool, int: _int, float: _float, list: _of_type(list, "a list"), str: _of_type(str, "a string")}


def _layer_selection(value: Any, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, list)):
        raise ConfigError(f"{key}: expected {type_name(LayerSelection)}, got {value!r}")
    if isinstance(value, list) and not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{key}: list items must be layer names or integer indices, got {value!r}")
    return value


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (a field's annotation), or ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is LayerSelection:
        return _layer_selection(value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected one of {type_name(tp)}, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp in SCALARS:
        return SCALARS[tp](value, key)
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # programming error, not user input


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (valid keys: {', '.join(sorted(names))})")
    kwargs = {name: coerce(value, hints[name], prefix + name) for name, value in data.items()}
    obj = cls(**kwargs)
    obj.validate()   # every config section and agent config defines its own checks
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal after it in the class body), own and inherited."""
    import ast
    import inspect
    import textwrap
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError, IndexError):
            continue
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe_config(cfg: Any) -> list[str]:
    """Every key of a resolved config: its value, the dataclass default where the value differs, and
    its docstring (meaning and units), section by section."""
    lines: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                lines.append(f"{prefix}{f.name}:   # {type(value).__name__}")
                walk(value, f"{prefix}{f.name}.")
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            changed = "" if default is dataclasses.MISSING or default == value else f" (default: {default!r})"
            doc = docs.get(f.name, "")
            lines.append(f"  {prefix}{f.name} = {value!r}{changed}" + (f"   # {doc}" if doc else ""))
    walk(cfg, "")
    return lines
