"""Memorisation check: how close each synthetic image comes to the images a generator was trained on."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from fulora_data.audit.features import ImageTable, extract
from fulora_data.audit.search import hamming, nearest
from fulora_data.audit.thresholds import DEFAULT_SIMILARITY, FEATURE_SPACES, check_similarity


def memorisation(
    synthetic: datasets.DatasetDict | datasets.Dataset,
    training: datasets.DatasetDict | datasets.Dataset,
    *,
    similarity: float = DEFAULT_SIMILARITY,
    num_proc: int | None = None,
    synthetic_table: ImageTable | None = None,
    training_table: ImageTable | None = None,
) -> dict[str, Any]:
    """Find each synthetic image's nearest training image and flag those closer than ``similarity``.

    The search is exact: every synthetic thumbnail is compared with every training thumbnail by one matrix
    product per chunk (5,000 x 100 images is a 5,000 x 100 product). For the nearest image the pHash
    Hamming distance is reported too, as a second opinion; the flag uses the thumbnail similarity only
    (see ``fulora_data.audit.thresholds`` for why the pHash alone is not trusted on ultrasound).

    Args:
        synthetic: The generated images (all splits are searched).
        training: The images the generator was fine-tuned on (all splits).
        similarity: Flag a synthetic image whose nearest training thumbnail reaches this similarity.
        num_proc: Worker processes for the decoding pass.
        synthetic_table: Features already extracted from ``synthetic``.
        training_table: Features already extracted from ``training``.

    Returns:
        A JSON-ready dict: ``synthetic_images``, ``training_images``, ``threshold``, ``feature_spaces``,
        ``memorised`` (the count flagged), ``similarity`` (min, median, max of the nearest similarities),
        ``pairs`` (the flagged synthetic/training pairs, closest first) and ``nearest`` (every synthetic
        image with its nearest training image).

    Raises:
        ConfigError: If ``similarity`` is out of range.
        DataError: If either side is empty or has no images.
    """
    similarity = check_similarity(similarity)
    if isinstance(synthetic, datasets.Dataset):
        synthetic = datasets.DatasetDict({"train": synthetic})
    if isinstance(training, datasets.Dataset):
        training = datasets.DatasetDict({"train": training})
    if synthetic_table is None:
        synthetic_table = extract(synthetic, num_proc=num_proc, what="the synthetic dataset")
    if training_table is None:
        training_table = extract(training, num_proc=num_proc, what="the training dataset")
    index, scores = nearest(synthetic_table.thumbnails, training_table.thumbnails)
    bits = hamming(synthetic_table.phash, training_table.phash[index])
    rows = []
    for row, (near, score, distance) in enumerate(
        zip(index.tolist(), scores.tolist(), bits.tolist(), strict=True)
    ):
        rows.append(
            {
                "synthetic": synthetic_table.ref(row),
                "training": training_table.ref(near),
                "similarity": round(float(score), 4),
                "hamming": int(distance),
                "same_pixels": synthetic_table.digest[row] == training_table.digest[near],
                "flagged": bool(score >= similarity - 1e-5),  # float32 rounding of copies
            }
        )
    flagged = sorted((r for r in rows if r["flagged"]), key=lambda r: -r["similarity"])
    return {
        "synthetic_images": len(synthetic_table),
        "training_images": len(training_table),
        "threshold": {"thumbnail_similarity": similarity},
        "feature_spaces": {k: FEATURE_SPACES[k] for k in ("thumbnail", "phash")},
        "memorised": len(flagged),
        "similarity": {
            "min": round(float(np.min(scores)), 4),
            "median": round(float(np.median(scores)), 4),
            "max": round(float(np.max(scores)), 4),
        },
        "pairs": flagged,
        "nearest": rows,
    }
