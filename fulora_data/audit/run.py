"""Audit a registered fulora dataset by name: the library behind ``fulora data audit``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fulora_data.audit.duplicates import audit
from fulora_data.audit.features import extract
from fulora_data.audit.memorisation import memorisation
from fulora_data.audit.report import check_report_folder, write_report
from fulora_data.audit.thresholds import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLD,
    check_similarity,
    check_threshold,
)
from fulora_data.errors import OptionValueError


def parse_against(value: str) -> tuple[str, str | None]:
    """Split ``NAME``, ``NAME/CONFIG`` or ``NAME:CONFIG`` into the dataset name and config.

    A published fulora dataset, ``ORG/NAME[@REVISION][/CONFIG]`` (``ORG`` not a registered dataset), gives
    ``("ORG/NAME[@REVISION]", CONFIG or None)``: a name with a ``/``, which no registered dataset has.

    Raises:
        ConfigError: If the value is empty or has an empty part.
    """
    from fulora_data.hub_pull import parse_hub_set

    hub = parse_hub_set(value, config_separators="/:")
    if hub is not None:
        return hub[0], hub[1]
    text = str(value).strip()
    for separator in ("/", ":"):
        if separator in text:
            name, config = text.split(separator, 1)
            if not name or not config:
                break
            return name, config
    else:
        if text:
            return text, None
    raise OptionValueError(
        f"--against must be NAME or NAME/CONFIG (e.g. spanish/lora-100), or a published "
        f"ORG/NAME[@REVISION][/CONFIG], got {value!r}"
    )


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

    Args:
        name: A registered dataset name, or a published fulora dataset ``ORG/NAME[@REVISION]``.
        config: Its config (``None``: the default).
        source: Its archive or extracted folder (``None``: download).
        cache_dir: Where built datasets are cached.
        threshold: pHash Hamming threshold of near duplicates (0 to 12 bits).
        similarity: Thumbnail similarity of near duplicates and memorised images, in (0, 1].
        against: ``NAME[/CONFIG]`` of the training set to check this dataset's images against, or a
            published fulora dataset ``ORG/NAME[@REVISION][/CONFIG]`` (read from the Hub or its cache).
        against_source: The source of ``against`` (not for a published dataset).
        report: A folder to write ``report.md``, ``audit.json`` and figures into.
        num_proc: Worker processes for the decoding pass.
        **options: Builder options of ``name`` (e.g. ``drop_test_duplicates``).

    Returns:
        ``{"dataset": {...}, "audit": {...}}`` (see ``fulora_data.audit.audit``), plus ``against`` and
        ``memorisation`` (see ``fulora_data.audit.memorisation``) with ``against``, and ``report`` (the path
        of ``report.md``) with ``report``.

    Raises:
        ConfigError: For a bad threshold, ``against`` value, dataset, config or option.
        DataError: If a dataset is empty or has no images.
    """
    from fulora_data.prepare import prepare

    # Refuse bad values before any build, which may take minutes.
    threshold = check_threshold(threshold)
    similarity = check_similarity(similarity)
    against_name, against_config = parse_against(against) if against is not None else (None, None)
    if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1):
        raise OptionValueError(f"--num-proc must be at least 1, got {num_proc!r}")
    if against_source is not None and against is None:
        raise OptionValueError("--against-source needs --against NAME[/CONFIG]")
    if against_source is not None and "/" in against_name:
        raise OptionValueError(
            f"--against {against!r} is a published dataset: --against-source does not apply to it"
        )
    if report is not None:
        check_report_folder(report)
    from fulora_data.hub_pull import is_repo_spec, load_repo_dataset

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
    if against_name is not None:
        if "/" in against_name:  # ORG/NAME[@REVISION]: a published training set
            training = load_repo_dataset(against_name, against_config)
        else:
            from fulora_data.prepare import build, make_builder

            builder = make_builder(against_name, against_config, source=against_source, cache_dir=cache_dir)
            builder.source_option = "--against-source"
            training = build(builder)
        against_label = f"{against_name}/{against_config}" if against_config else against_name
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
