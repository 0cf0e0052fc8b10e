"""Config files (STYLE.md rule 3): TOML or JSON that only overrides a dataclass's defaults;
a file that does not parse, or an unknown key, is one clear error."""

from __future__ import annotations

import json
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
