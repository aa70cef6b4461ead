"""Every private part of Hugging Face ``datasets`` that fulora relies on, in one place.

``datasets`` offers no public way to do a few things fulora needs; each is named here with why, so that a new
``datasets`` major version (``setup.cfg`` pins ``datasets`` below it) is checked against one list, and
``tests/test_layers.py::test_datasets_private_hooks_exist`` fails first if one disappears.

Methods a builder overrides (``fulora_data.builders``):

* ``DatasetBuilder._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)``: the base
  builder writes its provenance file after the splits, inside the temporary folder ``datasets`` renames into
  the cache on success (so the provenance lands atomically with the data); the hybrid writes a plan instead
  of copying rows.
* ``DatasetBuilder._as_dataset(split, in_memory)``: the hybrid assembles a split from its parts' Arrow files.

Attributes read or set (through the functions below):

* ``DatasetBuilder._output_dir``: the build folder (the temporary one during a build, the cached one after);
  where the provenance and the hybrid's plan live.
* ``DatasetBuilder._cache_dir_root``: the cache root a builder was given; the hybrid builds its parts there
  and archives are extracted beside the builds.
* ``Dataset._fingerprint``: the identity ``datasets`` gives a table; keys the classifier's resized copies.
* ``Dataset._estimate_nbytes()``: a split's decoded size, the card's ``num_bytes`` (as ``datasets`` records).
* ``Dataset._split``: the split name of a dataset made by ``select``, restored on the hybrid's splits.
"""

from __future__ import annotations

from typing import Any

import datasets

OVERRIDDEN_HOOKS: tuple[tuple[type, str], ...] = (
    (datasets.DatasetBuilder, "_download_and_prepare"),
    (datasets.DatasetBuilder, "_as_dataset"),
)
"""The private ``datasets`` methods fulora's builders override."""


def output_dir(builder: datasets.DatasetBuilder) -> str:
    """The builder's build folder (temporary while ``download_and_prepare`` runs)."""
    return builder._output_dir


def cache_root(builder: datasets.DatasetBuilder) -> str:
    """The cache root the builder was created with (the ``datasets`` cache when none was given)."""
    return builder._cache_dir_root


def fingerprint(dataset: Any) -> str | None:
    """A dataset's ``datasets`` fingerprint, or ``None`` for an object without one."""
    return getattr(dataset, "_fingerprint", None)


def estimate_nbytes(dataset: datasets.Dataset) -> int:
    """The decoded size of a split in bytes, as ``datasets`` records ``num_bytes`` (0 for an empty split)."""
    return dataset._estimate_nbytes() if len(dataset) else 0


def set_split(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
    """Name the split of a dataset made by ``select``/``concatenate_datasets`` (which drop the name)."""
    dataset._split = datasets.NamedSplit(split)
    return dataset
