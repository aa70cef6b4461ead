"""The one config protocol: run configs from mappings, YAML files and named presets, checked in one call.

Every run config (LoRA, classifier, generation, audit, compare) is a dataclass that derives from
:class:`RunConfig` and so has the same four entry points:

- ``Config.from_dict(values, where=...)``: unknown keys are refused, naming where they came from, so a typo
  in a preset never silently falls back to a default;
- ``Config.from_yaml(path, **overrides)``: a YAML mapping of the fields (``training/configs/*.yaml``);
- ``Config.preset(name, **overrides)``: a named preset of the class's ``PRESETS``, or a YAML file;
- ``config.validate()`` refuses bad values and combinations before anything expensive runs, and
  ``config.validated()`` returns the config in canonical form (the same config where nothing is normalised).

Overrides that are None are "not given" and leave the preset's value. A config speaks in its own field
names: a refused value raises ``ConfigError(..., field=NAME)`` whose message starts with the field's name
(:func:`field_error`). Only the CLI knows the flags: it maps a field to the flag of the click parameter of
the same name (``cli/__init__.py``), so ``resolution must be ...`` reads ``--resolution must be ...`` on the
command line, and the library, its tests and YAML users see the name they wrote.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fulora_data.errors import ConfigError, OptionValueError

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
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    for key in values:
        if key not in known:
            raise ConfigError(f"{where}: unknown {what} {key!r}; known: {', '.join(sorted(known))}")
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.init and f.name not in values:
            raise ConfigError(f"{where}: the {what} {f.name!r} is required", field=f.name)
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


def field_error(field: str, text: str) -> ConfigError:
    """A refused value of a config field: ``"<field> <text>"``, with ``field`` for the CLI to map to its flag.

    Args:
        field: The config field (``"resolution"``).
        text: The rest of the sentence (``"must be a positive integer; got 0"``), or ``": ..."``.
    """
    return ConfigError(f"{field}{'' if text.startswith(':') else ' '}{text}", field=field)


R = TypeVar("R", bound="RunConfig")


class RunConfig:
    """Base of every run config dataclass: ``from_dict``, ``from_yaml``, ``preset``, ``validate``.

    A subclass sets ``KIND`` (``"LoRA"``: for messages) and ``PRESETS`` (name -> field values), and
    overrides :meth:`validate` (and :meth:`validated` where it normalises values).
    """

    KIND: ClassVar[str] = "run"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_dict(cls: type[R], values: dict[str, Any], *, where: str = "config") -> R:
        """Build the config from a mapping of its fields.

        Raises:
            ConfigError: Naming an unknown key and ``where`` it came from.
        """
        return config_from_dict(cls, values, where=where, what=f"{cls.KIND} option")

    @classmethod
    def from_yaml(cls: type[R], path: str | os.PathLike, **overrides: Any) -> R:
        """Read a YAML file of the fields; ``overrides`` that are not None win.

        Raises:
            ConfigError: If the file is missing, not a YAML mapping, or has an unknown key.
        """
        return cls.from_dict(read_preset(path, overrides, what=f"{cls.KIND} option"), where=str(path))

    @classmethod
    def preset(cls: type[R], name: str, **overrides: Any) -> R:
        """A named preset (``PRESETS``) or a YAML file, with the ``overrides`` that are not None applied.

        Raises:
            ConfigError: For an unknown preset or option.
        """
        if name not in cls.PRESETS:
            if str(name).endswith((".yaml", ".yml")) or Path(name).is_file():
                return cls.from_yaml(name, **overrides)
            raise OptionValueError(
                f"unknown {cls.KIND} preset {name!r}; choose one of {', '.join(cls.PRESETS)} or a YAML file"
            )
        values = {**cls.PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls.from_dict(values, where=f"preset {name!r}")

    def validate(self) -> None:
        """Refuse bad values and combinations (a subclass checks its fields).

        Raises:
            ConfigError: Naming the first bad field and quoting its value.
        """

    def validated(self: R) -> R:
        """Check the config and return it in canonical form (here: itself)."""
        self.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready mapping."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]
