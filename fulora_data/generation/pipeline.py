"""Load the base pipeline and the adapter, and sample one batch of planned images.

Every image's initial noise is drawn on the CPU from its own ``torch.Generator`` seeded with the image's
seed, then moved to the device, so the noise is the same on any machine and in any batch. The rest of the
sampling is deterministic (no ancestral samplers), so an image depends on its seed and its batch only:
sampled alone it agrees with its batched self up to float rounding (on CPU, at most a unit of the last
8-bit level on a few pixels; see ``tests/test_generate.py``). Runs therefore always sample an image in the
same fixed batch (``config.batches``).
"""

from __future__ import annotations

import hashlib
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


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(value: str) -> bool:
    """Whether a value that is not on disk was meant as a local path rather than a Hub repository."""
    return (
        value.startswith(("./", "../", "/", "~", ".\\", "..\\"))
        or value.endswith(".safetensors")
        or "\\" in value
        or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value)
    )


def resolve_adapter(
    adapter: str, weight_name: str | None = None, revision: str | None = None
) -> ResolvedAdapter:
    """Find an adapter: a local folder or file, else a Hub repository (one weight file is downloaded).

    Raises:
        SourceNotFoundError: If it is neither on disk nor downloadable.
        DataError: If the file is not a LoRA safetensors file.
    """
    from fulora_data.adapter import DIFFUSERS_FILE

    if not Path(adapter).expanduser().exists() and _looks_like_path(adapter):
        # A path, not a repository id: asking the Hub would only add retries before the same answer.
        raise SourceNotFoundError(f"adapter {adapter!r} does not exist: no such local file or folder")
    if not _is_hub_id(adapter):
        file = adapter_file(adapter, weight_name)
        folder = Path(adapter)
        name = file.name if file == folder else folder.name + (f"/{file.name}" if weight_name else "")
        return ResolvedAdapter(file, name, "", file_sha256(file), read_adapter(file))
    hub = require("huggingface_hub", "train")
    filename = weight_name or DIFFUSERS_FILE
    try:
        local = Path(hub.hf_hub_download(adapter, filename, revision=revision, local_files_only=_offline()))
    except Exception as err:  # the Hub client raises many kinds (offline, 404, gated)
        detail = str(err).splitlines()[0] if str(err) else ""
        raise SourceNotFoundError(
            f"adapter {adapter!r}: no such local path, and could not get {filename!r} from the Hub"
            + (" cache (HF_HUB_OFFLINE is set)" if _offline() else "")
            + f" ({type(err).__name__}: {detail}); pass a local adapter folder or file, or --weight-name for "
            "a repository's file"
        ) from None
    # The cache stores a download under snapshots/<commit>/<filename>: the commit actually used.
    commit = local.parent.name if local.parent.parent.name == "snapshots" else (revision or "")
    name = f"{adapter}/{filename}" if weight_name else adapter
    return ResolvedAdapter(local, name, commit, file_sha256(local), read_adapter(local))


@dataclass(frozen=True)
class ResolvedBase:
    """A base model found on disk, with what identifies it.

    Attributes:
        path: The local diffusers folder to load (a Hub repository's cached snapshot for a Hub base).
        name: What the records call it (never a local path): the Hub id, or the local folder's name.
        revision: The Hub commit of the snapshot, or ``sha256:<hex>``, a digest of a local folder's
            ``model_index.json`` and weight files (so two different local bases never mix).
    """

    path: Path
    name: str
    revision: str


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")
_DIGESTS: dict[str, str] = {}
"""Per-file sha256 by ``"<resolved path>|<size>|<mtime ns>"``, loaded from and saved to ``digest_cache()``."""


def digest_cache() -> Path:
    """The file that keeps per-file digests across runs: ``<HF home>/fulora/file-digests.json``.

    The HF home as the Hub libraries find it (the rule of ``fulora_data.doctor.hf_home``, a higher layer).
    """
    if os.environ.get("HF_HOME"):
        home = Path(os.environ["HF_HOME"]).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME")
        home = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "huggingface"
    return home / "fulora" / "file-digests.json"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def folder_digest(folder: str | os.PathLike) -> str:
    """A local diffusers folder's identity: ``sha256:<hex>`` of its sorted per-file digests.

    Covers ``model_index.json`` and every weight file (safetensors, bin, ckpt ...) under the folder; each
    line is ``<relative path> <sha256>``. Configs other than ``model_index.json`` are left out: the
    weights' shapes already follow from them. Each file's digest is kept by (path, size, mtime) in
    ``digest_cache()``, so a repeated run reads no unchanged weight again.
    """
    import json

    from fulora_data.io import atomic_write_json

    folder = Path(folder)
    cache = digest_cache()
    try:
        stored = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    except (OSError, ValueError):  # a damaged cache costs a rehash, nothing else
        stored = {}
    if isinstance(stored, dict):
        _DIGESTS.update({k: v for k, v in stored.items() if isinstance(v, str) and k not in _DIGESTS})
    known = len(_DIGESTS)
    lines = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and (relative == "model_index.json" or path.name.endswith(_WEIGHT_SUFFIXES)):
            lines.append(f"{relative} {_file_digest(path)}")
    if len(_DIGESTS) > known:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, dict(_DIGESTS), indent=None)
        except OSError:  # a read-only home: the digests are recomputed next time
            pass
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def resolve_base(base: str, revision: str | None) -> ResolvedBase:
    """Find the base model: a local diffusers folder, else a Hub repository's snapshot (downloaded or cached).

    Raises:
        SourceNotFoundError: If it is neither a local folder nor a Hub repository that can be had.
    """
    path = Path(base).expanduser()
    if path.is_dir():
        return ResolvedBase(path.resolve(), path.resolve().name, folder_digest(path))
    if _looks_like_path(base) and not _is_hub_id(base):
        raise SourceNotFoundError(f"base model {base!r} does not exist: no such local folder")
    diffusers = require("diffusers", "train")
    try:
        # The pipeline's own download: only the files a pipeline loads, into snapshots/<commit>/.
        folder = Path(
            diffusers.DiffusionPipeline.download(base, revision=revision, local_files_only=_offline())
        )
    except Exception as err:  # the Hub client raises many kinds (offline, 404, gated)
        detail = str(err).splitlines()[0] if str(err) else ""
        raise SourceNotFoundError(
            f"base model {base!r}: no such local folder, and it could not be had from the Hub "
            f"({type(err).__name__}: {detail}); pass a local diffusers folder or a Hub repository"
        ) from None
    commit = folder.name if folder.parent.name == "snapshots" else (revision or "")
    return ResolvedBase(folder, base, commit)


def base_identity(base: str, revision: str | None) -> tuple[str, str]:
    """Return what records call the base model and its revision (``resolve_base``'s name and revision)."""
    resolved = resolve_base(base, revision)
    return resolved.name, resolved.revision


def torch_dtype(config: GenerateConfig, device_type: str):
    """The sampling dtype: fp32 on the CPU, else what ``mixed_precision`` asks for."""
    torch = require("torch", "train")
    if device_type == "cpu" or config.mixed_precision == "no":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[config.mixed_precision]


def load_pipeline(
    config: GenerateConfig,
    adapter: ResolvedAdapter | None,
    device: Any,
    base: ResolvedBase | None = None,
    clip_skip: int = 1,
):
    """Load the base pipeline on ``device``, apply the adapter and the speed options.

    Args:
        config: The run's options.
        adapter: The adapter, or ``None``.
        device: Where to sample.
        base: The resolved base (default: ``resolve_base(config.base, config.base_revision)``).
        clip_skip: The clip skip the run will use, checked against the text encoder's depth.

    Raises:
        SourceNotFoundError: If the base model cannot be found.
        ConfigError: If the adapter does not fit the base (different shapes or no matching layer), or the
            clip skip is deeper than the text encoder.
    """
    torch = require("torch", "train")
    diffusers = require("diffusers", "train")
    device = torch.device(device)
    dtype = torch_dtype(config, device.type)
    base = base or resolve_base(config.base, config.base_revision)
    try:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            str(base.path),
            dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as err:
        raise SourceNotFoundError(
            f"base model {config.base!r} could not be loaded ({str(err).splitlines()[0]}); pass a local "
            "diffusers folder or a Hub repository that is in the cache"
        ) from None
    check_clip_skip(pipe, clip_skip)
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


def check_clip_skip(pipe, clip_skip: int) -> None:
    """Refuse a clip skip deeper than the text encoder (kohya's ``k`` uses the ``k``-th layer from the end).

    Raises:
        ConfigError: Naming ``--clip-skip`` and the encoder's layer count.
    """
    layers = getattr(pipe.text_encoder.config, "num_hidden_layers", None)
    if isinstance(layers, int) and clip_skip > layers:
        raise ConfigError(
            f"--clip-skip {clip_skip} is deeper than the base model's text encoder, which has {layers} "
            f"layers; pass --clip-skip between 1 and {layers}"
        )


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
        embeds = cached_prompts(pipe, [prompt(i.plane) for i in images], clip_skip)
        negative = None
        if config.guidance_scale > 1:
            negative = cached_prompts(pipe, [config.negative_prompt] * len(images), clip_skip)
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


def cached_prompts(pipe, prompts: list[str], clip_skip: int):
    """``encode_prompts``, run once per distinct batch of prompts for the pipeline's lifetime.

    A run has one batch shape per plane (its prompt repeated) and one negative prompt, so the text encoder
    runs a handful of times instead of once per batch. The key is the whole batch, not each prompt:
    encoding the same rows in the same batch gives the same tensor, so pixels do not change.
    """
    cache = pipe.__dict__.setdefault("_fulora_prompt_embeds", {})
    key = (tuple(prompts), clip_skip)
    if key not in cache:
        cache[key] = encode_prompts(pipe, prompts, clip_skip)
    return cache[key]


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
