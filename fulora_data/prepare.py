"""Build fulora datasets and describe them: the library behind ``fulora data prepare|info|list``."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import datasets

from fulora_data import datasets_internals as hf
from fulora_data.builders import BUILDERS, FuloraBuilder, get_builder_class
from fulora_data.builders import build as build_module
from fulora_data.builders.build import build, column, load_provenance

__all__ = [
    "build",
    "column",
    "describe",
    "info",
    "list_builders",
    "load_provenance",
    "make_builder",
    "option_names",
    "prepare",
]


def option_names(name: str) -> list[str]:
    """Return the options a builder accepts besides ``source`` (its config dataclass fields)."""
    return build_module.option_names(get_builder_class(name))


def make_builder(
    name: str,
    config: str | None = None,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> FuloraBuilder:
    """Instantiate a builder by dataset name with validated options (see ``fulora_data.builders.build``).

    Args:
        name: A registered dataset name (``fulora data list``).
        config: A config of that dataset; ``None`` for its default.
        source: Its archive or extracted folder; ``None`` downloads the archive.
        cache_dir: Where built datasets are cached (default: the ``datasets`` cache).
        **options: Builder options (e.g. ``subset_csv``, ``seed``, ``country``); ``None`` values are ignored.

    Returns:
        The builder, not yet built.

    Raises:
        ConfigError: For an unknown dataset, config or option.
    """
    return build_module.make_builder(
        get_builder_class(name), config, source=source, cache_dir=cache_dir, **options
    )


def prepare(
    name: str,
    config: str | None = None,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> datasets.DatasetDict:
    """Build a fulora dataset (or reuse its cached build) and return its splits.

    Args:
        name: A registered dataset name.
        config: A config of that dataset; ``None`` for its default.
        source: Its archive or extracted folder; ``None`` downloads the archive.
        cache_dir: Where built datasets are cached (default: the ``datasets`` cache).
        **options: Builder options (see ``option_names``).

    Returns:
        A ``DatasetDict`` with the config's splits.
    """
    return build(make_builder(name, config, source=source, cache_dir=cache_dir, **options))


def describe(builder: FuloraBuilder, splits: datasets.DatasetDict) -> dict[str, Any]:
    """Summarise a built dataset: sizes, counts per class and patient, features and provenance."""
    names = splits[next(iter(splits))].features["label"].names if splits else []
    label_counts, patients = {}, {}
    for split, dataset in splits.items():
        counts = Counter(column(dataset, "label"))
        label_counts[split] = {names[i]: counts.get(i, 0) for i in range(len(names))}
        patients[split] = len({p for p in column(dataset, "patient_id") if p})
    return {
        "name": builder.NAME,
        "config": builder.config.name,
        "version": str(builder.config.version),
        "splits": {split: len(dataset) for split, dataset in splits.items()},
        "label_counts": label_counts,
        "num_patients": patients,
        "label_names": names,
        "features": list(next(iter(splits.values())).features) if splits else [],
        "license": builder.LICENSE,
        "homepage": builder.HOMEPAGE,
        "cache_path": str(hf.output_dir(builder)),
        "provenance": load_provenance(builder),
    }


def info(
    name: str,
    config: str | None = None,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build a dataset if needed and describe it (see ``describe``)."""
    builder = make_builder(name, config, source=source, cache_dir=cache_dir, **options)
    return describe(builder, build(builder))


def list_builders() -> list[dict[str, Any]]:
    """Describe every registered builder and its configs."""
    rows = []
    for name, cls in sorted(BUILDERS.items()):
        rows.append(
            {
                "name": name,
                "version": str(cls.VERSION),
                "release_notes": dict(cls.RELEASE_NOTES),
                "default_config": cls.DEFAULT_CONFIG_NAME,
                "configs": [
                    {"name": c.name, "description": c.description or ""} for c in cls.BUILDER_CONFIGS
                ],
                "options": option_names(name),
                "homepage": cls.HOMEPAGE,
                "license": cls.LICENSE,
            }
        )
    return rows
