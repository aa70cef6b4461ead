"""The whole fulora pipeline on the embedded default data, in a few minutes on a laptop CPU.

No download is needed: the demo writes seeded, procedural stand-ins for the published archives (same file
layouts, CSV dialects and quirks as the real ones, see ``fulora_data.samples``) and a tiny Stable Diffusion
pipeline with random weights (``fulora_data.tiny_sd``), then closes the study's loop with the steps a user
runs on the real data: fine-tune a LoRA adapter on the LoRA set (``fulora train lora``), generate a synthetic
set with it and both samplers (``fulora generate``), build the Spanish,
African, synthetic and hybrid sets from it, export them as Hub-ready folders with dataset cards, audit the
African set for train/test leakage, train a small classifier on ES and on HB, and evaluate both zero-shot
on the African test split under the study's protocol, side by side.

The numbers it prints describe procedural phantoms and a random-weight generator, not ultrasound: they
show the pipeline works, and mean nothing clinically or about the study's claims.
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
    return {"spanish": spanish, "african": african}


PHANTOM_NOTE = (
    "phantom data: procedural images and a random-weight generator; these numbers show the pipeline runs "
    "and mean nothing clinically"
)


def generate_synthetic(
    workdir: Path,
    *,
    base: str | os.PathLike | None = None,
    adapter: str | None = None,
    per_plane: int = 4,
    log: Callable[[str], None] = _default_log,
) -> dict[str, Any]:
    """Generate the demo's synthetic set with the tiny pipeline and both of the study's samplers.

    Args:
        workdir: The demo folder; the set goes to ``generated/``.
        base: The base model folder (default: the tiny pipeline, written once to ``tiny-sd/``).
        adapter: A LoRA adapter folder to sample with (``None``: the base alone).
        per_plane: Images per plane and sampler.
        log: Where progress lines go.

    Returns:
        ``fulora_data.generation.run.generate``'s summary.
    """
    from fulora_data.generation.config import GenerateConfig
    from fulora_data.generation.run import generate
    from fulora_data.tiny_sd import save_tiny_pipeline

    if base is None:
        base = workdir / "tiny-sd"
        if not (base / "model_index.json").is_file():
            save_tiny_pipeline(base)
    config = GenerateConfig(
        base=str(base),
        adapter=adapter,
        per_plane=per_plane,
        samplers=("euler", "unipc"),
        width=32,
        height=32,
        steps=3,
        batch_size=per_plane,
        shard_size=40,
        seed=0,
        cpu=True,
    )
    return generate(config, workdir / "generated", log=lambda m: None, progress=False)


def run_demo(
    workdir: str | os.PathLike,
    *,
    epochs: int = 4,
    per_plane: int = 4,
    log: Callable[[str], None] = _default_log,
) -> dict[str, Any]:
    """Run every fulora step on procedural stand-ins of the published data, closing the study's loop.

    Args:
        workdir: Folder for the sources, generator, caches, exports, checkpoints and reports (reused on a
            rerun).
        epochs: Training epochs of the small classifiers.
        per_plane: Synthetic images per plane and sampler.
        log: Where progress lines go.

    Returns:
        A summary: the generation, dataset sizes, export folders, audit counts and the zero-shot metrics of
        the ES and HB classifiers.
    """
    from fulora_data.audit.run import audit_dataset
    from fulora_data.classifier.config import TrainConfig
    from fulora_data.classifier.train import train
    from fulora_data.evaluation.run import evaluate_checkpoint
    from fulora_data.export import export
    from fulora_data.lora.train import train_tiny_lora

    workdir = Path(workdir)
    cache = workdir / "cache"
    log(f"[1/8] writing procedural archives in the real layouts under {workdir / 'sources'}")
    src = write_sources(workdir / "sources")

    log(
        "[2/8] fine-tuning a LoRA adapter of the tiny Stable Diffusion on spanish/lora-100 (fulora train lora)"
    )
    lora = train_tiny_lora(
        workdir / "lora", source=src["spanish"], data_config="lora-100", cache_dir=cache, log=lambda m: None
    )
    losses = lora["losses"]
    log(f"      adapter: {lora['adapter_dir']} (loss {losses['first']:.3f} -> {losses['last']:.3f})")
    log("[3/8] generating synthetic planes with the adapter: 5 planes x euler, unipc (fulora generate)")
    generation = generate_synthetic(
        workdir,
        base=workdir / "lora" / "base",
        adapter=str(lora["adapter_dir"]),
        per_plane=per_plane,
        log=log,
    )
    src["generated"] = Path(generation["out"])
    log(f"      {generation['images']} images with full provenance in {src['generated']}")

    log("[4/8] building the datasets")
    sets = {
        ("spanish", "es"): {"source": src["spanish"]},
        ("spanish", "lora-100"): {"source": src["spanish"]},
        ("african", "all"): {"source": src["african"]},
        ("synthetic", "generated"): {"source": src["generated"]},
        ("hybrid", "es1150-generated"): {
            "real_source": src["spanish"],
            "real_config": "es",
            "synthetic_source": src["generated"],
        },
    }
    sizes = {}
    for (name, config), options in sets.items():
        summary = info(name, config, cache_dir=cache, **options)
        sizes[f"{name}/{config}"] = summary["splits"]
        log(f"      {name}/{config}: {', '.join(f'{k} {v}' for k, v in summary['splits'].items())}")

    log(f"[5/8] exporting Hub-ready folders (Parquet + dataset card) under {workdir / 'hub'}")
    exports = {}
    for (name, config), options in sets.items():
        out = workdir / "hub" / name
        export(name, [config], out, cache_dir=cache, **options)
        exports[f"{name}/{config}"] = str(out)
    log(
        "      each folder loads with datasets.load_dataset(FOLDER, CONFIG) and pushes with 'fulora data push'"
    )

    log("[6/8] auditing the African set for duplicates and train/test leakage")
    audit = audit_dataset("african", "all", source=src["african"], cache_dir=cache)["audit"]
    log(
        f"      exact pairs {audit['exact_duplicate_pairs']}, near pairs {audit['near_duplicate_pairs']}, "
        f"cross-split pairs {audit['cross_split_duplicate_pairs']}"
    )

    log(
        f"[7/8] training a small ResNet18 on ES and on HB (the 'smoke' preset: 32 px, random init, {epochs} epochs)"
    )
    runs = {}
    for train_set, extra in (
        ("ES", {}),
        (
            "HB",
            {
                "synthetic_source": str(src["generated"]),
                "dataset_options": {
                    "synthetic_config": "generated",
                    "real_config": "es",
                    "synthetic_per_plane": 2 * per_plane,  # all of them (None would mean "not given")
                },
            },
        ),
    ):
        config = TrainConfig.preset(
            "smoke",
            source=str(src["spanish"]),
            data_cache_dir=str(cache),
            epochs=epochs,
            train_set=train_set,
            **extra,
        )
        out = workdir / "classifier" / f"resnet18-{train_set}"
        resume = (out / "checkpoint").is_dir()  # a rerun continues (or reuses) the earlier run
        runs[train_set] = train(config, out, resume=resume, progress=False, log=lambda m: None)

    log("[8/8] evaluating both zero-shot on african:test with the study's protocol")
    zero_shot = {}
    for train_set, run in runs.items():
        result = evaluate_checkpoint(
            run["model_dir"],
            "african:test",
            protocol="paper",
            source=src["african"],
            cache_dir=cache,
            report_dir=workdir / "report" / train_set,
        )
        zero_shot[train_set] = {k: result[k] for k in ("accuracy", "recall", "precision", "f1", "auc")}
    names = ("accuracy", "recall", "precision", "f1", "auc")
    log("      train set " + " ".join(f"{n:>9}" for n in names))
    for train_set, metrics in zero_shot.items():
        log(
            f"      {train_set:<9} "
            + " ".join(
                f"{metrics[n]:>9.3f}" if isinstance(metrics[n], float) else f"{metrics[n]!s:>9}"
                for n in names
            )
        )
    log(f"      {PHANTOM_NOTE}")
    log(f"      reports: {workdir / 'report'}")
    return {
        "lora": {"adapter_dir": str(lora["adapter_dir"]), "losses": losses},
        "generation": {k: generation[k] for k in ("out", "images", "counts", "card", "contact_sheet")},
        "sizes": sizes,
        "exports": exports,
        "audit": audit,
        "zero_shot": zero_shot,
        "model_dirs": {train_set: run["model_dir"] for train_set, run in runs.items()},
        "workdir": str(workdir),
    }
