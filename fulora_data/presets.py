"""Run configs from mappings and YAML presets: the one reader both trainers' config classes use.

A trainer's config is a dataclass; a preset (``training/configs/*.yaml``) is a mapping of its fields.
Unknown keys are refused, naming the file, so a typo in a preset never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

from fulora_data.errors import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], values: dict[str, Any], *, where: str, what: str) -> T:
    """Build the dataclass ``cls`` from a mapping, refusing unknown keys.

    Args:
        cls: The config dataclass.
        values: Field name -> value.
        where: Where the values came from (a file, ``config``), for the message.
        what: What the fields are, e.g. ``"training option"``, for the message.

    Raises:
        ConfigError: Naming the unknown key and ``where`` it came from.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{where}: unknown {what} {key!r}; known: {', '.join(sorted(known))}")
    return cls(**values)


def read_preset(path: str | os.PathLike, overrides: dict[str, Any], *, what: str) -> dict[str, Any]:
    """Read a YAML preset and apply ``overrides`` (those that are not None win).

    Raises:
        ConfigError: If the file is missing, not valid YAML, or not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"preset {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"preset {path} is not valid YAML ({err})") from err
    if not isinstance(values, dict):
        raise ConfigError(f"preset {path} must be a mapping of {what}s; got {type(values).__name__}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values
