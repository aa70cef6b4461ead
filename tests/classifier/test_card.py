"""A classifier's card (``fulora_data.classifier.card``): what it says it was trained on, and its snippet.

The snippet is run as written, from the card the stand-in Hub serves after ``fulora model push``: plain
torchvision and safetensors, no fulora, and the same probabilities as fulora's own ``predict``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fulora_data.classifier.card import render_model_card

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

LABELS = ["Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"]


def _config(**overrides) -> dict:
    config = {
        "fulora_version": "0.1.0",
        "arch": "resnet18",
        "title": "ResNet18",
        "num_classes": 5,
        "label_names": LABELS,
        "image_size": 224,
        "train_set": "HB",
        "augment": False,
        "weights": "none",
        "dataset": {"name": "hybrid", "config": "es1150-syn5000", "num_images": 180, "fingerprint": "f00d" * 4},
        "images": {"train": 160, "validation": 20},
        "best": {"epoch": 1, "accuracy": 0.5, "loss": 1.0},
        "train_config": {
            "learning_rate": 0.001, "momentum": 0.9, "weight_decay": 0.0, "scheduler": "constant",
            "batch_size": 24, "epochs": 1, "seed": 0, "mixed_precision": "no",
            # What export.public leaves of the local paths: a file by name and sha256, a folder by its name.
            "source": {"file": "FETAL_PLANES_DB.zip", "sha256": "ab" * 32},
            "synthetic_source": "my-generated-set-on-my-disk",
            "dataset_options": {"real_config": "lora-100"},
        },
    }  # fmt: skip
    config.update(overrides)
    return config


def test_a_locally_built_hybrid_is_described_as_built_not_as_the_published_set():
    from card_rules import check_model_card

    text = render_model_card(_config())
    raw = check_model_card(text)
    assert "datasets" not in raw and "fulora/hybrid" not in text
    line = next(row for row in text.splitlines() if row.startswith("| Data |"))
    assert "built locally by fulora (not a Hub dataset): `hybrid` config `es1150-syn5000`" in line
    assert "`real_config=lora-100`" in line
    assert f"real source `FETAL_PLANES_DB.zip` (sha256 `{'ab' * 8}`)" in line
    assert "synthetic source a local folder" in line and "my-generated-set-on-my-disk" not in text
    assert "built data fingerprint `f00df00df00df00d`" in line


def test_evaluation_results_carry_revision_metric_args_and_intervals(tmp_path):
    from card_rules import check_model_card

    from fulora_data.classifier.card import record_results

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config()))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "README.md").write_text(render_model_card(_config()))
    ci = {
        "level": 0.95, "method": "percentile bootstrap", "unit": "patient", "n_bootstrap": 200, "seed": 0,
        "intervals": {"accuracy": [0.41, 0.6], "f1": [0.3, 0.5]},
    }  # fmt: skip
    result = {
        "data": "african:test", "protocol": "standard", "n": 233, "accuracy": 0.5, "precision": 0.6,
        "recall": 0.55, "f1": 0.4, "auc": 0.8, "ci": ci, "per_country": {},
    }  # fmt: skip
    record_results(folder, result)
    text = (folder / "README.md").read_text()
    check_model_card(text)
    from huggingface_hub import ModelCard

    entries = {r.metric_type: r for r in ModelCard(text).data.eval_results}
    assert entries["roc_auc"].metric_args == {
        "protocol": "standard",
        "multi_class": "ovr",
        "average": "macro",
        "scores": "predicted probabilities",
    }
    assert entries["accuracy"].dataset_revision == "1.0.0" and entries["accuracy"].dataset_type == "african"
    assert "| `african:test` | standard | 233 | 0.5000 [0.4100, 0.6000] |" in text
    assert "95% percentile bootstrap intervals in brackets, 200 resamples by patient, seed 0" in text


def test_the_cards_torchvision_snippet_runs_as_written_from_the_hub(hub_server, tmp_path):
    from huggingface_hub import hf_hub_download

    from fulora_data.classifier import predict
    from fulora_data.cli import main
    from fulora_data.hub import push_model
    from fulora_data.samples import write_spanish_source

    source = write_spanish_source(tmp_path / "es", per_plane=4, test_per_plane=1, seed=1)
    out = tmp_path / "run"
    args = ["train", "classifier", "--arch", "resnet18", "--train-set", "ES", "--source", str(source)]
    args += [
        "--cache-dir",
        str(tmp_path / "cache"),
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "1",
    ]
    args += ["--batch-size", "8", "--num-workers", "0", "--validation-size", "4", "--out", str(out)]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    assert '"REPO_OR_FOLDER"' in (out / "model" / "README.md").read_text()  # not pushed yet
    push_model(out / "model", "fulora/tiny-classifier", token=hub_server.token)
    card = Path(hf_hub_download("fulora/tiny-classifier", "README.md")).read_text()
    from card_rules import check_model_card

    check_model_card(card)
    code = (
        card.split("With plain torchvision and safetensors", 1)[1]
        .split("```python\n", 1)[1]
        .split("```", 1)[0]
    )
    assert 'snapshot_download("fulora/tiny-classifier")' in code and "fulora_data" not in code
    scope: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "card snippet", "exec"), scope)
    assert printed.getvalue().split()[0] in {"Other", "Fetal"}  # a label name, then its probability
    # The same image through fulora's own predict gives the same probabilities.
    import datasets

    buffer = io.BytesIO()
    Image.new("L", (320, 240)).save(buffer, format="PNG")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=LABELS)})
    one = datasets.Dataset.from_dict(
        {"image": [{"bytes": buffer.getvalue()}], "label": [0]}, features=features
    )
    expected = predict(out, one)["probabilities"][0]
    np.testing.assert_allclose(scope["probabilities"].numpy(), expected, atol=1e-5)


def test_a_file_option_is_named_by_file_and_checksum():
    options = {"labels": {"file": "synthetic_train_5000.csv", "sha256": "cd" * 32}}
    config = _config()
    config["train_config"] = {**config["train_config"], "dataset_options": options}
    line = next(row for row in render_model_card(config).splitlines() if row.startswith("| Data |"))
    assert f"`labels` = `synthetic_train_5000.csv` (sha256 `{'cd' * 8}`)" in line
