"""The ``standard`` protocol against scikit-learn called directly, and its seeded bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from fulora_data.evaluation import score
from fulora_data.evaluation.metrics import confusion_stack, summary_from_confusion
from fulora_data.taxonomy import PLANES

LABELS = list(range(len(PLANES)))


def _case(seed: int, n: int, present=(0, 1, 2, 3, 4)):
    """Noisy but informative predictions: probabilities peak at the reference half the time."""
    rng = np.random.default_rng(seed)
    refs = rng.choice(present, size=n)
    logits = rng.normal(size=(n, len(PLANES)))
    logits[np.arange(n), refs] += rng.choice([0.0, 2.0], size=n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return refs, probs.argmax(axis=1), probs


def test_standard_matches_sklearn_all_classes_present():
    refs, preds, probs = _case(1, 120)
    result = score(refs, preds, label_names=PLANES, probabilities=probs, protocol="standard", n_bootstrap=0)
    assert result["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(refs, preds))
    for key, fn in (("recall", recall_score), ("precision", precision_score), ("f1", f1_score)):
        assert result[key] == pytest.approx(fn(refs, preds, labels=LABELS, average="macro", zero_division=0))
    assert result["auc"] == pytest.approx(roc_auc_score(refs, probs, multi_class="ovr", average="macro"))
    assert result["confusion_matrix"] == confusion_matrix(refs, preds, labels=LABELS).tolist()
    p, r, f, s = precision_recall_fscore_support(refs, preds, labels=LABELS, zero_division=0)
    for i, name in enumerate(PLANES):
        row = result["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (p[i], r[i], f[i], s[i])
        )
        assert row["auc"] == pytest.approx(roc_auc_score(refs == i, probs[:, i]))
    assert result["labels"] == list(PLANES) and result["auc_labels"] == list(PLANES)


def test_standard_with_a_class_absent_from_references():
    # As on the African test set: no "Other" reference, but the model predicts it.
    refs, preds, probs = _case(2, 150, present=(1, 2, 3, 4))
    assert (preds == 0).any()
    result = score(refs, preds, label_names=PLANES, probabilities=probs, protocol="standard", n_bootstrap=0)
    # Macro over all five classes: "Other" contributes recall 0 (zero_division) and precision 0.
    assert result["recall"] == pytest.approx(
        recall_score(refs, preds, labels=LABELS, average="macro", zero_division=0)
    )
    assert result["per_class"]["Other"]["recall"] == 0.0 and result["per_class"]["Other"]["support"] == 0
    assert result["balanced_accuracy"] == pytest.approx(
        np.mean([recall_score(refs == c, preds == c) for c in (1, 2, 3, 4)])
    )
    # AUC over the four classes present in the references only.
    expected_auc = np.mean([roc_auc_score(refs == c, probs[:, c]) for c in (1, 2, 3, 4)])
    assert result["auc"] == pytest.approx(expected_auc)
    assert result["auc_labels"] == list(PLANES[1:]) and result["per_class"]["Other"]["auc"] is None


def test_standard_without_probabilities_has_no_auc():
    result = score([1, 2, 3], [1, 2, 2], label_names=PLANES, protocol="standard", n_bootstrap=20)
    assert result["auc"] is None and result["ci"]["intervals"]["auc"] is None
    assert result["ci"]["intervals"]["accuracy"] is not None


def test_fast_bootstrap_formulas_equal_sklearn():
    rng = np.random.default_rng(3)
    refs = rng.integers(1, 5, size=(30, 40))
    preds = rng.integers(0, 5, size=(30, 40))
    values = summary_from_confusion(confusion_stack(refs, preds, 5))
    for b in range(30):
        r, p = refs[b], preds[b]
        assert values["accuracy"][b] == pytest.approx(accuracy_score(r, p))
        assert values["recall"][b] == pytest.approx(
            recall_score(r, p, labels=LABELS, average="macro", zero_division=0)
        )
        assert values["precision"][b] == pytest.approx(
            precision_score(r, p, labels=LABELS, average="macro", zero_division=0)
        )
        assert values["f1"][b] == pytest.approx(
            f1_score(r, p, labels=LABELS, average="macro", zero_division=0)
        )
        assert values["balanced_accuracy"][b] == pytest.approx(
            np.mean([recall_score(r == c, p == c) for c in np.unique(r)])
        )


def _sklearn_resample(refs, preds, probs, idx):
    r, p, q = refs[idx], preds[idx], probs[idx]
    present = np.unique(r)
    return {
        "accuracy": accuracy_score(r, p),
        "recall": recall_score(r, p, labels=LABELS, average="macro", zero_division=0),
        "precision": precision_score(r, p, labels=LABELS, average="macro", zero_division=0),
        "f1": f1_score(r, p, labels=LABELS, average="macro", zero_division=0),
        "auc": np.mean([roc_auc_score(r == c, q[:, c]) for c in present]) if len(present) > 1 else np.nan,
    }


def test_bootstrap_by_image_matches_an_independent_sklearn_bootstrap():
    refs, preds, probs = _case(4, 60, present=(1, 2, 3, 4))
    n_bootstrap, seed = 200, 7
    result = score(
        refs,
        preds,
        label_names=PLANES,
        probabilities=probs,
        protocol="standard",
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    # The documented scheme: rng = default_rng(seed); idx = rng.integers(0, n, size=(B, n)).
    idx = np.random.default_rng(seed).integers(0, len(refs), size=(n_bootstrap, len(refs)))
    draws = [_sklearn_resample(refs, preds, probs, i) for i in idx]
    ci = result["ci"]
    assert (ci["unit"], ci["n_bootstrap"], ci["seed"], ci["level"]) == ("image", 200, 7, 0.95)
    for metric in ("accuracy", "recall", "precision", "f1", "auc"):
        values = np.array([d[metric] for d in draws])
        values = values[~np.isnan(values)]
        assert ci["intervals"][metric] == pytest.approx(list(np.percentile(values, [2.5, 97.5]))), metric
        low, high = ci["intervals"][metric]
        assert low <= result[metric] <= high


def test_bootstrap_is_seeded():
    refs, preds, probs = _case(5, 50)
    kwargs = {"label_names": PLANES, "probabilities": probs, "protocol": "standard", "n_bootstrap": 100}
    assert score(refs, preds, seed=1, **kwargs)["ci"] == score(refs, preds, seed=1, **kwargs)["ci"]
    assert score(refs, preds, seed=1, **kwargs)["ci"] != score(refs, preds, seed=2, **kwargs)["ci"]


def test_bootstrap_by_patient_resamples_whole_patients():
    refs, preds, probs = _case(6, 40)
    patients = [f"p{i // 4:02d}" for i in range(40)]  # 10 patients, 4 images each
    n_bootstrap, seed = 50, 3
    result = score(
        refs,
        preds,
        label_names=PLANES,
        probabilities=probs,
        patient_ids=patients,
        protocol="standard",
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    assert result["ci"]["unit"] == "patient"
    # The documented scheme: draw patient positions among the sorted ids, take all their images.
    ids = sorted(set(patients))
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_bootstrap, len(ids)))
    accuracies = []
    for draw in draws:
        idx = np.concatenate([[i for i, p in enumerate(patients) if p == ids[k]] for k in draw])
        accuracies.append(accuracy_score(refs[idx], preds[idx]))
    assert result["ci"]["intervals"]["accuracy"] == pytest.approx(
        list(np.percentile(accuracies, [2.5, 97.5]))
    )


def test_standard_per_country_and_ci_per_country():
    refs, preds, probs = _case(8, 80, present=(1, 2, 3, 4))
    countries = np.array(["Uganda", "Algeria"])[np.arange(80) % 2]
    result = score(
        refs,
        preds,
        label_names=PLANES,
        probabilities=probs,
        countries=countries,
        protocol="standard",
        n_bootstrap=30,
    )
    assert list(result["per_country"]) == ["Algeria", "Uganda"]
    for country, sub in result["per_country"].items():
        rows = countries == country
        assert sub["n"] == rows.sum() == 40
        assert sub["accuracy"] == pytest.approx(accuracy_score(refs[rows], preds[rows]))
        assert sub["f1"] == pytest.approx(
            f1_score(refs[rows], preds[rows], labels=LABELS, average="macro", zero_division=0)
        )
        assert sub["ci"]["unit"] == "image" and sub["ci"]["intervals"]["accuracy"] is not None
