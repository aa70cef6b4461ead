"""A tiny Stable Diffusion 1.5-shaped pipeline built from configs, with random weights and no download.

The UNet, VAE, CLIP text encoder and tokenizer have SD1.5's structure (cross-attention UNet, KL VAE with a
scaling factor, CLIP text transformer, byte-level BPE tokenizer) at a size that trains and samples in
milliseconds on a CPU. Tests, ``fulora demo`` and the benchmarks use it wherever the real
``stable-diffusion-v1-5/stable-diffusion-v1-5`` would be downloaded; its images are noise-like until it is
fine-tuned, and mean nothing.

``save_tiny_pipeline(folder)`` writes it as an ordinary diffusers folder (``model_index.json`` plus one
sub-folder per component), so every code path that takes ``--base PATH`` is exercised exactly as with the
real model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fulora_data.errors import require

#: The tiny UNet's shape: two down and two up blocks of widths (32, 64), 2 layers each, cross-attention 32.
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (32, 64),
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
"""SD1.5's own scheduler config (``PNDMScheduler``); trainers and samplers derive theirs from it."""
#: SD 1.5's real shapes (``stable-diffusion-v1-5``'s config files): the 860 M-parameter UNet, the KL VAE and
#: CLIP ViT-L/14's text transformer. Built with random weights they check fulora at the real model's size
#: (module names, LoRA key counts, parameter counts, memory) without a download.
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
#: Component configs per shape: ``tiny`` (milliseconds on a CPU) and ``sd15`` (SD 1.5's real size).
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "tiny": (UNET_CONFIG, VAE_CONFIG, TEXT_CONFIG),
    "sd15": (SD15_UNET_CONFIG, SD15_VAE_CONFIG, SD15_TEXT_CONFIG),
}
#: The VAE downsamples by 2 per block after the first: 2 blocks give a factor of 2, so 64 px -> 32 latent px.
VAE_SCALE_FACTOR = 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (the BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_tiny_tokenizer(folder: str | os.PathLike) -> Path:
    """Write a CLIP byte-level BPE tokenizer with a tiny vocabulary (every byte, alone and word-final).

    With no merges every word becomes its characters, which is all a tiny text encoder needs; the special
    tokens and the 77-token window are CLIP's.

    Returns:
        The folder, loadable with ``transformers.CLIPTokenizer.from_pretrained``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*alphabet, *(f"{c}</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}),
        encoding="utf-8",
    )
    return folder


def build_tiny_components(seed: int = 0, shape: str = "tiny") -> dict[str, Any]:
    """Build the pipeline's components with seeded random weights.

    Args:
        seed: Seed of the weight initialisation (the same seed gives the same weights).
        shape: ``"tiny"`` or ``"sd15"`` (SD 1.5's real sizes; about 1.07 B parameters, 4.3 GB in fp32).

    Returns:
        ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``, ready for
        ``diffusers.StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None)``.
    """
    import tempfile

    torch = require("torch", "train")
    diffusers = require("diffusers", "train")
    transformers = require("transformers", "train")

    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {sorted(SHAPES)}, got {shape!r}")
    unet_config, vae_config, text_shape = SHAPES[shape]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(write_tiny_tokenizer(tmp))
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(**unet_config)
    torch.manual_seed(seed + 1)
    vae = diffusers.AutoencoderKL(**vae_config)
    torch.manual_seed(seed + 2)
    # The tiny tokenizer's ids all fall inside CLIP's real vocabulary, so the sd15 shape keeps 49,408 rows.
    text_config = transformers.CLIPTextConfig(
        **{"vocab_size": len(tokenizer), **text_shape},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = transformers.CLIPTextModel(text_config)
    scheduler = diffusers.PNDMScheduler(**SCHEDULER_CONFIG)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


def build_tiny_pipeline(seed: int = 0, shape: str = "tiny"):
    """Return a ``diffusers.StableDiffusionPipeline`` with seeded random weights (no safety checker)."""
    diffusers = require("diffusers", "train")
    return diffusers.StableDiffusionPipeline(
        **build_tiny_components(seed, shape),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_pipeline(folder: str | os.PathLike, seed: int = 0, shape: str = "tiny") -> Path:
    """Write the pipeline as a diffusers folder (``model_index.json`` and one folder per component).

    Args:
        folder: Where to write it.
        seed: Seed of the weight initialisation.
        shape: ``"tiny"`` or ``"sd15"`` (see ``build_tiny_components``).

    Returns:
        The folder, loadable with ``StableDiffusionPipeline.from_pretrained`` and usable as ``--base``.
    """
    folder = Path(folder)
    build_tiny_pipeline(seed, shape).save_pretrained(folder, safe_serialization=True)
    return folder
