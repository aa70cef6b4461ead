"""The adapter files as kohya writes them: hashes, metadata, names; keys from another base refused."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from lora_fixtures import make_kohya_file, make_tiny_adapter  # noqa: E402

from fulora_data.adapter import (  # noqa: E402
    DIFFUSERS_FILE,
    AdapterInfo,
    check_output_name,
    kohya_hashes,
    match_adapter_modules,
    read_adapter,
    read_safetensors_header,
    save_kohya_file,
)
from fulora_data.errors import ConfigError, DataError  # noqa: E402


def _info(**overrides) -> AdapterInfo:
    values = dict(
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        base_model_revision="",
        rank=8,
        alpha=8.0,
        targets="study",
        text_encoder=True,
        clip_skip=2,
        resolution=512,
        dataset="spanish/lora-100",
        name="fetal_ultrasound_v1.0",
        extra={"buckets": {"576x384": 66, "640x384": 28}, "steps": 10, "learning_rate": 1e-4},
    )
    values.update(overrides)
    return AdapterInfo(**values)


def test_kohya_hashes_are_addnets_model_and_legacy_hash():
    # Over 1 MiB of fp16 data, so the legacy hash reads real bytes.
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "lora_unet_a.lora_down.weight": torch.randn(8, 40000, generator=generator).half(),
        "lora_unet_a.lora_up.weight": torch.randn(40000, 8, generator=generator).half(),
        "lora_unet_a.alpha": torch.tensor(8.0).half(),
    }
    metadata = {"ss_network_dim": "8", "ss_output_name": "x", "fulora_adapter": "{}"}
    model_hash, legacy_hash = kohya_hashes(tensors, metadata)
    # The model hash is the sha256 of the tensor data alone: every tensor's bytes in safetensors' order
    # (by name, all fp16), whatever the header holds.
    data = b"".join(tensors[name].numpy().tobytes() for name in sorted(tensors))
    assert model_hash == hashlib.sha256(data).hexdigest()
    # The legacy hash reads 64 KiB at offset 1 MiB of the file written with the ss_* metadata only.
    header = {"__metadata__": {k: v for k, v in metadata.items() if k.startswith("ss_")}}
    offset = 0
    for name in sorted(tensors):
        size = tensors[name].numel() * 2
        header[name] = {
            "dtype": "F16",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    file = safetensors_torch.save(tensors, header["__metadata__"])
    (length,) = struct.unpack("<Q", file[:8])
    assert json.loads(file[8 : 8 + length]) == header  # the file kohya hashes is the one described
    assert legacy_hash == hashlib.sha256(file[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_hash != hashlib.sha256(b"").hexdigest()[:8]


def test_save_kohya_file_writes_name_fp16_metadata_and_hashes(tmp_path):
    folder = make_tiny_adapter(tmp_path / "a", rank=4)
    tensors = safetensors_torch.load_file(str(folder / DIFFUSERS_FILE))
    path = save_kohya_file(tmp_path, tensors, _info(rank=4, alpha=4.0))
    assert path.name == "fetal_ultrasound_v1.0.safetensors"
    entries, metadata, _ = read_safetensors_header(path)
    assert {e["dtype"] for e in entries.values()} == {"F16"}
    assert metadata["ss_output_name"] == "fetal_ultrasound_v1.0"
    assert metadata["ss_sd_model_name"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert metadata["ss_network_alpha"] == "4.0" and metadata["ss_network_dim"] == "4"
    assert json.loads(metadata["ss_bucket_info"])["buckets"] == {
        "0": {"resolution": [576, 384], "count": 66},
        "1": {"resolution": [640, 384], "count": 28},
    }
    written = safetensors_torch.load_file(str(path))
    assert (metadata["sshs_model_hash"], metadata["sshs_legacy_hash"]) == kohya_hashes(written, metadata)
    assert json.loads(metadata["fulora_adapter"])["format"] == "kohya"


@pytest.mark.parametrize(
    "bad", ["", "my run", "a/b", "../x", ".hidden", "x.safetensors", "pytorch_lora_weights"]
)
def test_a_run_name_that_cannot_be_a_file_name_is_refused_quoting_it(bad):
    with pytest.raises(ConfigError, match="--name") as err:
        check_output_name(bad)
    assert repr(bad) in str(err.value) or "overwrite" in str(err.value)


def test_read_adapter_refuses_unknown_keys_in_one_sentence(tmp_path):
    path = make_kohya_file(tmp_path / "k.safetensors")
    tensors = safetensors_torch.load_file(str(path))
    tensors["model.diffusion_model.input_blocks.0.weight"] = torch.zeros(2)
    safetensors_torch.save_file(tensors, str(tmp_path / "odd.safetensors"))
    with pytest.raises(DataError, match=r"odd.safetensors holds 1 key\(s\) that are no LoRA weight") as err:
        read_adapter(tmp_path / "odd.safetensors")
    assert "model.diffusion_model.input_blocks.0.weight" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "metadata", "says"),
    [
        ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", {}, "lora_te1_"),
        ("lora_unet_a.lora_down.weight", {"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl_base_v1-0"),
        ("lora_unet_a.lora_down.weight", {"ss_v2": "True"}, "Stable Diffusion 2"),
    ],
)
def test_read_adapter_refuses_a_file_for_another_base(tmp_path, key, metadata, says):
    path = tmp_path / "other.safetensors"
    safetensors_torch.save_file({key: torch.zeros(4, 8)}, str(path), metadata=metadata)
    with pytest.raises(DataError, match="another base|Stable Diffusion 2") as err:
        read_adapter(path)
    assert says in str(err.value) and "other.safetensors" in str(err.value)


def test_match_adapter_modules_lands_every_module_of_both_layouts(tmp_path):
    from fulora_data.tiny_sd import build_tiny_components

    parts = build_tiny_components(0)
    for path in (
        make_kohya_file(tmp_path / "k.safetensors"),
        make_tiny_adapter(tmp_path / "d") / DIFFUSERS_FILE,
    ):
        entries, _, _ = read_safetensors_header(path)
        match = match_adapter_modules(entries, parts["unet"], parts["text_encoder"])
        assert match.unmatched == [] and match.counts()["text_encoder"] > 0 and match.counts()["unet"] > 0
        match.check(str(path))


def test_match_adapter_modules_reports_unknown_and_misshaped_modules(tmp_path):
    from fulora_data.tiny_sd import build_tiny_components

    parts = build_tiny_components(0)
    tensors = safetensors_torch.load_file(str(make_kohya_file(tmp_path / "k.safetensors")))
    tensors["lora_unet_mid_block_nothing_here.lora_down.weight"] = torch.zeros(4, 32)
    tensors["lora_unet_mid_block_nothing_here.lora_up.weight"] = torch.zeros(32, 4)
    name = next(k for k in tensors if k.startswith("lora_te_") and k.endswith("lora_down.weight"))
    tensors[name] = torch.zeros(4, 768)  # SD 1.5's CLIP width: another base than the tiny one
    match = match_adapter_modules(tensors, parts["unet"], parts["text_encoder"])
    assert set(match.unmatched) == {
        "lora_unet_mid_block_nothing_here",
        name.removesuffix(".lora_down.weight"),
    }
    with pytest.raises(DataError, match=r"f.safetensors: 2 of its \d+ LoRA modules match no module"):
        match.check("f.safetensors")
    without_te = match_adapter_modules(tensors, parts["unet"], None)
    assert without_te.counts()["text_encoder"] == 0 and len(without_te.unmatched) > 2


def test_read_adapter_accepts_older_diffusers_lora_key_forms(tmp_path):
    path = tmp_path / "old.safetensors"
    prefix = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora"
    safetensors_torch.save_file(
        {f"{prefix}.down.weight": torch.zeros(4, 32), f"{prefix}.up.weight": torch.zeros(32, 4)}, str(path)
    )
    info = read_adapter(path)
    assert info.format == "diffusers" and info.rank == 4
