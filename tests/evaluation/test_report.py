"""ROC curves beside the confusion matrix in the evaluation report (``fulora_data.evaluation.report``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fulora_data.evaluation import score, write_report
from fulora_data.evaluation.report import ROC_FILE, roc_curves
from fulora_data.taxonomy import PLANES

REFS = [1, 1, 2, 2, 3, 3, 4, 4, 1, 2, 3, 4]
PREDS = [1, 0, 2, 0, 3, 3, 0, 4, 1, 2, 4, 4]


def test_roc_curves_are_the_standard_protocols_one_vs_rest_auc(tmp_path):
    pytest.importorskip("matplotlib")
    probabilities = np.random.default_rng(0).dirichlet(np.ones(5), size=len(REFS))
    result = score(
        REFS, PREDS, label_names=PLANES, probabilities=probabilities, protocol="standard", n_bootstrap=0
    )
    result["roc"] = roc_curves(REFS, probabilities, PLANES)
    # Other (label 0) has no test image: no curve; every other class's area is the protocol's per-class AUC.
    assert set(result["roc"]) == set(PLANES[1:5])
    for name, curve in result["roc"].items():
        assert curve["auc"] == pytest.approx(result["per_class"][name]["auc"])
        area = np.trapezoid(curve["tpr"], curve["fpr"])
        assert area == pytest.approx(curve["auc"], abs=1e-6)
        assert curve["fpr"][0] == 0 and curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1
    report = write_report(result, tmp_path / "out")
    text = report.read_text()
    assert f"![Confusion matrix](confusion_matrix.png) ![ROC curves, one vs rest]({ROC_FILE})" in text
    with Image.open(report.parent / ROC_FILE) as image:
        image.load()
        assert image.format == "PNG" and 300 < image.width < 2000 and 300 < image.height < 2000
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # coloured lines


def test_without_probabilities_there_is_no_roc_picture(tmp_path):
    result = score(REFS, PREDS, label_names=PLANES)
    result["roc"] = roc_curves(REFS, None, PLANES)
    report = write_report(result, tmp_path / "out")
    assert result["roc"] is None and not (report.parent / ROC_FILE).exists()
    assert "ROC" not in report.read_text()
