"""Load the base pipeline and the adapter, and sample one batch of planned images.

Every image's initial noise is drawn on the CPU from its own ``torch.Generator`` seeded with the image's
seed, then moved to the device, so the noise is the same on any machine and in any batch. The rest of the
sampling is deterministic (no ancestral samplers), so an image depends on its seed and its batch only:
sampled alone it agrees with its batched self up to float rounding (on CPU, at most a unit of the last
8-bit level on a few pixels; see ``tests/generation/test_generate.py``). Runs therefore always sample an image in the
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
from fulora_data.generation.config import GenerateConfig, PlannedImage, prompt

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


def folder_digest(folder: str | os.PathLike) -> str:
    """A local diffusers folder's identity: ``sha256:<hex>`` of its sorted per-file digests.

    Covers ``model_index.json`` and every weight file (safetensors, bin, ckpt ...) under the folder; each
    line is ``<relative path> <sha256>``. Configs other than ``model_index.json`` are left out: the
    weights' shapes already follow from them. The rule and its per-file cache (by path, size and mtime, in
    ``checkpoint.digest_cache()``) are the LoRA trainer's: ``checkpoint.weights_digest``.
    """
    from fulora_data.checkpoint import weights_digest

    return weights_digest(folder)


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
    fit = apply_adapter(pipe, adapter, config) if adapter is not None else None
    pipe.__dict__["_fulora_adapter_fit"] = fit
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


_KOHYA_KEY = re.compile(r"^lora_(unet|te1|te2|te)_([^.]+)\.")
_DIFFUSERS_KEY = re.compile(
    r"^(unet|text_encoder|text_encoder_2)\.(.+?)\."
    r"(lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|alpha|lora_magnitude_vector|dora_scale)(\.|$)"
)
_KOHYA_COMPONENTS = {"unet": "unet", "te": "text_encoder", "te1": "text_encoder", "te2": "text_encoder_2"}
_LEGACY_PROCESSOR = {  # diffusers' old attention-processor LoRA names -> the module they adapt
    "unet": {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"},
    "text_encoder": {
        "to_q_lora": "q_proj",
        "to_k_lora": "k_proj",
        "to_v_lora": "v_proj",
        "to_out_lora": "out_proj",
    },
}
SHOWN_KEYS = 5
"""How many unmatched keys an error names."""


@dataclass(frozen=True)
class AdapterFit:
    """Where an adapter's modules landed in the base.

    Attributes:
        unet: LoRA modules applied to the UNet.
        text_encoder: LoRA modules applied to the text encoder.
        file_modules: Modules the file holds (as diffusers names them after conversion).
        unmatched_keys: The file's keys (as diffusers names them) that match no module of the base.
    """

    unet: int
    text_encoder: int
    file_modules: int
    unmatched_keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "unet": self.unet,
            "text_encoder": self.text_encoder,
            "file_modules": self.file_modules,
            "unmatched_keys": len(self.unmatched_keys),
            "unmatched_first": list(self.unmatched_keys[:SHOWN_KEYS]),
        }


def _canonical(module: str) -> str:
    """A module path in kohya's spelling (``_`` for ``.``), without the text encoder's ``text_model.``."""
    return module.removeprefix("text_model.").replace(".", "_").removeprefix("text_model_")


def _module_of(key: str) -> tuple[str, str] | None:
    """``(component, canonical module)`` a LoRA file's key adapts (kohya or diffusers layout), else ``None``."""
    match = _KOHYA_KEY.match(key)
    if match:
        return _KOHYA_COMPONENTS[match.group(1)], _canonical(match.group(2))
    match = _DIFFUSERS_KEY.match(key)
    if not match:
        return None
    component, module = match.group(1), match.group(2)
    head, _, last = module.rpartition(".")
    legacy = _LEGACY_PROCESSOR.get(component, {}).get(last)
    if legacy:
        module = f"{head.removesuffix('.processor')}.{legacy}"
    return component, _canonical(module)


def _landed(pipe) -> dict[str, set[str]]:
    """The modules of each component that carry the adapter (``ADAPTER_NAME``)."""
    landed: dict[str, set[str]] = {}
    for component in ("unet", "text_encoder"):
        model = getattr(pipe, component, None)
        names = set()
        for name, module in model.named_modules() if model is not None else ():
            layers = getattr(module, "lora_A", None)
            if hasattr(layers, "keys") and ADAPTER_NAME in layers:
                names.add(_canonical(name))
        landed[component] = names
    return landed


def check_finite(adapter: ResolvedAdapter, tensors: dict[str, Any]) -> None:
    """Refuse an adapter holding NaN or infinite weights (they would make every image black).

    Raises:
        ConfigError: Naming how many tensors and the first.
    """
    torch = require("torch", "train")
    bad = sorted(
        key
        for key, value in tensors.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    )
    if bad:
        raise ConfigError(
            f"adapter {adapter.name!r} holds NaN or infinite values in {len(bad)} tensor"
            f"{'s' if len(bad) > 1 else ''} (first: {bad[0]}); it cannot make images"
        )


def apply_adapter(pipe, adapter: ResolvedAdapter, config: GenerateConfig) -> AdapterFit:
    """Load the adapter into the pipeline, check where it landed, and fuse it at ``config.adapter_scale``.

    Every key of the file must reach a module of the UNet or the text encoder; keys that match nothing are
    refused, naming how many and the first few, unless ``config.allow_unmatched``. Fused, the LoRA costs
    nothing per step.

    Returns:
        Where the adapter's modules landed.

    Raises:
        ConfigError: If the adapter was made for another base model, holds non-finite weights, or has keys
            that match no module.
    """
    safetensors = require("safetensors.torch", "train")
    try:
        state = safetensors.load_file(str(adapter.file))
    except Exception as err:  # a damaged file: safetensors raises its own error types
        raise ConfigError(
            f"adapter {adapter.name!r} could not be read ({str(err).splitlines()[0]})"
        ) from None
    check_finite(adapter, state)
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
    landed = _landed(pipe)
    modules: set[tuple[str, str]] = set()
    unmatched = []
    for key in sorted(state):
        module = _module_of(key)
        if module is not None:
            modules.add(module)
        if module is None or module[1] not in landed.get(module[0], set()):
            unmatched.append(key)
    fit = AdapterFit(len(landed["unet"]), len(landed["text_encoder"]), len(modules), tuple(unmatched))
    if unmatched and not config.allow_unmatched:
        pipe.unload_lora_weights()
        raise ConfigError(
            f"adapter {adapter.name!r}: {len(unmatched)} of its {len(state)} keys match no module of base model "
            f"{config.base!r} (first: {', '.join(unmatched[:SHOWN_KEYS])}); it was made for "
            f"{adapter.info.base_model or 'another base model'!r}: pass --allow-unmatched to sample without them"
        )
    pipe.fuse_lora(components=sorted(adapted), lora_scale=config.adapter_scale, adapter_names=[ADAPTER_NAME])
    pipe.unload_lora_weights()
    return fit


def build_scheduler(sampler: str, base_config: dict):
    """The sampler's diffusers scheduler with A1111's settings (``samplers.scheduler_settings``).

    Raises:
        ConfigError: For an unknown sampler or a noise schedule A1111's samplers do not cover.
    """
    import logging

    diffusers = require("diffusers", "train")
    from fulora_data.generation.samplers import a1111_sampler, scheduler_settings

    spec = a1111_sampler(sampler)
    settings = scheduler_settings(sampler, base_config)
    cls = getattr(diffusers, spec.scheduler)
    quiet = logging.getLogger("diffusers.configuration_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # from_config would warn about nothing: every key is the class's
    try:
        return cls.from_config(settings)
    finally:
        quiet.setLevel(level)


def _jsonable(value):
    """A config value as standard JSON: non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def sampler_record(sampler: str, base_config: dict, steps: int) -> dict:
    """Everything needed to repeat a sampler in plain diffusers: class, full config, grid, time steps.

    Returns:
        ``{"a1111": label, "scheduler": class name, "config": every option of the scheduler, "grid":
        what the pipeline is given besides ``num_inference_steps`` (``{"sigmas": [...]}``,
        ``{"timesteps": [...]}`` or ``{}``), "timesteps": the timesteps the UNet sees, "sigmas": the
        scheduler's sigmas (``[]`` for DDIM, which has none)}``. Non-finite floats are strings.
    """
    from fulora_data.generation.samplers import a1111_sampler, grid

    scheduler = build_scheduler(sampler, base_config)
    given = grid(sampler, base_config, steps)
    if given:
        scheduler.set_timesteps(**given)
    else:
        scheduler.set_timesteps(steps)
    sigmas = getattr(scheduler, "sigmas", None)
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {
        "a1111": a1111_sampler(sampler).label,
        "scheduler": type(scheduler).__name__,
        "config": _jsonable(config),
        "grid": given,
        "timesteps": [float(t) for t in scheduler.timesteps.tolist()],
        "sigmas": [float(x) for x in sigmas.tolist()] if sigmas is not None else [],
    }


def read_base_scheduler(base: ResolvedBase) -> dict:
    """The base's scheduler file (``scheduler/scheduler_config.json``), or ``{}`` (SD 1.x's schedule).

    Raises:
        SourceNotFoundError: If the file exists but is not a JSON object.
    """
    import json

    path = Path(base.path) / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SourceNotFoundError(
            f"base model {base.name!r}: scheduler/scheduler_config.json is unreadable ({err})"
        ) from None
    if not isinstance(value, dict):
        raise SourceNotFoundError(
            f"base model {base.name!r}: scheduler/scheduler_config.json is not a JSON object"
        )
    return value


def set_sampler(pipe, sampler: str, steps: int) -> dict:
    """Swap the pipeline's scheduler for the named sampler with A1111's settings.

    Only the noise schedule is taken from the base's scheduler (``samplers.NOISE_SCHEDULE``).

    Returns:
        What the pipeline call takes besides the scheduler: ``{"sigmas": ...}``, ``{"timesteps": ...}``,
        or ``{"num_inference_steps": steps}``.
    """
    from fulora_data.generation.samplers import grid

    config = getattr(pipe, "_fulora_base_scheduler", None)
    if config is None:
        config = pipe._fulora_base_scheduler = dict(pipe.scheduler.config)
    pipe.scheduler = build_scheduler(sampler, config)
    return grid(sampler, config, steps) or {"num_inference_steps": steps}


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
    timing = set_sampler(pipe, images[0].sampler, config.steps)
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
            **timing,
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
