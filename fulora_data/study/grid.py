"""The study's grid: 5 classifiers x 4 training sets, scored zero-shot on the African test set.

``run_grid`` trains each cell with ``fulora_data.classifier.train`` (resuming an interrupted cell and
reusing a finished one), runs it on the African test split and scores it with the ``paper`` protocol
(``fulora_data.evaluation.evaluate_split``, what ``fulora evaluate`` runs) and writes
``comparison.csv`` and ``comparison.md``: our figures beside the study's published ones
(``fulora_data.evaluation.reference``), in percent, with the difference.

GPU cost (an estimate from FLOP counts, not a measurement; ``benchmarks/gpu_check_classifier.py``
measures ResNet18 on a lent GPU): one cell trains 20 epochs over ~5,950 images, about 120,000 image
passes forward and backward (3x the forward FLOPs). Forward GFLOPs at 224 px: ResNet18 1.8,
DenseNet169 3.4, MobileNetV2 0.3, EfficientNet-B0 0.4, ViT-B/16 17.6, so the 20 cells need about
35 PFLOP, two thirds of them ViT-B/16. On one A100/H100/H200-class GPU with bf16 autocast that is
roughly 1 to 2 GPU-hours in all (the small CNNs are bound by the input pipeline and memory, not FLOPs;
ViT-B/16 alone ~15-25 min per training set); in fp32 on a V100/T4-class card, 4 to 8 hours. On a CPU
it is impractical (days). Each training set also needs its 224 px copy made once (minutes, on CPU).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fulora_data.checkpoint import find_checkpoint, read_state
from fulora_data.classifier.config import RESUME_FIELDS, TRAIN_SETS, TrainConfig
from fulora_data.console import log_stderr
from fulora_data.errors import ConfigError
from fulora_data.io import atomic_write_json, atomic_write_text

MODELS: tuple[str, ...] = ("densenet169", "mobilenet_v2", "efficientnet_b0", "resnet18", "vit_b_16")
METRICS: tuple[str, ...] = ("accuracy", "recall", "precision", "f1", "auc")


def cell_dir(out_dir: Path, model: str, train_set: str) -> Path:
    """The output folder of one cell, e.g. ``OUT/resnet18-HB+DA``."""
    return Path(out_dir) / f"{model}-{train_set}"


def _finished(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds a finished run of exactly this cell's settings.

    A run with other settings (seed, weights, epochs, ...) is not reused: it is handed to ``train`` with
    ``resume=True``, which continues it when only the number of epochs grew and refuses it otherwise.
    """
    found = find_checkpoint(folder / "checkpoint")
    if found is None:
        return False
    saved = read_state(found)
    same = all(saved["config"].get(name) == getattr(config, name) for name in (*RESUME_FIELDS, "epochs"))
    return same and saved["epoch"] >= config.epochs


def comparison_table(rows: list[dict]) -> tuple[str, str]:
    """Render the grid's rows as CSV and Markdown (percentages, ours beside the study's)."""
    header = ["model", "train_set", "n_test"]
    for metric in METRICS:
        header += [f"{metric}_pct", f"paper_{metric}_pct", f"diff_{metric}_pct"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    lines = [
        "| Model | Training set | " + " | ".join(f"{m} (ours / paper / diff)" for m in METRICS) + " |",
        "|---|---|" + "---:|" * len(METRICS),
    ]

    def pct(value):
        return None if value is None else round(100 * value, 2)

    for row in rows:
        cells = [row["model"], row["train_set"], row["n_test"]]
        md = [row["model"], row["train_set"]]
        for metric in METRICS:
            ours = pct(row["scores"].get(metric))
            paper = row["paper"].get(metric) if row["paper"] else None
            diff = round(ours - paper, 2) if ours is not None and paper is not None else None
            cells += [ours, paper, diff]
            md.append(" / ".join("n/a" if v is None else f"{v:.2f}" for v in (ours, paper, diff)))
        writer.writerow(["" if c is None else c for c in cells])
        lines.append("| " + " | ".join(map(str, md)) + " |")
    return buffer.getvalue(), "\n".join(lines) + "\n"


def run_grid(
    out_dir: str | os.PathLike,
    *,
    spanish_source: str | os.PathLike | None,
    african_source: str | os.PathLike | None,
    synthetic_source: str | os.PathLike | None = None,
    models: Sequence[str] = MODELS,
    train_sets: Sequence[str] = tuple(TRAIN_SETS),
    cache_dir: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> list[dict]:
    """Train, predict and score every cell of the grid; write ``comparison.csv`` and ``comparison.md``.

    Args:
        out_dir: One folder per cell (``<model>-<train set>``) and the comparison tables go here.
        spanish_source: The FETAL_PLANES_DB archive or folder (``None`` downloads it).
        african_source: The African archive or folder (``None`` downloads it).
        synthetic_source: The synthetic images for the hybrid sets.
        models: Architectures to run (default: the study's five).
        train_sets: Training sets to run (default: ES, ES+DA, HB, HB+DA).
        cache_dir: Where built datasets are cached.
        overrides: ``TrainConfig`` fields to change from the study's settings (e.g. ``{"epochs": 1}``).
        batch_size: Prediction batch size.
        progress: Show progress bars.
        log: Where notes go.

    Returns:
        One dict per cell: ``model``, ``train_set``, ``n_test``, ``scores`` (paper protocol, fractions),
        ``paper`` (the published row, percent, or None), ``out_dir``.

    Raises:
        ConfigError: For an unknown model or training set, or bad overrides (before anything runs).
    """
    from fulora_data.classifier.train import train
    from fulora_data.evaluation import evaluate_split, published_row
    from fulora_data.prepare import prepare

    out = Path(out_dir)
    overrides = dict(overrides or {})
    configs = []
    for train_set in train_sets:
        for model in models:
            values = {
                **overrides,
                "arch": model,
                "train_set": train_set,
                "source": str(spanish_source) if spanish_source is not None else None,
                "synthetic_source": (
                    str(synthetic_source)
                    if synthetic_source is not None and TRAIN_SETS.get(train_set, ("",))[0] == "hybrid"
                    else None
                ),
                "data_cache_dir": str(cache_dir) if cache_dir is not None else None,
            }
            config = TrainConfig.preset("paper", **values)
            config.validate()
            configs.append(config)
    if not configs:
        raise ConfigError("the grid is empty: give at least one model and one training set")
    out.mkdir(parents=True, exist_ok=True)
    test = prepare("african", source=african_source, cache_dir=cache_dir)["test"]
    rows = []
    for config in configs:
        folder = cell_dir(out, config.arch, config.train_set)
        if _finished(folder, config):
            log(f"{folder.name}: already trained, reusing it")
        else:
            resume = (folder / "checkpoint").is_dir()
            log(f"{folder.name}: {'resuming' if resume else 'training'}")
            train(config, folder, resume=resume, progress=progress, log=log)
        scores = evaluate_split(folder, test, protocol="paper", batch_size=batch_size, where="african:test")
        for key in ("model_name", "train_set"):
            scores.pop(key)
        summary = {k: scores[k] for k in METRICS}
        atomic_write_json(folder / "african_test_paper.json", scores)
        rows.append(
            {
                "model": config.arch,
                "train_set": config.train_set,
                "n_test": len(test),
                "scores": summary,
                "paper": published_row(config.arch, config.train_set),
                "out_dir": str(folder),
                "config": dataclasses.asdict(config),
            }
        )
        as_csv, as_md = comparison_table(rows)  # rewritten after every cell: a partial grid is still readable
        atomic_write_text(out / "comparison.csv", as_csv)
        atomic_write_text(out / "comparison.md", as_md)
    return rows
