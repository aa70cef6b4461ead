"""Train one of the study's plane classifiers on a named training set, resumably, with accelerate.

The study's recipe (``PRESETS["paper"]``): images resized to 224x224, SGD (lr 1e-3, momentum 0.9),
batch 24, 20 epochs, cross-entropy, 200 training images held out for validation, the model with the best
validation accuracy kept. The study held out random images; here whole patients are held out by default
(``validation_policy="patient"``) so that no patient is on both sides, and ``validation_policy="study"``
draws random images as the study did. The policy used is recorded in ``config.json`` and the summary.
Training sets by name:

* ``ES``: the Spanish training split without Maternal cervix (``spanish`` config ``es``, 6,148 images);
* ``HB``: the hybrid set (``hybrid`` config ``es1150-syn5000``: 1,150 real + 5,000 synthetic images);
* ``ES+DA`` / ``HB+DA``: the same with the study's augmentation (see ``fulora_data.classifier.data``).

Output folder::

    OUT/model/       the best model: model.safetensors, config.json, README.md (what predict and the Hub use)
    OUT/checkpoint/  the last finished epoch: model, optimizer, scheduler, RNG state, history (for --resume)

Resuming continues after the last finished epoch and gives bit-for-bit the weights of an uninterrupted
run on the same device: the shuffle of epoch ``e`` is seeded by ``seed + e``, each image's augmentation by
``(seed, epoch, image)``, and the global RNG (dropout) is restored from the checkpoint.

One process only: under ``accelerate launch`` with several processes the run is refused at start-up (the
loaders are not sharded and BatchNorm statistics would differ from a one-process run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data import __version__
from fulora_data import datasets_internals as hf
from fulora_data.checkpoint import (
    STATE_FILE,
    atomic_folder,
    check_same_run,
    find_checkpoint,
    load_rng_state,
    read_state,
    save_rng_state,
    tracker_name,
)
from fulora_data.classifier.config import (
    PRESETS,
    RESUME_FIELDS,
    TRAIN_SETS,
    TrainConfig,
    parse_train_set,
)
from fulora_data.classifier.data import (
    CachedImages,
    default_image_cache,
    load_training_set,
    prepare_image_cache,
)
from fulora_data.classifier.models import IMAGENET_MEAN, IMAGENET_STD, architecture, build_model
from fulora_data.console import log_stderr
from fulora_data.errors import ConfigError, DataError, require
from fulora_data.export import public
from fulora_data.io import atomic_write_json
from fulora_data.splits import hold_out_patients, hold_out_random

__all__ = ["PRESETS", "RESUME_FIELDS", "TRAIN_SETS", "TrainConfig", "parse_train_set", "train"]

MODEL_DIR, CHECKPOINT_DIR = "model", "checkpoint"


def save_weights(model, path: Path, metadata: dict[str, str]) -> None:
    """Save a model's state dict as safetensors (CPU, contiguous) with string metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def refuse_multi_process() -> None:
    """Refuse a run launched as several processes (``accelerate launch --num_processes N``, ``torchrun``).

    Raises:
        ConfigError: Naming the number of processes.
    """
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if processes > 1:
        raise ConfigError(
            f"classifier training runs in one process, but this one was launched as {processes} processes "
            "(WORLD_SIZE); run it without accelerate launch, or with --num_processes 1"
        )


def _check_out_dir(out: Path, config: TrainConfig, resume: bool) -> tuple[Path, dict] | None:
    """Refuse to overwrite a run without --resume, or to resume a different run; return the saved state."""
    found = find_checkpoint(out / CHECKPOINT_DIR)
    if not resume:
        if found is not None:
            raise ConfigError(
                f"{out} already holds a training run; pass --resume to continue it or choose another --out"
            )
        return None
    if found is None:
        raise ConfigError(f"--resume: {out} holds no checkpoint to resume from")
    state = read_state(found)
    saved = state["config"]
    # Runs saved before the policy existed held out random images.
    saved.setdefault("validation_policy", "study")
    check_same_run(saved, dataclasses.asdict(config), RESUME_FIELDS, where=str(out))
    if config.epochs != saved["epochs"] and config.scheduler != "constant":
        raise ConfigError(
            f"--resume: epochs cannot change with the {config.scheduler!r} scheduler; got {config.epochs!r}"
        )
    if state["epoch"] > config.epochs:
        raise ConfigError(
            f"--resume: {out} has already trained {state['epoch']} epochs, more than epochs={config.epochs!r}"
        )
    return found, state


# ------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """What the epoch loop reads: the training and validation images and what the model card records."""

    train: CachedImages
    validation: CachedImages
    label_names: list[str]
    info: dict[str, Any]
    validation_policy: str
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation)}


def _hold_out(dataset, config: TrainConfig) -> tuple[Any, Any, str | None, str]:
    """Split a training set without a validation split of its own; return the indices, a note, the policy."""
    from fulora_data.builders.build import column

    if config.validation_policy == "patient":
        patients = column(dataset, "patient_id") if "patient_id" in dataset.column_names else []
        if any(patients):
            train_idx, val_idx, note = hold_out_patients(patients, config.validation_size, config.seed)
            return train_idx, val_idx, note, "patient"
        note = "the training set has no patient ids: holding out random images (validation_policy study)"
        train_idx, val_idx, scaled = hold_out_random(len(dataset), config.validation_size, config.seed)
        return train_idx, val_idx, "; ".join(n for n in (note, scaled) if n), "study"
    train_idx, val_idx, note = hold_out_random(len(dataset), config.validation_size, config.seed)
    return train_idx, val_idx, note, "study"


def load_data(config: TrainConfig, dataset, validation_dataset, *, progress: bool) -> TrainingData:
    """Build (or take, or download with ``hub_data``) the training set, its resized copy and validation."""
    info = {"name": config.dataset[0], "config": config.dataset[1]}
    if dataset is None and config.hub_data is not None:
        from fulora_data.hub_pull import load_training_splits

        dataset, validation_dataset, loaded = load_training_splits(config.hub_data)
        # What the run was trained on is the published repo at its commit, not train_set's builder.
        info = {"name": loaded["repo"].split("/", 1)[1], **loaded}
    elif dataset is None:
        dataset, validation_dataset = load_training_set(config)
    label_names = list(dataset.features["label"].names)
    cache_dir = config.image_cache_dir or default_image_cache(dataset)
    cache = prepare_image_cache(dataset, config.image_size, cache_dir=cache_dir, progress=progress)
    notes: list[str] = []
    if validation_dataset is not None and len(validation_dataset):
        if list(validation_dataset.features["label"].names) != label_names:
            raise DataError("the validation split's classes differ from the training split's")
        val_cache = prepare_image_cache(
            validation_dataset,
            config.image_size,
            cache_dir=config.image_cache_dir or default_image_cache(validation_dataset),
            progress=progress,
        )
        train = CachedImages(cache, augment=config.augment, seed=config.seed)
        validation = CachedImages(val_cache, augment=False)
        policy = "the dataset's own validation split"
    else:
        train_idx, val_idx, note, policy = _hold_out(dataset, config)
        if note:
            notes.append(note)
        train = CachedImages(cache, train_idx, augment=config.augment, seed=config.seed)
        validation = CachedImages(cache, val_idx, augment=False)
    info.update(fingerprint=hf.fingerprint(dataset), num_images=len(train) + len(validation))
    return TrainingData(train, validation, label_names, info, policy, notes)


# ------------------------------------------------------------------------- the run's state
@dataclass
class TrainingRun:
    """One run's model, optimiser and progress: the only state the epoch loop changes.

    ``epoch`` counts finished epochs; ``history`` holds one row per finished epoch; ``best`` is the epoch
    kept in ``OUT/model`` (its number, validation accuracy and loss).
    """

    config: TrainConfig
    out: Path
    data: TrainingData
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    loss_fn: Any
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "accuracy": None, "loss": None})
    tracker: str | None = None
    confusion: list[list[int]] | None = None


def start_run(config: TrainConfig, out: Path, data: TrainingData, tracker: str | None = None) -> TrainingRun:
    """Seed, build the model, optimiser and scheduler, and hand them to accelerate (with its tracker)."""
    torch = require("torch", "train")
    accelerate = require("accelerate", "train")
    accelerator = accelerate.Accelerator(
        cpu=config.cpu,
        mixed_precision=config.mixed_precision,
        log_with=tracker,
        project_dir=str(out / "logs"),
    )
    torch.manual_seed(config.seed)
    model = build_model(
        config.arch, len(data.label_names), weights=config.weights, image_size=config.image_size
    )
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
    return TrainingRun(
        config=config,
        out=out,
        data=data,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=torch.nn.CrossEntropyLoss(),
        tracker=tracker,
    )


def restore(run: TrainingRun, folder: Path, state: dict[str, Any]) -> None:
    """Load a checkpoint's weights, optimiser, scheduler, RNG states and progress into ``run``."""
    torch = require("torch", "train")
    from safetensors.torch import load_file

    run.accelerator.unwrap_model(run.model).load_state_dict(load_file(str(folder / "model.safetensors")))
    run.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    run.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    load_rng_state(folder)
    run.epoch, run.step, run.history, run.best = (
        state["epoch"],
        state["step"],
        state["history"],
        state["best"],
    )


def train_epoch(run: TrainingRun, epoch: int, *, progress: bool) -> dict[str, float]:
    """Train one epoch (0-based ``epoch``); return its mean training loss and accuracy."""
    torch = require("torch", "train")
    from tqdm.auto import tqdm

    config, accelerator = run.config, run.accelerator
    run.model.train()
    run.data.train.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        run.data.train,
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
            logits = run.model(images)
            loss = run.loss_fn(logits.float(), labels)
        run.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        run.optimizer.step()
        run.step += 1
        seen += len(labels)
        total_loss += float(loss.detach()) * len(labels)
        correct += int((logits.detach().argmax(1) == labels).sum())
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    run.scheduler.step()
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


def validate(run: TrainingRun) -> tuple[float | None, float | None]:
    """Return the validation accuracy and mean loss, or ``(None, None)`` without validation images.

    The confusion matrix (rows: true class, columns: predicted, in ``label_names`` order) is kept in
    ``run.confusion`` for the tracker.
    """
    torch = require("torch", "train")
    data = run.data.validation
    if not len(data):
        return None, None
    run.model.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=64, num_workers=run.config.num_workers)
    classes = len(run.data.label_names)
    confusion = torch.zeros((classes, classes), dtype=torch.long)
    correct, total_loss = 0, 0.0
    with torch.no_grad(), run.accelerator.autocast():
        for images, labels in loader:
            images, labels = images.to(run.accelerator.device), labels.to(run.accelerator.device)
            logits = run.model(images)
            total_loss += float(run.loss_fn(logits.float(), labels)) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            pairs = labels.cpu() * classes + logits.argmax(1).cpu()
            confusion += torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    run.confusion = confusion.tolist()
    return correct / len(data), total_loss / len(data)


def log_epoch(run: TrainingRun, row: dict[str, Any]) -> None:
    """Send an epoch's metrics and the validation confusion matrix (as a table and a picture) to the tracker."""
    if run.tracker is None:
        return
    values = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, int | float)}
    if run.confusion is not None:
        names = run.data.label_names
        table = ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        table += [
            f"| {name} | " + " | ".join(map(str, counts)) + " |"
            for name, counts in zip(names, run.confusion, strict=True)
        ]
        values["confusion_matrix"] = "\n".join(table)
    run.accelerator.log(values, step=row["epoch"])
    if run.confusion is not None:
        picture = confusion_picture(run.confusion)
        for tracker in run.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"confusion_matrix": picture[None]}, step=row["epoch"], dataformats="NHWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({"confusion_matrix": picture[None]}, step=row["epoch"])


def confusion_picture(confusion: list[list[int]], cell: int = 24):
    """A confusion matrix as an RGB heat map (HWC uint8): each row scaled to its true class's count."""
    import numpy as np

    counts = np.asarray(confusion, dtype=np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    gray = (255 * (1 - share)).astype(np.uint8).repeat(cell, axis=0).repeat(cell, axis=1)
    return np.stack([gray, gray, np.full_like(gray, 255)], axis=-1)


def improves(best: dict[str, Any], accuracy: float | None, loss: float | None) -> bool:
    """Whether an epoch beats the best so far: higher accuracy, or equal accuracy and lower loss.

    Without validation every epoch "improves", so the last one is kept.
    """
    if accuracy is None or best["accuracy"] is None:
        return True
    return accuracy > best["accuracy"] or (accuracy == best["accuracy"] and loss < best["loss"])


def _model_config(run: TrainingRun) -> dict:
    config = run.config
    return {
        "fulora_version": __version__,
        "kind": "fulora-classifier",
        "arch": config.arch,
        "title": architecture(config.arch).title,
        "num_classes": len(run.data.label_names),
        "label_names": run.data.label_names,
        "image_size": config.image_size,
        "input": {"channels": "gray repeated to 3", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "train_set": config.train_set,
        "augment": config.augment,
        "weights": config.weights if config.weights in ("imagenet", "none") else "file",
        "dataset": run.data.info,
        "images": run.data.counts,
        "validation_policy": run.data.validation_policy,
        "best": dict(run.best),
        # Published with the model: local paths (source, caches) become names and checksums.
        "train_config": public(dataclasses.asdict(config)),
    }


def save_best(run: TrainingRun) -> None:
    """Write ``OUT/model`` (weights and ``config.json``) whole, replacing the previous best."""
    meta = {"arch": run.config.arch, "num_classes": str(len(run.data.label_names)), "format": "pt"}
    with atomic_folder(run.out / MODEL_DIR) as folder:
        save_weights(run.accelerator.unwrap_model(run.model), folder / "model.safetensors", meta)
        atomic_write_json(folder / "config.json", _model_config(run))


def save_checkpoint(run: TrainingRun) -> None:
    """Write ``OUT/checkpoint`` whole: everything ``restore`` needs to continue exactly."""
    torch = require("torch", "train")
    with atomic_folder(run.out / CHECKPOINT_DIR) as folder:
        save_weights(run.accelerator.unwrap_model(run.model), folder / "model.safetensors", {"format": "pt"})
        torch.save(run.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(run.scheduler.state_dict(), folder / "scheduler.pt")
        save_rng_state(folder)
        state = {
            "epoch": run.epoch,
            "step": run.step,
            "history": run.history,
            "best": run.best,
            "config": dataclasses.asdict(run.config),
            "fulora_version": __version__,
        }
        atomic_write_json(folder / STATE_FILE, state)


# ------------------------------------------------------------------------- the run
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
    report_to: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """Train a classifier, keep the best epoch on validation, and optionally push it to the Hub.

    Args:
        config: The run's settings (validated here first).
        out_dir: Output folder (see the module docstring).
        resume: Continue the run in ``out_dir`` after its last finished epoch.
        dataset: A ``datasets.Dataset`` to train on instead of building ``config.train_set``'s data
            (the name still decides augmentation and is recorded). ``config.hub_data`` downloads one.
        validation_dataset: A validation split to use instead of holding out ``validation_size`` training
            images by ``validation_policy`` (the hybrid builder provides one, grouped by patient).
        stop_after: Stop once this many epochs are finished in total (a budgeted or interrupted run;
            ``--resume`` continues it).
        push_to_hub: A Hub model repository to push ``OUT/model`` to when training completes.
        hub_token: Token for the push.
        hub_private: Create the Hub repository as private.
        report_to: ``tensorboard``, ``wandb`` or ``none``: where epoch metrics and the validation
            confusion matrix go (accelerate's trackers, logs in ``OUT/logs``). None: TensorBoard when
            installed, else none.
        progress: Show tqdm progress bars.
        log: Where notes go (one line each).

    Returns:
        A summary: ``out_dir``, ``model_dir``, ``epochs_done``, ``best`` (epoch, validation accuracy and
        loss), ``history`` (one dict per epoch), ``notes``, ``images``, ``validation_policy`` and ``hub``
        (push result or None).

    Raises:
        ConfigError: For bad options or combinations, an occupied ``out_dir`` without ``resume``, a resume
            that does not match the saved run, or a launch as several processes.
    """
    # ---- 1. refuse bad options before loading anything
    refuse_multi_process()
    config.validate()
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be a positive number of epochs; got {stop_after!r}")
    if push_to_hub is not None and "/" not in push_to_hub:
        raise ConfigError(f"--push-to-hub takes a repository id like 'user/name'; got {push_to_hub!r}")
    tracker = tracker_name(report_to)
    out = Path(out_dir)
    saved = _check_out_dir(out, config, resume)
    out.mkdir(parents=True, exist_ok=True)

    # ---- 2. data, then the model and its optimiser (restored from the checkpoint when resuming)
    data = load_data(config, dataset, validation_dataset, progress=progress)
    if data.validation_policy == "the dataset's own validation split":
        log(f"note: validating on the dataset's own validation split ({len(data.validation)} images)")
    for note in data.notes:
        log(f"note: {note}")
    run = start_run(config, out, data, tracker)
    if saved is not None:
        restore(run, *saved)
        log(f"resuming {out} after epoch {run.epoch}")
    if tracker is not None:
        run.accelerator.init_trackers(
            "fulora-classifier",
            config={
                k: v for k, v in dataclasses.asdict(config).items() if isinstance(v, int | float | str | bool)
            },
        )
    last_epoch = min(config.epochs, stop_after) if stop_after is not None else config.epochs

    # ---- 3. the epoch loop: train, validate, keep the best, checkpoint
    while run.epoch < last_epoch:
        row = train_epoch(run, run.epoch, progress=progress)
        accuracy, loss = validate(run)
        run.epoch += 1
        row = {
            "epoch": run.epoch,
            **row,
            "validation_accuracy": accuracy,
            "validation_loss": loss,
            "learning_rate": run.optimizer.param_groups[0]["lr"],
        }
        run.history.append(row)
        log_epoch(run, row)
        log(
            f"epoch {run.epoch}: train loss {row['train_loss']:.4f}"
            + (f", validation accuracy {accuracy:.4f}" if accuracy is not None else "")
        )
        if improves(run.best, accuracy, loss):
            run.best = {"epoch": run.epoch, "accuracy": accuracy, "loss": loss}
            save_best(run)
        save_checkpoint(run)

    if tracker is not None:
        run.accelerator.end_training()

    # ---- 4. card and push
    notes = list(data.notes)
    finished = run.epoch >= config.epochs
    model_dir = out / MODEL_DIR
    hub = None
    if model_dir.is_dir():
        from fulora_data.classifier.card import write_model_card

        write_model_card(model_dir, history=run.history)
    if push_to_hub is not None:
        if not finished:
            notes.append(
                f"not pushed to {push_to_hub}: training stopped after {run.epoch} of {config.epochs} epochs"
            )
            log(f"note: {notes[-1]}")
        else:
            from fulora_data.hub import push_model

            hub = push_model(model_dir, push_to_hub, token=hub_token, private=hub_private)
    return {
        "out_dir": str(out),
        "model_dir": str(model_dir),
        "epochs_done": run.epoch,
        "finished": finished,
        "best": run.best,
        "history": run.history,
        "notes": notes,
        "images": data.counts,
        "validation_policy": data.validation_policy,
        "hub": hub,
    }
