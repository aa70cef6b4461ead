"""Device time per step, per device kind: figures kept with the package, each labelled by where it came from.

A figure is ``(seconds per unit, fixed seconds, source)``; a step's estimate is ``fixed + units x per
unit``, where the unit is the step's (LoRA: optimizer steps; generation: images; others: one run).
``source`` says whether it was measured (where, how) or is an estimate (from what). A step that is done
shows the seconds it took instead, labelled ``measured``.

The ``gpu`` figures are for one A100/H100/H200-class GPU and are estimates: no GPU run of the study has
been timed with fulora yet (``benchmarks/gpu_check_*.py`` measure when a GPU is lent). The ``cpu`` figures
for the ``smoke`` preset were measured on this project's 2 shared CPU cores (load about 5).
"""

from __future__ import annotations

from typing import Any

ESTIMATE = "estimate"
MEASURED = "measured"

# kind -> device -> (seconds per unit, fixed seconds, source)
FIGURES: dict[str, dict[str, tuple[float, float, str]]] = {
    "sources": {"cpu": (0.0, 6.0, MEASURED), "gpu": (0.0, 6.0, ESTIMATE)},
    "base": {"cpu": (0.0, 1.0, MEASURED), "gpu": (0.0, 1.0, ESTIMATE)},
    # SD 1.5 UNet + CLIP LoRA at 512 px, batch 2, bf16: ~0.3 s per step on an H100 (kohya reports
    # ~3 it/s at batch 1 on an A100); CPU: the smoke preset's 64 px tiny model.
    "lora": {"cpu": (0.5, 4.0, MEASURED), "gpu": (0.3, 60.0, ESTIMATE)},
    # 512 px, 20 steps, batch 8, fp16: ~0.25 s per image on an H100.
    "generate": {"cpu": (0.1, 2.0, MEASURED), "gpu": (0.25, 30.0, ESTIMATE)},
    "datasets": {"cpu": (2.0, 2.0, MEASURED), "gpu": (60.0, 0.0, ESTIMATE)},
    "audit": {"cpu": (0.0, 2.0, MEASURED), "gpu": (0.0, 60.0, ESTIMATE)},
    "classifier": {"cpu": (6.0, 0.0, MEASURED), "gpu": (300.0, 0.0, ESTIMATE)},
    "evaluate": {"cpu": (0.0, 2.0, MEASURED), "gpu": (0.0, 20.0, ESTIMATE)},
    "compare": {"cpu": (10.0, 0.0, ESTIMATE), "gpu": (40.0, 20.0, ESTIMATE)},
    "report": {"cpu": (0.0, 1.0, MEASURED), "gpu": (0.0, 5.0, ESTIMATE)},
    "publish": {"cpu": (0.0, 30.0, ESTIMATE), "gpu": (0.0, 600.0, ESTIMATE)},
}

# One grid cell's training on one GPU (20 epochs over ~5,950 images, 224 px): from FLOP counts, see
# fulora_data.study.grid's docstring. ViT-B/16 dominates.
CLASSIFIER_GPU_SECONDS: dict[str, float] = {
    "resnet18": 180.0,
    "mobilenet_v2": 200.0,
    "efficientnet_b0": 240.0,
    "densenet169": 420.0,
    "vit_b_16": 1200.0,
}


def estimate(
    kind: str, units: float, device: str, settings: dict[str, Any] | None = None, preset: str | None = None
) -> dict[str, Any]:
    """A step's device time: ``{"seconds", "source"}`` (``source``: ``estimate`` or ``measured``).

    Measured figures hold for the preset they were measured on (the smoke preset on CPU); for any other
    size they are scaled by the units, so they are labelled estimates.
    """
    device = "gpu" if device not in ("cpu",) else "cpu"
    per_unit, fixed, source = FIGURES.get(kind, {}).get(device, (0.0, 0.0, ESTIMATE))
    if kind == "classifier" and device == "gpu" and settings is not None:
        per_unit = CLASSIFIER_GPU_SECONDS.get(settings.get("model", ""), per_unit)
    if kind == "classifier" and settings is not None:
        epochs = (settings.get("config") or {}).get("epochs")
        if device == "cpu" and epochs:
            per_unit *= epochs
        elif epochs:
            per_unit *= epochs / 20.0
    if source == MEASURED and preset != "smoke":
        source = ESTIMATE
    return {"seconds": round(fixed + units * per_unit, 1), "source": source}
