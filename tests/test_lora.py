"""LoRA training on the tiny pipeline: train, checkpoint and resume, both file formats, reload, card, push."""

from __future__ import annotations

import json
import warnings

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import DIFFUSERS_FILE, KOHYA_FILE, read_adapter  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import TrainingError, make_optimizer, train_lora  # noqa: E402
from fulora_data.tiny_sd import save_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny diffusers base folder and a 10-image procedural Spanish set (2 per plane)."""
    root = tmp_path_factory.mktemp("lora")
    base = save_tiny_pipeline(root / "base")
    source = samples.write_spanish_source(root / "src", per_plane=2, test_per_plane=1, seed=0)
    return {"root": root, "base": base, "source": source, "cache": root / "cache"}


def tiny_config(workspace, **overrides) -> LoraConfig:
    """The smoke preset on the tiny base at 32 px, text encoder trained, checkpoint every 2 steps."""
    values = {
        "base": str(workspace["base"]),
        "data_config": "es",
        "source": str(workspace["source"]),
        "cache_dir": str(workspace["cache"]),
        "resolution": 32,
        "bucket_step": 8,
        "batch_size": 2,
        "max_steps": 4,
        "text_encoder_lr": 1e-3,
        "checkpoint_every": 2,
        "validation_inference_steps": 1,
        "seed": 7,
    }
    values.update(overrides)
    return LoraConfig.preset("smoke", **values)


@pytest.fixture(scope="module")
def run(workspace):
    """One uninterrupted 4-step run, its summary and its folder."""
    out = workspace["root"] / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(tiny_config(workspace), out, progress=False, log=lambda m: None)
    return {"summary": summary, "out": out, "adapter": out / "adapter"}


def test_run_writes_adapter_checkpoint_samples_and_logs(run):
    adapter, out = run["adapter"], run["out"]
    assert run["summary"]["steps"] == 4
    for name in (DIFFUSERS_FILE, KOHYA_FILE, "README.md", "samples.png"):
        assert (adapter / name).is_file(), name
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4 and state["config"]["rank"] == 4
    for name in ("adapter.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt"):
        assert (out / "checkpoint" / name).is_file(), name
    assert len(list((out / "validation" / "step-4").glob("*.png"))) == 5  # one per plane
    assert list((out / "logs").rglob("events.out.tfevents*"))  # TensorBoard through accelerate


def test_adapter_metadata_says_how_it_was_made(run, workspace):
    info = read_adapter(run["adapter"])
    assert (info.rank, info.alpha, info.targets, info.clip_skip, info.text_encoder) == (
        4,
        4.0,
        "study",
        2,
        True,
    )
    assert info.base_model == "base" and info.dataset == "spanish/es" and info.resolution == 32
    assert info.prompts["Fetal abdomen"] == "a photo of fetal abdomen"
    kohya = read_adapter(run["adapter"], KOHYA_FILE)
    assert kohya.format == "kohya" and kohya.rank == 4
    tensors = load_file(str(run["adapter"] / KOHYA_FILE))
    te_keys = [k for k in tensors if k.startswith("lora_te_")]
    assert te_keys and all(k.startswith("lora_te_text_model_encoder_layers_") for k in te_keys)
    assert not any(k.startswith("lora_te1_") for k in tensors)
    assert all(float(v) == 4.0 for k, v in tensors.items() if k.endswith(".alpha"))


def _lora_values(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    names = list(getattr(model, "peft_config", {}))
    assert names, "no adapter was loaded"
    return get_peft_model_state_dict(model, adapter_name=names[0])


@pytest.mark.parametrize("weight_name", [DIFFUSERS_FILE, KOHYA_FILE])
def test_both_formats_reload_in_diffusers_with_every_key_landing(run, workspace, weight_name):
    from diffusers import StableDiffusionPipeline

    ours = load_file(str(run["adapter"] / DIFFUSERS_FILE))
    pipe = StableDiffusionPipeline.from_pretrained(workspace["base"], safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(run["adapter"], weight_name=weight_name)
    for prefix, model in (("unet.", pipe.unet), ("text_encoder.", pipe.text_encoder)):
        loaded = _lora_values(model)
        expected = {k[len(prefix) :]: v for k, v in ours.items() if k.startswith(prefix)}
        assert expected and set(loaded) == set(expected), prefix
        for key, value in expected.items():
            assert torch.equal(loaded[key].float(), value), key
    assert pipe.unet.peft_config[next(iter(pipe.unet.peft_config))].lora_alpha == 4
    image = pipe(
        "a photo of fetal brain", num_inference_steps=1, height=32, width=32, output_type="np"
    ).images
    assert image.shape == (1, 32, 32, 3) and float(image.std()) > 0


def test_card_has_hub_metadata_hyperparameters_and_citation(run):
    card = (run["adapter"] / "README.md").read_text()
    head = card.split("---")[1]
    assert "base_model: base" in head and "library_name: diffusers" in head
    for tag in ("lora", "text-to-image", "stable-diffusion", "medical", "ultrasound"):
        assert f"- {tag}\n" in head
    assert "license: creativeml-openrail-m" in head
    assert "Not for clinical use" in card and "wang2024fulora" in card and "samples.png" in card
    assert "| LoRA rank / alpha | 4 / 4 |" in card and "clip_skip=1" in card


def test_resume_is_bit_identical_to_an_uninterrupted_run(run, workspace):
    out = workspace["root"] / "resumed"
    quiet = {"progress": False, "log": lambda m: None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = train_lora(tiny_config(workspace, max_steps=2, validation_inference_steps=0), out, **quiet)
        assert first["steps"] == 2
        second = train_lora(tiny_config(workspace), out, resume=True, **quiet)
    assert second["steps"] == 4
    resumed = load_file(str(out / "adapter" / DIFFUSERS_FILE))
    straight = load_file(str(run["adapter"] / DIFFUSERS_FILE))
    assert set(resumed) == set(straight)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    # the second run found every latent in the cache
    assert second["latents_encoded"] == 0


def test_training_lowers_the_loss_on_a_fixed_batch(run, workspace):
    """The trained adapter predicts the noise of a fixed batch better than the base model does."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from fulora_data.lora import data as lora_data

    config = tiny_config(workspace)
    files = sorted((workspace["cache"] / "fulora-lora-latents").glob("*.safetensors"))
    shapes: dict = {}
    for file in files:
        latent = load_file(str(file))["latent"]
        shapes.setdefault(tuple(latent.shape), []).append(latent)
    latents = torch.stack(max(shapes.values(), key=len)[:4])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((8, *latents.shape), generator=generator)
    timesteps = torch.randint(100, 900, (latents.shape[0],), generator=generator)

    def fixed_batch_loss(pipe) -> float:
        hidden = lora_data.encode_prompts(
            pipe.text_encoder,
            pipe.tokenizer,
            ["a photo of fetal brain"] * len(latents),
            config.clip_skip,
            "cpu",
        )
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        total = 0.0
        with torch.no_grad():
            for draw in noise:
                noisy = scheduler.add_noise(latents, draw, timesteps)
                predicted = pipe.unet(noisy, timesteps, hidden).sample
                total += float(torch.nn.functional.mse_loss(predicted, draw))
        return total / len(noise)

    pipe = StableDiffusionPipeline.from_pretrained(workspace["base"], safety_checker=None)
    before = fixed_batch_loss(pipe)
    pipe.load_lora_weights(run["adapter"])
    after = fixed_batch_loss(pipe)
    assert after < before


def test_8bit_adam_falls_back_with_one_warning_on_cpu():
    config = LoraConfig(optimizer="adamw8bit", mixed_precision="no")
    param = torch.nn.Parameter(torch.zeros(3))
    with pytest.warns(
        RuntimeWarning, match="8-bit AdamW .* needs a CUDA GPU.*using torch.optim.AdamW"
    ) as seen:
        optimizer, used = make_optimizer(config, [{"params": [param], "lr": 1e-3}], torch.device("cpu"))
    assert used == "adamw" and isinstance(optimizer, torch.optim.AdamW)
    assert len([w for w in seen if issubclass(w.category, RuntimeWarning)]) == 1


def test_a_non_finite_loss_stops_the_run_with_its_step(workspace, tmp_path):
    config = tiny_config(
        workspace, learning_rate=1e30, text_encoder_lr=0.0, max_grad_norm=0.0, max_steps=6, checkpoint_every=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingError, match=r"at step \d"):
            train_lora(config, tmp_path / "nan", progress=False, log=lambda m: None)
    assert not (tmp_path / "nan" / "adapter").exists()


def test_cli_resume_of_a_finished_run_pushes_to_the_hub(run, workspace, hub_server, tmp_path):
    """`fulora train lora --resume --push-to-hub` on a finished run: no step, the adapter goes to the Hub."""
    import yaml
    from click.testing import CliRunner
    from huggingface_hub import HfApi

    from fulora_data.cli import main

    values = {k: v for k, v in tiny_config(workspace).to_dict().items() if k != "train_text_encoder"}
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(values))
    args = ["train", "lora", "--preset", str(preset), "--out", str(run["out"]), "--resume", "--json"]
    args += ["--push-to-hub", "fulora/tiny-lora", "--hub-token", hub_server.token]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["steps"] == 4 and summary["hub"]["pushed"]
    files = HfApi(endpoint=hub_server.url, token=hub_server.token).list_repo_files("fulora/tiny-lora")
    assert {DIFFUSERS_FILE, KOHYA_FILE, "README.md", "samples.png"} <= set(files)
