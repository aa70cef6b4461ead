"""The whole fulora pipeline on the embedded default data, in a couple of minutes on a laptop CPU.

No download is needed: the demo writes seeded, procedural stand-ins for the three published archives (same
file layouts, CSV dialects and quirks as the real ones, see ``fulora_data.samples``), then runs every step a
user runs on the real data: build the Spanish, African, synthetic and hybrid sets, export them as Hub-ready
folders with dataset cards, audit the African set for train/test leakage, train a small classifier on the
ES set and evaluate it zero-shot on the African test split under the study's protocol.

The numbers it prints describe procedural images, not ultrasound: they show the pipeline works, nothing
about the study's claims.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulora_data import samples
from fulora_data.prepare import info


def _default_log(message: str) -> None:
    print(message, flush=True)


def write_sources(folder: Path) -> dict[str, Path]:
    """Write (once) the procedural archives the demo runs on, and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    spanish = folder / "FETAL_PLANES_ZENODO.zip"
    if not spanish.is_file():
        samples.write_spanish_source(folder, per_plane=24, test_per_plane=4, seed=0, archive=True)
    african = folder / "Zenodo_dataset.tar.xz"
    if not african.is_file():
        samples.write_african_source(folder, patients_per_country=6, seed=1, archive=True)
    generated = folder / "generated"
    if not (generated / "fulora_generated.json").is_file():
        samples.write_generated_folder(generated, per_plane=12, seed=2, size=(64, 48))
    return {"spanish": spanish, "african": african, "generated": generated}


def run_demo(
    workdir: str | os.PathLike, *, epochs: int = 8, log: Callable[[str], None] = _default_log
) -> dict[str, Any]:
    """Run every fulora step on procedural stand-ins of the published data.

    Args:
        workdir: Folder for the sources, caches, exports, checkpoints and reports (reused on a rerun).
        epochs: Training epochs of the small classifier.
        log: Where progress lines go.

    Returns:
        A summary: dataset sizes, export folders, audit counts, the zero-shot metrics and the classifier's
        ``model_dir``.
    """
    from fulora_data.audit.run import audit_dataset
    from fulora_data.classifier.config import TrainConfig
    from fulora_data.classifier.train import train
    from fulora_data.evaluation.run import evaluate_checkpoint
    from fulora_data.export import export

    workdir = Path(workdir)
    cache = workdir / "cache"
    log(f"[1/6] writing procedural archives in the real layouts under {workdir / 'sources'}")
    src = write_sources(workdir / "sources")

    log("[2/6] building the datasets")
    sets = {
        ("spanish", "es"): {"source": src["spanish"]},
        ("spanish", "lora-100"): {"source": src["spanish"]},
        ("african", "all"): {"source": src["african"]},
        ("synthetic", "generated"): {"source": src["generated"]},
        ("hybrid", "es1150-generated"): {
            "real_source": src["spanish"],
            "real_config": "lora-100",
            "synthetic_source": src["generated"],
        },
    }
    sizes = {}
    for (name, config), options in sets.items():
        summary = info(name, config, cache_dir=cache, **options)
        sizes[f"{name}/{config}"] = summary["splits"]
        log(f"      {name}/{config}: {', '.join(f'{k} {v}' for k, v in summary['splits'].items())}")

    log(f"[3/6] exporting Hub-ready folders (Parquet + dataset card) under {workdir / 'hub'}")
    exports = {}
    for (name, config), options in sets.items():
        out = workdir / "hub" / name
        export(name, [config], out, cache_dir=cache, **options)
        exports[f"{name}/{config}"] = str(out)
    log(
        "      each folder loads with datasets.load_dataset(FOLDER, CONFIG) and pushes with 'fulora data push'"
    )

    log("[4/6] auditing the African set for duplicates and train/test leakage")
    audit = audit_dataset("african", "all", source=src["african"], cache_dir=cache)["audit"]
    log(
        f"      exact pairs {audit['exact_duplicate_pairs']}, near pairs {audit['near_duplicate_pairs']}, "
        f"cross-split pairs {audit['cross_split_duplicate_pairs']}"
    )

    log(f"[5/6] training a small ResNet18 on ES (the 'smoke' preset: 32 px, random init, {epochs} epochs)")
    config = TrainConfig.preset("smoke", source=str(src["spanish"]), data_cache_dir=str(cache), epochs=epochs)
    out = workdir / "classifier" / "resnet18-ES"
    resume = (out / "checkpoint").is_dir()  # a rerun continues (or reuses) the earlier run
    run = train(config, out, resume=resume, progress=False, log=lambda m: None)

    log("[6/6] evaluating it zero-shot on african:test with the study's protocol")
    result = evaluate_checkpoint(
        run["model_dir"],
        "african:test",
        protocol="paper",
        source=src["african"],
        cache_dir=cache,
        report_dir=workdir / "report",
    )
    metrics = {k: result[k] for k in ("accuracy", "recall", "precision", "f1", "auc")}
    log(
        "      "
        + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    )
    log(f"      report: {workdir / 'report'}")
    return {
        "sizes": sizes,
        "exports": exports,
        "audit": audit,
        "zero_shot": metrics,
        "model_dir": run["model_dir"],
        "workdir": str(workdir),
    }
