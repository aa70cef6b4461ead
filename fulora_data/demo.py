"""The whole fulora pipeline on the embedded default data: ``fulora study run --preset smoke``.

No download is needed: the ``smoke`` study writes seeded, procedural stand-ins for the published archives
(same file layouts, CSV dialects and quirks as the real ones, see ``fulora_data.samples``) and a tiny
Stable Diffusion pipeline with random weights (``fulora_data.tiny_sd``), then closes the study's loop with
the steps a user runs on the real data: fine-tune a LoRA adapter on the LoRA set (``fulora train lora``),
generate a synthetic set with it and both samplers (``fulora generate``), build the Spanish, African,
synthetic and hybrid sets from it, export them as Hub-ready folders with dataset cards, audit the African
set for train/test leakage, train a small classifier on ES and on HB, evaluate both zero-shot on the
African test split under the study's protocol and write the study's report. There is one code path: the
demo is the study's graph (``fulora_data.study``) with the smoke preset, so a rerun does nothing and says so.

The numbers it prints describe procedural phantoms and a random-weight generator, not ultrasound: they
show the pipeline works, and mean nothing clinically or about the study's claims.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulora_data.study.presets import PHANTOM_NOTE
from fulora_data.study.steps import AFRICAN_ARCHIVE, SPANISH_ARCHIVE

__all__ = ["PHANTOM_NOTE", "demo_changes", "quiet_progress", "run_demo", "write_sources"]

METRICS = ("accuracy", "recall", "precision", "f1", "auc")


def _default_log(message: str) -> None:
    print(message, flush=True)


def write_sources(folder: Path) -> dict[str, Path]:
    """Write (once) the procedural archives the demo runs on, and return their paths."""
    from fulora_data import samples

    folder.mkdir(parents=True, exist_ok=True)
    spanish = folder / SPANISH_ARCHIVE
    if not spanish.is_file():
        samples.write_spanish_source(folder, per_plane=24, test_per_plane=4, seed=0, archive=True)
    african = folder / AFRICAN_ARCHIVE
    if not african.is_file():
        samples.write_african_source(folder, patients_per_country=6, seed=1, archive=True)
    return {"spanish": spanish, "african": african}


def demo_changes(epochs: int = 4, per_plane: int = 4) -> dict[str, Any]:
    """The smoke preset's settings changed by the demo's two knobs (classifier epochs, images per plane)."""
    return {
        "generations": {"tiny": {"config": {"per_plane": per_plane, "batch_size": per_plane}}},
        "classifiers": {
            "config": {"epochs": epochs},
            # every synthetic image of both samplers goes into HB
            "hybrid_options": {"synthetic_per_plane": 2 * per_plane},
        },
    }


def quiet_progress() -> None:
    """Progress bars off for this process: ``fulora demo`` prints one line per step, which bars would bury."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        diffusers_logging.set_verbosity_error()
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    except ImportError:
        pass


def run_demo(
    workdir: str | os.PathLike,
    *,
    epochs: int = 4,
    per_plane: int = 4,
    log: Callable[[str], None] = _default_log,
) -> dict[str, Any]:
    """Run the ``smoke`` study on procedural stand-ins of the published data and print the zero-shot rows.

    Args:
        workdir: The study folder (``fulora study run --out``): sources, base model, adapter, generated
            set, exports, checkpoints, evaluations and the report (a rerun does only what is not done).
        epochs: Training epochs of the small classifiers.
        per_plane: Synthetic images per plane and sampler.
        log: Where progress lines go.

    Returns:
        A summary: the adapter, the generation, dataset sizes, export folders, audit counts and the
        zero-shot metrics of the ES and HB classifiers, and the steps that ran (empty on a rerun).
    """
    from fulora_data.study.run import run_study

    workdir = Path(workdir)
    result = run_study(workdir, "smoke", changes=demo_changes(epochs, per_plane), log=log)
    summary = demo_summary(workdir)
    names = METRICS
    log("      train set " + " ".join(f"{n:>9}" for n in names))
    for train_set, metrics in summary["zero_shot"].items():
        log(
            f"      {train_set:<9} "
            + " ".join(
                f"{metrics[n]:>9.3f}" if isinstance(metrics[n], float) else f"{metrics[n]!s:>9}"
                for n in names
            )
        )
    log(f"      {PHANTOM_NOTE}")
    log(f"      report: {workdir / 'report' / 'report.html'}")
    summary["ran"] = result["ran"]
    return summary


def demo_summary(workdir: Path) -> dict[str, Any]:
    """What the smoke study made, read back from its outputs and records."""
    from fulora_data.study.graph import read_record

    def summary_of(step: str) -> dict:
        return (read_record(workdir, step) or {}).get("summary", {})

    lora = summary_of("lora-tiny")
    generation = summary_of("generate-tiny")
    datasets = summary_of("datasets")
    audit = json.loads((workdir / "audit" / "audit.json").read_text(encoding="utf-8"))["audit"]
    zero_shot, model_dirs = {}, {}
    for folder in sorted((workdir / "evaluate").iterdir(), key=lambda p: p.name):
        scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
        zero_shot[scores["train_set"]] = scores["scores"]
        model_dirs[scores["train_set"]] = str(workdir / summary_of(f"classifier/{folder.name}")["model_dir"])
    order = {"ES": 0, "ES+DA": 1, "HB": 2, "HB+DA": 3}
    zero_shot = dict(sorted(zero_shot.items(), key=lambda item: order.get(item[0], 9)))
    return {
        "lora": {"adapter_dir": str(workdir / lora["adapter"]), "losses": lora["losses"]},
        "generation": {
            "out": str(workdir / "generate-tiny"),
            "images": generation["images"],
            "counts": generation["counts"],
            "contact_sheet": str(workdir / generation["contact_sheet"]),
            "card": str(workdir / generation["card"]),
        },
        "sizes": datasets["sizes"],
        "exports": {k: str(workdir / v) for k, v in datasets["exports"].items()},
        "audit": audit,
        "zero_shot": zero_shot,
        "model_dirs": model_dirs,
        "workdir": str(workdir),
    }
