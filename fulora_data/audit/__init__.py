"""Data audit: exact and near duplicates, split leakage, label/patient disagreements and memorisation.

``audit`` and ``memorisation`` take any ``datasets.DatasetDict`` with an ``image`` column;
``audit_dataset`` builds a registered dataset by name and runs both (``fulora data audit``). The feature
spaces and thresholds are documented in ``fulora_data.audit.thresholds``; the pair search and its
no-miss guarantee in ``fulora_data.audit.search``.
"""

from __future__ import annotations

from fulora_data.audit.config import AuditConfig
from fulora_data.audit.duplicates import audit
from fulora_data.audit.features import ImageTable, extract, image_features
from fulora_data.audit.memorisation import memorisation
from fulora_data.audit.report import format_summary, write_report
from fulora_data.audit.run import audit_dataset, run_audit
from fulora_data.audit.search import brute_force_hamming_pairs, hamming_pairs, nearest
from fulora_data.audit.thresholds import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLD,
    FEATURE_SPACES,
    MAX_THRESHOLD,
)

__all__ = [
    "AuditConfig",
    "DEFAULT_SIMILARITY",
    "DEFAULT_THRESHOLD",
    "FEATURE_SPACES",
    "MAX_THRESHOLD",
    "ImageTable",
    "audit",
    "audit_dataset",
    "brute_force_hamming_pairs",
    "extract",
    "format_summary",
    "hamming_pairs",
    "image_features",
    "memorisation",
    "nearest",
    "run_audit",
    "write_report",
]
