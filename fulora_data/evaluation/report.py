"""Human-readable output of a scoring result: a terminal summary and a Markdown report folder."""

from __future__ import annotations

import json
from pathlib import Path

from fulora_data.evaluation.metrics import SUMMARY_METRICS
from fulora_data.evaluation.reference import SOURCE, canonical_model, canonical_train_set, published_row
from fulora_data.io import write_report_folder

REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion_matrix.png"
ROC_FILE = "roc_curves.png"
METRICS_FILE = "metrics.json"

_TITLES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "recall": "Recall",
    "precision": "Precision",
    "f1": "F-score",
    "auc": "AUC",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _interval(result: dict, metric: str) -> str:
    ci = result.get("ci")
    interval = ci["intervals"].get(metric) if ci else None
    return "" if interval is None else f"{_pct(interval[0])}-{_pct(interval[1])}"


def _metrics_of(result: dict) -> tuple[str, ...]:
    if result["protocol"] == "standard":
        return ("accuracy", "balanced_accuracy", "recall", "precision", "f1", "auc")
    return SUMMARY_METRICS


def format_summary(result: dict) -> str:
    """Return a short plain-text summary of a ``score`` result, in percent, for the terminal."""
    metrics = _metrics_of(result)
    lines = [f"protocol: {result['protocol']}   images: {result['n']}"]
    coverage = result.get("coverage") or {}
    if coverage.get("partial"):
        lines.append(
            f"PARTIAL: {coverage['scored']} of the {coverage['of']} images of {coverage['test_set']}"
        )
    for metric in metrics:
        interval = _interval(result, metric)
        ci = f"   ({100 * result['ci']['level']:.0f}% CI {interval})" if interval else ""
        lines.append(f"  {_TITLES[metric]:<18} {_pct(result[metric]):>6}{ci}")
    if result["per_country"]:
        lines.append("per country:")
        for country, sub in result["per_country"].items():
            figures = "  ".join(f"{_TITLES[m].lower()} {_pct(sub[m])}" for m in metrics)
            lines.append(f"  {country} (n={sub['n']}): {figures}")
    return "\n".join(lines)


def plot_confusion_matrix(result: dict, path: Path) -> None:
    """Draw the confusion matrix of a ``score`` result as a PNG (matplotlib, no display needed)."""
    from fulora_data.errors import require

    require("matplotlib", "eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = result["label_names"]
    matrix = result["confusion_matrix"]
    figure = Figure(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("Prediction")
    ax.set_ylabel("Reference")
    ax.set_title(f"Confusion matrix ({result['protocol']} protocol, n={result['n']})")
    figure.colorbar(image, ax=ax)
    figure.tight_layout()
    figure.savefig(path, format="png")


def roc_curves(references, probabilities, label_names: list[str]) -> dict | None:
    """One-vs-rest ROC curves from predicted probabilities, per class present in the references.

    These are the curves under the ``standard`` protocol's AUC (scikit-learn's ``roc_curve`` and
    ``roc_auc_score`` of ``reference == c`` against the probability of ``c``); a class with no positive or
    no negative image has no curve.

    Returns:
        ``{class name: {"fpr": [...], "tpr": [...], "auc": float}}``, or None without probabilities.
    """
    if probabilities is None:
        return None
    import numpy as np

    from fulora_data.errors import require

    metrics = require("sklearn.metrics", "eval")
    references = np.asarray(references)
    scores = np.asarray(probabilities, dtype=np.float64)
    curves = {}
    for index, name in enumerate(label_names):
        truth = references == index
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = metrics.roc_curve(truth, scores[:, index])
        curves[name] = {
            "fpr": [round(float(v), 6) for v in fpr],
            "tpr": [round(float(v), 6) for v in tpr],
            "auc": float(metrics.roc_auc_score(truth, scores[:, index])),
        }
    return curves


def plot_roc_curves(result: dict, path: Path) -> None:
    """Draw the one-vs-rest ROC curves of a result (``result["roc"]``) as a PNG, one line per class."""
    from fulora_data.errors import require

    require("matplotlib", "eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = result["label_names"]
    figure = Figure(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for index, name in enumerate(names):
        curve = result["roc"].get(name)
        if curve is None:
            continue
        ax.plot(
            curve["fpr"],
            curve["tpr"],
            color=colours[index % len(colours)],
            label=f"{name} (AUC {curve['auc']:.3f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(f"ROC, one vs rest (n={result['n']})")
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _markdown(result: dict, model_name: str | None, train_set: str | None) -> str:
    model_id = canonical_model(model_name) if model_name else None
    set_id = canonical_train_set(train_set) if train_set else None
    title = "Zero-shot evaluation"
    if model_name:
        title += f": {model_name}" + (f" trained on {train_set}" if train_set else "")
    metrics = _metrics_of(result)
    has_ci = bool(result.get("ci"))
    out = [f"# {title}", ""]
    out.append(
        f"Protocol `{result['protocol']}` on {result['n']} test images; classes of the model: "
        f"{', '.join(result['label_names'])}. Macro averages are over: {', '.join(result['labels'])}; "
        f"AUC over: {', '.join(result['auc_labels']) or 'none (undefined)'}."
    )
    coverage = result.get("coverage") or {}
    if coverage.get("partial"):
        out.append(
            f"**Partial:** these figures are on {coverage['scored']} of the {coverage['of']} images of "
            f"{coverage['test_set']} (--allow-partial); they are not comparable with figures on the whole set."
        )
    if result["protocol"] == "paper":
        out.append(
            "The `paper` protocol reproduces the study's table, including its AUC on hard labels in which a "
            "prediction of a class absent from the references counts as positive for every class."
        )
    out += ["", "## Overall (percent)", ""]
    header = "| Metric | fulora |" + (" 95% CI |" if has_ci else "")
    out += [header, "|---|---:|" + ("---:|" if has_ci else "")]
    for metric in metrics:
        row = f"| {_TITLES[metric]} | {_pct(result[metric])} |"
        out.append(row + (f" {_interval(result, metric) or 'n/a'} |" if has_ci else ""))
    if has_ci:
        ci = result["ci"]
        out += [
            "",
            f"Intervals: {ci['method']}, {ci['n_bootstrap']} resamples of {ci['unit']}s, seed {ci['seed']}.",
        ]

    out += ["", "## Beside the study's published row", ""]
    published = published_row(model_name, train_set)
    if published is None:
        known = f"model {model_name!r}" if model_name else "no model name"
        known += f", training set {train_set!r}" if train_set else ", no training set"
        out.append(
            f"No published row to compare with ({known}); the study reports densenet169, mobilenet_v2, "
            "efficientnet_b0, resnet18 and vit_b_16 trained on ES, ES+DA, HB and HB+DA."
        )
    else:
        if result["protocol"] != "paper":
            out += [
                "The study's figures use the `paper` protocol; these use `standard`, so they are not "
                "directly comparable. Run with `--protocol paper` to compare like with like.",
                "",
            ]
        out += [
            f"Study: {model_id} on {set_id} ({published['n_real']} real + {published['n_synthetic']} "
            f"synthetic training images). Source: {SOURCE}.",
            "",
            "| Metric | fulora | study | difference |",
            "|---|---:|---:|---:|",
        ]
        for metric in SUMMARY_METRICS:
            ours = result[metric]
            diff = "n/a" if ours is None else f"{100 * ours - published[metric]:+.2f}"
            out.append(f"| {_TITLES[metric]} | {_pct(ours)} | {published[metric]:.2f} | {diff} |")

    out += [
        "",
        "## Per class (percent)",
        "",
        "| Class | support | predicted | precision | recall | F-score | AUC |",
    ]
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in result["per_class"].items():
        out.append(
            f"| {name} | {row['support']} | {row['predicted']} | {_pct(row['precision'])} | "
            f"{_pct(row['recall'])} | {_pct(row['f1'])} | {_pct(row['auc'])} |"
        )

    if result["per_country"]:
        out += ["", "## Per country (percent)", ""]
        out.append("| Country | n | " + " | ".join(_TITLES[m] for m in metrics) + " |")
        out.append("|---|---:|" + "---:|" * len(metrics))
        for country, sub in result["per_country"].items():
            out.append(f"| {country} | {sub['n']} | " + " | ".join(_pct(sub[m]) for m in metrics) + " |")

    names = result["label_names"]
    pictures = f"![Confusion matrix]({CONFUSION_FILE})"
    if result.get("roc"):
        pictures += f" ![ROC curves, one vs rest]({ROC_FILE})"
    heading = "Confusion matrix and ROC curves" if result.get("roc") else "Confusion matrix"
    out += ["", f"## {heading}", "", pictures, ""]
    if result.get("roc"):
        out += [
            "ROC curves: one class against the rest, from the predicted probabilities (the `standard` "
            "protocol's AUC, whatever the protocol of the table above), for each class present in the "
            "test set.",
            "",
        ]
    out.append("| reference \\ prediction | " + " | ".join(names) + " |")
    out.append("|---|" + "---:|" * len(names))
    for name, row in zip(names, result["confusion_matrix"], strict=True):
        out.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    out += ["", f"All figures: `{METRICS_FILE}`.", ""]
    return "\n".join(out)


def write_report(
    result: dict, out_dir: str | Path, *, model_name: str | None = None, train_set: str | None = None
) -> Path:
    """Write a Markdown report of a ``score`` result, with a confusion-matrix PNG and the raw figures.

    The folder gets ``report.md``, ``confusion_matrix.png``, ``roc_curves.png`` (when the result has
    ``roc``, see :func:`roc_curves`) and ``metrics.json``; each file is written to a
    temporary name and renamed, so none is ever half-written. When the study published a row for the same
    model and training set, the report puts our figures beside it.

    Args:
        result: What ``score`` returned.
        out_dir: The report folder (created if needed).
        model_name: The classifier, e.g. ``resnet18`` (any spelling of the study's names).
        train_set: The training set, e.g. ``HB+DA``.

    Returns:
        The path of ``report.md``.
    """
    payload = {"model_name": model_name, "train_set": train_set, **result}

    def draw(work: Path) -> None:
        plot_confusion_matrix(result, work / CONFUSION_FILE)
        if result.get("roc"):
            plot_roc_curves(result, work / ROC_FILE)
        (work / METRICS_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (work / REPORT_FILE).write_text(_markdown(result, model_name, train_set), encoding="utf-8")

    return write_report_folder(out_dir, draw, owned=(ROC_FILE,), last=REPORT_FILE)
