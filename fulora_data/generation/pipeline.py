"""Load the base pipeline and the adapter, and sample one batch of planned images.

Every image's initial noise is drawn on the CPU from its own ``torch.Generator`` seeded with the image's
seed, then moved to the device, so the noise is the same on any machine and in any batch. The rest of the
sampling is deterministic (no ancestral samplers), so an image depends on its seed and its batch only:
sampled alone it agrees with its batched self up to float rounding (on CPU, at most a unit of the last
8-bit level on a few pixels; see ``tests/test_generate.py``). Runs therefore always sample an image in the
same fixed batch (``config.batches``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulora_data.adapter import AdapterInfo, adapter_file, file_sha256, read_adapter
from fulora_data.errors import ConfigError, FuloraError, SourceNotFoundError, require
from fulora_data.generation.config import SAMPLERS, GenerateConfig, PlannedImage, prompt

ADAPTER_NAME = "fulora"
_MISMATCH_RE = re.compile(
    r"size mismatch for (\S+): copying a param with shape (\S+\(\[[^\]]*\]\)) from checkpoint, "
    r"the shape in current model is (\S+\(\[[^\]]*\]\))"
)


@dataclass(frozen=True)
class ResolvedAdapter:
    """An adapter found on disk or downloaded, with what identifies it.

    Attributes:
        file: The local safetensors file.
        name: What the records call it (never a local path): the Hub repository, the local folder's
            name, or the file's name; ``/`` and the file's name are added when ``weight_name`` chose it.
        revision: The Hub commit it was downloaded at (``""`` for a local adapter).
        sha256: The file's sha256.
        info: How it was made (``fulora_data.adapter.read_adapter``).
    """

    file: Path
    name: str
    revision: str
    sha256: str
    info: AdapterInfo


def _is_hub_id(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value)) and not Path(value).exists()


def resolve_adapter(
    adapter: str, weight_name: str | None = None, revision: str | None = None
) -> ResolvedAdapter:
    """Find an adapter: a local folder or file, else a Hub repository (one weight file is downloaded).

    Raises:
        SourceNotFoundError: If it is neither on disk nor downloadable.
        DataError: If the file is not a LoRA safetensors file.
    """
    from fulora_data.adapter import DIFFUSERS_FILE

    if not _is_hub_id(adapter):
        file = adapter_file(adapter, weight_name)
        folder = Path(adapter)
        name = file.name if file == folder else folder.name + (f"/{file.name}" if weight_name else "")
        return ResolvedAdapter(file, name, "", file_sha256(file), read_adapter(file))
    hub = require("huggingface_hub", "train")
    filename = weight_name or DIFFUSERS_FILE
    try:
        local = Path(hub.hf_hub_download(adapter, filename, revision=revision))
    except Exception as err:  # the Hub client raises many kinds (offline, 404, gated)
        raise SourceNotFoundError(
            f"adapter {adapter!r}: could not get {filename!r} from the Hub ({type(err).__name__}: {err}); "
            "pass a local adapter folder or file, or --weight-name for a repository's file"
        ) from None
    # The cache stores a download under snapshots/<commit>/<filename>: the commit actually used.
    commit = local.parent.name if local.parent.parent.name == "snapshots" else (revision or "")
    name = f"{adapter}/{filename}" if weight_name else adapter
    return ResolvedAdapter(local, name, commit, file_sha256(local), read_adapter(local))


def base_identity(base: str, revision: str | None) -> tuple[str, str]:
    """Return what records call the base model and its revision: the Hub id and commit, or a folder's name."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path.resolve().name, ""
    hub = require("huggingface_hub", "train")
    try:
        return base, hub.HfApi().model_info(base, revision=revision).sha or (revision or "")
    except Exception:  # offline: the revision asked for is the best record available
        return base, revision or ""


def torch_dtype(config: GenerateConfig, device_type: str):
    """The sampling dtype: fp32 on the CPU, else what ``mixed_precision`` asks for."""
    torch = require("torch", "train")
    if device_type == "cpu" or config.mixed_precision == "no":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[config.mixed_precision]


def load_pipeline(config: GenerateConfig, adapter: ResolvedAdapter | None, device: Any):
    """Load the base pipeline on ``device``, apply the adapter and the speed options.

    Raises:
        SourceNotFoundError: If the base model cannot be found.
        ConfigError: If the adapter does not fit the base (different shapes or no matching layer).
    """
    torch = require("torch", "train")
    diffusers = require("diffusers", "train")
    device = torch.device(device)
    dtype = torch_dtype(config, device.type)
    try:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            str(Path(config.base).expanduser()) if Path(config.base).expanduser().is_dir() else config.base,
            revision=config.base_revision,
            dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as err:
        raise SourceNotFoundError(
            f"base model {config.base!r} could not be loaded ({str(err).splitlines()[0]}); pass a local "
            "diffusers folder or a Hub repository that is in the cache"
        ) from None
    if adapter is not None:
        apply_adapter(pipe, adapter, config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if config.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if config.compile:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def apply_adapter(pipe, adapter: ResolvedAdapter, config: GenerateConfig) -> None:
    """Load the adapter into the pipeline and fuse it at ``config.adapter_scale``.

    Fused, the LoRA costs nothing per step.

    Raises:
        ConfigError: If the adapter was made for another base model.
    """
    try:
        pipe.load_lora_weights(
            str(adapter.file.parent), weight_name=adapter.file.name, adapter_name=ADAPTER_NAME
        )
    except FuloraError:
        raise
    except Exception as err:  # peft and diffusers raise RuntimeError, ValueError or their own errors
        text = str(err)
        match = _MISMATCH_RE.search(text)
        detail = (
            f"its {match.group(1).replace(f'.{ADAPTER_NAME}.', '.')} has shape {match.group(2)} where the "
            f"base has {match.group(3)}"
            if match
            else text.splitlines()[0]
            if text
            else type(err).__name__
        )
        raise ConfigError(
            f"adapter {adapter.name!r} does not fit base model {config.base!r}: {detail}; it was made for "
            f"{adapter.info.base_model or 'another base model'!r}"
        ) from None
    adapted = {component for component, names in pipe.get_list_adapters().items() if ADAPTER_NAME in names}
    if "unet" not in adapted:
        raise ConfigError(
            f"adapter {adapter.name!r} matches no layer of base model {config.base!r}'s UNet: it was made "
            f"for {adapter.info.base_model or 'another base model'!r}"
        )
    pipe.fuse_lora(components=sorted(adapted), lora_scale=config.adapter_scale, adapter_names=[ADAPTER_NAME])
    pipe.unload_lora_weights()


def set_sampler(pipe, sampler: str) -> None:
    """Swap the pipeline's scheduler for the named sampler, keeping the base's noise schedule."""
    diffusers = require("diffusers", "train")
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; known samplers: {', '.join(SAMPLERS)}")
    config = getattr(pipe, "_fulora_base_scheduler", None)
    if config is None:
        config = pipe._fulora_base_scheduler = dict(pipe.scheduler.config)
    pipe.scheduler = getattr(diffusers, SAMPLERS[sampler]).from_config(config)


def initial_latents(images: list[PlannedImage], config: GenerateConfig, pipe):
    """The initial noise of each image, from a CPU generator seeded with its seed (same on any device)."""
    torch = require("torch", "train")
    factor = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, config.height // factor, config.width // factor)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(i.seed)) for i in images]
    return torch.stack(noise)


def sample(pipe, images: list[PlannedImage], config: GenerateConfig, clip_skip: int) -> list:
    """Sample one batch (images of one sampler) and return PIL images in order.

    Args:
        pipe: A pipeline from ``load_pipeline``.
        images: The batch.
        config: The run's options.
        clip_skip: Clip skip in kohya's sense (1 = last layer).
    """
    torch = require("torch", "train")
    samplers = {i.sampler for i in images}
    if len(samplers) != 1:
        raise ConfigError(f"a batch must use one sampler, got {sorted(samplers)}")
    set_sampler(pipe, images[0].sampler)
    latents = initial_latents(images, config, pipe).to(pipe.device, dtype=pipe.unet.dtype)
    with torch.inference_mode():
        embeds = encode_prompts(pipe, [prompt(i.plane) for i in images], clip_skip)
        negative = None
        if config.guidance_scale > 1:
            negative = encode_prompts(pipe, [config.negative_prompt] * len(images), clip_skip)
        out = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            latents=latents,
            num_inference_steps=config.steps,
            guidance_scale=config.guidance_scale,
            height=config.height,
            width=config.width,
            output_type="pil",
        )
    return list(out.images)


def encode_prompts(pipe, prompts: list[str], clip_skip: int):
    """Encode prompts as the study's GUI did, with kohya's clip skip (1 = the last layer's output).

    With clip skip ``k > 1`` the embedding is the ``k``-th hidden state from the end, passed through the
    text encoder's final layer norm (as kohya and diffusers do). Done here rather than through the
    pipeline's ``clip_skip`` argument, which reaches for ``text_encoder.text_model``, absent in recent
    transformers.
    """
    tokens = pipe.tokenizer(
        prompts,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(pipe.text_encoder.device)
    encoder = pipe.text_encoder
    if clip_skip <= 1:
        return encoder(tokens)[0].to(pipe.unet.dtype)
    hidden = encoder(tokens, output_hidden_states=True).hidden_states[-clip_skip]
    norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return norm(hidden).to(pipe.unet.dtype)


def pick_device(cpu: bool):
    """The device of this process: its accelerator under ``accelerate launch``, the GPU, else the CPU."""
    torch = require("torch", "train")
    if cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local % torch.cuda.device_count())
