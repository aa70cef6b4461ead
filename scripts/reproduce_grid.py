"""Reproduce the FU-LoRA study's zero-shot grid: 5 classifiers x ES, ES+DA, HB, HB+DA on the African test set.

Trains each cell with the study's settings (``fulora_data.classifier.train``; an interrupted cell resumes,
a finished one is reused), scores it with the ``paper`` protocol and writes ``OUT/comparison.csv`` and
``OUT/comparison.md`` beside the study's published figures. The logic is ``fulora_data.study``.

GPU cost (estimated from FLOP counts, see ``fulora_data.study``): about 35 PFLOP for the 20
cells, two thirds of it ViT-B/16; roughly 1-2 GPU-hours on one A100/H100/H200 with ``--mixed-precision
bf16``, 4-8 hours in fp32 on a V100/T4-class card; impractical on a CPU.

Usage (from the repository root)::

    python scripts/reproduce_grid.py --out runs/grid \\
        --spanish-source FETAL_PLANES_ZENODO.zip --african-source Zenodo_dataset.tar.xz \\
        --synthetic-source path/to/synthetic --mixed-precision bf16
    python scripts/reproduce_grid.py --out runs/es-only --train-sets ES ES+DA --models resnet18
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from fulora_data.classifier.config import TRAIN_SETS
    from fulora_data.errors import FuloraError
    from fulora_data.study import MODELS, run_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="one folder per cell and the comparison tables"
    )
    parser.add_argument("--spanish-source", type=Path, default=None, help="FETAL_PLANES_DB archive or folder")
    parser.add_argument("--african-source", type=Path, default=None, help="African archive or folder")
    parser.add_argument("--synthetic-source", type=Path, default=None, help="synthetic images for HB")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where built datasets are cached")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-sets", nargs="+", default=list(TRAIN_SETS), choices=list(TRAIN_SETS))
    parser.add_argument("--weights", default=None, help="imagenet (default), none, or a weights file")
    parser.add_argument("--epochs", type=int, default=None, help="default: the study's 20")
    parser.add_argument("--image-size", type=int, default=None, help="default: the study's 224")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    overrides = {
        key: getattr(args, key)
        for key in ("weights", "epochs", "image_size", "mixed_precision", "num_workers", "seed")
        if getattr(args, key) is not None
    }
    try:
        run_grid(
            args.out,
            spanish_source=args.spanish_source,
            african_source=args.african_source,
            synthetic_source=args.synthetic_source,
            models=args.models,
            train_sets=args.train_sets,
            cache_dir=args.cache_dir,
            overrides=overrides,
        )
    except FuloraError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print((args.out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
