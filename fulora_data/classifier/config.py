"""The classifier trainer's settings: ``TrainConfig``, its presets and the study's training sets.

Kept apart from the trainer so that reading, validating and comparing a run's settings (the CLI, the study's
grid, a resumed run) needs neither torch nor the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data.classifier.models import architecture, check_image_size, check_weights_option
from fulora_data.errors import OptionValueError, require
from fulora_data.presets import RunConfig, field_error
from fulora_data.splits import VALIDATION_POLICIES

TRAIN_SETS: dict[str, tuple[str, str, bool]] = {
    "ES": ("spanish", "es", False),
    "ES+DA": ("spanish", "es", True),
    "HB": ("hybrid", "es1150-syn5000", False),
    "HB+DA": ("hybrid", "es1150-syn5000", True),
}
"""The study's training sets: name -> (builder, config, data augmentation)."""

SCHEDULERS = ("constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
# Fields a resumed run must share with the run it continues (others, like paths and workers, may change).
RESUME_FIELDS = (
    "arch",
    "train_set",
    "weights",
    "image_size",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "scheduler",
    "validation_size",
    "validation_policy",
    "seed",
    "mixed_precision",
    "dataset_options",
    "hub_data",
)


@dataclass
class TrainConfig(RunConfig):
    """Everything a classifier training run uses. Defaults are the study's settings.

    Attributes:
        arch: One of ``fulora_data.classifier.models.ARCHITECTURES``.
        train_set: ``ES``, ``ES+DA``, ``HB`` or ``HB+DA``.
        weights: ``imagenet``, ``none`` (random init) or a local ImageNet weights file.
        image_size: Side of the square input (224 in the study; tests use 32).
        epochs: Training epochs.
        batch_size: Images per optimisation step.
        learning_rate: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (0 in the study).
        scheduler: ``constant`` (the study) or ``cosine`` (annealed to 0 over ``epochs``).
        validation_size: Training images held out for validation (0: none, keep the last epoch).
        validation_policy: How they are chosen when the training set has no validation split of its own:
            ``patient`` (whole patients, so no patient is on both sides; images without a patient id count
            one by one) or ``study`` (random images, patient-blind, as the study did). See
            ``fulora_data.splits``.
        seed: Seed of the initialisation, hold-out, shuffling and augmentation.
        num_workers: DataLoader worker processes (no effect on the results).
        mixed_precision: ``no``, ``fp16`` (GPU only) or ``bf16``.
        cpu: Train on the CPU even if a GPU is present.
        source: The Spanish archive or folder (``None`` downloads it); for HB, the real part.
        synthetic_source: The synthetic images for ``HB`` (passed to the ``hybrid`` builder).
        data_cache_dir: Where built datasets are cached (default: the ``datasets`` cache).
        image_cache_dir: Where the resized copies go (default: beside the built dataset).
        dataset_options: Options of the training set's builder (``fulora data list`` shows them), e.g. for
            ``HB`` ``{"labels": "synthetic_train_5000.csv"}`` or ``{"real_subset_csv": ...}``.
        hub_data: Train on this published fulora dataset, ``ORG/NAME[@REVISION][/CONFIG]`` (``--data``),
            instead of building ``train_set``'s data (the name still decides augmentation); its train split
            is trained on, its validation split (if any) validated on. ``source``, ``synthetic_source`` and
            ``dataset_options`` then do not apply and are refused.
    """

    arch: str = "resnet18"
    train_set: str = "ES"
    weights: str = "imagenet"
    image_size: int = 224
    epochs: int = 20
    batch_size: int = 24
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "constant"
    validation_size: int = 200
    validation_policy: str = "patient"
    seed: int = 0
    num_workers: int = 2
    mixed_precision: str = "no"
    cpu: bool = False
    source: str | None = None
    synthetic_source: str | None = None
    data_cache_dir: str | None = None
    image_cache_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    hub_data: str | None = None

    @property
    def augment(self) -> bool:
        """Whether the training set name asks for the study's augmentation (``+DA``)."""
        return TRAIN_SETS[self.train_set][2]

    @property
    def dataset(self) -> tuple[str, str]:
        """The builder and config the training set is built from."""
        builder, config, _ = TRAIN_SETS[self.train_set]
        return builder, config

    KIND = "training"

    def validate(self, *, cuda_available: bool | None = None) -> None:
        """Refuse bad values and bad combinations before anything is loaded.

        Raises:
            ConfigError: Quoting the first bad value.
        """
        architecture(self.arch)
        if self.train_set not in TRAIN_SETS:
            raise field_error("train_set", f"must be one of {', '.join(TRAIN_SETS)}; got {self.train_set!r}")
        check_weights_option(self.weights)
        check_image_size(self.arch, self.image_size, self.weights)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise field_error(name, f"must be a positive integer; got {value!r}")
        if not self.learning_rate > 0:
            raise field_error("learning_rate", f"must be positive; got {self.learning_rate!r}")
        if not 0 <= self.momentum < 1:
            raise field_error("momentum", f"must be in [0, 1); got {self.momentum!r}")
        if self.weight_decay < 0:
            raise field_error("weight_decay", f"must be 0 or more; got {self.weight_decay!r}")
        if self.scheduler not in SCHEDULERS:
            raise field_error("scheduler", f"must be one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}")
        if not isinstance(self.validation_size, int) or self.validation_size < 0:
            raise field_error("validation_size", f"must be 0 or more; got {self.validation_size!r}")
        if self.validation_policy not in VALIDATION_POLICIES:
            raise field_error(
                "validation_policy",
                f"must be one of {', '.join(VALIDATION_POLICIES)}; got {self.validation_policy!r}",
            )
        if self.num_workers < 0:
            raise field_error("num_workers", f"must be 0 or more; got {self.num_workers!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise field_error(
                "mixed_precision",
                f"must be one of {', '.join(MIXED_PRECISION)}; got {self.mixed_precision!r}",
            )
        if self.mixed_precision == "fp16":
            if cuda_available is None:
                cuda_available = require("torch", "train").cuda.is_available()
            if self.cpu or not cuda_available:
                raise field_error("mixed_precision", "'fp16' needs a CUDA GPU; use 'bf16' or 'no' on the CPU")
        if self.hub_data is not None:
            from fulora_data.dataset_ref import DatasetRef

            DatasetRef.parse(self.hub_data, option="--data", split="none", hub_only=True)
            given = [
                option
                for option, value in (
                    ("--source", self.source),
                    ("--synthetic-source", self.synthetic_source),
                    ("--data-option", self.dataset_options),
                )
                if value
            ]
            if given:
                raise OptionValueError(
                    f"--data {self.hub_data!r} trains on a published dataset, which {' and '.join(given)} "
                    "cannot change: drop them, or build the training set locally without --data"
                )
        if self.synthetic_source is not None and self.dataset[0] != "hybrid":
            raise field_error(
                "synthetic_source",
                f"is only used by the hybrid training sets (HB, HB+DA); got train_set {self.train_set!r}",
            )
        if not isinstance(self.dataset_options, dict):
            raise field_error("dataset_options", f"must be a mapping; got {self.dataset_options!r}")
        from fulora_data.prepare import option_names

        accepted = set(option_names(self.dataset[0]))
        for key in self.dataset_options:
            if key not in accepted or key in ("source", "real_source", "synthetic_source"):
                raise OptionValueError(
                    f"dataset_options: {self.dataset[0]} has no option {key!r} here; "
                    f"choose from {', '.join(sorted(accepted - {'real_source', 'synthetic_source'}))}"
                )
        for name in ("source", "synthetic_source"):
            value = getattr(self, name)
            if value is not None and not Path(value).expanduser().exists():
                raise field_error(name, f": {value} does not exist")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A seconds-long run on the CPU: tiny inputs, random weights, one epoch. For tests and demos only.
    "smoke": {"weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "num_workers": 0},
}
"""Named presets: the study's settings and a smoke test. ``training/configs/*.yaml`` mirror the paper's runs."""
TrainConfig.PRESETS = PRESETS


def parse_train_set(name: str) -> str:
    """Normalise a training-set name (``hb+da``, ``HB_DA``) to one of ``TRAIN_SETS``.

    Raises:
        ConfigError: If it names no training set.
    """
    key = "+".join(
        part for part in str(name).strip().upper().replace("_", "+").replace("-", "+").split("+") if part
    )
    if key not in TRAIN_SETS:
        raise OptionValueError(f"unknown training set {name!r}; choose one of {', '.join(TRAIN_SETS)}")
    return key
