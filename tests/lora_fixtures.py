"""Tiny LoRA adapters for the tiny pipeline, made in the test (no trainer needed).

``make_tiny_adapter`` injects peft LoRA layers into the tiny UNet (and text encoder), gives the
up-projections small seeded non-zero values so the adapter changes the images, and writes the weights in
fulora's adapter format (diffusers layout plus ``fulora_adapter`` metadata). ``make_kohya_file`` writes the
same weights in kohya's layout (``lora_unet_…``, ``lora_te_…``, ``.alpha``), like the study's
``fangyijie/fu-lora`` file, without fulora metadata.
"""

from __future__ import annotations

from pathlib import Path

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _lora_state(rank: int, seed: int, text_encoder: bool, base_seed: int = 0) -> dict:
    """LoRA weights for the tiny pipeline in diffusers' peft layout (``unet.….lora_A.weight``)."""
    import peft
    import torch

    from fulora_data.tiny_sd import build_tiny_components

    components = build_tiny_components(base_seed)
    unet, te = components["unet"], components["text_encoder"]
    unet.add_adapter(peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=UNET_TARGETS))
    models = {"unet": unet}
    if text_encoder:
        # transformers' own add_adapter refuses this tiny CLIP; peft's injection works.
        te = peft.inject_adapter_in_model(
            peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_TARGETS), te
        )
        models["text_encoder"] = te
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, model in models.items():
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name or "lora_A" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        weights = peft.get_peft_model_state_dict(model)
        state.update({f"{prefix}.{k}": v.detach().clone() for k, v in weights.items()})
    return state


def make_tiny_adapter(
    folder: str | Path,
    *,
    rank: int = 4,
    seed: int = 0,
    text_encoder: bool = True,
    clip_skip: int = 2,
    base_model: str = "tiny-sd",
    dataset: str = "spanish/lora-100",
) -> Path:
    """Write a tiny fulora adapter folder for the tiny pipeline and return the folder."""
    from fulora_data.adapter import DIFFUSERS_FILE, AdapterInfo, save_adapter_file
    from fulora_data.taxonomy import PLANES, PROMPTS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = _lora_state(rank, seed, text_encoder)
    info = AdapterInfo(
        base_model=base_model,
        base_model_revision="",
        rank=rank,
        alpha=float(rank),
        targets="attention",
        text_encoder=text_encoder,
        clip_skip=clip_skip,
        resolution=64,
        prompts={p: PROMPTS[p] for p in PLANES},
        dataset=dataset,
        format="diffusers",
    )
    # alpha = rank, diffusers' own assumption without lora_adapter_metadata, so none is written.
    save_adapter_file(folder / DIFFUSERS_FILE, state, info)
    return folder


def make_kohya_file(path: str | Path, *, rank: int = 4, seed: int = 0) -> Path:
    """Write a kohya-format LoRA file for the tiny pipeline (no fulora metadata) and return its path.

    Kohya names a module by its diffusers path with ``_`` for ``.``, prefixed ``lora_unet_`` or (SD1.5's
    text encoder) ``lora_te_``; ``lora_A``/``lora_B`` are ``lora_down``/``lora_up``, and each module has an
    ``.alpha`` scalar.
    """
    import safetensors.torch
    import torch

    state = _lora_state(rank, seed, text_encoder=True)
    kohya = {}
    for key, value in state.items():
        component, _, rest = key.partition(".")
        module, _, kind = rest.rpartition(".lora_")
        prefix = "lora_unet_" if component == "unet" else "lora_te_"
        if component == "text_encoder" and not module.startswith("text_model."):
            module = "text_model." + module  # the module path in SD1.5's CLIPTextModel
        name = prefix + module.replace(".", "_")
        kohya[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value.contiguous()
        kohya[f"{name}.alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        kohya, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(rank)}
    )
    return path
