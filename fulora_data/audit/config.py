"""The settings of an audit (``fulora data audit``): ``AuditConfig``, on the one config protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fulora_data.audit.thresholds import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLD,
    check_similarity,
    check_threshold,
)
from fulora_data.dataset_ref import DatasetRef
from fulora_data.io import check_report_folder
from fulora_data.presets import RunConfig, field_error


@dataclass
class AuditConfig(RunConfig):
    """Everything an audit reads; the defaults are fulora's documented thresholds.

    Attributes:
        dataset: A registered dataset name, or a published fulora dataset ``ORG/NAME[@REVISION]``.
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
        options: Builder options of ``dataset`` (e.g. ``drop_test_duplicates``).
    """

    KIND = "audit"

    dataset: str = ""
    config: str | None = None
    source: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    threshold: int = DEFAULT_THRESHOLD
    similarity: float = DEFAULT_SIMILARITY
    against: str | None = None
    against_source: str | os.PathLike | None = None
    report: str | os.PathLike | None = None
    num_proc: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse bad values before any build, which may take minutes.

        Raises:
            ConfigError: For a bad threshold, similarity, ``against`` value, worker count or report folder.
        """
        check_threshold(self.threshold)
        check_similarity(self.similarity)
        against = self.against_ref()
        num_proc = self.num_proc
        if num_proc is not None and (
            isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1
        ):
            raise field_error("num_proc", f"must be at least 1, got {num_proc!r}")
        if self.against_source is not None and against is None:
            raise field_error("against_source", "needs `against` NAME[/CONFIG]")
        if self.against_source is not None and against.on_hub:
            raise field_error(
                "against_source", f"does not apply to `against` {self.against!r}: it is a published dataset"
            )
        if self.report is not None:
            check_report_folder(self.report)

    def against_ref(self) -> DatasetRef | None:
        """The training set to check against, or None."""
        if self.against is None:
            return None
        return DatasetRef.parse(self.against, option="against", split="none")


AuditConfig.PRESETS = {"default": {}}
"""fulora's documented thresholds (``fulora_data.audit.thresholds``)."""
