"""Review fixes of `fulora generate`: identities of local and Hub bases, failed starts, clip skip, kohya
metadata, foreign folders, exact regeneration of one image, part shards, adapter paths and timing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED
from generate_fixtures import reference_args

from fulora_data.cli import main
from fulora_data.generated import read_generated, read_manifest

STUDY_CONFIG = SHARED / "data" / "paper" / "kohya_lora_config_abdomen.json"
SMALL = {"planes": "femur", "samplers": "euler", "per_plane": 1, "steps": 1}


def _run(world, out, **changes):
    return CliRunner().invoke(
        main, ["generate", *reference_args(world, out, **{**SMALL, **changes}), "--json"]
    )


def _summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_two_local_bases_of_one_name_are_never_mixed(tiny_world, tmp_path):
    from fulora_data.tiny_sd import save_tiny_pipeline

    other = save_tiny_pipeline(tmp_path / "other" / "tiny-sd", seed=1)  # same folder name, other weights
    out = tmp_path / "out"
    _summary(_run(tiny_world, out))
    _, images = read_generated(out)
    revision = images[0].record.base_model_revision
    assert images[0].record.base_model == "tiny-sd" and revision.startswith("sha256:") and len(revision) == 71
    result = _run(tiny_world, out, base=other)
    assert result.exit_code == 1 and "generated with other settings: base_model_revision is" in result.output
    again = _summary(_run(tiny_world, out))  # the same base: the same digest, nothing to do
    assert again["generated_now"] == 0


def test_a_hub_base_records_its_snapshot_commit(tiny_world, tmp_path, monkeypatch):
    import diffusers

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--fulora--tiny-sd" / "snapshots" / commit
    shutil.copytree(tiny_world["base"], snapshot)
    asked = []

    def download(repo, revision=None, local_files_only=False, **kwargs):
        asked.append((repo, revision, local_files_only))
        return str(snapshot)

    monkeypatch.setattr(diffusers.DiffusionPipeline, "download", staticmethod(download))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    _summary(_run(tiny_world, out, base="fulora/tiny-sd"))
    _, images = read_generated(out)
    assert (images[0].record.base_model, images[0].record.base_model_revision) == ("fulora/tiny-sd", commit)
    assert asked and asked[0] == ("fulora/tiny-sd", None, True)  # offline: the cache only


def _wide_adapter(world, folder: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    from fulora_data.adapter import DIFFUSERS_FILE, read_adapter, save_adapter_file

    source = f"{world['adapter']}/{DIFFUSERS_FILE}"
    tensors = load_file(source)
    key = next(k for k in sorted(tensors) if k.startswith("unet.") and k.endswith("lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] * 2)
    folder.mkdir(parents=True)
    save_adapter_file(folder / DIFFUSERS_FILE, tensors, read_adapter(source))
    return folder


def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(tiny_world, tmp_path):
    out = tmp_path / "out"
    bad = _run(tiny_world, out, adapter=_wide_adapter(tiny_world, tmp_path / "wide"))
    assert bad.exit_code == 1 and "does not fit base model" in bad.output
    broken = tmp_path / "broken-base"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    bad = _run(tiny_world, out, base=broken)
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    bad = _run(tiny_world, out, clip_skip=99)
    assert bad.exit_code == 1
    assert not out.exists() or read_manifest(out) is None
    _summary(_run(tiny_world, out))  # the corrected command runs
    text = (out / "fulora_generated.json").read_text() + (out / "metadata.jsonl").read_text()
    assert str(tmp_path) not in text and str(Path(tiny_world["root"])) not in text  # no local path


def test_a_clip_skip_deeper_than_the_text_encoder_is_refused_at_start(tiny_world, tmp_path):
    from transformers import CLIPTextConfig

    layers = CLIPTextConfig.from_pretrained(Path(tiny_world["base"]) / "text_encoder").num_hidden_layers
    result = _run(tiny_world, tmp_path / "out", clip_skip=layers + 1)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        f"--clip-skip {layers + 1} is deeper than the base model's text encoder, which has {layers} layers"
        in (result.output)
    )
    assert not list((tmp_path / "out").rglob("*.tar"))
    _summary(_run(tiny_world, tmp_path / "ok", clip_skip=layers))  # the deepest allowed one runs


def test_the_study_preset_uses_clip_skip_2_and_an_explicit_one_wins():
    from fulora_data.generation.config import GenerateConfig

    assert GenerateConfig.preset("study", base="b").clip_skip == 2
    assert GenerateConfig.preset("study", base="b", clip_skip=1).clip_skip == 1


@pytest.mark.skipif(not STUDY_CONFIG.is_file(), reason="the study's material (../shared) is absent")
def test_the_study_preset_clip_skip_is_the_study_kohya_config():
    from fulora_data.generation.config import GenerateConfig

    assert (
        json.loads(STUDY_CONFIG.read_text())["clip_skip"]
        == GenerateConfig.preset("study", base="b").clip_skip
    )


@pytest.mark.parametrize(
    "model_name, expected",
    [
        ("runwayml/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"),
        ("/content/models/v1-5-pruned-emaonly.safetensors", "v1-5-pruned-emaonly.safetensors"),
        ("C:\\sd\\models\\v1-5-pruned.ckpt", "v1-5-pruned.ckpt"),
        ("/home/me/some folder", ""),
    ],
)
def test_kohya_metadata_gives_clip_skip_and_base_model(tmp_path, model_name, expected):
    import safetensors.torch
    from lora_fixtures import make_kohya_file

    from fulora_data.adapter import read_adapter

    path = make_kohya_file(tmp_path / "k.safetensors", rank=4)
    tensors = safetensors.torch.load_file(str(path))
    metadata = {"ss_network_dim": "4", "ss_clip_skip": "2", "ss_sd_model_name": model_name}
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    info = read_adapter(path)
    assert (info.clip_skip, info.base_model) == (2, expected)
    safetensors.torch.save_file(tensors, str(path), metadata={"ss_clip_skip": "None"})
    assert read_adapter(path).clip_skip == 0


def test_a_kohya_file_clip_skip_is_used_unless_one_is_given(tiny_world, tmp_path):
    import safetensors.torch

    path = tmp_path / "kohya" / "k.safetensors"
    path.parent.mkdir()
    tensors = safetensors.torch.load_file(tiny_world["kohya"])
    safetensors.torch.save_file(tensors, str(path), metadata={"ss_network_dim": "4", "ss_clip_skip": "2"})
    assert _summary(_run(tiny_world, tmp_path / "a", adapter=path))["settings"]["clip_skip"] == 2
    assert _summary(_run(tiny_world, tmp_path / "b", adapter=path, clip_skip=1))["settings"]["clip_skip"] == 1


def test_a_non_empty_folder_without_a_manifest_is_refused(tiny_world, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    result = _run(tiny_world, out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{out} is not empty (it holds 'README.md') and holds no fulora_generated.json" in result.output
    assert (
        sorted(p.name for p in out.iterdir()) == ["README.md"]
        and (out / "README.md").read_text() == "my notes"
    )


def test_a_rerun_without_against_drops_the_stale_memorisation_result(tiny_world, reference_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference_run["out"], out)
    assert (out / "memorisation.json").is_file()
    summary = _summary(CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out), "--json"]))
    assert summary["generated_now"] == 0 and summary["memorisation"]["checked"] is False
    assert not (out / "memorisation.json").exists()
    assert "not checked" in (out / "README.md").read_text()


def test_part_shards_hold_one_batch(tiny_world, tmp_path, monkeypatch):
    from fulora_data.generation import run

    seen = []
    real = run.GeneratedWriter

    def spy(folder, **kwargs):
        seen.append((Path(folder).name, kwargs.get("shard_size")))
        return real(folder, **kwargs)

    monkeypatch.setattr(run, "GeneratedWriter", spy)
    _summary(_run(tiny_world, tmp_path / "out", per_plane=3, batch_size=2, shard_size=4))
    assert seen == [("out", 4), ("rank-0", 2)]  # the final shards are repacked to shard_size


@pytest.mark.parametrize("value", ["./adapters/r128", "adapters/r128.safetensors", "~/nowhere/r128"])
def test_a_mistyped_local_adapter_path_is_not_asked_of_the_hub(tiny_world, tmp_path, value):
    start = time.perf_counter()
    result = _run(tiny_world, tmp_path / "out", adapter=value)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"adapter {value!r} does not exist: no such local file or folder" in result.output
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()


def test_an_org_name_adapter_missing_everywhere_names_both_places(tiny_world, tmp_path, hub_server):
    result = _run(tiny_world, tmp_path / "out", adapter="adapters/r128")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "adapter 'adapters/r128': no such local path, and could not get" in result.output
    assert "from the Hub" in result.output


def test_images_per_second_counts_the_sampling_only(tiny_world, tmp_path, monkeypatch):
    from fulora_data.generation import pipeline

    real = pipeline.load_pipeline

    def slow_load(*args, **kwargs):
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_pipeline", slow_load)
    summary = _summary(_run(tiny_world, tmp_path / "out"))
    assert summary["load_seconds"] >= 2.0 and summary["seconds"] < summary["load_seconds"]
    assert summary["images_per_second"] == pytest.approx(1 / summary["seconds"], rel=0.05)


def test_the_synthetic_builder_version_covers_the_new_columns():
    from fulora_data.builders.synthetic import SyntheticBuilder as Synthetic
    from fulora_data.generated import PROVENANCE_FIELDS

    assert str(Synthetic.VERSION) == "1.1.0" and "1.1.0" in Synthetic.RELEASE_NOTES
    assert {"adapter_sha256", "adapter_scale", "clip_skip"} <= set(PROVENANCE_FIELDS)


def test_a_local_base_digest_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    import os

    from fulora_data import checkpoint
    from fulora_data.generation import pipeline

    base = tmp_path / "base"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text("{}")
    (base / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    (base / "unet" / "config.json").write_text("{}")  # not a weight: not hashed
    hashed = []
    real = checkpoint.file_sha256
    monkeypatch.setattr(checkpoint, "file_sha256", lambda path: hashed.append(Path(path).name) or real(path))
    monkeypatch.setattr(checkpoint, "_FILE_DIGESTS", {})
    first = pipeline.folder_digest(base)
    assert sorted(hashed) == ["diffusion_pytorch_model.safetensors", "model_index.json"]
    assert checkpoint.digest_cache().is_file()
    monkeypatch.setattr(checkpoint, "_FILE_DIGESTS", {})  # a new process: the digests come from the cache file
    hashed.clear()
    assert pipeline.folder_digest(base) == first and hashed == []
    weights = base / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"other!!")  # same size, new content and mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert pipeline.folder_digest(base) != first and hashed == ["diffusion_pytorch_model.safetensors"]


def test_offline_an_org_name_adapter_is_looked_for_in_the_cache_only(tiny_world, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    result = _run(tiny_world, tmp_path / "out", adapter="adapters/r128")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "adapter 'adapters/r128': no such local path, and could not get" in result.output
    assert "from the Hub cache (HF_HUB_OFFLINE is set)" in result.output
    assert time.perf_counter() - start < 10
