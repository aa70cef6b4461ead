"""Render a LoRA adapter's model card from ``cards/lora_card.md`` and the adapter's own metadata.

The Hub metadata (``base_model``, ``library_name: diffusers``, tags, license, datasets) goes through
huggingface_hub's typed ``ModelCardData``; every value in the body comes from the ``AdapterInfo`` written
into the adapter file, never typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from fulora_data.adapter import AdapterInfo
from fulora_data.errors import require
from fulora_data.lora.config import SD15_LICENSE

TEMPLATE = "lora_card.md"  # in cards/, read with fulora_data.cards.template
TAGS = ["lora", "text-to-image", "stable-diffusion", "diffusers", "medical", "ultrasound", "fulora"]
TARGET_TEXT = {
    "study": "kohya's standard LoRA: every linear and 1x1 convolution of the UNet's transformer blocks"
    " (and the CLIP attention and MLP layers when the text encoder is trained)",
    "attention": "attention projections only: UNet `to_q/to_k/to_v/to_out.0` (CLIP `q/k/v/out_proj`)",
}


def sample_grid(images: list[Path], target: Path) -> Path:
    """Paste the per-plane samples side by side into one image (the card's sample grid)."""
    from PIL import Image

    opened = [Image.open(p).convert("RGB") for p in images]
    width = sum(i.width for i in opened)
    height = max(i.height for i in opened)
    grid = Image.new("RGB", (width, height))
    left = 0
    for image in opened:
        grid.paste(image, (left, 0))
        left += image.width
    grid.save(target)
    return target


def render_lora_card(info: AdapterInfo, has_grid: bool, samples: list[Path] | None = None) -> str:
    """Render the card of an adapter from its ``AdapterInfo``.

    Args:
        info: What the adapter file's metadata says.
        has_grid: Whether ``samples.png`` (one sample per plane, left to right) sits beside the card.
        samples: The per-plane sample files, whose names (prompt slugs) label the grid.

    Returns:
        The card's Markdown, starting with its YAML metadata.

    Raises:
        SourceNotFoundError: If the template is missing (a broken installation).
    """
    hub = require("huggingface_hub", "train")
    from fulora_data.builders.synthetic import STUDY_CITATION
    from fulora_data.cards import template
    from fulora_data.hub_pull import dataset_repo_id

    extra = info.extra
    dataset_name = info.dataset.split("/", 1)[0]
    data = hub.ModelCardData(
        # Only a Hub repository is a base_model the Hub can link; a local base is named in the body.
        base_model=info.base_model if "/" in info.base_model else None,
        library_name="diffusers",
        license=SD15_LICENSE,
        tags=TAGS,
        datasets=[extra.get("dataset_repo") or dataset_repo_id(dataset_name)] if dataset_name else None,
        pipeline_tag="text-to-image",
        instance_prompt=None,
    )
    prompts = list(info.prompts.values())
    order = ", ".join(f"`{p}`" for p in prompts)
    values = {
        "title": f"FU-LoRA rank {info.rank} adapter ({info.dataset or 'custom data'})",
        "base_model": info.base_model,
        "base_revision": info.base_model_revision or "local",
        "revision_arg": f', revision="{info.base_model_revision}"' if info.base_model_revision else "",
        "dataset": info.dataset or "unknown",
        "dataset_version": extra.get("dataset_version", "unknown"),
        "num_images": extra.get("num_images", "n/a"),
        "samples": (
            f"![one sample per plane, seed {extra.get('validation_seed', 0)}](samples.png)\n\nLeft to right: {order}."
            if has_grid
            else "No samples were made."
        ),
        "first_prompt": prompts[0] if prompts else "a photo of fetal abdomen",
        "diffusers_clip_skip": max(info.clip_skip - 1, 0),
        "clip_skip": info.clip_skip,
        "kohya_file": f"{info.name or 'fulora_lora_kohya'}.safetensors",
        "prompts": "\n".join(f"- {plane}: `{prompt}`" for plane, prompt in info.prompts.items()),
        "rank": info.rank,
        "alpha": f"{info.alpha:g}",
        "targets": f"`{info.targets}`: {TARGET_TEXT.get(info.targets, info.targets)}",
        "text_encoder": "LoRA-trained" if info.text_encoder else "frozen",
        "steps": extra.get("steps", "n/a"),
        "batch_size": extra.get("batch_size", "n/a"),
        "global_batch_size": extra.get("global_batch_size", "n/a"),
        "learning_rate": f"{extra.get('learning_rate', 'n/a')}",
        "text_encoder_lr": f"{extra.get('text_encoder_lr', 'n/a')}",
        "lr_scheduler": extra.get("lr_scheduler", "n/a"),
        "lr_warmup_steps": extra.get("lr_warmup_steps", "n/a"),
        "optimizer": {"adamw8bit": "8-bit AdamW (bitsandbytes)", "adamw": "AdamW (torch)"}.get(
            extra.get("optimizer"), extra.get("optimizer", "n/a")
        ),
        "max_grad_norm": extra.get("max_grad_norm", "n/a"),
        "mixed_precision": extra.get("mixed_precision", "n/a"),
        "resolution": info.resolution,
        "bucket_step": extra.get("bucket_step", "n/a"),
        "no_upscale": ", no upscaling" if extra.get("bucket_no_upscale") else "",
        "seed": extra.get("seed", "n/a"),
        "final_loss": "n/a" if extra.get("final_loss") is None else f"{extra['final_loss']:.4f}",
        "fulora_version": info.fulora_version or "unknown",
        "license": SD15_LICENSE,
        "citation": STUDY_CITATION,
    }
    body = Template(template(TEMPLATE)).substitute(values)
    return f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n"
