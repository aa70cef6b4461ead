"""Duplicates within and across splits, disagreements among them, and per-split summaries."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import datasets
import numpy as np

from fulora_data.audit.features import ImageTable, extract
from fulora_data.audit.search import hamming_pairs, principal_projection
from fulora_data.audit.thresholds import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLD,
    FEATURE_SPACES,
    check_similarity,
    check_threshold,
)

# float32 dot products of identical unit vectors can land a hair under 1.0.
_ROUNDING = 1e-5


def _pair(table: ImageTable, a: int, b: int, kind: str, distance: int, similarity: float) -> dict[str, Any]:
    left, right = table.ref(a), table.ref(b)
    return {
        "kind": kind,
        "a": left,
        "b": right,
        "hamming": int(distance),
        "similarity": round(float(similarity), 4),
        "cross_split": left["split"] != right["split"],
        "label_disagrees": bool(left["label"] and right["label"] and left["label"] != right["label"]),
        # An empty patient id means "unknown" (synthetic images), which disagrees with nothing.
        "patient_disagrees": bool(
            left["patient_id"] and right["patient_id"] and left["patient_id"] != right["patient_id"]
        ),
    }


def exact_pairs(digests: list[str]) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, of rows with the same pixel digest, in row order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, digest in enumerate(digests):
        groups[digest].append(row)
    pairs = [(a, b) for rows in groups.values() for k, a in enumerate(rows) for b in rows[k + 1 :]]
    return sorted(pairs)


def near_pairs(table: ImageTable, threshold: int, similarity: float) -> list[tuple[int, int, int, float]]:
    """Pairs of distinct pixels within ``threshold`` pHash bits and at least ``similarity`` apart."""
    # A pair with similarity >= s lies within sqrt(2 - 2 s) on any axis: prune crowded pHash buckets with it.
    radius = float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity))) + 1e-4
    projection = principal_projection(table.thumbnails)
    first, second, distance = hamming_pairs(table.phash, threshold, projection, radius)
    if not len(first):
        return []
    scores = np.einsum("ij,ij->i", table.thumbnails[first], table.thumbnails[second])
    out = []
    for a, b, d, s in zip(first.tolist(), second.tolist(), distance.tolist(), scores.tolist(), strict=True):
        if s >= similarity - _ROUNDING and table.digest[a] != table.digest[b]:
            out.append((a, b, d, s))
    return out


def split_summary(table: ImageTable, splits: datasets.DatasetDict) -> dict[str, dict[str, Any]]:
    """Per split: image count, stored modes and sizes, counts per class and per patient."""
    summary: dict[str, dict[str, Any]] = {}
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, split in enumerate(table.split):
        rows_of[split].append(row)
    for split, dataset in splits.items():
        rows = rows_of.get(split, [])
        label_feature = dataset.features.get("label")
        names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else []
        labels = Counter(table.label[r] for r in rows)
        patients = Counter(table.patient_id[r] for r in rows if table.patient_id[r])
        sizes = Counter(f"{table.width[r]}x{table.height[r]}" for r in rows)
        areas = [table.width[r] * table.height[r] for r in rows]
        smallest = rows[int(np.argmin(areas))] if rows else None
        largest = rows[int(np.argmax(areas))] if rows else None
        summary[split] = {
            "images": len(rows),
            "modes": dict(sorted(Counter(table.mode[r] for r in rows).items())),
            "sizes": dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
            "smallest": None if smallest is None else f"{table.width[smallest]}x{table.height[smallest]}",
            "largest": None if largest is None else f"{table.width[largest]}x{table.height[largest]}",
            "label_counts": {**{name: labels.get(name, 0) for name in names}, **labels},
            "patients": len(patients),
            "patient_counts": dict(sorted(patients.items())),
        }
    return summary


def audit(
    splits: datasets.DatasetDict | datasets.Dataset,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    similarity: float = DEFAULT_SIMILARITY,
    num_proc: int | None = None,
    what: str = "the dataset",
    table: ImageTable | None = None,
) -> dict[str, Any]:
    """Audit a dataset for exact and near duplicates, split leakage and label or patient disagreements.

    Args:
        splits: The dataset (a ``Dataset`` is audited as one split named ``train``); each split needs an
            ``image`` column. ``label`` and ``patient_id`` are used when present.
        threshold: Largest pHash Hamming distance (bits of 64) of a near-duplicate pair, 0 to 12.
        similarity: Smallest thumbnail similarity of a near-duplicate pair, in (0, 1].
        num_proc: Worker processes for the decoding pass.
        what: How to name the dataset in errors.
        table: Features already extracted from ``splits`` (skips the decoding pass).

    Returns:
        A JSON-ready dict: ``images``, ``thresholds``, ``feature_spaces``, the counts
        ``exact_duplicate_pairs``, ``near_duplicate_pairs``, ``cross_split_duplicate_pairs`` (exact or near
        pairs whose members sit in different splits), ``label_disagreement_pairs``,
        ``patient_disagreement_pairs``, the ``pairs`` themselves (``kind`` "exact" or "near") and
        ``splits`` (see ``split_summary``).

    Raises:
        ConfigError: If a threshold is out of range.
        DataError: If the dataset is empty, has no images, or an image does not decode.
    """
    threshold = check_threshold(threshold)
    similarity = check_similarity(similarity)
    if isinstance(splits, datasets.Dataset):
        splits = datasets.DatasetDict({"train": splits})
    if table is None:
        table = extract(splits, num_proc=num_proc, what=what)
    pairs = [_pair(table, a, b, "exact", 0, 1.0) for a, b in exact_pairs(table.digest)]
    pairs += [_pair(table, a, b, "near", d, s) for a, b, d, s in near_pairs(table, threshold, similarity)]
    exact = [p for p in pairs if p["kind"] == "exact"]
    near = [p for p in pairs if p["kind"] == "near"]
    cross = [p for p in pairs if p["cross_split"]]
    return {
        "images": len(table),
        "thresholds": {"phash_hamming": threshold, "thumbnail_similarity": similarity},
        "feature_spaces": dict(FEATURE_SPACES),
        "exact_duplicate_pairs": len(exact),
        "near_duplicate_pairs": len(near),
        "cross_split_duplicate_pairs": len(cross),
        "cross_split_exact_pairs": sum(p["kind"] == "exact" for p in cross),
        "cross_split_near_pairs": sum(p["kind"] == "near" for p in cross),
        "label_disagreement_pairs": sum(p["label_disagrees"] for p in pairs),
        "patient_disagreement_pairs": sum(p["patient_disagrees"] for p in pairs),
        "pairs": pairs,
        "splits": split_summary(table, splits),
    }
