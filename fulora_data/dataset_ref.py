"""One dataset reference for every command that takes a set, parsed and printed here and nowhere else.

Two spellings share one option:

- a registered dataset, built locally: ``NAME[/CONFIG][:SPLIT]`` (``african:test``, ``spanish/es-1150``);
- a published one, read from the Hub or its cache: ``ORG/NAME[@REVISION][/CONFIG][:SPLIT]``
  (``fulora/synthetic@v1.0.0:train``), where ``ORG`` is not a registered dataset's name (so
  ``spanish/es-1150`` stays the local ``NAME/CONFIG``).

Each command says which parts it takes (:meth:`DatasetRef.parse`'s ``split`` and ``hub_only``) and under
which option name, so an error quotes the bad value and names the option. :class:`RepoRef` is the plain
Hub repo id ``ORG/NAME[@REVISION]`` that ``--model`` and ``--adapter`` take; a revision may then hold ``/``
(a branch ``refs/pr/1``), since no ``/CONFIG`` follows it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from fulora_data.errors import OptionValueError

_HUB_PART = r"[A-Za-z0-9][\w.-]*"
_LOCAL_NAME = r"[\w-]+"
_CONFIG = r"[\w\-.+]+"
_SPLIT = r"[\w-]+"
_HUB = re.compile(
    rf"(?P<org>{_HUB_PART})/(?P<name>{_HUB_PART})(?:@(?P<revision>[\w.-]+))?"
    rf"(?:/(?P<config>{_CONFIG}))?(?::(?P<split>{_SPLIT}))?"
)
_LOCAL = re.compile(rf"(?P<name>{_LOCAL_NAME})(?:/(?P<config>{_CONFIG}))?(?::(?P<split>{_SPLIT}))?")
_REPO = re.compile(rf"(?P<repo>{_HUB_PART}/{_HUB_PART})(?:@(?P<revision>[\w./-]+))?")

SPLIT_RULES = ("optional", "required", "none")


def _registered(name: str) -> bool:
    from fulora_data.builders import BUILDERS

    return name in BUILDERS


@dataclass(frozen=True)
class DatasetRef:
    """A set: a registered dataset or a published repo, with optionally a config, a split and a revision.

    Attributes:
        name: A registered dataset's name (``african``), or ``ORG/NAME`` for a published dataset.
        config: The builder config (None: the dataset's default).
        split: One split (None: all of them).
        revision: A published dataset's tag, branch or commit (None: the main branch).
    """

    name: str
    config: str | None = None
    split: str | None = None
    revision: str | None = None

    @property
    def on_hub(self) -> bool:
        """Whether the set is a published dataset (no registered name holds a ``/``)."""
        return "/" in self.name

    @property
    def dataset(self) -> str:
        """The dataset's own name: a registered name, or the ``NAME`` of ``ORG/NAME``."""
        return self.name.split("/", 1)[1] if self.on_hub else self.name

    @property
    def repo(self) -> str:
        """``ORG/NAME[@REVISION]`` (what the Hub loaders take), or the registered name."""
        return self.name + (f"@{self.revision}" if self.revision else "")

    def __str__(self) -> str:
        text = self.repo + (f"/{self.config}" if self.config else "")
        return text + (f":{self.split}" if self.split else "")

    @classmethod
    def parse(
        cls, value, *, option: str = "--data", split: str = "optional", hub_only: bool = False
    ) -> DatasetRef:
        """Read a set as one option gives it.

        Args:
            value: The option's value.
            option: The option's name, for the error (``--data``, ``a SET``), or a config field's
                (``against``: then the error carries it as ``ConfigError.field``).
            split: ``"optional"`` (``[:SPLIT]``), ``"required"`` (``:SPLIT``) or ``"none"`` (no split; there,
                unless ``hub_only``, ``NAME:CONFIG`` is read as ``NAME/CONFIG``, the audit's older spelling).
            hub_only: Accept only the published form.

        Raises:
            ConfigError: If the value is not of the form the option takes (the message quotes it and
                names the option and the form).
        """
        if split not in SPLIT_RULES:
            raise ValueError(f"split must be one of {SPLIT_RULES}, got {split!r}")
        text = str(value).strip() if isinstance(value, (str, os.PathLike)) else ""
        head = text.split("/", 1)[0] if "/" in text.split(":", 1)[0] else None
        found = None
        if head is not None and not _registered(head):
            match = _HUB.fullmatch(text)
            if match is not None and ".." not in match["org"] + "/" + match["name"]:
                found = cls(
                    f"{match['org']}/{match['name']}", match["config"], match["split"], match["revision"]
                )
        elif not hub_only:
            match = _LOCAL.fullmatch(text)
            if match is not None:
                found = cls(match["name"], match["config"], match["split"])
        if found is not None and split == "none" and found.split is not None:
            # NAME:CONFIG, the audit's older spelling: with no split to take, ':' stands before the config.
            legacy = not hub_only and not found.config
            found = cls(found.name, found.split, None, found.revision) if legacy else None
        if found is None or (split == "required" and found.split is None):
            field = option if option.isidentifier() else None  # a config field, for the CLI to name its flag
            raise OptionValueError(f"{option} must be {describe(split, hub_only)}, got {value!r}", field=field)
        return found


def describe(split: str = "optional", hub_only: bool = False) -> str:
    """The forms an option takes, in words, for messages and help."""
    tail = {"optional": "[:SPLIT]", "required": ":SPLIT", "none": ""}[split]
    hub = f"ORG/NAME[@REVISION][/CONFIG]{tail}"
    if hub_only:
        return f"a Hub dataset {hub}"
    local = {
        "optional": "NAME[/CONFIG][:SPLIT] (e.g. african:test or spanish/es-1150)",
        "required": "NAME[/CONFIG]:SPLIT (e.g. african:test)",
        "none": "NAME or NAME/CONFIG (e.g. spanish/lora-100)",
    }[split]
    return f"{local} or a published {hub}"


@dataclass(frozen=True)
class RepoRef:
    """A Hub repository with an optional revision, ``ORG/NAME[@REVISION]`` (a model, an adapter, a dataset).

    Attributes:
        repo_id: ``ORG/NAME``.
        revision: A tag, branch or commit (None: the main branch); may hold ``/`` (``refs/pr/1``).
    """

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")

    @classmethod
    def parse(cls, value, *, option: str = "repo id") -> RepoRef:
        """Read ``ORG/NAME[@REVISION]``.

        Raises:
            ConfigError: If the value is not of that form (the message quotes it and names the option).
        """
        match = _REPO.fullmatch(str(value).strip()) if isinstance(value, (str, os.PathLike)) else None
        if match is None or ".." in match["repo"]:
            raise OptionValueError(
                f"{option} must be a local path or a Hub repo 'ORG/NAME' with an optional '@REVISION', "
                f"got {value!r}"
            )
        return cls(match["repo"], match["revision"])

    @staticmethod
    def names_repo(value) -> bool:
        """Whether ``value`` is not an existing local path but reads as ``ORG/NAME[@REVISION]``."""
        if value is None or Path(str(value)).expanduser().exists():
            return False
        return _REPO.fullmatch(str(value).strip()) is not None
