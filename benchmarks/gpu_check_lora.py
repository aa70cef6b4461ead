"""GPU check of LoRA training at the study's scale: steps/s and peak GPU memory (needs a CUDA GPU).

SD1.5-sized random weights built from its published config shapes (UNet 320/640/1280/1280 with
cross-attention 768, KL VAE 128/256/512/512, CLIP ViT-L/14 text encoder: 12 layers of 768), no download;
512 px, batch 2, rank 128, fp16, 8-bit AdamW, text encoder trained (the study's r128 preset), on
procedural images in FETAL_PLANES_DB's layout.

Usage::

    python benchmarks/gpu_check_lora.py [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def write_sd15_shaped(folder: Path) -> Path:
    """A diffusers folder with SD1.5's shapes and random weights (``fulora_data.tiny_sd``, shape ``sd15``)."""
    from fulora_data.tiny_sd import save_tiny_pipeline

    return save_tiny_pipeline(folder / "sd15", shape="sd15")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    import torch

    from fulora_data import samples
    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.train import train_lora

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check_lora.py needs a CUDA GPU")
    work = Path(tempfile.mkdtemp(prefix="gpu-lora-"))
    base = write_sd15_shaped(work)
    source = samples.write_spanish_source(
        work / "src", per_plane=20, test_per_plane=1, seed=0, sizes=((959, 661), (800, 600), (1024, 512))
    )
    config = LoraConfig.preset(
        "r128",
        base=str(base),
        source=str(source),
        cache_dir=str(work / "cache"),
        max_steps=args.steps,
        checkpoint_every=0,
        validation_every=0,
        validation_inference_steps=2,
    )
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train_lora(config, work / "run", progress=False)
    timing = summary["timing"]
    report = {
        "device": torch.cuda.get_device_name(),
        "steps": summary["steps"],
        "optimizer": summary["optimizer"],
        "steps_per_s": 1000 / timing["ms_per_step"],
        "ms_per_step": timing["ms_per_step"],
        "startup_s": timing["startup_s"],
        "cache_s": timing["cache_s"],
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 1024**3,
        "total_s": time.perf_counter() - started,
        "notes": summary["notes"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
