"""The study's zero-shot plane classifiers: build, train (resumably, with accelerate) and predict.

* ``TrainConfig`` and ``train(config, out_dir, ...)``: train DenseNet169, MobileNetV2, EfficientNet-B0,
  ResNet18 or ViT-B/16 on ``ES``, ``ES+DA``, ``HB`` or ``HB+DA`` with the study's settings.
* ``predict(checkpoint, dataset)``: references, predictions and probabilities for ``fulora evaluate``.
* ``build_model``, ``ARCHITECTURES``: the torchvision models with a 5-way head.
* ``prepare_image_cache``: the resized copy of a split that training and prediction read.

This package imports torch only when a function that needs it runs.
"""

from __future__ import annotations

from fulora_data.classifier.config import PRESETS, TRAIN_SETS, TrainConfig, parse_train_set
from fulora_data.classifier.data import prepare_image_cache
from fulora_data.classifier.models import ARCHITECTURES, build_model
from fulora_data.classifier.predict import load_classifier, predict
from fulora_data.classifier.train import train

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "TRAIN_SETS",
    "TrainConfig",
    "build_model",
    "load_classifier",
    "parse_train_set",
    "predict",
    "prepare_image_cache",
    "train",
]
