"""What the ``fulora evaluate`` commands run: score a predictions file, or run a checkpoint on a dataset."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.evaluation.metrics import score
from fulora_data.evaluation.predictions import read_predictions
from fulora_data.evaluation.report import write_report

_SPEC = re.compile(r"^(?P<name>[\w\-]+)(?:/(?P<config>[\w\-.+]+))?:(?P<split>[\w\-]+)$")


def parse_data_spec(spec: str) -> tuple[str, str | None, str]:
    """Split a data spec ``NAME[/CONFIG]:SPLIT`` (``african:test``, ``african/Ghana:test``).

    Returns:
        ``(name, config or None, split)``.

    Raises:
        ConfigError: If the spec does not have that form.
    """
    match = _SPEC.match(str(spec).strip())
    if match is None:
        raise ConfigError(f"--data must look like NAME[/CONFIG]:SPLIT, e.g. african:test; got {spec!r}")
    return match["name"], match["config"], match["split"]


def _patients(patient_ids: list[str] | None, where: str) -> list[str]:
    if patient_ids is None or any(not str(p).strip() for p in patient_ids):
        raise ConfigError(f"bootstrap by patient needs a patient id for every image, and {where} lacks some")
    return [str(p) for p in patient_ids]


def evaluate_predictions(
    path: str | os.PathLike,
    *,
    protocol: str = "paper",
    report_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
    train_set: str | None = None,
    ci_by_patient: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Score a predictions CSV (see ``fulora_data.evaluation.predictions``) and optionally write a report.

    Args:
        path: The CSV file.
        protocol: ``paper`` or ``standard``.
        report_dir: Where to write the Markdown report, or None.
        model_name: The classifier, to find the study's published row (e.g. ``resnet18``).
        train_set: Its training set (``ES``, ``ES+DA``, ``HB``, ``HB+DA``).
        ci_by_patient: Bootstrap patients (the CSV's ``patient_id`` column) instead of images.
        n_bootstrap: Bootstrap resamples for ``standard`` intervals.
        seed: Bootstrap seed.

    Returns:
        The ``score`` result, plus ``predictions_file``, ``model_name``, ``train_set`` and ``report``
        (the report's path, or None).
    """
    data = read_predictions(path)
    result = score(
        data["references"],
        data["predictions"],
        label_names=data["label_names"],
        probabilities=data["probabilities"],
        countries=data["countries"],
        patient_ids=_patients(data["patient_ids"], str(path)) if ci_by_patient else None,
        protocol=protocol,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    result = {"predictions_file": str(path), "model_name": model_name, "train_set": train_set, **result}
    report = (
        write_report(result, report_dir, model_name=model_name, train_set=train_set) if report_dir else None
    )
    result["report"] = None if report is None else str(report)
    return result


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_spec: str,
    *,
    protocol: str = "paper",
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: str | None = None,
    report_dir: str | os.PathLike | None = None,
    ci_by_patient: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Run a trained classifier on a prepared test split and score it, zero-shot.

    Args:
        checkpoint: The classifier checkpoint (``fulora train classifier`` output), or a Hub model repo
            ``ORG/NAME[@REVISION]`` holding one (``fulora model push``).
        data_spec: ``NAME[/CONFIG]:SPLIT``, e.g. ``african:test``, or a published fulora dataset
            ``ORG/NAME[@REVISION][/CONFIG]:SPLIT``, e.g. ``fulora/african@v1.0.0/all:test``.
        protocol: ``paper`` or ``standard``.
        source: The dataset's archive or extracted folder (see ``fulora data prepare``).
        cache_dir: Where built datasets are cached.
        batch_size: Images per forward pass.
        device: Torch device; None picks one.
        report_dir: Where to write the Markdown report, or None.
        ci_by_patient: Bootstrap patients (the dataset's ``patient_id``) instead of images.
        n_bootstrap: Bootstrap resamples for ``standard`` intervals.
        seed: Bootstrap seed.

    Returns:
        The ``score`` result (per country when the split has a ``country`` column), plus ``checkpoint``,
        ``data``, ``model_name``, ``train_set`` and ``report``.

    Raises:
        ConfigError: For a bad data spec or split name.
        SourceNotFoundError: If the checkpoint does not exist.
        DataError: If the split is empty.
    """
    from fulora_data.hub_pull import load_repo_dataset, parse_hub_data_spec, resolve_model
    from fulora_data.prepare import column, prepare

    hub_data = parse_hub_data_spec(data_spec)
    name, config, split = hub_data if hub_data else parse_data_spec(data_spec)
    if not Path(checkpoint).exists() and "/" not in str(checkpoint):
        raise SourceNotFoundError(f"classifier checkpoint {str(checkpoint)!r} does not exist")
    checkpoint = resolve_model(checkpoint, kind="classifier")  # a local path, or ORG/NAME[@REVISION]
    if hub_data:
        splits = load_repo_dataset(name, config)
    else:
        splits = prepare(name, config, source=source, cache_dir=cache_dir)
    if split not in splits:
        raise ConfigError(f"{data_spec!r}: {name} has no split {split!r}; it has {', '.join(splits)}")
    dataset = splits[split]
    if len(dataset) == 0:
        raise DataError(f"{data_spec!r}: the test set is empty, there is nothing to evaluate")
    from fulora_data.classifier import predict

    out = predict(Path(checkpoint), dataset, batch_size=batch_size, device=device)
    countries = column(dataset, "country") if "country" in dataset.column_names else None
    patient_ids = None
    if ci_by_patient:
        ids = column(dataset, "patient_id") if "patient_id" in dataset.column_names else None
        patient_ids = _patients(ids, data_spec)
    result = score(
        out["reference"],
        out["prediction"],
        label_names=out["label_names"],
        probabilities=out["probabilities"],
        countries=countries,
        patient_ids=patient_ids,
        protocol=protocol,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    model_name, train_set = out.get("model_name"), out.get("train_set")
    result = {
        "checkpoint": str(checkpoint),
        "data": data_spec,
        "model_name": model_name,
        "train_set": train_set,
        **result,
    }
    report = (
        write_report(result, report_dir, model_name=model_name, train_set=train_set) if report_dir else None
    )
    result["report"] = None if report is None else str(report)
    return result
