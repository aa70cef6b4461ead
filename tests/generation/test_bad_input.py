"""`fulora generate` refuses bad input with one sentence, before it writes anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from generate_fixtures import reference_args

from fulora_data.cli import main


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"samplers": "euler,heun"}, "unknown sampler 'heun'; known samplers: euler, unipc, ddim, dpmpp-2m"),
        ({"planes": "brain,liver"}, "--planes: unknown plane 'liver'"),
        ({"planes": "cervix"}, "'cervix' is not one of the study's five planes"),
        ({"planes": "brain,Fetal brain"}, "--planes names 'Fetal brain' twice"),
        ({"width": 100}, "--width must be a positive multiple of 8 (the VAE's latent grid), got 100"),
        ({"height": 0}, "--height must be a positive multiple of 8"),
        ({"per_plane": 0}, "--per-plane must be a positive integer, got 0"),
        ({"batch_size": -1}, "--batch-size must be a positive integer, got -1"),
        ({"clip_skip": 0}, "--clip-skip counts from 1"),
        ({"against_source": "x.zip"}, "--against-source needs --against"),
        ({"against": "spanish/"}, "--against must be NAME or NAME/CONFIG"),
    ],
)
def test_bad_options_are_refused_before_any_write(tiny_world, tmp_path, changes, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, **changes)])
    assert result.exit_code == 2, result.output  # a bad option value, as click's own (docs/cli.md)
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("Error:") == 1
    assert not out.exists()


def test_an_adapter_made_for_another_base_is_refused_naming_the_shapes(tiny_world, tmp_path):
    import torch
    from safetensors.torch import load_file

    from fulora_data.adapter import DIFFUSERS_FILE, read_adapter, save_adapter_file

    source = f"{tiny_world['adapter']}/{DIFFUSERS_FILE}"
    tensors = load_file(source)
    key = next(k for k in sorted(tensors) if k.startswith("unet.") and k.endswith("lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] * 2)  # a wider base model
    info = read_adapter(source)
    other = tmp_path / "other-base"
    other.mkdir()
    save_adapter_file(
        other / DIFFUSERS_FILE, tensors, type(info)(**{**info.to_dict(), "base_model": "wide-sd"})
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, adapter=other)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    module = key.removeprefix("unet.")
    assert f"adapter 'other-base' does not fit base model '{tiny_world['base']}'" in result.output
    assert (
        f"its {module} has shape torch.Size([4, 64]) where the base has torch.Size([4, 32])" in result.output
    )
    assert "it was made for 'wide-sd'" in result.output
    assert not list(out.rglob("*.tar"))


def test_an_adapter_for_none_of_the_base_layers_is_refused(tiny_world, tmp_path):
    import torch

    from fulora_data.adapter import AdapterInfo, save_adapter_file

    folder = tmp_path / "sdxl-like"
    folder.mkdir()
    tensors = {
        "unet.mid_block.attentions.9.proj_in.lora_A.weight": torch.zeros(4, 8),
        "unet.mid_block.attentions.9.proj_in.lora_B.weight": torch.zeros(8, 4),
    }
    info = AdapterInfo(base_model="sdxl", base_model_revision="", rank=4, alpha=4.0, targets="unknown",
                       text_encoder=False, clip_skip=1)  # fmt: skip
    save_adapter_file(folder / "pytorch_lora_weights.safetensors", tensors, info)
    result = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, tmp_path / "out", adapter=folder)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: adapter 'sdxl-like' does not fit base model")
    assert "mid_block.attentions.9.proj_in" in error and error.endswith("it was made for 'sdxl'")


def test_help_lists_the_options():
    result = CliRunner().invoke(main, ["generate", "--help"])
    assert result.exit_code == 0
    for option in ("--base", "--adapter", "--adapter-scale", "--planes", "--per-plane", "--samplers", "--steps",
                   "--guidance", "--negative-prompt", "--clip-skip", "--width", "--height", "--seed",
                   "--batch-size", "--mixed-precision", "--cpu", "--out", "--json", "--preset", "--weight-name"):  # fmt: skip
        assert option in result.output
