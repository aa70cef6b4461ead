"""fulora at SD 1.5's real shape: LoRA module and parameter counts, s/step, peak memory, and the memory the
study's r128 preset needs at 512 px.

The base is SD 1.5's UNet (859.5 M), KL VAE and CLIP ViT-L/14 text encoder with random weights built from
configs (``fulora_data.tiny_sd``, shape ``sd15``); no download. Each preset (r8, r128) trains a few steps
at a small resolution in its own process, so each peak RSS is that run's own. On a CPU it prints:

- the kohya file's modules (UNet, CLIP) and keys, and the trainable parameter count against the study's;
- seconds per optimizer step in the training loop and the process's peak RSS;
- the memory r128 needs at 512 px, batch 2, fp16 with 8-bit AdamW: weights, LoRA state and activations.
  Without a GPU the activations are EXTRAPOLATED (the bytes one UNet forward keeps for its backward,
  counted with autograd's saved-tensor hooks at 64, 128 and 192 px on the CPU, fitted in latent pixels and
  their square, halved for fp16) and printed so labelled. With a CUDA GPU
  (``--gpu``) it is measured: ``torch.cuda.max_memory_allocated`` over real fp16 steps with bitsandbytes'
  AdamW8bit, and steps/s.

Usage::

    python benchmarks/sd15_shape.py [--steps 3] [--resolution 64] [--presets r8 r128] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

STUDY_COUNTS_M = {8: 4.72, 32: 18.87, 128: 75.50}
GIB = 1024**3


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def train_one(base: str, source: str, preset: str, steps: int, resolution: int, out: str, gpu: bool) -> dict:
    """Train ``steps`` steps of a preset in this process and return its figures (run as a child)."""
    from safetensors import safe_open

    from fulora_data.adapter import DIFFUSERS_FILE
    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.train import train_lora

    options = dict(
        base=base,
        data_config="es",
        source=source,
        cache_dir=str(Path(out).parent / "cache"),
        resolution=resolution,
        max_steps=steps,
        checkpoint_every=0,
        validation_every=0,
        validation_inference_steps=1,
    )
    if not gpu:
        options.update(mixed_precision="no", optimizer="adamw", cpu=True, batch_size=1)
    config = LoraConfig.preset(preset, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(config, Path(out), progress=False, log=lambda m: None)
    adapter = Path(out) / "adapter"
    kohya = next(p for p in adapter.glob("*.safetensors") if p.name != DIFFUSERS_FILE)
    with safe_open(kohya, "pt") as handle:
        keys = list(handle.keys())
        params = sum(math.prod(handle.get_slice(k).get_shape()) for k in keys if not k.endswith(".alpha"))
    figures = {
        "preset": preset,
        "rank": config.rank,
        "unet_modules": len({k.split(".")[0] for k in keys if k.startswith("lora_unet_")}),
        "te_modules": len({k.split(".")[0] for k in keys if k.startswith("lora_te_")}),
        "keys": len(keys),
        "params": params,
        "s_per_step": summary["timing"]["ms_per_step"] / 1000,
        "peak_rss_gib": peak_rss_gib(),
    }
    if gpu:
        import torch

        figures["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / GIB
    return figures


def activations_gib(base: str, rank: int, sizes: list[int], batch: int) -> dict[int, float]:
    """GiB of activations one UNet forward keeps for its backward with LoRA, per latent size (CPU, fp32).

    Counted exactly with autograd's saved-tensor hooks (each saved tensor once, parameters left out), so the
    process's high-water mark from loading the weights does not hide them. Run as a child process.
    """
    import torch

    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.model import add_lora, load_base, unet_targets

    unet = load_base(LoraConfig(base=base, mixed_precision="no"))["unet"]
    unet.requires_grad_(False)
    add_lora(unet, rank, float(rank), unet_targets(unet, "study"), "UNet")
    params = {p.data_ptr() for p in unet.parameters()}
    kept = {}
    for size in sizes:
        seen: dict[int, int] = {}

        def pack(tensor, seen=seen):
            if tensor.data_ptr() not in params:
                seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            latents = torch.randn(batch, 4, size, size)
            context = torch.randn(batch, 77, 768)
            loss = unet(latents, torch.tensor([500] * batch), context).sample.float().pow(2).mean()
        kept[size] = sum(seen.values()) / GIB
        del loss
    return kept


def child(args: list[str]) -> dict:
    """Run one measurement in a fresh Python process (its own peak RSS) and return its JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--presets", nargs="+", default=["r8", "r128"])
    parser.add_argument("--gpu", action="store_true", help="fp16 + 8-bit AdamW on CUDA, at 512 px, batch 2")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            base, source, preset, steps, resolution, out, gpu = rest
            print(json.dumps(train_one(base, source, preset, int(steps), int(resolution), out, gpu == "1")))
        else:
            base, rank, batch, *sizes = rest
            print(json.dumps(activations_gib(base, int(rank), [int(s) for s in sizes], int(batch))))
        return

    from fulora_data import samples
    from fulora_data.tiny_sd import save_tiny_pipeline

    resolution = 512 if args.gpu else args.resolution
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("building an SD 1.5-shaped base with random weights ...", flush=True)
        base = str(save_tiny_pipeline(work / "sd15-random", shape="sd15"))
        side = max(resolution, 128)  # square images at least one bucket at the resolution (never upscaled)
        source = str(
            samples.write_spanish_source(
                work / "src", per_plane=2, test_per_plane=1, seed=0, sizes=((side, side),)
            )
        )
        rows = [
            child(
                [
                    "train",
                    base,
                    source,
                    p,
                    str(args.steps),
                    str(resolution),
                    str(work / p),
                    "1" if args.gpu else "0",
                ]
            )
            for p in args.presets
        ]
        print(
            f"\nSD 1.5 shape, {args.steps} steps at {resolution} px ({'GPU fp16, 8-bit AdamW' if args.gpu else 'CPU fp32, AdamW, batch 1'})"
        )
        print(
            "| preset | UNet modules | CLIP modules | keys | trainable params | study | s/step | peak RSS GiB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['preset']} | {row['unet_modules']} | {row['te_modules']} | {row['keys']} | "
                f"{row['params'] / 1e6:.2f} M | {STUDY_COUNTS_M.get(row['rank'], float('nan')):.2f} M | "
                f"{row['s_per_step']:.2f} | {row['peak_rss_gib']:.2f} |"
            )
        if args.gpu:
            for row in rows:
                print(
                    f"{row['preset']}: GPU peak {row['gpu_peak_gib']:.2f} GiB, {1 / row['s_per_step']:.2f} steps/s (measured)"
                )
            return
        # r128 at 512 px, batch 2, fp16, 8-bit AdamW: what a 24 GB GPU must hold.
        rank, batch = 128, 2
        sizes = [8, 16, 24]  # latent sides of 64, 128 and 192 px images
        kept = {int(k): v for k, v in child(["act", base, str(rank), str(batch), *map(str, sizes)]).items()}
        # Activations grow with the latent pixels (convolutions, norms, projections) and, where attention's
        # probabilities are kept (the CPU's math kernel), with their square: fit a + b p + c p^2 exactly.
        import numpy as np

        pixels = np.array([s * s for s in sizes], dtype=float)
        a, b, c = np.linalg.solve(np.stack([np.ones(3), pixels, pixels**2], axis=1), [kept[s] for s in sizes])
        p512 = 64.0 * 64.0
        linear, quadratic = (a + b * p512) / 2, c * p512**2 / 2  # fp16 halves both
        weights = (859_520_964 + 123_060_480 + 83_653_863) * 2 / GIB  # fp16 UNet, CLIP, VAE
        lora = 75_497_472 * (4 + 4 + 2) / GIB  # fp32 LoRA weights and grads, two 8-bit Adam moments
        measured = ", ".join(f"{s * 8} px {kept[s]:.2f} GiB" for s in sizes)
        print(
            f"\nr128 at 512 px, batch 2, fp16 + 8-bit AdamW (EXTRAPOLATED from the CPU, no GPU measured):\n"
            f"  activations kept for backward, fp32 on the CPU: {measured}\n"
            f"  weights {weights:.2f} GiB + LoRA state {lora:.2f} GiB + activations {linear:.2f} GiB with a "
            f"fused attention kernel (PyTorch SDPA on a GPU keeps no attention matrix) = "
            f"{weights + lora + linear:.2f} GiB; {weights + lora + linear + quadratic:.2f} GiB if attention "
            "matrices were kept (the math kernel)"
        )


if __name__ == "__main__":
    main()
