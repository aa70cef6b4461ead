"""Classifier models, the resized image cache, training (resume, best epoch, bad options) and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import REPO_ROOT
from safetensors.torch import load_file, save_file

from fulora_data.classifier import TrainConfig, build_model, predict, prepare_image_cache, train
from fulora_data.classifier.data import CachedImages, decode_resized
from fulora_data.classifier.models import ARCHITECTURES
from fulora_data.classifier.train import parse_train_set
from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.prepare import prepare
from fulora_data.samples import write_african_source, write_spanish_source
from fulora_data.splits import hold_out_patients, hold_out_random

REPO = REPO_ROOT


def tiny(**overrides) -> TrainConfig:
    """The smoke preset on 32 px images, with a small validation hold-out."""
    return TrainConfig.preset("smoke", **{"validation_size": 4, "batch_size": 8, **overrides})


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    spanish = write_spanish_source(root / "es", per_plane=4, test_per_plane=1, seed=1)
    african = write_african_source(root / "af", patients_per_country=2, seed=2)
    return {"spanish": spanish, "african": african, "cache": root / "cache"}


@pytest.fixture(scope="module")
def es(sources):
    return prepare("spanish", "es", source=sources["spanish"], cache_dir=sources["cache"])["train"]


@pytest.fixture(scope="module")
def african_test(sources):
    return prepare("african", source=sources["african"], cache_dir=sources["cache"])["test"]


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_gets_a_five_way_head(arch):
    model = build_model(arch, 5, weights="none", image_size=224 if arch == "vit_b_16" else 32)
    head = model.get_submodule(ARCHITECTURES[arch].head)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 5


def test_local_weights_file_is_loaded_before_the_head_is_replaced(tmp_path):
    import torchvision

    torch.manual_seed(3)
    reference = torchvision.models.resnet18(num_classes=1000)
    pth, st = tmp_path / "resnet18.pth", tmp_path / "resnet18.safetensors"
    torch.save(reference.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(st))
    for path in (pth, st):
        model = build_model("resnet18", 5, weights=str(path), image_size=32)
        assert torch.equal(model.conv1.weight, reference.conv1.weight)
        assert model.fc.out_features == 5


def test_weights_of_another_architecture_or_garbage_are_refused(tmp_path):
    import torchvision

    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), other)
    with pytest.raises(ConfigError, match="not resnet18 ImageNet weights"):
        build_model("resnet18", weights=str(other), image_size=32)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not weights")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        build_model("resnet18", weights=str(garbage), image_size=32)
    with pytest.raises(ConfigError, match="got '.*missing.pth'"):
        build_model("resnet18", weights=str(tmp_path / "missing.pth"))


def test_imagenet_download_offline_says_what_to_do(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(SourceNotFoundError, match="--weights PATH.*--weights none") as info:
        build_model("resnet18", weights="imagenet", image_size=32)
    assert "resnet18-f37072fd.pth" in str(info.value)


# --------------------------------------------------------------------------- data
def test_image_cache_is_the_resized_images_and_is_written_once(es, tmp_path):
    folder = prepare_image_cache(es, 32, cache_dir=tmp_path, progress=False)
    images = np.load(folder / "images.npy")
    assert images.shape == (len(es), 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, decode_resized(es, 32))
    # independently: PIL's bilinear resize of the decoded grayscale image
    first = es[0]["image"].convert("L").resize((32, 32), resample=2)
    np.testing.assert_array_equal(images[0], np.asarray(first))
    np.testing.assert_array_equal(np.load(folder / "labels.npy"), es["label"])
    stamp = (folder / "images.npy").stat().st_mtime_ns
    assert prepare_image_cache(es, 32, cache_dir=tmp_path, progress=False) == folder
    assert (folder / "images.npy").stat().st_mtime_ns == stamp
    assert not list(folder.glob("*.partial*"))
    assert prepare_image_cache(es, 48, cache_dir=tmp_path, progress=False) != folder


def test_empty_split_is_refused(es, tmp_path):
    with pytest.raises(DataError, match="empty"):
        prepare_image_cache(es.select([]), 32, cache_dir=tmp_path, progress=False)


def test_augmentation_is_seeded_per_image_and_epoch(es, tmp_path):
    folder = prepare_image_cache(es, 32, cache_dir=tmp_path, progress=False)
    plain = CachedImages(folder)
    image, label = plain[3]
    assert image.shape == (3, 32, 32) and label == es[3]["label"]
    # gray repeated to three channels, then normalised per channel
    assert torch.allclose(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456, atol=1e-6)
    raw = torch.from_numpy(np.load(folder / "images.npy")[3] / 255.0).float()
    assert torch.allclose(image[0], (raw - 0.485) / 0.229, atol=1e-6)
    a, b = CachedImages(folder, augment=True, seed=5), CachedImages(folder, augment=True, seed=5)
    assert torch.equal(a[3][0], b[3][0])
    b.set_epoch(1)
    assert not torch.equal(a[3][0], b[3][0])
    assert not torch.equal(a[3][0], image)


def test_validation_hold_out():
    train_idx, val_idx, note = hold_out_random(6148, 200, seed=0)
    assert len(val_idx) == 200 and len(train_idx) == 5948 and note is None
    assert not set(train_idx) & set(val_idx)
    assert np.array_equal(hold_out_random(6148, 200, seed=0)[1], val_idx)
    train_idx, val_idx, note = hold_out_random(30, 200, seed=0)
    assert len(val_idx) == 6 and "only 30 images" in note
    with pytest.raises(ConfigError, match="-1"):
        hold_out_random(30, -1, seed=0)


def test_patient_hold_out_keeps_patients_whole():
    patients = [f"P{i // 3}" for i in range(60)] + ["", ""]  # 20 patients of 3 images, 2 without a patient
    train_idx, val_idx, note = hold_out_patients(patients, 10, seed=0)
    assert note is None and 8 <= len(val_idx) <= 10 and len(train_idx) + len(val_idx) == 62
    held = {patients[i] for i in val_idx if patients[i]}
    assert held and not held & {patients[i] for i in train_idx if patients[i]}
    assert np.array_equal(hold_out_patients(patients, 10, seed=0)[1], val_idx)
    assert not np.array_equal(hold_out_patients(patients, 10, seed=1)[1], val_idx)
    with pytest.raises(ConfigError, match="no whole patient fits"):
        hold_out_patients(["A"] * 10 + ["B"] * 10, 3, seed=0)


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"arch": "alexnet"}, "unknown architecture 'alexnet'"),
        ({"train_set": "XX"}, "got 'XX'"),
        ({"epochs": 0}, "epochs must be a positive integer; got 0"),
        ({"learning_rate": -1.0}, "got -1.0"),
        ({"scheduler": "step"}, "got 'step'"),
        ({"image_size": 16}, "at least 32; got 16"),
        ({"arch": "vit_b_16", "image_size": 40}, "multiple of 16; got 40"),
        ({"arch": "vit_b_16", "weights": "imagenet", "image_size": 32}, "224 px images; got image_size 32"),
        ({"mixed_precision": "fp16", "cpu": True}, "needs a CUDA GPU"),
        ({"synthetic_source": "."}, "only used by the hybrid training sets"),
        ({"train_set": "HB", "source": "/no/such/folder"}, "source: /no/such/folder does not exist"),
        ({"weights": "/no/such.pth"}, "got '/no/such.pth'"),
    ],
)
def test_bad_options_are_refused_at_start_up(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        train(tiny(**overrides), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_train_set_names():
    assert parse_train_set("hb+da") == "HB+DA" and parse_train_set("ES_DA") == "ES+DA"
    assert tiny(train_set="HB+DA").augment and tiny(train_set="HB+DA").dataset == ("hybrid", "es1150-syn5000")
    with pytest.raises(ConfigError, match="'EX'"):
        parse_train_set("EX")


def test_yaml_presets_are_valid_and_unknown_keys_refused(tmp_path):
    presets = sorted((REPO / "training" / "configs").glob("classifier_*.yaml"))
    assert {p.stem for p in presets} >= {
        "classifier_es",
        "classifier_es_da",
        "classifier_hb",
        "classifier_hb_da",
    }
    for path in presets:
        config = TrainConfig.from_yaml(path)
        config.validate(cuda_available=True)
        assert (config.epochs, config.batch_size, config.learning_rate, config.momentum) == (
            20,
            24,
            1e-3,
            0.9,
        )
        assert config.image_size == 224 and config.validation_size == 200
    assert TrainConfig.from_yaml(REPO / "training/configs/classifier_hb_da.yaml").train_set == "HB+DA"
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearnin_rate: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown training option 'learnin_rate'"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- training
def test_resume_gives_the_weights_of_an_uninterrupted_run(es, tmp_path):
    config = tiny(epochs=2, train_set="ES+DA", image_cache_dir=str(tmp_path / "img"))
    whole = train(config, tmp_path / "whole", dataset=es, progress=False)
    part = train(config, tmp_path / "part", dataset=es, stop_after=1, progress=False)
    assert part["epochs_done"] == 1 and not part["finished"]
    resumed = train(config, tmp_path / "part", dataset=es, resume=True, progress=False)
    assert resumed["epochs_done"] == 2 and resumed["finished"]
    for folder in ("checkpoint", "model"):
        a = load_file(str(tmp_path / "whole" / folder / "model.safetensors"))
        b = load_file(str(tmp_path / "part" / folder / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole["history"] == resumed["history"]
    # the uninterrupted run really trained: its weights moved from the seeded initialisation
    torch.manual_seed(config.seed)
    start = build_model("resnet18", 5, weights="none", image_size=32).state_dict()
    trained = load_file(str(tmp_path / "whole" / "checkpoint" / "model.safetensors"))
    assert not torch.equal(start["conv1.weight"], trained["conv1.weight"])


def test_best_validation_epoch_is_kept(es, tmp_path):
    result = train(
        tiny(epochs=2, image_cache_dir=str(tmp_path / "img")), tmp_path / "run", dataset=es, progress=False
    )
    history = result["history"]
    accuracies = [row["validation_accuracy"] for row in history]
    best_epoch = result["best"]["epoch"]
    assert accuracies[best_epoch - 1] == max(accuracies)
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["best"]["epoch"] == best_epoch and saved["images"] == {"train": len(es) - 4, "validation": 4}
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 2 * -(-(len(es) - 4) // 8)


def test_occupied_out_and_mismatched_resume_are_refused(es, tmp_path):
    config = tiny(image_cache_dir=str(tmp_path / "img"))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        train(config, tmp_path / "run", dataset=es, resume=True, progress=False)
    train(config, tmp_path / "run", dataset=es, progress=False)
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        train(config, tmp_path / "run", dataset=es, progress=False)
    with pytest.raises(ConfigError, match="learning_rate=0.001, not 0.01"):
        train(tiny(learning_rate=0.01), tmp_path / "run", dataset=es, resume=True, progress=False)


# --------------------------------------------------------------------------- CLI and predict
@pytest.fixture(scope="module")
def trained(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "resnet18-es"
    args = [
        "train",
        "classifier",
        "--arch",
        "resnet18",
        "--train-set",
        "ES",
        "--source",
        str(sources["spanish"]),
    ]
    args += ["--cache-dir", str(sources["cache"]), "--weights", "none", "--image-size", "32", "--epochs", "1"]
    args += ["--batch-size", "8", "--num-workers", "0", "--validation-size", "4", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_cli_trains_and_writes_model_card_and_config(trained):
    out, output = trained
    assert "resnet18 on ES: 1/1 epochs" in output
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["arch"] == "resnet18" and config["num_classes"] == 5 and config["image_size"] == 32
    assert config["label_names"] == ["Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"]
    assert config["dataset"]["num_images"] == 20 and config["images"] == {"train": 16, "validation": 4}
    card = (out / "model" / "README.md").read_text()
    assert "base_model" not in card and "# ResNet18 fetal-plane classifier (ES)" in card  # random init
    assert "16 for training, 4 held out" in card
    params = sum(
        v.numel()
        for k, v in load_file(str(out / "model" / "model.safetensors")).items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert f"{params:,} parameters" in card


def test_predict_on_the_african_test_set(trained, african_test):
    out, _ = trained
    result = predict(out, african_test, batch_size=7)
    n = len(african_test)
    assert result["reference"] == african_test["label"]
    assert len(result["prediction"]) == n and result["probabilities"].shape == (n, 5)
    np.testing.assert_allclose(result["probabilities"].sum(1), 1.0, atol=1e-6)
    assert result["prediction"] == list(result["probabilities"].argmax(1))
    assert result["model_name"] == "resnet18" and result["train_set"] == "ES"
    # independently: the model on the images resized by PIL, normalised by hand
    from fulora_data.classifier.predict import load_classifier

    model, _ = load_classifier(out / "model" / "model.safetensors", device="cpu")
    pixels = (
        torch.from_numpy(decode_resized(african_test, 32) / 255.0).float().unsqueeze(1).repeat(1, 3, 1, 1)
    )
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        expected = torch.softmax(model((pixels - mean) / std), 1).double().numpy()
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)


def test_checkpoint_for_another_number_of_classes_is_refused(trained, sources):
    out, _ = trained
    six = prepare("spanish", "full", source=sources["spanish"], cache_dir=sources["cache"])["test"]
    with pytest.raises(ConfigError, match="5-class classifier .* but the dataset has 6 classes"):
        predict(out, six)
    with pytest.raises(ConfigError, match="is not a fulora classifier"):
        predict(sources["cache"], six)


def test_cli_errors_are_one_line(trained, sources, tmp_path):
    out, _ = trained
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "classifier",
            "--train-set",
            "ES",
            "--out",
            str(out),
            "--weights",
            "none",
            "--source",
            str(sources["spanish"]),
        ],
    )
    assert result.exit_code != 0 and "Error: " in result.output and "pass --resume" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        main,
        [
            "train",
            "classifier",
            "--train-set",
            "ES",
            "--synthetic-source",
            str(tmp_path),
            "--weights",
            "none",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code != 0 and "only used by the hybrid training sets" in result.output
    preset = tmp_path / "p.yaml"
    preset.write_text("epochz: 1\n")
    result = runner.invoke(
        main, ["train", "classifier", "--preset", str(preset), "--out", str(tmp_path / "y")]
    )
    assert result.exit_code != 0 and "unknown training option 'epochz'" in result.output


# --------------------------------------------------------------------------- the grid
def test_reproduction_grid_writes_the_comparison_with_the_studys_row(sources, tmp_path):
    import csv
    import importlib.util

    from fulora_data.evaluation import published_row

    spec = importlib.util.spec_from_file_location("reproduce_grid", REPO / "scripts" / "reproduce_grid.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--out", str(tmp_path / "grid"), "--spanish-source", str(sources["spanish"])]
    args += ["--african-source", str(sources["african"]), "--cache-dir", str(sources["cache"])]
    args += ["--models", "resnet18", "--train-sets", "ES", "--weights", "none", "--epochs", "1"]
    args += ["--image-size", "32", "--num-workers", "0"]
    assert script.main(args) == 0
    rows = list(csv.DictReader((tmp_path / "grid" / "comparison.csv").open()))
    assert len(rows) == 1 and rows[0]["model"] == "resnet18" and rows[0]["train_set"] == "ES"
    paper = published_row("resnet18", "ES")
    assert float(rows[0]["paper_accuracy_pct"]) == paper["accuracy"]
    scores = json.loads((tmp_path / "grid" / "resnet18-ES" / "african_test_paper.json").read_text())
    assert float(rows[0]["accuracy_pct"]) == round(100 * scores["accuracy"], 2)
    assert float(rows[0]["diff_accuracy_pct"]) == pytest.approx(
        round(100 * scores["accuracy"], 2) - paper["accuracy"]
    )
    assert "| resnet18 | ES |" in (tmp_path / "grid" / "comparison.md").read_text()
    # a second run reuses the finished cell instead of training it again
    stamp = (tmp_path / "grid" / "resnet18-ES" / "model" / "model.safetensors").stat().st_mtime_ns
    assert script.main(args) == 0
    assert (tmp_path / "grid" / "resnet18-ES" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert script.main(args[:-2] + ["--num-workers", "-1"]) == 1  # refused before anything runs


def test_reproduction_grid_never_reuses_a_cell_trained_with_other_settings(sources, tmp_path, capsys):
    from fulora_data.study import run_grid

    kwargs = {"spanish_source": sources["spanish"], "african_source": sources["african"]}
    kwargs.update(models=["resnet18"], train_sets=["ES"], cache_dir=sources["cache"], progress=False)
    smoke = {"weights": "none", "epochs": 1, "image_size": 32, "num_workers": 0, "seed": 0}
    run_grid(tmp_path, overrides=smoke, **kwargs)
    weights = tmp_path / "resnet18-ES" / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    # Another seed is another experiment: the seed-0 cell must not be reported as its result.
    with pytest.raises(ConfigError, match="trained with seed=0, not 1"):
        run_grid(tmp_path, overrides={**smoke, "seed": 1}, **kwargs)
    assert weights.stat().st_mtime_ns == stamp
    # More epochs of the same settings continue the cell instead of reusing its first epoch.
    rows = run_grid(tmp_path, overrides={**smoke, "epochs": 2}, **kwargs)
    state = json.loads((tmp_path / "resnet18-ES" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and rows[0]["config"]["epochs"] == 2


def test_a_given_validation_split_replaces_the_random_hold_out(es, tmp_path):
    # the hybrid builder provides such a split (grouped by patient); here, a slice of the tiny ES set
    train_part, validation_part = es.select(range(16)), es.select(range(16, 20))
    config = tiny(train_set="HB", image_cache_dir=str(tmp_path / "img"))
    result = train(
        config, tmp_path / "hb", dataset=train_part, validation_dataset=validation_part, progress=False
    )
    assert result["images"] == {"train": 16, "validation": 4} and not result["notes"]
    saved = json.loads((tmp_path / "hb" / "model" / "config.json").read_text())
    assert saved["train_set"] == "HB" and saved["dataset"] == {
        "name": "hybrid",
        "config": "es1150-syn5000",
        "fingerprint": train_part._fingerprint,
        "num_images": 20,
    }


def test_validation_policy_is_patient_by_default_study_on_request_and_recorded(es, tmp_path):
    from fulora_data.builders.build import column

    patients = column(es, "patient_id")
    runs = {}
    for policy in ("patient", "study"):
        config = tiny(validation_policy=policy, validation_size=6, image_cache_dir=str(tmp_path / "img"))
        runs[policy] = train(config, tmp_path / policy, dataset=es, progress=False)
        saved = json.loads((tmp_path / policy / "model" / "config.json").read_text())
        assert runs[policy]["validation_policy"] == saved["validation_policy"] == policy
        assert saved["train_config"]["validation_policy"] == policy
    assert TrainConfig().validation_policy == "patient"
    # The patient policy's hold-out is the splits rule's, so no patient is on both sides.
    train_idx, val_idx, _ = hold_out_patients(patients, 6, seed=0)
    assert {patients[i] for i in val_idx}.isdisjoint(patients[i] for i in train_idx)
    assert runs["patient"]["images"] == {"train": len(train_idx), "validation": len(val_idx)}
    with pytest.raises(ConfigError, match="validation_policy must be one of patient, study; got 'random'"):
        tiny(validation_policy="random").validate()
    # Resuming with another policy is another run.
    with pytest.raises(ConfigError, match="validation_policy='study', not 'patient'"):
        train(tiny(validation_size=6), tmp_path / "study", dataset=es, resume=True, progress=False)


def test_training_launched_as_two_processes_is_refused_at_start_up(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from fulora_data.classifier import TrainConfig, train\n"
        "from fulora_data.errors import ConfigError\n"
        "try:\n"
        f"    train(TrainConfig.preset('smoke'), {str(tmp_path / 'out')!r})\n"
        "except ConfigError as err:\n"
        "    print(err)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # --multi_gpu is accelerate's torchrun launcher (it starts the processes on a CPU-only machine too);
    # "--cpu --num_processes 2" alone starts one process.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stdout.count("launched as 2 processes") == 2, done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def test_model_card_names_the_validation_policy(es, tmp_path):
    from fulora_data.classifier.card import render_model_card

    config = tiny(validation_policy="study", image_cache_dir=str(tmp_path / "img"))
    train(config, tmp_path / "run", dataset=es, progress=False)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert f"{len(es) - 4} for training, 4 held out for validation, random images as in the study)" in card
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    del saved["validation_policy"]  # a model trained before the policy was recorded
    assert "4 held out for validation) |" in render_model_card(saved)
