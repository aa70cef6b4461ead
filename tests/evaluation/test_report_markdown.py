"""The Markdown report: files written, figures beside the study's row, a decodable confusion-matrix PNG."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from fulora_data.evaluation import format_summary, score, write_report
from fulora_data.taxonomy import PLANES

REFS = [1, 1, 2, 2, 3, 3, 4, 4]
PREDS = [1, 0, 2, 0, 3, 3, 0, 4]
COUNTRIES = ["Ghana"] * 4 + ["Malawi"] * 4


def test_report_beside_the_published_row(tmp_path):
    result = score(REFS, PREDS, label_names=PLANES, countries=COUNTRIES)
    report = write_report(result, tmp_path / "out", model_name="ResNet18", train_set="hb+da")
    assert report == tmp_path / "out" / "report.md"
    assert sorted(p.name for p in report.parent.iterdir()) == [
        ".fulora_written.json",  # the record of what fulora wrote there (io.write_report_folder)
        "confusion_matrix.png",
        "metrics.json",
        "report.md",
    ]
    text = report.read_text()
    # Ours 62.50 accuracy beside the study's 82.40 for ResNet18 on HB+DA: difference -19.90.
    assert "| Accuracy | 62.50 | 82.40 | -19.90 |" in text
    assert "| AUC | 81.25 | 89.29 | -8.04 |" in text
    assert "arXiv:2407.20072" in text
    assert "| Ghana | 4 | 50.00 | 50.00 | 100.00 | 66.67 | 75.00 |" in text
    assert "| Fetal thorax | 1 | 0 | 0 | 0 | 1 |" in text  # confusion-matrix row, reference thorax
    assert "![Confusion matrix](confusion_matrix.png)" in text
    with Image.open(report.parent / "confusion_matrix.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
        assert len(np.unique(np.asarray(image.convert("L")))) > 2
    saved = json.loads((report.parent / "metrics.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and saved["model_name"] == "ResNet18"
    staged = [p for p in report.parent.iterdir() if p.name.startswith(".") and p.name != ".fulora_written.json"]
    assert not staged  # nothing left of the staging


def test_report_without_a_published_row_and_with_ci(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=len(REFS))
    result = score(REFS, PREDS, label_names=PLANES, probabilities=probs, protocol="standard", n_bootstrap=50)
    text = write_report(result, tmp_path, model_name="resnet50", train_set="HB").read_text()
    assert "No published row to compare with" in text
    assert "95% CI" in text and "50 resamples of images, seed 0" in text
    low, high = result["ci"]["intervals"]["accuracy"]
    assert f"| Accuracy | 62.50 | {100 * low:.2f}-{100 * high:.2f} |" in text


def test_standard_report_warns_that_the_study_used_the_paper_protocol(tmp_path):
    result = score(REFS, PREDS, label_names=PLANES, protocol="standard", n_bootstrap=0)
    text = write_report(result, tmp_path, model_name="vit_b_16", train_set="ES").read_text()
    assert "not directly comparable" in text and "| Accuracy | 62.50 | 68.24 | -5.74 |" in text


def test_summary_text():
    summary = format_summary(score(REFS, PREDS, label_names=PLANES, countries=COUNTRIES))
    assert "protocol: paper   images: 8" in summary
    assert "Accuracy" in summary and "62.50" in summary and "81.25" in summary
    assert "Malawi (n=4)" in summary
