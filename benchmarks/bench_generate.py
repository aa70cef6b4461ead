"""Generation speed: batched sampling against one image per pipeline call, measured in the same run.

CPU (always): the tiny pipeline (``fulora_data.tiny_sd``) at its native 64 px, through fulora's own sampling
path (``fulora_data.generation.pipeline.sample``: per-image CPU noise, fused LoRA-free base), batch 8 against
batch 1, Euler and UniPC, then one end-to-end ``generate`` run (sampling + PNG + shards + sheet + card).

GPU (when CUDA is present): a pipeline with SD1.5's shapes and random weights (UNet 320-640-1280-1280,
cross-attention 768, CLIP-L-sized text encoder, SD's VAE) in fp16 at 512 px and 20 steps, Euler and UniPC,
batch 1 against batched, with channels-last and ``torch.compile`` variants, and the study's 5,000 images
extrapolated from the best rate.

    python benchmarks/bench_generate.py [--images 16] [--steps 10] [--gpu-images 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _rate(pipe, config, images, batch: int, clip_skip: int = 1) -> float:
    from fulora_data.generation.config import batches
    from fulora_data.generation.pipeline import sample

    sample(pipe, images[:1], config, clip_skip)  # warm-up (allocations, kernels)
    start = time.perf_counter()
    for chunk in batches(images, batch):
        sample(pipe, chunk, config, clip_skip)
    _sync()
    return len(images) / (time.perf_counter() - start)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_cpu(images: int, steps: int) -> None:
    import torch

    from fulora_data.generation.config import GenerateConfig, plan
    from fulora_data.generation.pipeline import load_pipeline
    from fulora_data.generation.run import generate
    from fulora_data.tiny_sd import save_tiny_pipeline

    print(
        f"CPU: tiny pipeline, 64 px, {steps} steps, {images} images per measure, {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = save_tiny_pipeline(Path(tmp) / "tiny-sd")
        for sampler in ("euler", "unipc"):
            config = GenerateConfig(base=str(base), planes=("Fetal brain",), samplers=(sampler,), per_plane=images,
                                    width=64, height=64, steps=steps, cpu=True).validated()  # fmt: skip
            pipe = load_pipeline(config, None, "cpu")
            todo = plan(config)
            one = _rate(pipe, config, todo, 1)
            eight = _rate(pipe, config, todo, 8)
            print(
                f"  {sampler:<6} batch 1: {one:6.2f} images/s   batch 8: {eight:6.2f} images/s   x{eight / one:.2f}"
            )
        config = GenerateConfig(base=str(base), planes=("Fetal brain", "Fetal femur"), per_plane=images // 4,
                                width=64, height=64, steps=steps, batch_size=8, cpu=True)  # fmt: skip
        start = time.perf_counter()
        summary = generate(config, Path(tmp) / "out", log=lambda m: None, progress=False)
        seconds = time.perf_counter() - start
        print(f"  end to end (generate, batch 8, both samplers): {summary['images']} images in {seconds:.1f} s, "
              f"{summary['images'] / seconds:.2f} images/s including loading, PNGs, shards, sheet and card")  # fmt: skip


def _sd15_pipeline(dtype):
    """A StableDiffusionPipeline with SD1.5's shapes and random weights (no download)."""
    import diffusers
    import torch
    import transformers

    from fulora_data.tiny_sd import SCHEDULER_CONFIG, write_tiny_tokenizer

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(write_tiny_tokenizer(tmp))
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
            num_hidden_layers=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
        scheduler=diffusers.PNDMScheduler(**SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe = pipe.to("cuda", dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_gpu(images: int, steps: int, batches_to_try: tuple[int, ...]) -> None:
    import torch

    from fulora_data.generation.config import GenerateConfig, plan

    name = torch.cuda.get_device_name(0)
    print(
        f"GPU: {name}, SD1.5-sized random weights, fp16, 512 px, {steps} steps, {images} images per measure"
    )
    pipe = _sd15_pipeline(torch.float16)
    best = 0.0
    for sampler in ("euler", "unipc"):
        config = GenerateConfig(base="sd15-random", planes=("Fetal brain",), samplers=(sampler,), per_plane=images,
                                width=512, height=512, steps=steps).validated()  # fmt: skip
        todo = plan(config)
        rates = {b: _rate(pipe, config, todo, b) for b in batches_to_try}
        best = max(best, *rates.values())
        print(f"  {sampler:<6} " + "   ".join(f"batch {b}: {r:6.2f} images/s" for b, r in rates.items()))
    config = GenerateConfig(base="sd15-random", planes=("Fetal brain",), samplers=("euler",), per_plane=images,
                            width=512, height=512, steps=steps).validated()  # fmt: skip
    todo = plan(config)
    top = max(batches_to_try)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    channels_last = _rate(pipe, config, todo, top)
    print(f"  euler  batch {top}, channels-last: {channels_last:6.2f} images/s")
    best = max(best, channels_last)
    try:
        pipe.unet = torch.compile(pipe.unet)
        start = time.perf_counter()
        _rate(pipe, config, todo[:top], top)  # compiles
        print(f"  torch.compile warm-up: {time.perf_counter() - start:.0f} s")
        compiled = _rate(pipe, config, todo, top)
        print(f"  euler  batch {top}, channels-last + compile: {compiled:6.2f} images/s")
        best = max(best, compiled)
    except Exception as err:  # compile support varies by machine; report rather than fail
        print(f"  torch.compile failed: {type(err).__name__}: {str(err).splitlines()[0]}")
    print(
        f"  the study's 5,000 images at the best rate ({best:.2f} images/s): {5000 / best / 60:.1f} minutes on one GPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16, help="CPU images per measure")
    parser.add_argument("--steps", type=int, default=10, help="CPU inference steps")
    parser.add_argument("--gpu-images", type=int, default=32, help="GPU images per measure")
    parser.add_argument("--gpu-steps", type=int, default=20, help="GPU inference steps")
    args = parser.parse_args()
    import torch

    bench_cpu(args.images, args.steps)
    if torch.cuda.is_available():
        bench_gpu(args.gpu_images, args.gpu_steps, (1, 8, 16))
    else:
        print("GPU: no CUDA device here; the GPU figures need one")


if __name__ == "__main__":
    main()
