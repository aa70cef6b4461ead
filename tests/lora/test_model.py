"""LoRA layers as kohya's networks.lora on the tiny pipeline: init, CLIP modules, the files a run writes."""

from __future__ import annotations

import json
import math
import warnings

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import DIFFUSERS_FILE, find_kohya_file, read_adapter  # noqa: E402
from fulora_data.cli import main  # noqa: E402
from fulora_data.lora import model as lora_model  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import train_lora  # noqa: E402
from fulora_data.tiny_sd import build_tiny_components, save_tiny_pipeline  # noqa: E402

CLIP_LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-model")
    base = save_tiny_pipeline(root / "base")
    source = samples.write_spanish_source(root / "src", per_plane=2, test_per_plane=1, seed=0)
    return {"root": root, "base": base, "source": source}


def _config(workspace, **overrides) -> LoraConfig:
    values = {
        "base": str(workspace["base"]),
        "data_config": "es",
        "source": str(workspace["source"]),
        "cache_dir": str(workspace["root"] / "cache"),
        "resolution": 32,
        "bucket_step": 8,
        "max_steps": 3,
        "text_encoder_lr": 1e-2,
        "learning_rate": 1e-2,
        "clip_skip": 2,
        "seed": 3,
    }
    values.update(overrides)
    return LoraConfig.preset("smoke", **values)


@pytest.fixture(scope="module")
def run(workspace):
    """A 3-step run with the text encoder trained at clip skip 2, in a folder named ``fetal-r4``."""
    out = workspace["root"] / "fetal-r4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(_config(workspace), out, progress=False, log=lambda m: None)
    return {"summary": summary, "adapter": out / "adapter"}


def test_fresh_lora_down_is_kaiming_uniform_and_up_is_zero():
    torch.manual_seed(0)
    unet = build_tiny_components(0)["unet"]
    modules = lora_model.unet_targets(unet, "study")
    lora_model.add_lora(unet, 4, 4.0, modules, "UNet")
    downs = [m.lora_A["default"].weight for m in unet.modules() if hasattr(m, "lora_A") and m.lora_A]
    ups = [m.lora_B["default"].weight for m in unet.modules() if hasattr(m, "lora_B") and m.lora_B]
    assert len(downs) == len(ups) == len(modules)
    for weight in downs:
        # kaiming_uniform_(a=sqrt(5)): U(-b, b) with b = sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in)
        fan_in = weight.shape[1] * (weight[0, 0].numel() if weight.dim() > 2 else 1)
        bound = 1 / math.sqrt(fan_in)
        weight = weight.detach()
        assert float(weight.abs().max()) <= bound
        assert float(weight.abs().max()) > 0.8 * bound  # reaches near the bound: not gaussian(1/r)
        assert abs(float(weight.mean())) < 0.2 * bound
    assert all(float(weight.abs().max()) == 0.0 for weight in ups)


def test_every_clip_layer_gets_all_six_linears_whatever_the_clip_skip():
    text_encoder = build_tiny_components(0)["text_encoder"]
    layers = text_encoder.config.num_hidden_layers
    for clip_skip in (1, 2):
        names = lora_model.text_encoder_targets(text_encoder, "study", clip_skip)
        assert len(names) == layers * 6
        for layer in range(layers):
            for linear in CLIP_LINEARS:
                assert any(f"layers.{layer}." in n and n.endswith(linear) for n in names), (layer, linear)


def test_with_clip_skip_2_the_last_clip_layer_stays_exactly_zero(run):
    tensors = load_file(str(run["adapter"] / DIFFUSERS_FILE))
    layers = build_tiny_components(0)["text_encoder"].config.num_hidden_layers
    last = f"text_encoder.text_model.encoder.layers.{layers - 1}."
    last_up = [v for k, v in tensors.items() if k.startswith(last) and ".lora_B." in k]
    other_up = [v for k, v in tensors.items() if k.startswith("text_encoder.") and ".lora_B." in k]
    assert len(last_up) == 6 and len(other_up) == layers * 6
    assert all(float(v.abs().max()) == 0.0 for v in last_up)  # never reached the UNet: no gradient
    assert sum(float(v.abs().max()) > 0 for v in other_up) == (layers - 1) * 6  # the others learned


def test_run_summary_records_the_bucket_histogram(run):
    # The procedural Spanish images are 959x661-shaped scaled down; at 32 px in 8 px steps all share one.
    buckets = run["summary"]["buckets"]
    assert sum(buckets.values()) == 10 and all("x" in key for key in buckets)
    assert read_adapter(run["adapter"]).extra["buckets"] == buckets


def test_kohya_file_is_named_after_the_run_in_fp16_with_kohyas_metadata(run):
    adapter = run["adapter"]
    assert sorted(p.name for p in adapter.glob("*.safetensors")) == ["fetal-r4.safetensors", DIFFUSERS_FILE]
    assert find_kohya_file(adapter).name == "fetal-r4.safetensors"
    path = adapter / "fetal-r4.safetensors"
    tensors = load_file(str(path))
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    expected = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "4",
        "ss_network_alpha": "4.0",
        "ss_output_name": "fetal-r4",
        "ss_clip_skip": "2",
        "ss_base_model_version": "sd_v1",
        "ss_resolution": "(32, 32)",
        "ss_sd_model_name": "base",
        "ss_learning_rate": "0.01",
        "ss_unet_lr": "0.01",
        "ss_text_encoder_lr": "0.01",
        "ss_max_train_steps": "3",
        "ss_steps": "3",
        "ss_lr_scheduler": "constant",
        "ss_optimizer": "torch.optim.adamw.AdamW",
        "ss_seed": "3",
        "ss_mixed_precision": "no",
        "ss_num_train_images": "10",
        "ss_enable_bucket": "True",
        "ss_bucket_no_upscale": "True",
        "ss_v2": "False",
    }
    assert {k: metadata.get(k) for k in expected} == expected
    info = json.loads(metadata["ss_bucket_info"])
    assert sum(b["count"] for b in info["buckets"].values()) == 10
    assert len(metadata["sshs_model_hash"]) == 64 and len(metadata["sshs_legacy_hash"]) == 8
    kohya = read_adapter(adapter, "fetal-r4.safetensors")
    assert kohya.format == "kohya" and kohya.name == "fetal-r4" and kohya.rank == 4
    te = [k for k in tensors if k.startswith("lora_te_")]
    layers = build_tiny_components(0)["text_encoder"].config.num_hidden_layers
    assert len(te) == layers * 6 * 3  # every CLIP layer, 6 linears, down/up/alpha


def test_diffusers_file_has_standard_clip_keys_and_only_loader_metadata(run):
    path = run["adapter"] / DIFFUSERS_FILE
    tensors = load_file(str(path))
    te = [k for k in tensors if k.startswith("text_encoder.")]
    assert te and all(k.startswith("text_encoder.text_model.encoder.layers.") for k in te)
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    packed = json.loads(metadata["lora_adapter_metadata"])
    fields = {k.split(".", 1)[1] for k in packed}
    assert fields == {"r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern"}
    assert packed["unet.r"] == 4 and packed["text_encoder.lora_alpha"] == 4.0
    assert set(metadata) == {"format", "fulora_adapter", "lora_adapter_metadata"}


def test_both_files_give_the_same_pixels_in_diffusers(run, workspace):
    from diffusers import StableDiffusionPipeline

    images = []
    for weight_name in (DIFFUSERS_FILE, "fetal-r4.safetensors"):
        pipe = StableDiffusionPipeline.from_pretrained(workspace["base"], safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(run["adapter"], weight_name=weight_name)
        lora_te = [m for m in pipe.text_encoder.modules() if hasattr(m, "lora_A") and m.lora_A]
        assert len(lora_te) == build_tiny_components(0)["text_encoder"].config.num_hidden_layers * 6
        images.append(
            pipe(
                "a photo of fetal brain",
                num_inference_steps=2,
                height=32,
                width=32,
                output_type="np",
                generator=torch.Generator().manual_seed(0),
            ).images[0]
        )
    # fp16 kohya weights against fp32 diffusers weights: the same 8-bit pixels
    assert (abs(images[0] * 255 - images[1] * 255)).max() < 0.5


def test_name_option_names_the_kohya_file_and_a_bad_name_is_one_sentence(workspace, tmp_path):
    base = ["train", "lora", "--preset", "smoke", "--base", str(workspace["base"]), "--data-config", "es"]
    base += ["--source", str(workspace["source"]), "--cache-dir", str(workspace["root"] / "cache")]
    bad = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "run"), "--name", "my run/1"])
    assert bad.exit_code == 2, bad.output
    assert "--name" in bad.output and "'my run/1'" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "run" / "adapter").exists()
    folder = tmp_path / "bad name"
    default = CliRunner().invoke(main, [*base, "--out", str(folder)])
    assert (
        default.exit_code != 0 and "--out folder's name" in default.output and "'bad name'" in default.output
    )
