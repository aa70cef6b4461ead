"""`fulora generate`: counts, provenance, seeds, regeneration, card, sheet, memorisation, builders, kohya."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from generate_fixtures import REFERENCE, pixel_digests, reference_args
from PIL import Image

from fulora_data.adapter import file_sha256
from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.generated import iter_images, read_generated
from fulora_data.generation.config import GenerateConfig, batches, image_seed, plan
from fulora_data.generation.pipeline import folder_digest
from fulora_data.taxonomy import PLANES, PROMPTS


def test_seed_rule_is_stable_and_independent_of_the_run_size():
    assert image_seed(7, "Fetal brain", "euler", 0) == image_seed(7, "Fetal brain", "euler", 0)
    assert image_seed(7, "Fetal brain", "euler", 0) != image_seed(7, "Fetal brain", "unipc", 0)
    assert image_seed(7, "Fetal brain", "euler", 0) != image_seed(8, "Fetal brain", "euler", 0)
    # The documented rule, spelled out.
    digest = hashlib.sha256(b"fulora-generate/v1|7|Fetal brain|euler|3").digest()
    assert image_seed(7, "Fetal brain", "euler", 3) == int.from_bytes(digest[:4], "big")
    small = plan(GenerateConfig(base="b", planes=("Fetal brain",), samplers=("euler",), per_plane=2, seed=7))
    large = plan(GenerateConfig(base="b", per_plane=5, seed=7).validated())
    by_key = {(i.plane, i.sampler, i.index): i.seed for i in large}
    assert all(by_key[(i.plane, i.sampler, i.index)] == i.seed for i in small)
    cut = batches(large, 2)
    assert all(len({(i.plane, i.sampler) for i in b}) == 1 and len(b) <= 2 for b in cut)
    assert [i for b in cut for i in b] == large


def test_study_preset():
    config = GenerateConfig.preset("study", base="b").validated()
    assert config.per_plane == 500 and config.samplers == ("euler", "unipc") and config.planes == PLANES
    assert (config.width, config.height) == (512, 512) and len(plan(config)) == 5000
    assert GenerateConfig.preset("study", base="b", per_plane=3).per_plane == 3


def test_counts_and_provenance_of_every_image(tiny_world, reference_run):
    out = reference_run["out"]
    manifest, images = read_generated(out)
    assert manifest["complete"] and len(images) == 12 and len(manifest["shards"]) == 3
    counts = {}
    for image in images:
        key = (image.record.plane, image.record.sampler)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        (p, s): 3
        for p in ("Fetal brain", "Fetal femur")
        for s in ("EulerDiscreteScheduler", "UniPCMultistepScheduler")
    }
    assert reference_run["summary"]["counts"] == {
        "Fetal brain": {"euler": 3, "unipc": 3},
        "Fetal femur": {"euler": 3, "unipc": 3},
    }
    adapter_sha = file_sha256(f"{tiny_world['adapter']}/pytorch_lora_weights.safetensors")
    for position, image in enumerate(images):
        r = image.record
        sampler = {"EulerDiscreteScheduler": "euler", "UniPCMultistepScheduler": "unipc"}[r.sampler]
        assert r.generation_index == position and r.image_id == f"{position:05d}-{r.seed}"
        assert r.seed == image_seed(REFERENCE["seed"], r.plane, sampler, position % 3)
        assert r.prompt == PROMPTS[r.plane] and r.negative_prompt == ""
        assert (r.steps, r.guidance_scale, r.width, r.height) == (2, 7.0, 16, 16)
        assert (r.base_model, r.base_model_revision) == ("tiny-sd", folder_digest(tiny_world["base"]))
        assert (r.adapter, r.adapter_revision, r.adapter_sha256) == ("adapter", "", adapter_sha)
        assert (r.lora_rank, r.adapter_scale, r.clip_skip) == (4, 1.0, 2)  # clip skip read from the adapter
    pictures = dict(iter_images(out, images))
    assert len(set(hashlib.sha256(p).digest() for p in pictures.values())) == 12  # every seed its own image
    # The shards describe themselves: png, json and the integer label.
    import tarfile

    with tarfile.open(out / images[0].shard) as tar:
        names = sorted(tar.getnames())
        key = images[0].record.image_id
        assert names[:3] == [f"{key}.cls", f"{key}.json", f"{key}.png"]
        assert tar.extractfile(f"{key}.cls").read() == str(PLANES.index(images[0].record.plane)).encode()
    settings = manifest["info"]["settings"]
    assert settings["batch_size"] == 2 and settings["adapter_sha256"] == adapter_sha


def test_the_adapter_changes_the_images(tiny_world, reference_run, tmp_path):
    out = tmp_path / "base-alone"
    args = reference_args(tiny_world, out, adapter=None, planes="brain", samplers="euler", per_plane=2)
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 0, result.output
    _, images = read_generated(out)
    assert images[0].record.adapter == "" and images[0].record.lora_rank == 0
    same_seed = {
        r: d
        for r, d in reference_run["digests"].items()
        if r.split("-")[1] == images[0].record.image_id.split("-")[1]
    }
    assert same_seed and set(same_seed.values()).isdisjoint(pixel_digests(out).values())


def test_one_image_regenerated_alone_has_the_same_pixels(tiny_world, reference_run):
    from fulora_data.generation.run import regenerate

    out = reference_run["out"]
    _, images = read_generated(out)
    image = images[5]  # second image of a batch of two
    config = GenerateConfig(
        base=tiny_world["base"], adapter=tiny_world["adapter"], steps=2, width=16, height=16, cpu=True,
        planes=("brain", "femur"), samplers=("euler", "unipc"), seed=7, per_plane=3, batch_size=2,
    )  # fmt: skip
    alone = np.asarray(regenerate(config, image.record, device="cpu").convert("RGB"), dtype=np.int16)
    ((_, data),) = list(iter_images(out, [image]))
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    assert np.array_equal(alone, stored)  # sampled in its run's batch: exactly the stored pixels
    settings = read_generated(out)[0]["info"]["settings"]  # what a user regenerates from
    assert (settings["per_plane"], settings["batch_size"]) == (3, 2)
    with pytest.raises(ConfigError, match="is not in the plan of these options"):
        regenerate(dataclasses.replace(config, per_plane=2), image.record, device="cpu")


def test_one_image_regenerated_from_the_folder_alone(tiny_world, reference_run, tmp_path):
    from fulora_data.generation.run import regenerate_image
    from fulora_data.tiny_sd import save_tiny_pipeline

    out = reference_run["out"]
    _, images = read_generated(out)
    image = images[7]
    picture = regenerate_image(
        out, image.record.image_id, base=tiny_world["base"], adapter=tiny_world["adapter"]
    )
    ((_, data),) = list(iter_images(out, [image]))
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(picture.convert("RGB")), stored)
    other = save_tiny_pipeline(tmp_path / "tiny-sd", seed=3)
    with pytest.raises(ConfigError, match="base_model_revision is"):
        regenerate_image(out, image.record.image_id, base=str(other), adapter=tiny_world["adapter"])


def test_contact_sheet_and_card_with_memorisation_summary(tiny_world, reference_run):
    out = reference_run["out"]
    summary = reference_run["summary"]
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 2 * 4 * 16 and sheet.height > 2 * 16
        # Not blank: the thumbnails are there.
        assert np.asarray(sheet.convert("L")).std() > 10
    memo = summary["memorisation"]
    assert memo["checked"] and memo["against"] == "spanish/lora-100"
    assert memo["synthetic_images"] == 12 and memo["training_images"] == 100
    card = (out / "README.md").read_text()
    assert "Not for clinical use" in card and "## Memorisation check" in card
    assert "`spanish/lora-100`" in card and f"| Flagged as memorised | {memo['memorised']} |" in card
    assert "sha256 `" + file_sha256(f"{tiny_world['adapter']}/pytorch_lora_weights.safetensors") in card
    assert "| Fetal brain | `a photo of fetal brain` | 3 | 3 |" in card
    saved = json.loads((out / "memorisation.json").read_text())
    assert saved["synthetic_images"] == 12 and len(saved["nearest"]) == 12


def test_synthetic_and_hybrid_builders_read_the_result(tiny_world, reference_run, tmp_path):
    from fulora_data.prepare import prepare

    out = reference_run["out"]
    synthetic = prepare("synthetic", "generated", source=out, cache_dir=tmp_path)["train"]
    assert len(synthetic) == 12 and set(synthetic["source"]) == {"synthetic"}
    row = synthetic[0]
    assert row["adapter_sha256"] and row["clip_skip"] == 2 and row["adapter_scale"] == 1.0
    assert row["sampler"] == "EulerDiscreteScheduler" and row["lora_rank"] == 4
    assert synthetic.features["label"].int2str(row["label"]) == "Fetal brain"
    result = CliRunner().invoke(
        main,
        ["data", "info", "synthetic", "-c", "generated", "--source", str(out), "--cache-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    hybrid = prepare(
        "hybrid",
        "es1150-generated",
        cache_dir=tmp_path,
        real_config="es",
        real_source=tiny_world["spanish"],
        synthetic_source=out,
    )
    rows = [*hybrid["train"], *hybrid.get("validation", [])]
    synthetic_rows = [r for r in rows if r["source"] == "synthetic"]
    assert len(synthetic_rows) == 12 and {r["clip_skip"] for r in synthetic_rows} == {2}


def test_kohya_file_is_accepted_and_gives_the_same_images(tiny_world, reference_run, tmp_path):
    from pathlib import Path

    kohya = Path(tiny_world["kohya"])
    out = tmp_path / "kohya"
    # The kohya file holds the reference adapter's weights; it records no clip skip, so pass the study's 2.
    args = reference_args(
        tiny_world,
        out,
        adapter=kohya.parent,
        weight_name=kohya.name,
        planes="brain",
        samplers="euler",
        clip_skip=2,
    )
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 0, result.output
    _, images = read_generated(out)
    record = images[0].record
    assert (
        record.adapter == f"kohya/{kohya.name}"
        and record.lora_rank == 4
        and record.adapter_sha256 == file_sha256(kohya)
    )
    reference = reference_run["digests"]
    for image_id, digest in pixel_digests(out).items():
        assert reference[image_id] == digest


def test_a_hub_adapter_is_downloaded_and_its_commit_recorded(tiny_world, reference_run, hub_server, tmp_path):
    from pathlib import Path

    import huggingface_hub

    kohya = Path(tiny_world["kohya"])
    api = huggingface_hub.HfApi(endpoint=hub_server.url, token=hub_server.token)
    api.create_repo("fulora/tiny-fu-lora")
    api.upload_file(path_or_fileobj=str(kohya), path_in_repo=kohya.name, repo_id="fulora/tiny-fu-lora")
    head = hub_server.head("fulora/tiny-fu-lora", repo_type="model")
    out = tmp_path / "hub"
    args = reference_args(tiny_world, out, adapter="fulora/tiny-fu-lora", weight_name=kohya.name, planes="femur",
                          samplers="unipc", per_plane=2, clip_skip=2)  # fmt: skip
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 0, result.output
    _, images = read_generated(out)
    record = images[0].record
    assert record.adapter == f"fulora/tiny-fu-lora/{kohya.name}" and record.adapter_revision == head
    assert record.adapter_sha256 == file_sha256(kohya)
    # Ids carry the plan position; the seed (after the dash) names the same image in both runs.
    reference = {key.split("-")[1]: digest for key, digest in reference_run["digests"].items()}
    assert all(reference[image_id.split("-")[1]] == digest for image_id, digest in pixel_digests(out).items())

    missing = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, tmp_path / "x", adapter="fulora/none")]
    )
    assert (
        missing.exit_code == 1
        and "no such local path, and could not get 'pytorch_lora_weights.safetensors' from the Hub"
        in missing.output
    )


def test_the_study_preset_from_the_command_line(tiny_world, tmp_path):
    out = tmp_path / "study"
    args = [
        "generate", "--preset", "study", "--base", tiny_world["base"], "--adapter", tiny_world["adapter"],
        "--planes", "thorax", "--per-plane", "1", "--width", "16", "--height", "16", "--steps", "1", "--cpu",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 images in" in result.stdout and "memorisation: not checked" in result.stdout
    assert "s loading the models" in result.stdout  # sampling speed is reported apart from loading
    manifest, images = read_generated(out)
    assert [(i.record.plane, i.record.sampler) for i in images] == [
        ("Fetal thorax", "EulerDiscreteScheduler"),
        ("Fetal thorax", "UniPCMultistepScheduler"),
    ]
    settings = manifest["info"]["settings"]
    assert (
        settings["steps"] == 1
        and settings["guidance_scale"] == 7.0
        and settings["prompts"] == {"Fetal thorax": "a photo of fetal thorax"}
    )


def test_prompt_embeddings_are_encoded_once_per_batch_of_prompts():
    torch = pytest.importorskip("torch")
    from fulora_data.generation.pipeline import cached_prompts, encode_prompts
    from fulora_data.tiny_sd import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    calls = []
    forward = pipe.text_encoder.forward
    pipe.text_encoder.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    brain = ["a photo of fetal brain"] * 3
    first = cached_prompts(pipe, brain, 2)
    again = cached_prompts(pipe, list(brain), 2)
    assert again is first and len(calls) == 1
    assert torch.equal(first, encode_prompts(pipe, brain, 2)) and len(calls) == 2
    cached_prompts(pipe, brain, 1)
    cached_prompts(pipe, ["a photo of fetal femur"] * 3, 2)
    assert len(calls) == 4  # another clip skip or prompt is encoded anew
