"""Train one of the study's plane classifiers on a named training set, resumably, with accelerate.

The study's recipe (``PRESETS["paper"]``): images resized to 224x224, SGD (lr 1e-3, momentum 0.9),
batch 24, 20 epochs, cross-entropy, 200 random training images held out for validation, the model with
the best validation accuracy kept. Training sets by name:

* ``ES``: the Spanish training split without Maternal cervix (``spanish`` config ``es``, 6,148 images);
* ``HB``: the hybrid set (``hybrid`` config ``es1150-syn5000``: 1,150 real + 5,000 synthetic images);
* ``ES+DA`` / ``HB+DA``: the same with the study's augmentation (see ``fulora_data.classifier.data``).

Output folder::

    OUT/model/       the best model: model.safetensors, config.json, README.md (what predict and the Hub use)
    OUT/checkpoint/  the last finished epoch: model, optimizer, scheduler, RNG state, history (for --resume)

Resuming continues after the last finished epoch and gives bit-for-bit the weights of an uninterrupted
run on the same device: the shuffle of epoch ``e`` is seeded by ``seed + e``, each image's augmentation by
``(seed, epoch, image)``, and the global RNG (dropout) is restored from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fulora_data import __version__
from fulora_data.classifier.data import CachedImages, prepare_image_cache, split_validation
from fulora_data.classifier.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    architecture,
    build_model,
    check_image_size,
    check_weights_option,
)
from fulora_data.errors import ConfigError, DataError, require
from fulora_data.export import public

TRAIN_SETS: dict[str, tuple[str, str, bool]] = {
    "ES": ("spanish", "es", False),
    "ES+DA": ("spanish", "es", True),
    "HB": ("hybrid", "es1150-syn5000", False),
    "HB+DA": ("hybrid", "es1150-syn5000", True),
}
"""The study's training sets: name -> (builder, config, data augmentation)."""

SCHEDULERS = ("constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
MODEL_DIR, CHECKPOINT_DIR = "model", "checkpoint"
# Fields a resumed run must share with the run it continues (others, like paths and workers, may change).
_RESUME_FIELDS = (
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
    "seed",
    "mixed_precision",
    "dataset_options",
)


@dataclass
class TrainConfig:
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
    seed: int = 0
    num_workers: int = 2
    mixed_precision: str = "no"
    cpu: bool = False
    source: str | None = None
    synthetic_source: str | None = None
    data_cache_dir: str | None = None
    image_cache_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)

    @property
    def augment(self) -> bool:
        """Whether the training set name asks for the study's augmentation (``+DA``)."""
        return TRAIN_SETS[self.train_set][2]

    @property
    def dataset(self) -> tuple[str, str]:
        """The builder and config the training set is built from."""
        builder, config, _ = TRAIN_SETS[self.train_set]
        return builder, config

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Build a config from a mapping, refusing unknown keys.

        Raises:
            ConfigError: Naming the unknown key and ``where`` it came from.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown training option {key!r}; known: {', '.join(sorted(known))}"
                )
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Read a YAML preset (keys are this class's fields); ``overrides`` that are not None win.

        Raises:
            ConfigError: If the file is missing, not a YAML mapping, or has an unknown key.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"preset {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"preset {path} is not valid YAML ({err})") from err
        if not isinstance(values, dict):
            raise ConfigError(
                f"preset {path} must be a mapping of training options; got {type(values).__name__}"
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, where=str(path))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """Return a named preset (``PRESETS``) with ``overrides`` that are not None applied.

        Raises:
            ConfigError: For an unknown preset or option.
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls.from_dict(values, where=f"preset {name!r}")

    def validate(self, *, cuda_available: bool | None = None) -> None:
        """Refuse bad values and bad combinations before anything is loaded.

        Raises:
            ConfigError: Quoting the first bad value.
        """
        architecture(self.arch)
        if self.train_set not in TRAIN_SETS:
            raise ConfigError(f"train_set must be one of {', '.join(TRAIN_SETS)}; got {self.train_set!r}")
        check_weights_option(self.weights)
        check_image_size(self.arch, self.image_size, self.weights)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive; got {self.learning_rate!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be 0 or more; got {self.weight_decay!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}")
        if not isinstance(self.validation_size, int) or self.validation_size < 0:
            raise ConfigError(f"validation_size must be 0 or more; got {self.validation_size!r}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be 0 or more; got {self.num_workers!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}; got {self.mixed_precision!r}"
            )
        if self.mixed_precision == "fp16":
            if cuda_available is None:
                cuda_available = require("torch", "train").cuda.is_available()
            if self.cpu or not cuda_available:
                raise ConfigError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on the CPU")
        if self.synthetic_source is not None and self.dataset[0] != "hybrid":
            raise ConfigError(
                f"synthetic_source is only used by the hybrid training sets (HB, HB+DA); got train_set "
                f"{self.train_set!r}"
            )
        if not isinstance(self.dataset_options, dict):
            raise ConfigError(f"dataset_options must be a mapping; got {self.dataset_options!r}")
        from fulora_data.prepare import option_names

        accepted = set(option_names(self.dataset[0]))
        for key in self.dataset_options:
            if key not in accepted or key in ("source", "real_source", "synthetic_source"):
                raise ConfigError(
                    f"dataset_options: {self.dataset[0]} has no option {key!r} here; "
                    f"choose from {', '.join(sorted(accepted - {'real_source', 'synthetic_source'}))}"
                )
        for name in ("source", "synthetic_source"):
            value = getattr(self, name)
            if value is not None and not Path(value).expanduser().exists():
                raise ConfigError(f"{name}: {value} does not exist")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A seconds-long run on the CPU: tiny inputs, random weights, one epoch. For tests and demos only.
    "smoke": {"weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "num_workers": 0},
}
"""Named presets: the study's settings and a smoke test. ``training/configs/*.yaml`` mirror the paper's runs."""


def parse_train_set(name: str) -> str:
    """Normalise a training-set name (``hb+da``, ``HB_DA``) to one of ``TRAIN_SETS``.

    Raises:
        ConfigError: If it names no training set.
    """
    key = "+".join(
        part for part in str(name).strip().upper().replace("_", "+").replace("-", "+").split("+") if part
    )
    if key not in TRAIN_SETS:
        raise ConfigError(f"unknown training set {name!r}; choose one of {', '.join(TRAIN_SETS)}")
    return key


def load_training_set(config: TrainConfig):
    """Build (or reuse) the training data a config names.

    ``ES`` is the ``spanish`` ``es`` train split (``source`` is its archive or folder); ``HB`` is the
    ``hybrid`` ``es1150-syn5000`` set (``source`` is its real part, ``synthetic_source`` its synthetic part),
    whose builder already holds out a patient-grouped validation split.

    Returns:
        ``(train, validation)``: ``datasets.Dataset`` splits; ``validation`` is None when the builder has none.
    """
    from fulora_data.prepare import prepare

    name, config_name = config.dataset
    if name == "hybrid":
        options: dict[str, Any] = {"real_source": config.source, "synthetic_source": config.synthetic_source}
        splits = prepare(
            name, config_name, cache_dir=config.data_cache_dir, **options, **config.dataset_options
        )
    else:
        splits = prepare(
            name, config_name, source=config.source, cache_dir=config.data_cache_dir, **config.dataset_options
        )
    if "train" not in splits:
        raise DataError(f"{name}/{config_name} has no train split (splits: {', '.join(splits)})")
    return splits["train"], splits.get("validation")


def default_image_cache(dataset) -> Path | None:
    """Beside the built dataset's Arrow files (so it goes when the dataset cache is cleared), if it has any."""
    files = getattr(dataset, "cache_files", None) or []
    return Path(files[0]["filename"]).parent / "fulora-image-cache" if files else None


# ------------------------------------------------------------------------- saving and loading
def _write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder completely under a temporary name, then swap it in for ``target``."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def _find_folder(target: Path) -> Path | None:
    """Return ``target``, or its previous version if a crash came between the two renames."""
    if target.is_dir():
        return target
    old = target.with_name(f".{target.name}.old")
    return old if old.is_dir() else None


def save_weights(model, path: Path, metadata: dict[str, str]) -> None:
    """Save a model's state dict as safetensors (CPU, contiguous) with string metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def _rng_state() -> dict:
    torch = require("torch", "train")
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch = require("torch", "train")
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _model_config(
    config: TrainConfig, label_names: list[str], dataset_info: dict, best: dict, counts: dict
) -> dict:
    return {
        "fulora_version": __version__,
        "kind": "fulora-classifier",
        "arch": config.arch,
        "title": architecture(config.arch).title,
        "num_classes": len(label_names),
        "label_names": label_names,
        "image_size": config.image_size,
        "input": {"channels": "gray repeated to 3", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "train_set": config.train_set,
        "augment": config.augment,
        "weights": config.weights if config.weights in ("imagenet", "none") else "file",
        "dataset": dataset_info,
        "images": counts,
        "best": best,
        # Published with the model: local paths (source, caches) become names and checksums.
        "train_config": public(dataclasses.asdict(config)),
    }


# ------------------------------------------------------------------------- the run
def _stderr(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def _check_out_dir(out: Path, config: TrainConfig, resume: bool) -> dict | None:
    """Refuse to overwrite a run without --resume, or to resume a different run; return the saved state."""
    found = _find_folder(out / CHECKPOINT_DIR)
    if not resume:
        if found is not None:
            raise ConfigError(
                f"{out} already holds a training run; pass --resume to continue it or choose another --out"
            )
        return None
    if found is None:
        raise ConfigError(f"--resume: {out} holds no checkpoint to resume from")
    state = json.loads((found / "state.json").read_text())
    saved = state["config"]
    for name in _RESUME_FIELDS:
        if saved.get(name) != getattr(config, name):
            raise ConfigError(
                f"--resume: {out} was trained with {name}={saved.get(name)!r}, not {getattr(config, name)!r}"
            )
    if config.epochs != saved["epochs"] and config.scheduler != "constant":
        raise ConfigError(
            f"--resume: epochs cannot change with the {config.scheduler!r} scheduler; got {config.epochs!r}"
        )
    if state["epoch"] > config.epochs:
        raise ConfigError(
            f"--resume: {out} has already trained {state['epoch']} epochs, more than epochs={config.epochs!r}"
        )
    state["folder"] = str(found)
    return state


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    dataset=None,
    validation_dataset=None,
    stop_after: int | None = None,
    push_to_hub: str | None = None,
    hub_token: str | None = None,
    hub_private: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Train a classifier, keep the best epoch on validation, and optionally push it to the Hub.

    Args:
        config: The run's settings (validated here first).
        out_dir: Output folder (see the module docstring).
        resume: Continue the run in ``out_dir`` after its last finished epoch.
        dataset: A ``datasets.Dataset`` to train on instead of building ``config.train_set``'s data
            (the name still decides augmentation and is recorded).
        validation_dataset: A validation split to use instead of holding out ``validation_size`` random
            training images (the hybrid builder provides one, grouped by patient).
        stop_after: Stop once this many epochs are finished in total (a budgeted or interrupted run;
            ``--resume`` continues it).
        push_to_hub: A Hub model repository to push ``OUT/model`` to when training completes.
        hub_token: Token for the push.
        hub_private: Create the Hub repository as private.
        progress: Show tqdm progress bars.
        log: Where notes go (one line each).

    Returns:
        A summary: ``out_dir``, ``model_dir``, ``epochs_done``, ``best`` (epoch, validation accuracy and
        loss), ``history`` (one dict per epoch), ``notes``, ``images`` and ``hub`` (push result or None).

    Raises:
        ConfigError: For bad options or combinations, an occupied ``out_dir`` without ``resume``, or a
            resume that does not match the saved run.
    """
    torch = require("torch", "train")
    accelerate = require("accelerate", "train")
    from tqdm.auto import tqdm

    # ---- 1. refuse bad options before loading anything
    config.validate()
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be a positive number of epochs; got {stop_after!r}")
    if push_to_hub is not None and "/" not in push_to_hub:
        raise ConfigError(f"--push-to-hub takes a repository id like 'user/name'; got {push_to_hub!r}")
    out = Path(out_dir)
    saved = _check_out_dir(out, config, resume)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    # ---- 2. data: the training split, its resized copy, the validation hold-out
    if dataset is None:
        dataset, validation_dataset = load_training_set(config)
    label_names = list(dataset.features["label"].names)
    cache_dir = config.image_cache_dir or default_image_cache(dataset)
    cache = prepare_image_cache(dataset, config.image_size, cache_dir=cache_dir, progress=progress)
    if validation_dataset is not None and len(validation_dataset):
        if list(validation_dataset.features["label"].names) != label_names:
            raise DataError("the validation split's classes differ from the training split's")
        val_cache = prepare_image_cache(
            validation_dataset,
            config.image_size,
            cache_dir=config.image_cache_dir or default_image_cache(validation_dataset),
            progress=progress,
        )
        train_data = CachedImages(cache, augment=config.augment, seed=config.seed)
        val_data = CachedImages(val_cache, augment=False)
        log(f"note: validating on the dataset's own validation split ({len(val_data)} images)")
    else:
        train_idx, val_idx, note = split_validation(len(dataset), config.validation_size, config.seed)
        if note:
            notes.append(note)
            log(f"note: {note}")
        train_data = CachedImages(cache, train_idx, augment=config.augment, seed=config.seed)
        val_data = CachedImages(cache, val_idx, augment=False)
    counts = {"train": len(train_data), "validation": len(val_data)}
    dataset_info = {
        "name": config.dataset[0],
        "config": config.dataset[1],
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_images": len(train_data) + len(val_data),
    }

    # ---- 3. model, optimiser, scheduler, accelerator
    accelerator = accelerate.Accelerator(cpu=config.cpu, mixed_precision=config.mixed_precision)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, len(label_names), weights=config.weights, image_size=config.image_size)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    if config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = torch.nn.CrossEntropyLoss()
    start_epoch, step, history, best = 0, 0, [], {"epoch": None, "accuracy": None, "loss": None}
    if saved is not None:
        folder = Path(saved["folder"])
        from safetensors.torch import load_file

        accelerator.unwrap_model(model).load_state_dict(load_file(str(folder / "model.safetensors")))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        _set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
        start_epoch, step, history, best = saved["epoch"], saved["step"], saved["history"], saved["best"]
        log(f"resuming {out} after epoch {start_epoch}")
    last_epoch = min(config.epochs, stop_after) if stop_after is not None else config.epochs

    def evaluate_validation() -> tuple[float | None, float | None]:
        if not len(val_data):
            return None, None
        model.eval()
        loader = torch.utils.data.DataLoader(val_data, batch_size=64, num_workers=config.num_workers)
        correct, total_loss = 0, 0.0
        with torch.no_grad(), accelerator.autocast():
            for images, labels in loader:
                images, labels = images.to(accelerator.device), labels.to(accelerator.device)
                logits = model(images)
                total_loss += float(loss_fn(logits.float(), labels)) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
        return correct / len(val_data), total_loss / len(val_data)

    def save_best(epoch: int, accuracy, loss) -> None:
        best.update(epoch=epoch, accuracy=accuracy, loss=loss)
        meta = {"arch": config.arch, "num_classes": str(len(label_names)), "format": "pt"}

        def write(folder: Path) -> None:
            save_weights(accelerator.unwrap_model(model), folder / "model.safetensors", meta)
            cfg = _model_config(config, label_names, dataset_info, dict(best), counts)
            (folder / "config.json").write_text(json.dumps(cfg, indent=2))

        _write_folder(out / MODEL_DIR, write)

    def save_checkpoint(epoch: int) -> None:
        def write(folder: Path) -> None:
            save_weights(accelerator.unwrap_model(model), folder / "model.safetensors", {"format": "pt"})
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(scheduler.state_dict(), folder / "scheduler.pt")
            torch.save(_rng_state(), folder / "rng.pt")
            state = {
                "epoch": epoch,
                "step": step,
                "history": history,
                "best": best,
                "config": dataclasses.asdict(config),
                "fulora_version": __version__,
            }
            (folder / "state.json").write_text(json.dumps(state, indent=2))

        _write_folder(out / CHECKPOINT_DIR, write)

    # ---- 4. the epoch loop
    for epoch in range(start_epoch, last_epoch):
        model.train()
        train_data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            train_data,
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed + epoch),
            num_workers=config.num_workers,
            pin_memory=accelerator.device.type == "cuda",
        )
        seen, correct, total_loss = 0, 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        for images, labels in bar:
            images = images.to(accelerator.device, non_blocking=True)
            labels = labels.to(accelerator.device, non_blocking=True)
            with accelerator.autocast():
                logits = model(images)
                loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            seen += len(labels)
            total_loss += float(loss.detach()) * len(labels)
            correct += int((logits.detach().argmax(1) == labels).sum())
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        scheduler.step()
        val_accuracy, val_loss = evaluate_validation()
        row = {
            "epoch": epoch + 1,
            "train_loss": total_loss / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "validation_accuracy": val_accuracy,
            "validation_loss": val_loss,
            "learning_rate": optimizer.param_groups[0]["lr"],
        }
        history.append(row)
        log(
            f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}"
            + (f", validation accuracy {val_accuracy:.4f}" if val_accuracy is not None else "")
        )
        improved = val_accuracy is None or (
            best["accuracy"] is None
            or val_accuracy > best["accuracy"]
            or (val_accuracy == best["accuracy"] and val_loss < best["loss"])
        )
        if improved:
            save_best(epoch + 1, val_accuracy, val_loss)
        save_checkpoint(epoch + 1)

    # ---- 5. card and push
    epochs_done = history[-1]["epoch"] if history else start_epoch
    finished = epochs_done >= config.epochs
    model_dir = out / MODEL_DIR
    hub = None
    if model_dir.is_dir():
        from fulora_data.classifier.card import write_model_card

        write_model_card(model_dir, history=history)
    if push_to_hub is not None:
        if not finished:
            notes.append(
                f"not pushed to {push_to_hub}: training stopped after {epochs_done} of {config.epochs} epochs"
            )
            log(f"note: {notes[-1]}")
        else:
            from fulora_data.hub import push_model

            hub = push_model(model_dir, push_to_hub, token=hub_token, private=hub_private)
    return {
        "out_dir": str(out),
        "model_dir": str(model_dir),
        "epochs_done": epochs_done,
        "finished": finished,
        "best": best,
        "history": history,
        "notes": notes,
        "images": counts,
        "hub": hub,
    }
