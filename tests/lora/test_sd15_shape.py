"""fulora at SD 1.5's real shape, on a CPU: the study's presets train, save and reload in plain diffusers.

The base is SD 1.5's UNet (859.5 M), KL VAE and CLIP ViT-L/14 text encoder with random weights built from
configs (``fulora_data.tiny_sd``, shape ``sd15``), so module names, LoRA key counts and parameter counts are
the real model's. Two optimizer steps of the r8 and r128 presets at 64 px (each image in a kohya bucket of 64x64), then two denoising steps with
each saved file loaded by ``pipe.load_lora_weights``. Slow (minutes, ~10 GB of memory): ``make test`` runs
it after the fast suite.
"""

from __future__ import annotations

import math
import warnings

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import DIFFUSERS_FILE, read_adapter  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import train_lora  # noqa: E402
from fulora_data.tiny_sd import save_tiny_pipeline  # noqa: E402

pytestmark = pytest.mark.slow

#: kohya's LoRA for SD 1.5: 16 transformer blocks x 12 modules in the UNet, 12 CLIP layers x 6 linears.
KOHYA_UNET_MODULES, KOHYA_TE_MODULES = 192, 72
#: LoRA parameters per unit of rank, derived from SD 1.5's shapes: every block of width C holds
#: proj_in/proj_out (C->C), attn1 q/k/v/out (C->C), attn2 q/out (C->C) and k/v (768->C), ff (C->8C, 4C->C):
#: (32 C + 1536) per rank, over widths 5 x 320, 5 x 640, 6 x 1280; CLIP: 12 x (4 x 1536 + 2 x 3840).
PER_RANK = 32 * (5 * 320 + 5 * 640 + 6 * 1280) + 16 * 1536 + 12 * (4 * 1536 + 2 * 3840)
#: The study's trainable parameter counts (UNet + text encoder), in millions.
STUDY_COUNTS = {8: 4.72, 32: 18.87, 128: 75.50}


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    """An SD 1.5-shaped base folder and a 5-image procedural Spanish set (one 128x128 image per plane)."""
    root = tmp_path_factory.mktemp("sd15")
    base = save_tiny_pipeline(root / "sd15-random", shape="sd15")
    source = samples.write_spanish_source(
        root / "src", per_plane=1, test_per_plane=1, seed=0, sizes=((128, 128),)
    )
    return {"root": root, "base": base, "source": source}


def train(sd15, preset: str):
    """Train ``preset`` for two steps once per module; later calls return that run."""
    if preset in sd15:
        return sd15[preset]
    config = LoraConfig.preset(
        preset,
        base=str(sd15["base"]),
        data_config="es",
        source=str(sd15["source"]),
        cache_dir=str(sd15["root"] / "cache"),
        resolution=64,
        batch_size=1,
        max_steps=2,
        mixed_precision="no",
        optimizer="adamw",
        checkpoint_every=0,
        validation_every=0,
        validation_inference_steps=1,
        cpu=True,
    )
    out = sd15["root"] / preset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(config, out, progress=False, log=lambda m: None)
    sd15[preset] = summary, out / "adapter"
    return sd15[preset]


def kohya_file(adapter):
    return next(p for p in adapter.glob("*.safetensors") if p.name != DIFFUSERS_FILE)


@pytest.mark.parametrize("preset,rank", [("r8", 8), ("r128", 128)])
def test_sd15_preset_has_kohyas_264_modules_and_the_studys_parameter_count(sd15, preset, rank):
    summary, adapter = train(sd15, preset)
    assert summary["steps"] == 2
    with safe_open(kohya_file(adapter), "pt") as handle:
        keys = list(handle.keys())
        unet = {k.split(".")[0] for k in keys if k.startswith("lora_unet_")}
        te = {k.split(".")[0] for k in keys if k.startswith("lora_te_")}
        assert (len(unet), len(te)) == (KOHYA_UNET_MODULES, KOHYA_TE_MODULES)
        assert len(keys) == (KOHYA_UNET_MODULES + KOHYA_TE_MODULES) * 3  # lora_down, lora_up, alpha
        shapes = [handle.get_slice(k).get_shape() for k in keys if not k.endswith(".alpha")]
    params = sum(math.prod(shape) for shape in shapes)
    assert params == PER_RANK * rank
    assert round(params / 1e6, 2) == STUDY_COUNTS[rank]
    info = read_adapter(adapter)
    assert (info.rank, info.alpha) == (rank, float(rank))


def test_sd15_adapter_files_load_in_plain_diffusers_and_generate(sd15):
    import diffusers

    _, adapter = train(sd15, "r8")
    images = {}
    for name in (DIFFUSERS_FILE, kohya_file(adapter).name):
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd15["base"], safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(adapter, weight_name=name)
        lora_unet = [n for n, _ in pipe.unet.named_modules() if n.endswith("lora_A")]
        lora_te = [n for n, _ in pipe.text_encoder.named_modules() if n.endswith("lora_A")]
        assert (len(lora_unet), len(lora_te)) == (KOHYA_UNET_MODULES, KOHYA_TE_MODULES), name
        out = pipe(
            "fetal brain", num_inference_steps=2, height=64, width=64, output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images
        assert out.shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(out)).all()
        images[name] = out
        del pipe
    first, second = images.values()
    assert abs(first - second).max() < 2 / 255  # the kohya copy is fp16; the diffusers file fp32
