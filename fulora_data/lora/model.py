"""The base model and its LoRA layers: loading, target modules, injection through peft, state dicts.

No LoRA layer is written by hand: peft's ``inject_adapter_in_model`` adds them (transformers 5 with
peft 0.21 refuses ``text_encoder.add_adapter``, while peft's own injection works on both models), and
every requested module is checked to have received one.

As kohya's ``networks.lora`` (the study's ``LoRA_type: Standard``): the modules are kohya's (every linear
and 1x1 convolution of the UNet's transformer blocks; q/k/v/out_proj, fc1 and fc2 of every CLIP layer, 12
x 6 = 72 for SD 1.5, whatever the clip skip), the down projection starts kaiming-uniform (a = sqrt 5)
and the up projection at zero (peft's ``init_lora_weights=True`` is exactly kohya's ``LoRAModule``
init).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fulora_data.errors import ConfigError, DataError, SourceNotFoundError, require
from fulora_data.lora.config import LoraConfig, base_kind

ADAPTER_NAME = "default"
_ATTENTION_UNET = ("to_q", "to_k", "to_v", "to_out.0")
_ATTENTION_CLIP = ("q_proj", "k_proj", "v_proj", "out_proj")
_MLP_CLIP = ("fc1", "fc2")


def load_base(config: LoraConfig) -> dict[str, Any]:
    """Load the base model's UNet, VAE, text encoder, tokenizer and training noise scheduler.

    Returns:
        ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``noise_scheduler`` and ``revision`` (the
        commit loaded, ``""`` for a local base).

    Raises:
        SourceNotFoundError: If the base model cannot be loaded, with the reason.
    """
    diffusers = require("diffusers", "train")
    transformers = require("transformers", "train")
    kind = base_kind(config.base)
    try:
        if kind == "file":
            pipe = diffusers.StableDiffusionPipeline.from_single_file(
                str(Path(config.base).expanduser()), safety_checker=None
            )
            parts = {
                "unet": pipe.unet,
                "vae": pipe.vae,
                "text_encoder": pipe.text_encoder,
                "tokenizer": pipe.tokenizer,
                "noise_scheduler": diffusers.DDPMScheduler.from_config(pipe.scheduler.config),
            }
            revision = ""
        else:
            where = str(Path(config.base).expanduser()) if kind == "folder" else config.base
            revision = config.base_revision if kind == "hub" else None
            kwargs = {"revision": revision} if revision else {}
            parts = {
                "unet": diffusers.UNet2DConditionModel.from_pretrained(where, subfolder="unet", **kwargs),
                "vae": diffusers.AutoencoderKL.from_pretrained(where, subfolder="vae", **kwargs),
                "text_encoder": transformers.CLIPTextModel.from_pretrained(
                    where, subfolder="text_encoder", **kwargs
                ),
                "tokenizer": transformers.CLIPTokenizer.from_pretrained(
                    where, subfolder="tokenizer", **kwargs
                ),
                "noise_scheduler": diffusers.DDPMScheduler.from_pretrained(
                    where, subfolder="scheduler", **kwargs
                ),
            }
            revision = revision or ""
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceNotFoundError(
            f"--base {config.base}: cannot load a Stable Diffusion model ({first})"
        ) from None
    parts["revision"] = revision
    return parts


def unet_targets(unet, targets: str) -> list[str]:
    """The UNet modules that get LoRA layers.

    ``study``: every ``Linear`` and 1x1 ``Conv2d`` inside the transformer blocks (``Transformer2DModel``:
    ``proj_in``, attention ``to_q/k/v/out.0``, ``ff.net.0.proj``, ``ff.net.2``, ``proj_out``), which is
    what kohya's standard LoRA adapts. ``attention``: ``to_q/to_k/to_v/to_out.0`` only.
    """
    torch = require("torch", "train")
    names: list[str] = []
    if targets == "attention":
        for name, module in unet.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(_ATTENTION_UNET):
                names.append(name)
        return names
    for block_name, block in unet.named_modules():
        if type(block).__name__ != "Transformer2DModel":
            continue
        for name, module in block.named_modules():
            is_linear = isinstance(module, torch.nn.Linear)
            is_1x1 = isinstance(module, torch.nn.Conv2d) and tuple(module.kernel_size) == (1, 1)
            if name and (is_linear or is_1x1):
                names.append(f"{block_name}.{name}")
    return names


def text_encoder_targets(text_encoder, targets: str, clip_skip: int = 1) -> list[str]:
    """The CLIP text encoder's modules that get LoRA layers (attention, plus the MLP for ``study``).

    Every layer gets them, as in kohya, whatever the clip skip: with clip skip ``n`` the last ``n - 1``
    layers never reach the UNet, so their LoRA layers get no gradient and stay at their initial value (up
    projection zero: no effect), but they are in the adapter file as in kohya's. ``clip_skip`` is accepted
    for callers that pass it and changes nothing.
    """
    torch = require("torch", "train")
    del clip_skip
    suffixes = _ATTENTION_CLIP + (_MLP_CLIP if targets == "study" else ())
    names = []
    for name, module in text_encoder.named_modules():
        parts = name.split(".")
        if isinstance(module, torch.nn.Linear) and parts[-1] in suffixes and "layers" in parts:
            names.append(name)
    return names


def lora_config(rank: int, alpha: float, modules: list[str]):
    """peft's ``LoraConfig`` for exact module names, initialised as kohya's ``LoRAModule``.

    ``init_lora_weights=True``: the down projection (``lora_A``) kaiming-uniform with a = sqrt(5), the up
    projection (``lora_B``) zeros, so a fresh adapter changes nothing.
    """
    peft = require("peft", "train")
    return peft.LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=modules, lora_dropout=0.0
    )


def add_lora(model, rank: int, alpha: float, modules: list[str], what: str):
    """Inject LoRA layers into ``modules`` of ``model`` with peft and check that every one received one.

    Returns:
        The peft ``LoraConfig`` used.

    Raises:
        ConfigError: If no module matches, or a requested module received no LoRA layer.
    """
    peft = require("peft", "train")
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not modules:
        raise ConfigError(f"{what}: no module matches the requested targets")
    config = lora_config(rank, alpha, modules)
    try:
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as err:
        raise ConfigError(f"{what}: peft could not add LoRA layers ({err})") from None
    layers = dict(model.named_modules())
    missing = [name for name in modules if not isinstance(layers.get(name), BaseTunerLayer)]
    if missing:
        raise ConfigError(
            f"{what}: {len(missing)} requested module(s) received no LoRA layer, e.g. {missing[0]!r}"
        )
    return config


def lora_state_dict(model) -> dict[str, Any]:
    """The model's LoRA tensors in peft's layout (``…to_q.lora_A.weight``), detached, fp32, on the CPU."""
    peft = require("peft", "train")
    torch = require("torch", "train")
    state = peft.get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    return {k: v.detach().to("cpu", dtype=torch.float32).contiguous() for k, v in state.items()}


def load_lora_state_dict(model, state: dict[str, Any], what: str) -> None:
    """Put LoRA tensors saved by ``lora_state_dict`` back into the model's LoRA layers, exactly.

    Text-encoder keys may carry CLIP's standard ``text_model.`` prefix (the file layout) while the model
    (transformers 5's ``CLIPTextModel``) has none, or the reverse: the prefix is matched to the model.

    Raises:
        DataError: If a tensor does not match the model's LoRA layers (another rank or target set).
    """
    peft = require("peft", "train")
    has_prefix = hasattr(model, "text_model")
    state = {_clip_key(key, has_prefix): value for key, value in state.items()}
    result = peft.set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or missing:
        raise DataError(
            f"{what}: the checkpoint's LoRA tensors do not fit this model ({(unexpected or missing)[0]})"
        )


def _clip_key(key: str, with_prefix: bool) -> str:
    """A CLIP module key with or without ``text_model.``, as the model at hand names it."""
    if not key.startswith(("encoder.", "text_model.")):
        return key
    bare = key.removeprefix("text_model.")
    return f"text_model.{bare}" if with_prefix else bare


def diffusers_tensors(unet_state: dict[str, Any], text_state: dict[str, Any] | None) -> dict[str, Any]:
    """The adapter in diffusers' layout: ``unet.…`` and ``text_encoder.text_model.…`` keys.

    Text-encoder keys take CLIP's standard module path (``text_model.encoder.layers.N…``, what
    transformers 4 and every SD 1.5 tool name), also when transformers 5's CLIP has no ``text_model``.
    """
    tensors = {f"unet.{k}": v for k, v in unet_state.items()}
    tensors.update({f"text_encoder.{_clip_key(k, True)}": v for k, v in (text_state or {}).items()})
    return tensors


def module_names(state: dict[str, Any]) -> list[str]:
    """The module names of a peft LoRA state dict (``…to_q.lora_A.weight`` -> ``…to_q``), sorted."""
    return sorted({key.rsplit(".lora_", 1)[0] for key in state if ".lora_" in key})
