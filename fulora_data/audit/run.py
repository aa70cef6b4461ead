"""Audit a registered fulora dataset by name: the library behind ``fulora data audit``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fulora_data.audit.config import AuditConfig
from fulora_data.audit.duplicates import audit
from fulora_data.audit.features import extract
from fulora_data.audit.memorisation import memorisation
from fulora_data.audit.report import write_report
from fulora_data.audit.thresholds import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLD,
    check_similarity,
    check_threshold,
)
from fulora_data.errors import OptionValueError


def audit_dataset(
    name: str,
    config: str | None = None,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    similarity: float = DEFAULT_SIMILARITY,
    against: str | None = None,
    against_source: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    num_proc: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build (or reuse) a dataset, audit it, optionally check it for memorisation and write a report.

    The keyword form of :func:`run_audit`: each argument is the :class:`AuditConfig` field of the same
    name (``name`` is its ``dataset``, ``**options`` its builder ``options``); see there for their meaning.

    Returns:
        ``{"dataset": {...}, "audit": {...}}`` (see ``fulora_data.audit.audit``), plus ``against`` and
        ``memorisation`` (see ``fulora_data.audit.memorisation``) with ``against``, and ``report`` (the path
        of ``report.md``) with ``report``.

    Raises:
        ConfigError: For a bad threshold, ``against`` value, dataset, config or option.
        DataError: If a dataset is empty or has no images.
    """
    return run_audit(
        AuditConfig(
            dataset=name,
            config=config,
            source=source,
            cache_dir=cache_dir,
            threshold=threshold,
            similarity=similarity,
            against=against,
            against_source=against_source,
            report=report,
            num_proc=num_proc,
            options=options,
        )
    )


def run_audit(settings: AuditConfig) -> dict[str, Any]:
    """Audit what ``settings`` names (see :class:`~fulora_data.audit.config.AuditConfig`); the values are
    checked first, before any build, which may take minutes.

    Returns:
        As :func:`audit_dataset`.
    """
    from fulora_data.hub_pull import is_repo_spec, load_repo_dataset
    from fulora_data.prepare import prepare

    settings.validate()
    name, config, options = settings.dataset, settings.config, settings.options
    source, cache_dir, num_proc = settings.source, settings.cache_dir, settings.num_proc
    threshold, similarity = check_threshold(settings.threshold), check_similarity(settings.similarity)
    against_ref, against_source, report = settings.against_ref(), settings.against_source, settings.report
    if is_repo_spec(name):  # a published fulora dataset, ORG/NAME[@REVISION]
        if source is not None or options:
            raise OptionValueError(
                f"{name!r} is a published dataset: --source and builder options do not apply"
            )
        splits = load_repo_dataset(name, config)
    else:
        splits = prepare(name, config, source=source, cache_dir=cache_dir, **options)
    label = f"{name}/{config}" if config else name
    table = extract(splits, num_proc=num_proc, what=label)
    result: dict[str, Any] = {
        "dataset": {"name": name, "config": config, "splits": {s: len(d) for s, d in splits.items()}},
        "audit": audit(splits, threshold=threshold, similarity=similarity, what=label, table=table),
    }
    training = None
    if against_ref is not None:
        if against_ref.on_hub:  # ORG/NAME[@REVISION]: a published training set
            training = load_repo_dataset(against_ref.repo, against_ref.config)
        else:
            from fulora_data.prepare import build, make_builder

            builder = make_builder(
                against_ref.name, against_ref.config, source=against_source, cache_dir=cache_dir
            )
            builder.source_option = "--against-source"
            training = build(builder)
        against_label = str(against_ref)
        result["against"] = against_label
        result["memorisation"] = memorisation(
            splits,
            training,
            similarity=similarity,
            synthetic_table=table,
            training_table=extract(training, num_proc=num_proc, what=against_label),
        )
    if report is not None:
        path = write_report(report, result, splits, training=training, title=f"Data audit of {label}")
        result["report"] = str(Path(path))
    return result
