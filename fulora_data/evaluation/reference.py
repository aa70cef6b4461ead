"""The study's published zero-shot results, carried with the package as reference figures.

The table lives in ``fulora_data/reference/paper_results.csv`` (source, license and units in its header
comment): 5 models x 4 training sets, accuracy, recall, precision, F-score and AUC in percent on the
233-image African test set, computed with the ``paper`` protocol.
"""

from __future__ import annotations

import csv
import io
import re
from importlib import resources

MODELS: tuple[str, ...] = ("densenet169", "mobilenet_v2", "efficientnet_b0", "resnet18", "vit_b_16")
"""The study's classifiers, by torchvision name."""

TRAIN_SETS: tuple[str, ...] = ("ES", "ES+DA", "HB", "HB+DA")
"""The study's training sets: Spanish real (ES) or hybrid (HB), without or with data augmentation (DA)."""

SOURCE = (
    "Wang et al., FU-LoRA, MICCAI PIPPI 2024 (arXiv:2407.20072), "
    "github.com/13204942/FU-LoRA assests/overall_performance.csv (MIT)"
)

METRIC_COLUMNS: dict[str, str] = {
    "accuracy": "accuracy_pct",
    "recall": "recall_pct",
    "precision": "precision_pct",
    "f1": "f1_pct",
    "auc": "auc_pct",
}

# Keys are names with everything but letters and digits removed, lower-cased.
_MODEL_ALIASES: dict[str, str] = {
    "densenet169": "densenet169",
    "mobilenetv2": "mobilenet_v2",
    "efficientnetb0": "efficientnet_b0",
    "resnet18": "resnet18",
    "vitb16": "vit_b_16",
}


def canonical_model(name: str) -> str | None:
    """Map a model name as written anywhere (``"ViT b16"``, ``"vit_b_16"``) to its id, or None."""
    return _MODEL_ALIASES.get(re.sub(r"[^a-z0-9]", "", str(name).lower()))


def canonical_train_set(name: str) -> str | None:
    """Map a training-set name (``"hb+da"``, ``"HB_DA"``, ``"es"``) to its id, or None."""
    key = re.sub(r"[\s_\-+]+", "+", str(name).strip().upper())
    return key if key in TRAIN_SETS else None


def paper_results() -> list[dict]:
    """Read the published table.

    Returns:
        One dict per row: ``model``, ``train_set``, ``n_real``, ``n_synthetic``, ``n_patients`` (ints) and
        ``accuracy``, ``recall``, ``precision``, ``f1``, ``auc`` as percentages (floats).
    """
    text = resources.files("fulora_data").joinpath("reference", "paper_results.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        out = {"model": row["model"], "train_set": row["train_set"]}
        out.update({k: int(row[k]) for k in ("n_real", "n_synthetic", "n_patients")})
        out.update({metric: float(row[column]) for metric, column in METRIC_COLUMNS.items()})
        rows.append(out)
    return rows


def published_row(model: str | None, train_set: str | None) -> dict | None:
    """Return the study's row for a model and training set, or None when the study has none.

    Args:
        model: A model name in any common spelling, or None.
        train_set: A training-set name (``ES``, ``ES+DA``, ``HB``, ``HB+DA``), or None.

    Returns:
        The row as returned by ``paper_results``, or None.
    """
    model_id = canonical_model(model) if model else None
    set_id = canonical_train_set(train_set) if train_set else None
    if model_id is None or set_id is None:
        return None
    for row in paper_results():
        if row["model"] == model_id and row["train_set"] == set_id:
            return row
    return None
