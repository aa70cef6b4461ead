"""Render a trained classifier's model card from ``cards/classifier_card.md`` and its ``config.json``.

Every value in the card comes from the saved config, weights and training history, never typed by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from string import Template

TEMPLATE = "classifier_card.md"  # in cards/, read with fulora_data.cards.template()

TRAIN_SET_DESCRIPTIONS = {
    "ES": "the Spanish FETAL_PLANES_DB training images without Maternal cervix",
    "ES+DA": "the Spanish FETAL_PLANES_DB training images without Maternal cervix, with data augmentation",
    "HB": "the hybrid set: 1,150 real Spanish images and 5,000 synthetic FU-LoRA images",
    "HB+DA": "the hybrid set (1,150 real, 5,000 synthetic images), with data augmentation",
}
_DATASET_IDS = {"spanish": "fulora/spanish-fetal-planes", "hybrid": "fulora/fu-lora-hybrid"}


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _history_table(history: list[dict]) -> str:
    if not history:
        return ""
    lines = [
        "| Epoch | Train loss | Train accuracy | Validation accuracy | Validation loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in history:
        lines.append(
            f"| {row['epoch']} | {_number(row['train_loss'])} | {_number(row['train_accuracy'])} | "
            f"{_number(row['validation_accuracy'])} | {_number(row['validation_loss'])} |"
        )
    return "\n".join(lines)


def render_model_card(
    config: dict, *, history: list[dict] | None = None, parameters: int | None = None
) -> str:
    """Render the card of a classifier from its saved ``config.json`` content.

    Args:
        config: The classifier's config (as written by ``fulora_data.classifier.train``).
        history: Per-epoch training rows, shown as a table.
        parameters: The model's parameter count, if known.

    Returns:
        The card's Markdown, starting with its YAML metadata.

    Raises:
        SourceNotFoundError: If the template file is missing (a broken installation).
    """
    from fulora_data.cards import template

    train = config["train_config"]
    weights = config.get("weights", "none")
    initialisation = {
        "imagenet": "torchvision ImageNet weights",
        "file": "ImageNet weights from a local file",
        "none": "random (no pretraining)",
    }.get(weights, weights)
    dataset = config.get("dataset", {})
    best = config.get("best", {})
    values = {
        "arch": config["arch"],
        "title": config.get("title", config["arch"]),
        "base_model": f"torchvision/{config['arch']}" if weights != "none" else "none",
        "datasets": f"- {_DATASET_IDS.get(dataset.get('name'), dataset.get('name', 'unknown'))}",
        "labels": ", ".join(config["label_names"]),
        "num_classes": config["num_classes"],
        "parameters": f"{parameters:,}" if parameters else "n/a",
        "initialisation": initialisation,
        "image_size": config["image_size"],
        "train_set": config["train_set"],
        "train_set_description": TRAIN_SET_DESCRIPTIONS.get(config["train_set"], config["train_set"]),
        "dataset_name": dataset.get("name", "unknown"),
        "dataset_config": dataset.get("config", "unknown"),
        "num_images": dataset.get("num_images", "n/a"),
        "train_images": config.get("images", {}).get("train", "n/a"),
        "validation_images": config.get("images", {}).get("validation", "n/a"),
        "augmentation": (
            "RandomRotation(15), RandomResizedCrop(scale 0.08-1), RandomHorizontalFlip"
            if config.get("augment")
            else "none"
        ),
        "learning_rate": train["learning_rate"],
        "momentum": train["momentum"],
        "weight_decay": train["weight_decay"],
        "scheduler": train["scheduler"],
        "batch_size": train["batch_size"],
        "epochs": train["epochs"],
        "seed": train["seed"],
        "mixed_precision": train["mixed_precision"],
        "best_epoch": best.get("epoch", "n/a"),
        "best_accuracy": _number(best.get("accuracy")),
        "best_loss": _number(best.get("loss")),
        "history": _history_table(history or []),
        "fulora_version": config.get("fulora_version", "unknown"),
    }
    return Template(template(TEMPLATE)).substitute(values)


def write_model_card(model_dir: str | os.PathLike, *, history: list[dict] | None = None) -> Path:
    """Render ``README.md`` into a saved classifier folder (written to a temporary name, then renamed)."""
    from safetensors import safe_open

    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text())
    parameters = 0
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                parameters += _product(handle.get_slice(key).get_shape())
    text = render_model_card(config, history=history, parameters=parameters)
    target = folder / "README.md"
    tmp = folder / f".README.md.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


def _product(shape) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total
