"""Loading an adapter (``fulora_data/generation/pipeline.py``): every key lands somewhere, or the run is refused.

Before, ``generate`` let diffusers and peft drop the keys that matched no module with a library log line and
exited 0 with silently different images. Now the modules that landed in the UNet and the text encoder are
counted; a key that matches nothing is an error naming how many and the first few, unless
``--allow-unmatched``; the counts go in the manifest. Non-finite weights are refused at load.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from generate_fixtures import reference_args

from fulora_data.cli import main


def _error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def _file_modules(tensors: dict, component: str) -> set[str]:
    return {k.rsplit(".lora_", 1)[0] for k in tensors if k.startswith(component + ".") and ".lora_" in k}


@pytest.fixture(scope="module")
def adapter_tensors(tiny_world):
    from safetensors.torch import load_file

    from fulora_data.adapter import DIFFUSERS_FILE, read_adapter

    path = f"{tiny_world['adapter']}/{DIFFUSERS_FILE}"
    return load_file(path), read_adapter(path)


def _save(folder, tensors, info):
    from fulora_data.adapter import DIFFUSERS_FILE, save_adapter_file

    folder.mkdir(parents=True, exist_ok=True)
    save_adapter_file(folder / DIFFUSERS_FILE, tensors, info)
    return folder


def test_the_manifest_counts_the_modules_that_landed_in_the_unet_and_text_encoder(reference_run, tiny_world):
    from safetensors.torch import load_file

    from fulora_data.adapter import DIFFUSERS_FILE

    tensors = load_file(f"{tiny_world['adapter']}/{DIFFUSERS_FILE}")
    manifest = json.loads((reference_run["out"] / "fulora_generated.json").read_text())
    counts = manifest["info"]["adapter_modules"]
    assert counts == {
        "unet": len(_file_modules(tensors, "unet")),
        "text_encoder": len(_file_modules(tensors, "text_encoder")),
        "file_modules": len(_file_modules(tensors, "unet")) + len(_file_modules(tensors, "text_encoder")),
        "unmatched_keys": 0,
        "unmatched_first": [],
    }
    assert counts["unet"] == 48 and counts["text_encoder"] == 20  # 4 attention linears x 12 / x 5 layers
    assert reference_run["summary"]["adapter_modules"] == counts


def test_an_adapter_with_an_unknown_key_is_refused_naming_it(tiny_world, tmp_path, adapter_tensors):
    import torch

    tensors, info = adapter_tensors
    extra = {
        **tensors,
        "unet.down_blocks.0.attentions.0.bogus.lora_A.weight": torch.zeros(4, 32),
        "unet.down_blocks.0.attentions.0.bogus.lora_B.weight": torch.zeros(32, 4),
    }
    folder = _save(tmp_path / "extra-key", extra, info)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, adapter=folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = _error(result)
    assert error.startswith(
        f"Error: adapter 'extra-key': 2 of its {len(extra)} keys match no module of base model"
    )
    assert "(first: unet.down_blocks.0.attentions.0.bogus.lora_A.weight, " in error
    assert error.endswith("pass --allow-unmatched to sample without them")
    assert not out.exists()


def test_allow_unmatched_samples_and_records_what_was_left_out(tiny_world, tmp_path, adapter_tensors):
    import torch

    tensors, info = adapter_tensors
    extra = {**tensors, "unet.mid_block.nothing.lora_A.weight": torch.zeros(4, 64)}
    folder = _save(tmp_path / "extra-key", extra, info)
    out = tmp_path / "out"
    args = reference_args(tiny_world, out, adapter=folder, planes="brain", samplers="euler", per_plane=1)
    result = CliRunner().invoke(main, ["generate", *args, "--allow-unmatched"])
    assert result.exit_code == 0, result.output
    counts = json.loads((out / "fulora_generated.json").read_text())["info"]["adapter_modules"]
    assert counts["unmatched_keys"] == 1 and counts["unmatched_first"] == [
        "unet.mid_block.nothing.lora_A.weight"
    ]
    assert counts["unet"] == 48 and counts["text_encoder"] == 20
    assert "1 keys matched nothing" in (out / "README.md").read_text()


def test_a_kohya_file_with_an_unknown_key_is_refused_naming_the_kohya_key(tiny_world, tmp_path):
    import safetensors.torch
    import torch

    tensors = safetensors.torch.load_file(tiny_world["kohya"])
    module = "lora_unet_down_blocks_0_attentions_0_bogus"
    tensors |= {f"{module}.lora_down.weight": torch.zeros(4, 32), f"{module}.lora_up.weight": torch.zeros(32, 4),
                f"{module}.alpha": torch.tensor(4.0)}  # fmt: skip
    path = tmp_path / "kohya" / "extra.safetensors"
    path.parent.mkdir()
    safetensors.torch.save_file(tensors, str(path), metadata={"ss_network_dim": "4", "ss_network_alpha": "4"})
    result = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, tmp_path / "out", adapter=path, clip_skip=2)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = _error(result)
    assert f"3 of its {len(tensors)} keys match no module" in error
    assert f"(first: {module}.alpha, {module}.lora_down.weight, {module}.lora_up.weight)" in error


def test_an_adapter_for_a_deeper_text_encoder_is_refused_naming_the_layers_the_base_lacks(
    tiny_world, tmp_path, adapter_tensors
):
    """A file from another base (SD 1.5's 12 CLIP layers) on the tiny base (5): the UNet fits, the rest is lost."""
    tensors, info = adapter_tensors
    deeper = dict(tensors)
    for key, value in tensors.items():
        if key.startswith("text_encoder.encoder.layers.4."):
            for layer in range(5, 12):
                deeper[key.replace("layers.4.", f"layers.{layer}.")] = value.clone()
    folder = _save(tmp_path / "sd15-like", deeper, type(info)(**{**info.to_dict(), "base_model": "sd15"}))
    result = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, tmp_path / "out", adapter=folder)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = _error(result)
    assert f"{7 * 8} of its {len(deeper)} keys match no module" in error  # 7 layers x 4 linears x A, B
    assert "(first: text_encoder.encoder.layers.10." in error and "it was made for 'sd15'" in error


def test_nan_adapter_weights_are_refused_at_load(tiny_world, tmp_path, adapter_tensors):
    tensors, info = adapter_tensors
    spoiled = {k: v.clone() for k, v in tensors.items()}
    key = sorted(k for k in spoiled if k.startswith("unet."))[3]
    spoiled[key][0, 0] = float("nan")
    folder = _save(tmp_path / "nan-adapter", spoiled, info)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, adapter=folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert _error(result) == (
        f"Error: adapter 'nan-adapter' holds NaN or infinite values in 1 tensor (first: {key}); it cannot make images"
    )
    assert not out.exists()
