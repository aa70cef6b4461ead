"""The adapter's on-disk format: fulora metadata round trip, header-only reading, foreign kohya files."""

from __future__ import annotations

import json
import struct

import pytest

from fulora_data import adapter
from fulora_data.errors import DataError, SourceNotFoundError

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _info(**overrides) -> adapter.AdapterInfo:
    values = dict(
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        base_model_revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
        rank=8,
        alpha=4.0,
        targets="attention",
        text_encoder=False,
        clip_skip=2,
        resolution=512,
        prompts={"Fetal brain": "a photo of fetal brain"},
        dataset="spanish/lora-100",
    )
    values.update(overrides)
    return adapter.AdapterInfo(**values)


def test_fulora_metadata_round_trips_and_the_file_loads_with_safetensors(tmp_path):
    tensors = {
        "unet.down.attn.to_q.lora_A.weight": torch.randn(8, 32),
        "unet.down.attn.to_q.lora_B.weight": torch.randn(32, 8),
    }
    path = adapter.save_adapter_file(tmp_path / adapter.DIFFUSERS_FILE, tensors, _info())
    assert adapter.read_adapter(tmp_path) == _info()
    loaded = safetensors_torch.load_file(str(path))
    assert torch.equal(
        loaded["unet.down.attn.to_q.lora_A.weight"], tensors["unet.down.attn.to_q.lora_A.weight"]
    )
    assert [p.name for p in tmp_path.iterdir()] == [adapter.DIFFUSERS_FILE]


def test_reading_needs_no_torch(tmp_path, monkeypatch):
    tensors = {"unet.x.lora_A.weight": torch.zeros(4, 2), "unet.x.lora_B.weight": torch.zeros(2, 4)}
    adapter.save_adapter_file(tmp_path / adapter.DIFFUSERS_FILE, tensors, _info(rank=4, alpha=4.0))
    import sys

    for name in ("torch", "safetensors", "safetensors.torch", "diffusers"):
        monkeypatch.setitem(sys.modules, name, None)
    assert adapter.read_adapter(tmp_path).rank == 4


def test_foreign_kohya_file_gives_format_rank_alpha_and_text_encoder(tmp_path):
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(16, 32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 16),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(8.0, dtype=torch.float16),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(16, 32),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(37, 16),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(8.0, dtype=torch.bfloat16),
    }
    safetensors_torch.save_file(tensors, str(tmp_path / "fetal_ultrasound_v1.0.safetensors"))
    info = adapter.read_adapter(tmp_path / "fetal_ultrasound_v1.0.safetensors")
    assert (info.format, info.rank, info.alpha, info.text_encoder) == ("kohya", 16, 8.0, True)
    assert info.base_model == "" and info.clip_skip == 0  # unknown, not invented


def test_folder_resolution_and_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match="neither a folder nor"):
        adapter.read_adapter(tmp_path / "missing")
    with pytest.raises(SourceNotFoundError, match="found: none"):
        adapter.read_adapter(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "b.safetensors").write_bytes(b"")
    with pytest.raises(SourceNotFoundError, match="pass --weight-name"):
        adapter.read_adapter(tmp_path)
    with pytest.raises(DataError, match="a.safetensors is not a safetensors file"):
        adapter.read_adapter(tmp_path, "a.safetensors")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(DataError, match="holds no LoRA weights"):
        adapter.read_adapter(tmp_path, "b.safetensors")


def test_layout_must_match_the_info(tmp_path):
    with pytest.raises(DataError, match="kohya layout but the info says 'diffusers'"):
        adapter.save_adapter_file(
            tmp_path / "x.safetensors", {"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, _info()
        )
    assert not any(tmp_path.iterdir())


def test_bad_metadata_types_are_refused(tmp_path):
    tensors = {"unet.x.lora_A.weight": torch.zeros(4, 2)}
    bad = {**_info().to_dict(), "rank": "eight"}
    safetensors_torch.save_file(
        tensors, str(tmp_path / "x.safetensors"), metadata={"fulora_adapter": json.dumps(bad)}
    )
    with pytest.raises(DataError, match="'rank' must be an integer, got 'eight'"):
        adapter.read_adapter(tmp_path / "x.safetensors")


def test_foreign_diffusers_file_takes_alpha_from_diffusers_own_metadata(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    tensors = {
        "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
        "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4),
    }
    unet_layers = {k.removeprefix("unet."): v for k, v in tensors.items()}
    diffusers.StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=unet_layers, unet_lora_adapter_metadata={"r": 4, "lora_alpha": 2}
    )
    info = adapter.read_adapter(tmp_path)
    assert (info.format, info.rank, info.alpha, info.text_encoder) == ("diffusers", 4, 2.0, False)


def test_the_same_adapter_saves_to_the_same_bytes(tmp_path):
    # safetensors writes metadata in hash-map order; the adapter's sha256 is its identity in generated sets.
    import hashlib

    tensors = {f"unet.block{i}.lora_A.weight": torch.full((4, 2), float(i)) for i in range(6)}
    extra = {f"key{i}": str(i) for i in range(12)}
    digests = set()
    for attempt in range(6):
        path = adapter.save_adapter_file(
            tmp_path / f"{attempt}.safetensors", tensors, _info(), extra_metadata=extra
        )
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        loaded = safetensors_torch.load_file(str(path))
        assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert len(digests) == 1
    assert adapter.read_adapter(tmp_path / "0.safetensors") == _info()
