"""Render a LoRA adapter's model card from ``cards/lora_card.md`` and the adapter's own metadata.

The Hub metadata (``base_model``, ``library_name: diffusers``, the Hub's LoRA tags, license, datasets,
``instance_prompt`` and one ``widget`` entry per plane for the Hub's gallery) goes through huggingface_hub's
typed ``ModelCardData``; every value in the body comes from the ``AdapterInfo`` written into the adapter
file, never typed by hand. ``datasets`` names a Hub dataset only when the run read one (``--data
ORG/NAME``); data built locally is described in the body with its digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from string import Template

from fulora_data.adapter import AdapterInfo
from fulora_data.errors import require
from fulora_data.lora.config import SD15_LICENSE

TEMPLATE = "lora_card.md"  # in cards/, read with fulora_data.cards.template
# The tags diffusers' own LoRA training scripts put on SD 1.5 LoRA cards (``template:sd-lora`` selects the
# Hub's LoRA page layout); ``base_model:adapter:<base>`` is added for a Hub base.
TAGS = [
    "text-to-image",
    "diffusers",
    "lora",
    "template:sd-lora",
    "stable-diffusion",
    "stable-diffusion-diffusers",
    "medical",
    "ultrasound",
    "fulora",
]
SAMPLES_DIR = "samples"  # one validation sample per plane, the widget's images
TARGET_TEXT = {
    "study": "kohya's standard LoRA: every linear and 1x1 convolution of the UNet's transformer blocks"
    " (and the CLIP attention and MLP layers when the text encoder is trained)",
    "attention": "attention projections only: UNet `to_q/to_k/to_v/to_out.0` (CLIP `q/k/v/out_proj`)",
}


def slug(text: str) -> str:
    """A file-name-safe form of a plane name or prompt (``Fetal brain`` -> ``fetal-brain``)."""
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in keep.split("-") if part)[:60] or "prompt"


def training_digest(examples) -> str:
    """What the adapter was trained on, as one digest: sha256 of the sorted ``<image sha256> <caption>`` lines.

    Two runs that read the same images with the same captions get the same digest, whatever the paths,
    builder cache or order.
    """
    lines = sorted(f"{e.digest} {e.prompt}" for e in examples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def write_samples(images: list[Path], folder: Path, planes: list[str]) -> Path:
    """Write the card's pictures: ``samples.png`` (labelled with each plane) and ``samples/<plane>.png``.

    Args:
        images: One validation sample per plane, in ``planes``' order.
        folder: The adapter folder.
        planes: The plane (or caption) of each image: the grid's labels and the per-plane file names.

    Returns:
        The path of ``samples.png``.
    """
    from PIL import Image

    (folder / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    opened = []
    for path, plane in zip(images, planes, strict=False):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        rgb.save(folder / SAMPLES_DIR / f"{slug(plane)}.png")
        opened.append((plane, rgb))
    return _labelled_grid(opened, folder / "samples.png")


def _labelled_grid(images: list, target: Path) -> Path:
    """The samples side by side, each at least 256 px wide, with its plane written above it."""
    from PIL import Image, ImageDraw, ImageFont

    side = max(256, max((i.height for _, i in images), default=256))
    scaled = [(p, i.resize((max(1, round(i.width * side / i.height)), side), Image.NEAREST)) for p, i in images]
    size = max(16, side // 14)
    font = ImageFont.load_default(size=size)
    band = size + 14
    gap = 8
    width = sum(i.width for _, i in scaled) + gap * (len(scaled) + 1)
    grid = Image.new("RGB", (width, side + band + gap), "white")
    draw = ImageDraw.Draw(grid)
    left = gap
    for plane, image in scaled:
        grid.paste(image, (left, band))
        draw.text((left + image.width // 2, band // 2), plane, fill="black", font=font, anchor="mm")
        left += image.width + gap
    grid.save(target)
    return target


def render_lora_card(
    info: AdapterInfo, has_grid: bool, samples: list[Path] | None = None, *, repo_id: str | None = None
) -> str:
    """Render the card of an adapter from its ``AdapterInfo``.

    Args:
        info: What the adapter file's metadata says.
        has_grid: Whether ``samples.png`` and ``samples/<plane>.png`` (one validation sample per plane) sit
            beside the card: the card shows the grid and lists each sample as a ``widget`` entry.
        samples: Unused (kept for callers that pass the sample files).
        repo_id: The Hub repository the snippet loads (default: ``fulora_data.hub.PLACEHOLDER``, which
            ``push_model`` replaces with the repo it pushes to).

    Returns:
        The card's Markdown, starting with its YAML metadata.

    Raises:
        SourceNotFoundError: If the template is missing (a broken installation).
    """
    hub = require("huggingface_hub", "train")
    from fulora_data.builders.synthetic import STUDY_CITATION
    from fulora_data.cards import template
    from fulora_data.hub import PLACEHOLDER

    extra = info.extra
    # Only a Hub repository is a base_model the Hub can link; a local base is named in the body.
    base = info.base_model if "/" in info.base_model else None
    prompts = list(info.prompts.values())
    data = hub.ModelCardData(
        base_model=base,
        base_model_relation="adapter" if base else None,
        library_name="diffusers",
        license=SD15_LICENSE,
        tags=TAGS + ([f"base_model:adapter:{base}"] if base else []),
        # Only a dataset the run read from the Hub; a local build is described in the body.
        datasets=[extra["dataset_repo"]] if extra.get("dataset_repo") else None,
        pipeline_tag="text-to-image",
        instance_prompt=", ".join(prompts) or None,
        widget=[
            {"text": prompt, "output": {"url": f"{SAMPLES_DIR}/{slug(plane)}.png"}}
            for plane, prompt in info.prompts.items()
        ]
        if has_grid
        else None,
    )
    order = ", ".join(f"`{p}`" for p in info.prompts)
    values = {
        "title": f"FU-LoRA rank {info.rank} adapter ({info.dataset or 'custom data'})",
        "base_model": info.base_model,
        "base_revision": info.base_model_revision or "local",
        "revision_arg": f', revision="{info.base_model_revision}"' if info.base_model_revision else "",
        "dataset": info.dataset or "unknown",
        "dataset_version": extra.get("dataset_version", "unknown"),
        "training_data": _training_data(info),
        "repo_id": repo_id or PLACEHOLDER,
        "num_images": extra.get("num_images", "n/a"),
        "samples": (
            "<Gallery />\n\n"
            f"![one validation sample per plane, seed {extra.get('validation_seed', 0)}](samples.png)\n\n"
            f"Left to right: {order}."
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


def _training_data(info: AdapterInfo) -> str:
    """The card's training-data line: the Hub dataset read, or a local build with its digest."""
    extra = info.extra
    digest = f"; training-data digest `{extra['dataset_digest'][:16]}`" if extra.get("dataset_digest") else ""
    if extra.get("dataset_repo"):
        return f"the published dataset `{extra['dataset_repo']}` at commit `{extra.get('dataset_version')}`{digest}"
    return (
        f"`{info.dataset or 'unknown'}` built locally by fulora (builder version "
        f"{extra.get('dataset_version', 'unknown')}; not a Hub dataset){digest}"
    )

