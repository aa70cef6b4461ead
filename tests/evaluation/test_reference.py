"""The study's published table carried by the package."""

from __future__ import annotations

import csv
from importlib import resources

import pytest
from conftest import SHARED_DATA, needs_shared

from fulora_data.evaluation import paper_results, published_row
from fulora_data.evaluation.reference import MODELS, TRAIN_SETS, canonical_model, canonical_train_set


def test_table_has_every_model_and_training_set():
    rows = paper_results()
    assert len(rows) == 20
    assert {(r["model"], r["train_set"]) for r in rows} == {(m, t) for m in MODELS for t in TRAIN_SETS}
    row = published_row("ResNet18", "hb+da")
    assert (row["accuracy"], row["recall"], row["precision"], row["f1"], row["auc"]) == (
        82.4,
        81.56,
        89.15,
        84.9,
        89.29,
    )
    assert (row["n_real"], row["n_synthetic"], row["n_patients"]) == (1150, 5000, 486)


def test_table_states_its_source():
    text = resources.files("fulora_data").joinpath("reference", "paper_results.csv").read_text("utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("2407.20072" in line for line in header)
    assert any("13204942/FU-LoRA" in line and "MIT" in line for line in header)


@pytest.mark.parametrize(
    ("name", "model_id"),
    [("ViT b16", "vit_b_16"), ("vit_b_16", "vit_b_16"), ("MobileNet v2", "mobilenet_v2"), ("resnet50", None)],
)
def test_model_aliases(name, model_id):
    assert canonical_model(name) == model_id


def test_train_set_aliases():
    assert [canonical_train_set(s) for s in ("es", "ES_DA", "hb-da", "HB+DA", "XX")] == [
        "ES",
        "ES+DA",
        "HB+DA",
        "HB+DA",
        None,
    ]
    assert published_row("resnet18", None) is None
    assert published_row("resnet50", "HB") is None


@needs_shared
def test_table_equals_the_shared_copy_of_the_published_file():
    names = {
        "DenseNet169": "densenet169",
        "MobileNet v2": "mobilenet_v2",
        "EfficientNet b0": "efficientnet_b0",
        "ResNet18": "resnet18",
        "ViT b16": "vit_b_16",
    }
    path = SHARED_DATA / "paper" / "overall_performance.csv"
    with path.open(encoding="utf-8-sig", newline="") as f:
        shared = {
            (names[r["Model"]], r["Data"]): (
                int(r["# ES"]),
                int(r["# Synthetic"]),
                int(r["# Patients"]),
                float(r["ACC"]),
                float(r["Recall"]),
                float(r["Precision"]),
                float(r["F-score"]),
                float(r["AUC"]),
            )
            for r in csv.DictReader(f)
        }
    ours = {
        (r["model"], r["train_set"]): (
            r["n_real"],
            r["n_synthetic"],
            r["n_patients"],
            r["accuracy"],
            r["recall"],
            r["precision"],
            r["f1"],
            r["auc"],
        )
        for r in paper_results()
    }
    assert ours == shared
    ours_bytes = resources.files("fulora_data").joinpath("reference", "paper_results.csv").read_bytes()
    assert ours_bytes != path.read_bytes()
