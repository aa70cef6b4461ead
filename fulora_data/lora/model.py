"""The base model and its LoRA layers: loading, target modules, injection through peft, state dicts.

No LoRA layer is written by hand: peft's ``inject_adapter_in_model`` adds them (transformers 5 with
peft 0.21 refuses ``text_encoder.add_adapter``, while peft's own injection works on both models), and
every requested module is checked to have received one.
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

    With clip skip ``n`` the last ``n - 1`` layers never reach the UNet, so they get no LoRA layer: it
    would never receive a gradient (and distributed training refuses parameters that get none).
    """
    torch = require("torch", "train")
    suffixes = _ATTENTION_CLIP + (_MLP_CLIP if targets == "study" else ())
    used_layers = text_encoder.config.num_hidden_layers - (clip_skip - 1)
    names = []
    for name, module in text_encoder.named_modules():
        parts = name.split(".")
        if not isinstance(module, torch.nn.Linear) or parts[-1] not in suffixes or "layers" not in parts:
            continue
        if int(parts[parts.index("layers") + 1]) < used_layers:
            names.append(name)
    return names


def lora_config(rank: int, alpha: float, modules: list[str]):
    """peft's ``LoraConfig`` for exact module names (Gaussian init of A, as diffusers' example)."""
    peft = require("peft", "train")
    return peft.LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=modules, lora_dropout=0.0
    )


def add_lora(model, rank: int, alpha: float, modules: list[str], what: str):
    """Inject LoRA layers into ``modules`` of ``model`` with peft and check that every one received one.

    Returns:
        The peft ``LoraConfig`` used (diffusers stores it in the file's ``lora_adapter_metadata``).

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


def peft_metadata(config) -> dict[str, Any]:
    """A peft ``LoraConfig`` as the JSON-ready dict diffusers writes in ``lora_adapter_metadata``."""
    values = config.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in values.items()}


def lora_state_dict(model) -> dict[str, Any]:
    """The model's LoRA tensors in peft's layout (``…to_q.lora_A.weight``), detached, fp32, on the CPU."""
    peft = require("peft", "train")
    torch = require("torch", "train")
    state = peft.get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    return {k: v.detach().to("cpu", dtype=torch.float32).contiguous() for k, v in state.items()}


def load_lora_state_dict(model, state: dict[str, Any], what: str) -> None:
    """Put LoRA tensors saved by ``lora_state_dict`` back into the model's LoRA layers, exactly.

    Raises:
        DataError: If a tensor does not match the model's LoRA layers (another rank or target set).
    """
    peft = require("peft", "train")
    result = peft.set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or missing:
        raise DataError(
            f"{what}: the checkpoint's LoRA tensors do not fit this model ({(unexpected or missing)[0]})"
        )


def diffusers_tensors(unet_state: dict[str, Any], text_state: dict[str, Any] | None) -> dict[str, Any]:
    """The adapter in diffusers' layout: ``unet.…`` and ``text_encoder.…`` keys (as ``save_lora_weights``)."""
    tensors = {f"unet.{k}": v for k, v in unet_state.items()}
    tensors.update({f"text_encoder.{k}": v for k, v in (text_state or {}).items()})
    return tensors
