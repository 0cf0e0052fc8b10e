"""Config files (STYLE.md rule 3): TOML or JSON that only overrides a dataclass's defaults;
a file that does not parse, or an unknown key, is one clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import tomllib

from swapscope.errors import InputError


def read_config_file(path: str | Path, allowed: set[str]) -> dict:
    """The file's top-level table, checked against ``allowed`` keys."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        raw = (
            tomllib.loads(path.read_text())
            if path.suffix == ".toml"
            else json.loads(path.read_text())
        )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: config does not parse ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a config is a table of keys, not {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise InputError(f"{path}: unknown config keys {sorted(unknown)}")
    return raw


def relative_to_config(path: str | Path, values: list[str]) -> list[str]:
    """Paths written in a config file are relative to the file's folder; absolute paths and ""
    (which means "the default") stay as they are."""
    base = Path(path).parent
    return [str(base / v) if v and not Path(v).is_absolute() else v for v in values]


def check_types(raw: dict, cls: type, where: str | Path) -> dict:
    """``raw``, with every value checked against the annotation of ``cls``'s field of that name
    (str, int, float, bool, None, lists, dicts and unions of them); InputError naming the key."""
    import typing

    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        if key in hints and not _matches(value, hints[key]):
            raise InputError(f"{where}: config key {key!r} must be {_describe(hints[key])}, "
                             f"not {type(value).__name__} {value!r}"[:300])
    return raw


def _matches(value, hint) -> bool:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, list | tuple) and all(
            _matches(v, args[0]) for v in value) if args else isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _matches(v, args[1]) for k, v in value.items())
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold one object: parsed, or one InputError naming it."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: {what} does not parse") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: {what} is a JSON {type(value).__name__}, not an object")
    return value


def check_keys(
    value: dict, required: dict[str, type | tuple], where: Path | str, what: str
) -> None:
    """Each required key present with a value of its type (bool is not taken for int)."""
    for key, kind in required.items():
        item = value.get(key)
        if key not in value or not isinstance(item, kind) or (
            isinstance(item, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        ):
            raise InputError(f"{where}: {what} has no valid {key!r}")


def finite_number(value) -> bool:
    """A JSON number (not a bool) that is finite as a float: not NaN, not infinite, not an
    integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
