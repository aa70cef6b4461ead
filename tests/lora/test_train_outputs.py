"""LoRA training on the tiny pipeline: train, checkpoint and resume, both file formats, reload, card, push."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from conftest import REPO_ROOT
from safetensors.torch import load_file  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import DIFFUSERS_FILE, read_adapter  # noqa: E402

KOHYA_FILE = "run.safetensors"  # the kohya file is named after the run (--name, default the --out folder)
from fulora_data.errors import ConfigError  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import TrainingError, check_resume, make_optimizer, train_lora  # noqa: E402
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
        "validation_every": 2,
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
    for step in (2, 4):  # mid-run and final samples, one per plane
        assert len(list((out / "validation" / f"step-{step}").glob("*.png"))) == 5
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
        # The file names CLIP's modules text_model.encoder…; transformers 5's CLIP has no text_model.
        expected = {
            k[len(prefix) :].removeprefix("text_model."): v for k, v in ours.items() if k.startswith(prefix)
        }
        assert expected and set(loaded) == set(expected), prefix
        for key, value in expected.items():
            # the kohya copy is saved in fp16 (kohya's save_precision)
            wanted = value.half().float() if weight_name == KOHYA_FILE else value
            assert torch.equal(loaded[key].float(), wanted), key
    assert pipe.unet.peft_config[next(iter(pipe.unet.peft_config))].lora_alpha == 4
    image = pipe(
        "a photo of fetal brain", num_inference_steps=1, height=32, width=32, output_type="np"
    ).images
    assert image.shape == (1, 32, 32, 3) and float(image.std()) > 0


def test_card_has_hub_metadata_hyperparameters_and_citation(run):
    card = (run["adapter"] / "README.md").read_text()
    head = card.split("---")[1]
    # A local base (the folder "base") is named in the body, never as a Hub base_model it is not.
    assert "base_model:" not in head and "library_name: diffusers" in head
    assert "| Base model | `base`" in card
    # The data was built locally: no Hub dataset is claimed; the body says so, with the data's digest.
    assert "datasets:" not in head and "fulora/spanish" not in card
    assert "built locally by fulora (builder version" in card and "training-data digest `" in card
    for tag in ("lora", "text-to-image", "stable-diffusion", "diffusers", "template:sd-lora", "medical"):
        assert f"- {tag}\n" in head
    from card_rules import check_model_card

    raw = check_model_card(card, run["adapter"])  # every widget image is in the folder
    prompts = [entry["text"] for entry in raw["widget"]]
    assert len(prompts) == len(set(prompts)) >= 2 and raw["instance_prompt"] == ", ".join(prompts)
    assert all(entry["output"]["url"].startswith("samples/") for entry in raw["widget"])
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
    noise = torch.randn((3, *latents.shape), generator=generator)
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
        with pytest.raises(
            TrainingError, match=r"the loss became -?(nan|inf) at step \d+; lower --learning-rate"
        ):
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
    assert any(name.startswith("samples/") for name in files)  # the widget's per-plane images
    from huggingface_hub import hf_hub_download

    pushed = Path(hf_hub_download("fulora/tiny-lora", "README.md")).read_text()
    assert 'pipe.load_lora_weights("fulora/tiny-lora")' in pushed and "REPO_OR_FOLDER" not in pushed
    assert '"REPO_OR_FOLDER"' in (run["adapter"] / "README.md").read_text()  # a push never edits the folder


def test_kohya_file_like_the_studys_loads_every_key_including_the_text_encoder(workspace, tmp_path):
    """A kohya/A1111 file for every study module and every CLIP layer (as ``fangyijie/fu-lora``'s files
    are) lands key by key in diffusers with transformers 5's CLIP layout."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from fulora_data.adapter import kohya_tensors
    from fulora_data.lora.model import text_encoder_targets, unet_targets

    pipe = StableDiffusionPipeline.from_pretrained(workspace["base"], safety_checker=None)
    modules = {**dict(pipe.unet.named_modules())}
    generator = torch.Generator().manual_seed(0)
    ours = {}
    for prefix, model, names in (
        ("unet", pipe.unet, unet_targets(pipe.unet, "study")),
        ("text_encoder", pipe.text_encoder, text_encoder_targets(pipe.text_encoder, "study", clip_skip=1)),
    ):
        modules = dict(model.named_modules())
        for name in names:
            layer = modules[name]
            conv = isinstance(layer, torch.nn.Conv2d)
            fan_in = layer.in_channels if conv else layer.in_features
            fan_out = layer.out_channels if conv else layer.out_features
            down = torch.randn((8, fan_in, 1, 1) if conv else (8, fan_in), generator=generator)
            up = torch.randn((fan_out, 8, 1, 1) if conv else (fan_out, 8), generator=generator)
            ours[f"{prefix}.{name}.lora_A.weight"] = down
            ours[f"{prefix}.{name}.lora_B.weight"] = up
    kohya = kohya_tensors(ours, alpha=4.0)
    te_layers = {k.split("_layers_")[1].split("_")[0] for k in kohya if k.startswith("lora_te_")}
    assert te_layers == {"0", "1", "2", "3", "4"}  # every CLIP layer, as in the study's files
    save_file(kohya, str(tmp_path / "fetal_ultrasound_v3.0.safetensors"))
    pipe.load_lora_weights(tmp_path, weight_name="fetal_ultrasound_v3.0.safetensors")
    for prefix, model in (("unet.", pipe.unet), ("text_encoder.", pipe.text_encoder)):
        loaded = _lora_values(model)
        expected = {k[len(prefix) :]: v for k, v in ours.items() if k.startswith(prefix)}
        assert set(loaded) == set(expected), prefix
        for key, value in expected.items():
            assert torch.equal(loaded[key].float(), value), key
        config = model.peft_config[next(iter(model.peft_config))]
        assert config.r == 8 and config.lora_alpha == 4.0  # kohya's .alpha scalars are honoured


def test_two_cpu_processes_under_accelerate_launch(workspace, tmp_path):
    """The same entry point under ``accelerate launch --num_processes 2``: global batch 4, one writer."""
    import os
    import socket
    import subprocess
    import sys

    import yaml

    values = {
        k: v for k, v in tiny_config(workspace, max_steps=3).to_dict().items() if k != "train_text_encoder"
    }
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(values))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "ddp"
    script = REPO_ROOT / "training" / "train_lora.py"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", str(port), str(script), "--preset", str(preset), "--out", str(out)]
    command += ["--cpu", "--json"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(script.parents[1]), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"adapter_dir"') == 1  # only the main process reports
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["num_processes"] == 2 and summary["global_batch_size"] == 4 and summary["steps"] == 3
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 3
    assert read_adapter(out / "adapter").extra["global_batch_size"] == 4
    assert not list(out.rglob(".*.tmp-*"))


def test_mixed_precision_keeps_lora_parameters_in_fp32_clips_and_the_demo_hook_trains(
    workspace, tmp_path, monkeypatch
):
    """bf16 autocast (fp16's path, on a CPU): base weights in bf16, LoRA parameters in fp32; gradients are
    really clipped to ``max_grad_norm``; the demo's ``train_tiny_lora`` writes an adapter."""
    import accelerate

    from fulora_data.lora.train import train_tiny_lora

    clipped = []
    real_clip = accelerate.Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        before = real_clip(self, parameters, max_norm, norm_type)
        after = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in parameters if p.grad is not None])
        )
        clipped.append((float(before), float(after), max_norm))
        return before

    monkeypatch.setattr(accelerate.Accelerator, "clip_grad_norm_", spy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(
            tiny_config(
                workspace,
                mixed_precision="bf16",
                max_steps=2,
                text_encoder_lr=0.0,
                validation_every=0,
                max_grad_norm=1e-6,
            ),
            tmp_path / "bf16",
            progress=False,
            log=lambda m: None,
        )
    assert summary["base_dtype"] == "torch.bfloat16" and summary["trainable_dtypes"] == ["torch.float32"]
    assert len(clipped) == 2
    for before, after, max_norm in clipped:
        assert before > max_norm and after <= max_norm * 1.01
    demo = train_tiny_lora(
        tmp_path / "demo",
        source=workspace["source"],
        data_config="es",
        cache_dir=workspace["cache"],
        steps=2,
        log=lambda m: None,
    )
    assert demo["steps"] == 2 and (tmp_path / "demo" / "run" / "adapter" / DIFFUSERS_FILE).is_file()


def test_the_cards_use_snippet_runs_as_written(run, workspace):
    card = (run["adapter"] / "README.md").read_text()
    code = card.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'from_pretrained("base")' in code  # the base folder's name, never its local path
    code = code.replace('from_pretrained("base")', f"from_pretrained({str(workspace['base'])!r})")
    # Before a push the card says "REPO_OR_FOLDER"; a push (an earlier test) writes the repo id there.
    for where in ('"REPO_OR_FOLDER"', '"fulora/tiny-lora"'):
        code = code.replace(where, repr(str(run["adapter"])))
    code = code.replace(
        "pipe(prompt_embeds=prompt_embeds)",
        "pipe(prompt_embeds=prompt_embeds, num_inference_steps=1, height=32, width=32)",
    )
    scope: dict = {}
    exec(compile(code, "card snippet", "exec"), scope)
    assert scope["image"].size == (32, 32)


def test_resume_refuses_fewer_steps_than_already_trained(run, workspace):
    with pytest.raises(ConfigError, match="already trained 4 steps, more than --max-steps 2"):
        check_resume(run["out"], tiny_config(workspace, max_steps=2), True)


def test_a_base_given_as_dot_is_named_by_its_folder(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(workspace["base"])
    config = tiny_config(workspace, base=".", max_steps=1, checkpoint_every=1, validation_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_lora(config, tmp_path / "dot", progress=False, log=lambda m: None)
    assert read_adapter(tmp_path / "dot" / "adapter").base_model == "base"
