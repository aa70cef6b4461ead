"""LoRA presets against the study's recipe, buckets, cache keys, and bad input refused at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO_ROOT, SHARED_DATA

from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.lora.config import PRESETS, SD15, SD15_REVISION, LoraConfig

CONFIGS = REPO_ROOT / "training" / "configs"
KOHYA = SHARED_DATA / "paper" / "kohya_lora_config_abdomen.json"

# The study's recipe (Zenodo 13228158 and the paper), typed once here and compared with everything else.
STUDY = {
    "base": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "data": "spanish",
    "data_config": "lora-100",
    "batch_size": 2,
    "max_steps": 10_000,
    "learning_rate": 1e-4,
    "text_encoder_lr": 5e-5,
    "lr_scheduler": "constant",
    "lr_warmup_steps": 0,
    "targets": "study",
    "clip_skip": 2,
    "resolution": 512,
    "bucket_step": 64,
    "bucket_no_upscale": True,
    "mixed_precision": "fp16",
    "optimizer": "adamw8bit",
    "seed": 1234,
}


@pytest.mark.parametrize("rank", [8, 32, 128])
def test_yaml_presets_and_named_presets_are_the_studys(rank):
    values = yaml.safe_load((CONFIGS / f"lora_r{rank}.yaml").read_text())
    from_yaml = LoraConfig.from_yaml(CONFIGS / f"lora_r{rank}.yaml")
    named = LoraConfig.preset(f"r{rank}")
    for key, expected in STUDY.items():
        assert values[key] == expected, key
        assert getattr(named, key) == expected, key
    assert values["rank"] == values["alpha"] == rank
    assert from_yaml.to_dict() == named.to_dict()
    assert named.base_revision == SD15_REVISION and named.base == SD15


@pytest.mark.skipif(
    not KOHYA.is_file(), reason="../shared/data/paper/kohya_lora_config_abdomen.json is absent"
)
def test_presets_match_the_studys_published_kohya_config():
    kohya = json.loads(KOHYA.read_text())
    preset = LoraConfig.preset(f"r{kohya['network_dim']}")
    assert preset.rank == kohya["network_dim"] and preset.lora_alpha == kohya["network_alpha"]
    assert preset.learning_rate == float(kohya["unet_lr"]) == float(kohya["learning_rate"])
    assert preset.text_encoder_lr == float(kohya["text_encoder_lr"])
    assert preset.lr_scheduler == kohya["lr_scheduler"] and preset.lr_warmup_steps == int(kohya["lr_warmup"])
    assert preset.clip_skip == kohya["clip_skip"] and preset.seed == int(kohya["seed"])
    assert preset.mixed_precision == kohya["mixed_precision"]
    assert preset.optimizer == kohya["optimizer"].lower()
    assert f"{preset.resolution},{preset.resolution}" == kohya["max_resolution"]
    assert kohya["enable_bucket"] and preset.bucket_step == kohya["bucket_reso_steps"]
    assert preset.bucket_no_upscale == kohya["bucket_no_upscale"]
    assert kohya["cache_latents"] and not kohya["flip_aug"] and not kohya["color_aug"]
    assert kohya["LoRA_type"] == "Standard" and preset.targets == "study"


def test_smoke_preset_is_cpu_ready():
    smoke = LoraConfig.preset("smoke")
    smoke.validate(cuda_available=False)
    assert smoke.mixed_precision == "no" and smoke.optimizer == "adamw" and "smoke" in PRESETS


@pytest.mark.parametrize(
    ("size", "bucket"),
    [
        ((959, 661), (576, 384)),  # a Spanish scan at 512 px: kohya resizes to 576x397, centre-crops
        ((661, 959), (384, 576)),
        ((300, 200), (256, 192)),  # smaller than 512**2: never upscaled, floored to steps, cropped
        ((512, 512), (512, 512)),
    ],
)
def test_buckets_are_kohyas_no_upscale_buckets(size, bucket):
    from fulora_data.lora.data import bucket_for

    assert bucket_for(*size, 512, 64) == bucket
    width, height = bucket
    assert width * height <= 512 * 512 and width % 64 == 0 and height % 64 == 0


def test_cache_key_changes_with_base_dtype_resolution_and_image():
    from fulora_data.lora.data import cache_key

    config = LoraConfig()
    key = cache_key("hub:a@1", "torch.float16", config, "d1")
    assert key != cache_key("hub:a@2", "torch.float16", config, "d1")
    assert key != cache_key("hub:a@1", "torch.float32", config, "d1")
    assert key != cache_key("hub:a@1", "torch.float16", LoraConfig(resolution=256), "d1")
    assert key != cache_key("hub:a@1", "torch.float16", config, "d2")
    assert key == cache_key("hub:a@1", "torch.float16", LoraConfig(), "d1")


def test_data_order_is_a_function_of_seed_and_epoch():
    from fulora_data.lora.data import BucketBatches, Example

    examples = [Example(i, str(i), (64, 64) if i % 3 else (64, 48), "p") for i in range(12)]
    order = BucketBatches(examples, batch_size=2, seed=1, num_processes=2)
    again = BucketBatches(examples, batch_size=2, seed=1, num_processes=2)
    assert [order.batch(s, p) for s in range(6) for p in (0, 1)] == [
        again.batch(s, p) for s in range(6) for p in (0, 1)
    ]
    for step in range(order.steps_per_epoch):
        first, second = order.batch(step, 0), order.batch(step, 1)
        assert not set(first) & set(second)  # processes never share an image within a step
        assert len({examples[i].bucket for i in first}) == 1  # a batch holds one bucket


# ---- bad input: one sentence at start-up, non-zero exit, nothing trained


def _invoke(args: list[str]):
    return CliRunner().invoke(main, ["train", "lora", "--preset", "smoke", *args])


def _refused(result, *fragments: str, code: int = 1) -> None:
    """One error line holding ``fragments``; exit ``code`` (2: a bad option value, docs/cli.md)."""
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--rank", "0"], ["--rank must be a positive integer; got 0"]),
        (["--rank", "-4"], ["got -4"]),
        (["--resolution", "60"], ["--resolution must be divisible by 8", "got 60"]),
        (["--mixed-precision", "fp16", "--cpu"], ["fp16 needs a CUDA GPU", "--mixed-precision no"]),
        (["--alpha", "-1"], ["--alpha must be a positive number; got -1.0"]),
    ],
)
def test_bad_values_are_refused_before_any_work(tmp_path, args, fragments):
    result = _invoke([*args, "--out", str(tmp_path / "out")])
    _refused(result, *fragments, code=2)
    assert not (tmp_path / "out").exists()


def test_unknown_target_is_refused(tmp_path):
    result = _invoke(["--targets", "mlp", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "'mlp' is not one of 'study', 'attention'" in result.output
    with pytest.raises(ConfigError, match="^targets must be one of study, attention; got 'mlp'") as caught:
        LoraConfig(targets="mlp", mixed_precision="no").validate()  # the library names the field
    assert caught.value.field == "targets"


def test_a_target_module_without_lora_is_refused():
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from fulora_data.lora.model import add_lora

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(
        ConfigError, match="UNet: 1 requested module.s. received no LoRA layer, e.g. 'missing'"
    ):
        add_lora(model, 2, 2.0, ["0", "missing"], "UNet")
    with pytest.raises(ConfigError, match="UNet: peft could not add LoRA layers"):
        add_lora(torch.nn.Sequential(torch.nn.Linear(4, 4)), 2, 2.0, ["missing"], "UNet")
    with pytest.raises(ConfigError, match="no module matches"):
        add_lora(model, 2, 2.0, [], "UNet")


def test_a_base_that_is_not_a_diffusers_model_is_refused(tmp_path):
    (tmp_path / "notamodel").mkdir()
    result = _invoke(["--base", str(tmp_path / "notamodel"), "--out", str(tmp_path / "out")])
    _refused(result, "is not a diffusers model folder", "model_index.json", code=2)
    text = tmp_path / "weights.txt"
    text.write_text("x")
    _refused(
        _invoke(["--base", str(text), "--out", str(tmp_path / "out")]),
        "is not a diffusers model folder",
        code=2,
    )
    _refused(
        _invoke(["--base", str(tmp_path / "gone"), "--out", str(tmp_path / "out")]), "does not exist", code=2
    )


def _fake_base(folder: Path) -> Path:
    """A folder shaped like a diffusers Stable Diffusion model (enough for the start-up checks)."""
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (folder / sub).mkdir()
    return folder


def test_an_unwritable_output_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _invoke(["--base", str(_fake_base(tmp_path / "base")), "--out", str(blocker / "out")])
    _refused(result, "--out", "is not a writable folder")


def test_a_dataset_without_text_is_refused(tmp_path, monkeypatch):
    import datasets

    from fulora_data import prepare

    real = prepare.make_builder

    def without_text(*args, **kwargs):
        builder = real(*args, **kwargs)
        features = dict(builder.info.features)
        features.pop("text")
        builder.info.features = datasets.Features(features)
        return builder

    monkeypatch.setattr(prepare, "make_builder", without_text)
    result = _invoke(["--base", str(_fake_base(tmp_path / "base")), "--out", str(tmp_path / "out")])
    _refused(result, "--data spanish/lora-100 has no 'text' column")


@pytest.mark.parametrize(
    ("saved", "fragment"),
    [
        ({"rank": 8}, "trained with rank=8, not 4"),
        ({"base": "someone/else"}, "trained with base='someone/else'"),
        ({"data_config": "es"}, "trained with data_config='es', not 'lora-100'"),
    ],
)
def test_resume_from_another_run_is_refused(tmp_path, saved, fragment):
    base = _fake_base(tmp_path / "base")
    config = LoraConfig.preset("smoke", base=str(base))
    checkpoint = tmp_path / "out" / "checkpoint"
    checkpoint.mkdir(parents=True)
    state = {"step": 2, "config": {**config.to_dict(), **saved}}
    (checkpoint / "state.json").write_text(json.dumps(state))
    result = _invoke(["--base", str(base), "--out", str(tmp_path / "out"), "--resume"])
    _refused(result, "--resume:", fragment)


def test_a_second_run_into_a_used_folder_needs_resume(tmp_path):
    base = _fake_base(tmp_path / "base")
    (tmp_path / "out" / "checkpoint").mkdir(parents=True)
    _refused(_invoke(["--base", str(base), "--out", str(tmp_path / "out")]), "pass --resume")


@pytest.mark.skipif(
    not KOHYA.is_file(), reason="../shared/data/paper/kohya_lora_config_abdomen.json is absent"
)
def test_docs_table_maps_every_key_of_the_studys_kohya_config_and_a1111s_sampler_defaults():
    docs = (REPO_ROOT / "docs" / "lora.md").read_text(encoding="utf-8")
    table = docs.split("## kohya / A1111 setting -> fulora", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    covered = {key for row in rows for key in row.split("|")[1].replace("`", " ").split()}
    missing = [key for key in json.loads(KOHYA.read_text()) if key not in covered]
    assert not missing, missing
    for setting in ("uni_pc_variant", "uni_pc_order", "uni_pc_skip_type", "uni_pc_lower_order_final", "s_churn"):
        assert f"`{setting}`" in table, setting
