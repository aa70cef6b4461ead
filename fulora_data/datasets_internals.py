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

Functions used to write Parquet exactly as ``Dataset.to_parquet`` does, without its per-batch Python loop
(``parquet_layout``; when one is missing, the export calls ``Dataset.to_parquet`` instead):

* ``datasets.io.parquet.get_parquet_column_options(features, schema)``: per-column compression, dictionary
  and encoding options (image bytes stored plain and uncompressed).
* ``datasets.config.DEFAULT_CDC_OPTIONS``: the content-defined chunking the Hub deduplicates on.
* ``datasets.arrow_writer.get_writer_batch_size_from_features`` / ``get_writer_batch_size_from_data_size``:
  the rows per write, which decide the row groups.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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


def derived_fingerprint(dataset: Any, *parts: str) -> str:
    """A fingerprint for a table derived from ``dataset`` by a step described by ``parts``.

    Passed as ``new_fingerprint`` to ``add_column``/``select``, it spares ``datasets`` hashing the step's
    arguments (a Python list of a whole column, or of every selected row), the bulk of the hybrid's assembly
    time; it is as unique as ``parts`` are.
    """
    text = "\n".join([fingerprint(dataset) or "", *parts])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def estimate_nbytes(dataset: datasets.Dataset) -> int:
    """The decoded size of a split in bytes, as ``datasets`` records ``num_bytes`` (0 for an empty split)."""
    return dataset._estimate_nbytes() if len(dataset) else 0


def set_split(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
    """Name the split of a dataset made by ``select``/``concatenate_datasets`` (which drop the name)."""
    dataset._split = datasets.NamedSplit(split)
    return dataset


@dataclass
class ParquetLayout:
    """How ``Dataset.to_parquet`` lays a dataset out: writer options, rows per write, file metadata."""

    schema: Any
    writer_options: dict[str, Any]
    batch_size: int
    metadata: dict[str, str]


def parquet_layout(dataset: datasets.Dataset, nbytes: int) -> ParquetLayout | None:
    """The layout ``dataset.to_parquet(path)`` would write, or None if this ``datasets`` lays files out otherwise.

    Args:
        dataset: The rows to write.
        nbytes: ``estimate_nbytes(dataset)``.
    """
    try:
        from datasets import config
        from datasets.arrow_writer import (
            get_writer_batch_size_from_data_size,
            get_writer_batch_size_from_features,
        )
        from datasets.io.parquet import ParquetDatasetWriter, get_parquet_column_options
    except ImportError:
        return None
    cdc = getattr(config, "DEFAULT_CDC_OPTIONS", None)
    defaults = ParquetDatasetWriter.__init__.__defaults__ or ()
    if cdc is None or defaults[-2:] != (True, True):  # (use_content_defined_chunking, write_page_index)
        return None
    schema = dataset.features.arrow_schema
    options = dict(
        use_content_defined_chunking=cdc,
        write_page_index=True,
        **get_parquet_column_options(dataset.features, schema),
    )
    batch_size = get_writer_batch_size_from_features(
        dataset.features
    ) or get_writer_batch_size_from_data_size(len(dataset), nbytes)
    return ParquetLayout(schema, options, batch_size, {"content_defined_chunking": json.dumps(cdc)})
