"""Run a trained classifier on a dataset split: the predictions ``fulora evaluate --model`` scores."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fulora_data.classifier.data import CachedImages, default_image_cache, prepare_image_cache
from fulora_data.classifier.models import build_model
from fulora_data.errors import ConfigError, DataError, require

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """Find the saved model folder from a training ``--out`` folder, a model folder or its weights file.

    Raises:
        ConfigError: If the path holds no fulora classifier.
    """
    path = Path(checkpoint).expanduser()
    if path.is_file() and path.name == WEIGHTS_NAME:
        path = path.parent
    for folder in (path, path / "model"):
        if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
            return folder
    if not path.exists():
        raise ConfigError(f"--model: {path} does not exist")
    raise ConfigError(
        f"--model: {path} is not a fulora classifier (no {CONFIG_NAME} and {WEIGHTS_NAME} in it or in its "
        "model/ folder)"
    )


def load_classifier(checkpoint: str | os.PathLike, device=None):
    """Load a saved classifier in evaluation mode.

    Args:
        checkpoint: A training output folder, its ``model/`` folder, or ``model.safetensors``.
        device: Torch device (default: CUDA when available, else CPU).

    Returns:
        ``(model, config)``: the ``torch.nn.Module`` and the saved ``config.json`` content.

    Raises:
        ConfigError: If the path holds no classifier or the weights do not fit the saved architecture.
    """
    return _load_resolved(resolve_checkpoint(checkpoint), device)


def _load_resolved(folder: Path, device=None):
    """``load_classifier`` for a folder ``resolve_checkpoint`` has already found."""
    torch = require("torch", "train")
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        arch, names, size = config["arch"], config["label_names"], int(config["image_size"])
    except (ValueError, KeyError) as err:
        raise ConfigError(f"{folder / CONFIG_NAME} is not a fulora classifier config ({err!r})") from None
    model = build_model(arch, len(names), weights="none", image_size=size)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"{folder / WEIGHTS_NAME} does not fit a {len(names)}-class {arch} ({first})"
        ) from None
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.to(device).eval(), config


def check_labels(config: dict, dataset, where: str) -> list[str]:
    """Refuse a dataset whose classes are not the checkpoint's.

    Raises:
        ConfigError: If the class count or names differ.
    """
    label = dataset.features.get("label")
    names = list(getattr(label, "names", None) or [])
    if not names:
        raise DataError(
            "the dataset has no ClassLabel 'label' column to compare with the classifier's classes"
        )
    expected = list(config["label_names"])
    if len(names) != len(expected):
        raise ConfigError(
            f"{where} is a {len(expected)}-class classifier ({', '.join(expected)}) but the dataset has "
            f"{len(names)} classes ({', '.join(names)}); evaluate it on data with the same classes"
        )
    if names != expected:
        raise ConfigError(
            f"{where} was trained on classes {expected!r} but the dataset's are {names!r} (another order or "
            "taxonomy)"
        )
    return names


def predict(checkpoint: str | os.PathLike, dataset, batch_size: int = 64, device=None) -> dict[str, Any]:
    """Predict the plane of every image of a split.

    Images go through the same path as in training, without augmentation: a cached copy resized to the
    model's input size, gray repeated to 3 channels, ImageNet normalisation.

    Args:
        checkpoint: A training output folder, its ``model/`` folder, or ``model.safetensors``.
        dataset: A ``datasets.Dataset`` with ``image`` and ``label`` columns (e.g. the African test split).
        batch_size: Images per forward pass.
        device: Torch device (default: CUDA when available, else CPU).

    Returns:
        ``reference`` and ``prediction`` (lists of label indices), ``probabilities`` (float64 array
        ``[n, C]``, softmax), ``label_names``, ``model_name`` (the architecture), ``train_set`` (or None)
        and ``image_ids`` (when the dataset has that column).

    Raises:
        ConfigError: If the checkpoint is missing or its class count or names differ from the dataset's.
        DataError: If the split is empty or has no label column.
    """
    torch = require("torch", "train")

    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if not hasattr(dataset, "features") or not hasattr(dataset, "column_names"):
        raise ConfigError(f"predict needs a datasets.Dataset split; got {type(dataset).__name__}")
    folder = resolve_checkpoint(checkpoint)
    config = json.loads((folder / CONFIG_NAME).read_text())
    names = check_labels(config, dataset, str(folder))
    if len(dataset) == 0:
        raise DataError("the test split is empty: there is nothing to predict")
    model, config = _load_resolved(folder, device)
    device = next(model.parameters()).device
    cache = prepare_image_cache(dataset, int(config["image_size"]), cache_dir=default_image_cache(dataset))
    images = CachedImages(cache)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False)
    chunks = []
    with torch.no_grad():
        for batch, _labels in loader:
            logits = model(batch.to(device))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().double().numpy())
    probabilities = np.concatenate(chunks)
    result = {
        "reference": [int(x) for x in images.labels],
        "prediction": [int(x) for x in probabilities.argmax(1)],
        "probabilities": probabilities,
        "label_names": names,
        "model_name": config["arch"],
        "train_set": config.get("train_set"),
    }
    if "image_id" in dataset.column_names:
        result["image_ids"] = list(dataset.select_columns(["image_id"]).with_format(None)["image_id"][:])
    return result
