"""The ``paper`` protocol on hand-built cases; every expected number is worked out by hand in comments."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from fulora_data.errors import ConfigError, DataError
from fulora_data.evaluation import score
from fulora_data.evaluation.metrics import paper_auc
from fulora_data.taxonomy import PLANES

# Labels: 0 Other, 1 abdomen, 2 brain, 3 femur, 4 thorax. As on the African test set, no reference is
# "Other", and the model sometimes predicts it.
QUIRK_REFS = [1, 1, 2, 2, 3, 3, 4, 4]
QUIRK_PREDS = [1, 0, 2, 0, 3, 3, 0, 4]


def _summary(result):
    return {k: result[k] for k in ("accuracy", "recall", "precision", "f1", "auc")}


def test_paper_absent_class_quirk_by_hand():
    # accuracy: correct at positions 0, 2, 4, 5, 7 -> 5/8 (the three "Other" predictions are wrong).
    # classes present in the references: 1, 2, 3, 4.
    # recall: c1 1/2, c2 1/2, c3 2/2, c4 1/2 -> (1/2 + 1/2 + 1 + 1/2) / 4 = 5/8.
    # precision: predicted 1 once (right), 2 once (right), 3 twice (right), 4 once (right); "Other" is
    #   outside labels= so it enters no precision -> 1.
    # F-score per class 2PR/(P+R): c1 = c2 = c4 = 2*(1)(1/2)/(3/2) = 2/3, c3 = 1 -> (3 * 2/3 + 1) / 4 = 3/4.
    # AUC: y_score = 0 only where the prediction is ANOTHER present class; "Other" (absent) scores 1.
    #   c1: y_true 1 1 0 0 0 0 0 0, y_score 1 1 0 1 0 0 1 0. Both positives score 1; negatives: four 0, two 1.
    #       AUC = (wins + ties/2) / (2*6) = 2*(4 + 2/2) / 12 = 5/6.
    #   c2: y_true 0 0 1 1 0 0 0 0, y_score 0 1 1 1 0 0 1 0. Positives 1,1; negatives 0 1 0 0 1 0 -> 5/6.
    #   c3: y_true 0 0 0 0 1 1 0 0, y_score 0 1 0 1 1 1 1 0. Positives 1,1; negatives 0 1 0 1 1 0 (three
    #       ties) -> 2*(3 + 3/2) / 12 = 3/4.
    #   c4: y_true 0 0 0 0 0 0 1 1, y_score 0 1 0 1 0 0 1 1. Positives 1,1; negatives 0 1 0 1 0 0 -> 5/6.
    #   mean = (5/6 + 5/6 + 3/4 + 5/6) / 4 = (30/12 + 9/12) / 4 = 39/48 = 13/16.
    result = score(QUIRK_REFS, QUIRK_PREDS, label_names=PLANES, protocol="paper")
    expected = {"accuracy": F(5, 8), "recall": F(5, 8), "precision": F(1), "f1": F(3, 4), "auc": F(13, 16)}
    for metric, value in expected.items():
        assert result[metric] == pytest.approx(float(value), abs=1e-12), metric
    assert result["labels"] == ["Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"]
    assert result["auc_labels"] == result["labels"]
    per_class_auc = {name: row["auc"] for name, row in result["per_class"].items()}
    assert per_class_auc == pytest.approx(
        {
            "Other": None,
            "Fetal abdomen": 5 / 6,
            "Fetal brain": 5 / 6,
            "Fetal femur": 3 / 4,
            "Fetal thorax": 5 / 6,
        }
    )
    # Rows reference, columns prediction.
    assert result["confusion_matrix"] == [
        [0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [0, 0, 0, 2, 0],
        [1, 0, 0, 0, 1],
    ]
    assert result["protocol"] == "paper" and result["n"] == 8 and "ci" not in result


def test_quirk_differs_from_scoring_other_as_negative():
    # Had "Other" counted as negative (y_score = prediction == c), class 1 would be:
    #   y_true 1 1 0 0 0 0 0 0, y_score 1 0 0 0 0 0 0 0: the positive scoring 1 beats all 6 negatives, the
    #   positive scoring 0 ties all 6 -> (6 + 6/2) / 12 = 3/4, not 5/6.
    from sklearn.metrics import roc_auc_score

    naive = roc_auc_score([1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0])
    assert naive == pytest.approx(3 / 4)
    result = score(QUIRK_REFS, QUIRK_PREDS, label_names=PLANES)
    assert result["per_class"]["Fetal abdomen"]["auc"] == pytest.approx(5 / 6)


def test_paper_present_class_never_predicted_by_hand():
    # refs 1 1 2 2 3 3, preds 1 1 1 2 2 2 (class 3 never predicted, no absent-class prediction).
    # accuracy 3/6 = 1/2. recall: c1 2/2, c2 1/2, c3 0/2 -> 1/2.
    # precision: pred 1 at positions 0,1,2 -> 2/3; pred 2 at 3,4,5 -> 1/3; pred 3 never -> 0 (zero_division)
    #   -> (2/3 + 1/3 + 0) / 3 = 1/3.
    # F: c1 2*(2/3)(1)/(5/3) = 4/5; c2 2*(1/3)(1/2)/(5/6) = 2/5; c3 0 -> (4/5 + 2/5) / 3 = 2/5.
    # AUC (y_score = prediction == c here): c1 y_true 1 1 0 0 0 0, y_score 1 1 1 0 0 0 ->
    #   2*(3 + 1/2) / (2*4) = 7/8; c2 y_true 0 0 1 1 0 0, y_score 0 0 0 1 1 1 -> positive 0: 0 wins 2 ties,
    #   positive 1: 2 wins 2 ties -> (1 + 3) / 8 = 1/2; c3 all scores 0 -> 1/2. mean (7/8 + 1/2 + 1/2)/3 = 5/8.
    result = score([1, 1, 2, 2, 3, 3], [1, 1, 1, 2, 2, 2], label_names=PLANES)
    assert _summary(result) == pytest.approx(
        {"accuracy": 1 / 2, "recall": 1 / 2, "precision": 1 / 3, "f1": 2 / 5, "auc": 5 / 8}
    )
    assert result["labels"] == ["Fetal abdomen", "Fetal brain", "Fetal femur"]
    assert result["per_class"]["Fetal femur"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 2,
        "predicted": 0,
        "auc": 0.5,
    }


def test_paper_prediction_of_present_class_outside_refs_is_positive_everywhere():
    # refs only 1 and 2; prediction 4 (a model class absent from the references) is positive for both.
    # c1: y_true 1 0, y_score for predictions [4, 2]: 4 absent -> 1, 2 is another present class -> 0 -> AUC 1.
    # c2: y_true 0 1, y_score: 4 -> 1, 2 -> 1 -> tie -> 1/2. mean 3/4.
    auc, per_class = paper_auc(np.array([1, 2]), np.array([4, 2]))
    assert per_class == {1: 1.0, 2: 0.5} and auc == pytest.approx(3 / 4)


def test_paper_per_country_by_hand():
    countries = ["Ghana"] * 4 + ["Malawi"] * 4
    result = score(QUIRK_REFS, QUIRK_PREDS, label_names=PLANES, countries=countries)
    assert list(result["per_country"]) == ["Ghana", "Malawi"]
    # Ghana: refs 1 1 2 2, preds 1 0 2 0. accuracy 2/4; recall c1 1/2, c2 1/2 -> 1/2; precision 1;
    #   F 2/3; AUC c1: y_true 1 1 0 0, y_score 1 1 0 1 -> positives 1,1 vs negatives 0,1 -> (1 + 1/2)/2 = 3/4;
    #   c2: y_true 0 0 1 1, y_score 0 1 1 1 -> 3/4. mean 3/4.
    assert _summary(result["per_country"]["Ghana"]) == pytest.approx(
        {"accuracy": 1 / 2, "recall": 1 / 2, "precision": 1.0, "f1": 2 / 3, "auc": 3 / 4}
    )
    # Malawi: refs 3 3 4 4, preds 3 3 0 4. accuracy 3/4; recall c3 1, c4 1/2 -> 3/4; precision 1;
    #   F c3 1, c4 2/3 -> 5/6; AUC c3: y_true 1 1 0 0, y_score 1 1 1 0 -> 3/4; c4: y_true 0 0 1 1,
    #   y_score 0 0 1 1 -> 1. mean 7/8.
    assert _summary(result["per_country"]["Malawi"]) == pytest.approx(
        {"accuracy": 3 / 4, "recall": 3 / 4, "precision": 1.0, "f1": 5 / 6, "auc": 7 / 8}
    )
    assert result["per_country"]["Malawi"]["n"] == 4
    assert "per_country" not in result["per_country"]["Ghana"]


def test_paper_single_reference_class_has_no_auc():
    # One country with only one plane: AUC is undefined (no negatives), reported as None.
    result = score([2, 2, 2], [2, 0, 2], label_names=PLANES)
    assert result["auc"] is None and result["accuracy"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3) and result["precision"] == 1.0


def test_score_accepts_plane_names():
    names = ["abdomen", "Fetal abdomen", "brain", "fetal_brain", "femur", "Fetal femur", "thorax", "Thorax"]
    preds = ["abdomen", "Other", "brain", "others", "Fetal femur", "femur", "other", "fetal-thorax"]
    assert _summary(score(names, preds, label_names=PLANES)) == _summary(
        score(QUIRK_REFS, QUIRK_PREDS, label_names=PLANES)
    )


def test_score_refuses_bad_input():
    with pytest.raises(DataError, match="empty"):
        score([], [], label_names=PLANES)
    with pytest.raises(DataError, match="outside the model's classes 0-4"):
        score([1, 7], [1, 1], label_names=PLANES)
    with pytest.raises(DataError, match="'Fetal kidney'"):
        score([1, 2], [1, "Fetal kidney"], label_names=PLANES)
    with pytest.raises(DataError, match="'Maternal cervix' is not a class"):
        score([1, 2], [1, "cervix"], label_names=PLANES)
    with pytest.raises(DataError, match="2 references but 1 predictions"):
        score([1, 2], [1], label_names=PLANES)
    with pytest.raises(ConfigError, match="'bogus'"):
        score([1, 2], [1, 2], label_names=PLANES, protocol="bogus")
    with pytest.raises(DataError, match="countries has 1 entries for 2 images"):
        score([1, 2], [1, 2], label_names=PLANES, countries=["Ghana"])


def test_probabilities_of_another_width_are_a_config_error():
    # A checkpoint trained for six classes gives six probability columns for a five-class label set.
    probs = [[0.1, 0.2, 0.3, 0.2, 0.1, 0.1]] * 2
    with pytest.raises(ConfigError, match="6 columns but the model has 5 classes"):
        score([1, 2], [1, 2], label_names=PLANES, probabilities=probs)


def test_probabilities_off_one_are_refused_and_rounding_is_rescaled():
    with pytest.raises(DataError, match=r"row 1 sum to 2\b"):
        score([1, 2], [1, 2], label_names=PLANES, probabilities=[[0, 1, 0, 0, 0], [0, 1, 1, 0, 0]])
    with pytest.raises(DataError, match="row 0 has a negative"):
        score([1, 2], [1, 2], label_names=PLANES, probabilities=[[-0.1, 1.1, 0, 0, 0], [0, 0, 1, 0, 0]])
    # Within the 1e-3 tolerance (rounding to 3 decimals) rows are rescaled and accepted.
    result = score(
        [1, 2],
        [1, 2],
        label_names=PLANES,
        probabilities=[[0.0, 0.333, 0.333, 0.333, 0.0], [0, 0.2, 0.8, 0, 0]],
        protocol="standard",
        n_bootstrap=0,
    )
    assert result["auc"] == pytest.approx(1.0) and result["ci"] is None
