"""Zero-shot classification metrics under two protocols, as pure functions on arrays.

Every number here comes from scikit-learn, except inside the bootstrap, where the same definitions are
computed from stacked confusion matrices with numpy for speed (tests check them against scikit-learn).

Protocols
---------
``paper`` reproduces the FU-LoRA study's table exactly:

* **accuracy**: correct predictions over all test images.
* **recall, precision, F-score**: scikit-learn macro averages with ``labels=`` the sorted classes present
  in the references (``zero_division=0``). A prediction of a class absent from the references (``Other``
  on the African test set) is wrong for accuracy and recall but enters no class's precision.
* **AUC**: the mean, over the classes ``c`` present in the references, of ``roc_auc_score(y_true,
  y_score)`` on *hard labels*, where ``y_true = (reference == c)`` and ``y_score`` is 0 when the prediction
  is *another class present in the references* and 1 otherwise. So a prediction of a class absent from
  the references counts as positive for every class. This quirk is the study's; it is reproduced, not
  endorsed. With fewer than two classes in the references the AUC is undefined (``None``).

``standard`` reports what a careful reviewer would want:

* **recall, precision, F-score**: macro averages over *all* the model's classes (``zero_division=0``), so
  a class absent from the references scores 0 on each and pulls the average down; ``balanced_accuracy``
  (scikit-learn's, the mean recall over the classes present in the references) is given beside them.
* **AUC**: one-vs-rest ROC AUC from the predicted probabilities, averaged over the classes present in the
  references (a class with no positive image has no ROC curve, so it is left out, and the classes used
  are listed in ``auc_labels``). ``None`` when no probabilities are given.
* **ci**: 95% percentile bootstrap intervals. Resampling is seeded: ``rng =
  numpy.random.default_rng(seed)``; by image, ``idx = rng.integers(0, n, size=(n_bootstrap, n))``; by
  patient (only when ``patient_ids`` are given), ``rng.integers(0, n_patients, size=(n_bootstrap,
  n_patients))`` over the sorted patient ids, each drawn patient bringing all its images. A resample in
  which a metric is undefined is left out of that metric's interval.

Both protocols give a ``per_class`` report, a ``confusion_matrix`` (rows: reference, columns: prediction,
in ``label_names`` order) and the same results per country (``per_country``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from fulora_data.errors import ConfigError, DataError

PROTOCOLS: tuple[str, ...] = ("paper", "standard")
SUMMARY_METRICS: tuple[str, ...] = ("accuracy", "recall", "precision", "f1", "auc")
CI_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "recall", "precision", "f1", "auc")
PROBABILITY_TOLERANCE = 1e-3
"""How far a row of probabilities may sum from 1 (rounding in a CSV) before it is refused."""
CI_LEVEL = 0.95


def _float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def as_labels(values: Sequence, label_names: Sequence[str], *, what: str) -> np.ndarray:
    """Turn references or predictions into label indices, checking each one.

    Args:
        values: Label indices, or plane names in any form ``canonical_plane`` accepts.
        label_names: The model's class names, in label order.
        what: ``"reference"`` or ``"prediction"``, used in error messages.

    Returns:
        A 1-d ``int64`` array of indices into ``label_names``.

    Raises:
        DataError: If a value is not one of the model's classes.
    """
    from fulora_data.taxonomy import canonical_plane, label_index

    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)):
            raise DataError(f"{what} {i} is a boolean, not a label; got {value!r}")
        if isinstance(value, (int, np.integer)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer()
        ):
            index = int(value)
            if not 0 <= index < len(label_names):
                raise DataError(
                    f"{what} {i} is label {value!r}, outside the model's classes "
                    f"0-{len(label_names) - 1} ({', '.join(label_names)})"
                )
        else:
            index = label_index(canonical_plane(value), label_names)
        out[i] = index
    return out


def check_probabilities(
    probabilities,
    n_rows: int,
    label_names: Sequence[str],
    *,
    where: str = "probabilities",
    row_numbers: Sequence[int] | None = None,
    row_word: str = "row",
) -> np.ndarray:
    """Check a matrix of class probabilities and return it as floats with rows summing exactly to 1.

    Rows that sum to 1 within ``PROBABILITY_TOLERANCE`` (rounding in a CSV) are rescaled to sum to 1;
    rows further off are refused rather than normalised, because they are logits, a missing class
    column or a bug, and normalising would hide it.

    Args:
        probabilities: An ``(n_rows, len(label_names))`` array-like.
        n_rows: The number of images.
        label_names: The model's class names.
        where: What to name in error messages (e.g. the CSV path).
        row_numbers: How to number the rows in error messages (e.g. their lines in a CSV); default 0, 1, ...
        row_word: The word for a row in error messages (``"row"``, ``"line"``).

    Returns:
        The probabilities as a float64 array.

    Raises:
        ConfigError: If the number of columns differs from the number of classes (a checkpoint for
            another number of classes).
        DataError: If the shape is wrong, a value is negative or not finite, or a row does not sum to 1.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise DataError(
            f"{where}: probabilities must be a 2-d array (images x classes); got shape {p.shape!r}"
        )
    if p.shape[1] != len(label_names):
        raise ConfigError(
            f"{where}: probabilities have {p.shape[1]} columns but the model has {len(label_names)} "
            f"classes ({', '.join(label_names)}); was the checkpoint trained for another number of classes?"
        )
    if p.shape[0] != n_rows:
        raise DataError(f"{where}: {p.shape[0]} rows of probabilities for {n_rows} images")
    number = (lambda i: i) if row_numbers is None else (lambda i: row_numbers[i])
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {row_word} {number(i)} has a negative or non-finite probability; got {p[i].tolist()!r}"
        )
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise DataError(
            f"{where}: probabilities in {row_word} {number(i)} sum to {sums[i]:.6g}, not 1 (tolerance "
            f"{PROBABILITY_TOLERANCE}); give softmax probabilities for every class, not logits"
        )
    return p / sums[:, None]


def paper_auc(references: np.ndarray, predictions: np.ndarray) -> tuple[float | None, dict[int, float]]:
    """The study's AUC: mean hard-label binary ROC AUC over the classes present in the references.

    For class ``c``: ``y_true = references == c``; ``y_score = 0`` if the prediction is another class
    present in the references, else 1 (so a prediction of an absent class is positive for every class).

    Returns:
        ``(mean AUC or None, {class index: AUC})``; ``None`` with fewer than two classes present.
    """
    from sklearn.metrics import roc_auc_score

    present = np.unique(references)
    if len(present) < 2:
        return None, {}
    per_class: dict[int, float] = {}
    for c in present:
        y_true = (references == c).astype(int)
        y_score = np.where(np.isin(predictions, present) & (predictions != c), 0, 1)
        per_class[int(c)] = float(roc_auc_score(y_true, y_score))
    return float(np.mean(list(per_class.values()))), per_class


def ovr_auc(references: np.ndarray, probabilities: np.ndarray) -> tuple[float | None, dict[int, float]]:
    """One-vs-rest ROC AUC from probabilities, averaged over the classes present in the references.

    Returns:
        ``(mean AUC or None, {class index: AUC})``; ``None`` with fewer than two classes present.
    """
    from sklearn.metrics import roc_auc_score

    present = np.unique(references)
    if len(present) < 2:
        return None, {}
    per_class = {
        int(c): float(roc_auc_score((references == c).astype(int), probabilities[:, c])) for c in present
    }
    return float(np.mean(list(per_class.values()))), per_class


def _per_class(references, predictions, label_names, auc_per_class) -> dict[str, dict]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predictions, labels=labels, average=None, zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int((predictions == i).sum()),
            "auc": auc_per_class.get(i),
        }
        for i, name in enumerate(label_names)
    }


def paper_scores(references: np.ndarray, predictions: np.ndarray, label_names: Sequence[str]) -> dict:
    """Score hard predictions exactly as the study did (see the module docstring).

    Args:
        references: Label indices of the test images.
        predictions: Predicted label indices.
        label_names: The model's class names.

    Returns:
        A dict with ``accuracy``, ``recall``, ``precision``, ``f1``, ``auc`` (fractions), ``labels`` (the
        classes averaged over), ``per_class`` and ``confusion_matrix``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    present = sorted(int(c) for c in np.unique(references))
    precision, recall, f1, _ = precision_recall_fscore_support(
        references, predictions, labels=present, average="macro", zero_division=0
    )
    auc, auc_per_class = paper_auc(references, predictions)
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "auc": _float(auc),
        "labels": [label_names[c] for c in present],
        "auc_labels": [label_names[c] for c in sorted(auc_per_class)],
        "per_class": _per_class(references, predictions, label_names, auc_per_class),
        "confusion_matrix": confusion_matrix(
            references, predictions, labels=list(range(len(label_names)))
        ).tolist(),
    }


def standard_scores(
    references: np.ndarray,
    predictions: np.ndarray,
    label_names: Sequence[str],
    probabilities: np.ndarray | None = None,
) -> dict:
    """Score predictions with macro metrics over all classes and AUC from probabilities.

    Args:
        references: Label indices of the test images.
        predictions: Predicted label indices.
        label_names: The model's class names.
        probabilities: ``(n, len(label_names))`` class probabilities, or None (then ``auc`` is None).

    Returns:
        A dict with ``accuracy``, ``balanced_accuracy``, ``recall``, ``precision``, ``f1``, ``auc``,
        ``labels``, ``auc_labels``, ``per_class`` and ``confusion_matrix``.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = list(range(len(label_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        references, predictions, labels=labels, average="macro", zero_division=0
    )
    with warnings.catch_warnings():
        # It warns when a predicted class is absent from the references; that is expected here.
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(references, predictions)
    auc, auc_per_class = (None, {}) if probabilities is None else ovr_auc(references, probabilities)
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "balanced_accuracy": float(balanced),
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "auc": _float(auc),
        "labels": list(label_names),
        "auc_labels": [label_names[c] for c in sorted(auc_per_class)],
        "per_class": _per_class(references, predictions, label_names, auc_per_class),
        "confusion_matrix": confusion_matrix(references, predictions, labels=labels).tolist(),
    }


# --- bootstrap -------------------------------------------------------------------------------------------


def confusion_stack(references: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrices of many resamples at once: ``(B, n)`` label arrays -> ``(B, C, C)`` counts."""
    b = references.shape[0]
    flat = (np.arange(b)[:, None] * n_classes * n_classes + references * n_classes + predictions).ravel()
    return np.bincount(flat, minlength=b * n_classes * n_classes).reshape(b, n_classes, n_classes)


def summary_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """``standard`` accuracy, balanced accuracy and macro P/R/F1 from ``(B, C, C)`` confusion matrices.

    Same definitions as scikit-learn with ``zero_division=0``; F-score per class is ``2tp / (predicted +
    support)``, averaged over all classes.
    """
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    support = cm.sum(axis=2).astype(np.float64)
    predicted = cm.sum(axis=1).astype(np.float64)
    n = cm.sum(axis=(1, 2)).astype(np.float64)

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    recall = ratio(tp, support)
    present = support > 0
    with np.errstate(invalid="ignore"):
        balanced = np.where(present, recall, 0).sum(axis=1) / present.sum(axis=1)
    return {
        "accuracy": tp.sum(axis=1) / n,
        "balanced_accuracy": balanced,
        "recall": recall.mean(axis=1),
        "precision": ratio(tp, predicted).mean(axis=1),
        "f1": ratio(2 * tp, predicted + support).mean(axis=1),
    }


def _binary_auc_rows(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann-Whitney U with mid-ranks for ties); NaN where a row lacks a class."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = y_true.sum(axis=1).astype(np.float64)
    n_neg = y_true.shape[1] - n_pos
    rank_sum = np.where(y_true, ranks, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _resample_metrics(ref: np.ndarray, pred: np.ndarray, prob: np.ndarray | None, n_classes: int) -> dict:
    """Metrics of ``(B, n)`` resamples, each an array of length B (NaN where undefined)."""
    values = summary_from_confusion(confusion_stack(ref, pred, n_classes))
    if prob is None:
        values["auc"] = np.full(ref.shape[0], np.nan)
    else:
        per_class = np.stack([_binary_auc_rows(ref == c, prob[..., c]) for c in range(n_classes)], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
            values["auc"] = np.nanmean(per_class, axis=1)
    return values


def bootstrap_ci(
    references: np.ndarray,
    predictions: np.ndarray,
    n_classes: int,
    probabilities: np.ndarray | None = None,
    *,
    patient_ids: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """95% percentile bootstrap intervals of the ``standard`` metrics (resampling scheme: module docstring).

    Returns:
        ``{"level", "method", "unit", "n_bootstrap", "seed", "intervals": {metric: [low, high] or None}}``.
    """
    rng = np.random.default_rng(seed)
    n = len(references)
    if patient_ids is None:
        unit = "image"
        idx = rng.integers(0, n, size=(n_bootstrap, n))
        values = _resample_metrics(
            references[idx],
            predictions[idx],
            None if probabilities is None else probabilities[idx],
            n_classes,
        )
    else:
        unit = "patient"
        patients, inverse = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
        members = [np.flatnonzero(inverse == k) for k in range(len(patients))]
        draws = rng.integers(0, len(patients), size=(n_bootstrap, len(patients)))
        rows = []
        for draw in draws:
            i = np.concatenate([members[k] for k in draw])
            rows.append(
                _resample_metrics(
                    references[i][None],
                    predictions[i][None],
                    None if probabilities is None else probabilities[i][None],
                    n_classes,
                )
            )
        values = {m: np.concatenate([r[m] for r in rows]) for m in CI_METRICS}
    tail = (1 - CI_LEVEL) / 2 * 100
    intervals = {}
    for metric in CI_METRICS:
        v = values[metric][~np.isnan(values[metric])]
        intervals[metric] = None if len(v) == 0 else [float(x) for x in np.percentile(v, [tail, 100 - tail])]
    return {
        "level": CI_LEVEL,
        "method": "percentile bootstrap",
        "unit": unit,
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "intervals": intervals,
    }


# --- the public entry point ---------------------------------------------------------------------------------


def _protocol_scores(
    protocol, references, predictions, label_names, probabilities, patient_ids, n_bootstrap, seed
):
    if protocol == "paper":
        result = paper_scores(references, predictions, label_names)
    else:
        result = standard_scores(references, predictions, label_names, probabilities)
        result["ci"] = (
            None
            if n_bootstrap == 0
            else bootstrap_ci(
                references,
                predictions,
                len(label_names),
                probabilities,
                patient_ids=patient_ids,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        )
    return {"protocol": protocol, "n": len(references), **result}


def _check_column(values, n: int, name: str) -> list[str] | None:
    if values is None:
        return None
    values = [str(v) for v in values]
    if len(values) != n:
        raise DataError(f"{name} has {len(values)} entries for {n} images")
    return values


def score(
    references: Sequence,
    predictions: Sequence,
    *,
    label_names: Sequence[str],
    probabilities=None,
    countries: Sequence[str] | None = None,
    patient_ids: Sequence[str] | None = None,
    protocol: str = "paper",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Score a classifier's predictions on a test set, overall and per country.

    Args:
        references: True labels, as indices into ``label_names`` or plane names.
        predictions: Predicted labels, likewise.
        label_names: The model's class names, in label order (e.g. ``taxonomy.PLANES``).
        probabilities: Optional ``(n, len(label_names))`` class probabilities; rows must sum to 1 within
            ``PROBABILITY_TOLERANCE`` (they are then rescaled exactly), otherwise they are refused.
        countries: Optional country of each image; adds ``per_country`` results.
        patient_ids: Optional patient of each image; when given, ``standard`` bootstrap intervals
            resample patients instead of images.
        protocol: ``"paper"`` (the study's table) or ``"standard"``; see the module docstring.
        n_bootstrap: Bootstrap resamples for ``standard`` intervals (0 for none).
        seed: Seed of the bootstrap.

    Returns:
        A JSON-serialisable dict: ``protocol``, ``n``, ``label_names``, ``accuracy``, ``recall``,
        ``precision``, ``f1``, ``auc`` (fractions; ``None`` when undefined), ``labels``, ``auc_labels``,
        ``per_class``, ``confusion_matrix`` (rows reference, columns prediction), ``per_country``
        (``{country: same keys}``, empty without countries) and, for ``standard``,
        ``balanced_accuracy`` and ``ci``.

    Raises:
        ConfigError: For an unknown protocol, a bad ``n_bootstrap``, or probabilities whose width is not
            the number of classes.
        DataError: For an empty test set, mismatched lengths, a label outside the model's classes, or
            probabilities that are negative or do not sum to 1.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    label_names = [str(name) for name in label_names]
    if len(label_names) < 2 or len(set(label_names)) != len(label_names):
        raise ConfigError(f"label_names must be at least two distinct class names; got {label_names!r}")
    if len(references) != len(predictions):
        raise DataError(f"{len(references)} references but {len(predictions)} predictions")
    n = len(references)
    if n == 0:
        raise DataError("the test set is empty: there are no predictions to score")
    ref = as_labels(references, label_names, what="reference")
    pred = as_labels(predictions, label_names, what="prediction")
    prob = None if probabilities is None else check_probabilities(probabilities, n, label_names)
    countries = _check_column(countries, n, "countries")
    patient_ids = _check_column(patient_ids, n, "patient_ids")

    result = _protocol_scores(protocol, ref, pred, label_names, prob, patient_ids, n_bootstrap, seed)
    result = {"label_names": label_names, **result, "per_country": {}}
    if countries is not None:
        country_array = np.asarray(countries)
        for country in sorted(set(countries)):
            rows = np.flatnonzero(country_array == country)
            result["per_country"][country] = _protocol_scores(
                protocol,
                ref[rows],
                pred[rows],
                label_names,
                None if prob is None else prob[rows],
                None if patient_ids is None else [patient_ids[i] for i in rows],
                n_bootstrap,
                seed,
            )
    return result
