"""What the ``fulora evaluate`` commands run: score a predictions file, or run a checkpoint on a dataset."""

from __future__ import annotations

import os
from pathlib import Path

from fulora_data.dataset_ref import DatasetRef
from fulora_data.errors import ConfigError, DataError, OptionValueError
from fulora_data.evaluation.metrics import score
from fulora_data.evaluation.predictions import read_predictions
from fulora_data.evaluation.report import roc_curves, write_report


def _read_spec(data_spec: str, source, cache_dir) -> tuple[str, str | None, str, bool]:
    """``(name, config, split, on_hub)`` of ``--data`` (a :class:`~fulora_data.dataset_ref.DatasetRef` with
    a split); ``name`` is ``ORG/NAME[@REVISION]`` for a published dataset.

    Raises:
        ConfigError: For a bad spec, or ``--source``/``--cache-dir`` given with a published dataset.
    """
    ref = DatasetRef.parse(data_spec, option="--data", split="required")
    if ref.on_hub and (source is not None or cache_dir is not None):
        raise OptionValueError(
            f"--data {data_spec!r} is a published dataset, read from the Hugging Face cache: --source and "
            "--cache-dir do not apply to it"
        )
    return ref.repo, ref.config, ref.split, ref.on_hub


def _load_splits(name: str, config: str | None, on_hub: bool, source, cache_dir):
    if on_hub:
        from fulora_data.hub_pull import load_repo_dataset

        return load_repo_dataset(name, config)
    from fulora_data.prepare import prepare

    return prepare(name, config, source=source, cache_dir=cache_dir)


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
    data_spec: str | None = None,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_partial: bool = False,
) -> dict:
    """Score a predictions CSV (see ``fulora_data.evaluation.predictions``) and optionally write a report.

    With ``data_spec`` the rows are joined to that test split by ``image_id``: ids outside it, and (unless
    ``allow_partial``) test images without a prediction, are refused with their counts. Without it, a
    file set beside the study's published row must have one row per image of the study's 233-image test
    set (unless ``allow_partial``). The result's ``coverage`` says what was scored.

    Args:
        path: The CSV file.
        protocol: ``paper`` or ``standard``.
        report_dir: Where to write the Markdown report, or None.
        model_name: The classifier, to find the study's published row (e.g. ``resnet18``).
        train_set: Its training set (``ES``, ``ES+DA``, ``HB``, ``HB+DA``).
        ci_by_patient: Bootstrap patients (the CSV's ``patient_id`` column) instead of images.
        n_bootstrap: Bootstrap resamples for ``standard`` intervals.
        seed: Bootstrap seed.
        data_spec: The test split as ``NAME[/CONFIG]:SPLIT`` (e.g. ``african:test``), or a published fulora
            dataset ``ORG/NAME[@REVISION][/CONFIG]:SPLIT``, to join to by image id.
        source: That dataset's archive or folder (not for a published dataset).
        cache_dir: Where built datasets are cached (not for a published dataset).
        allow_partial: Score a subset of the test set; the report then says so.

    Returns:
        The ``score`` result, plus ``predictions_file``, ``model_name``, ``train_set``, ``coverage`` and
        ``report`` (the report's path, or None).
    """
    if data_spec is not None:
        _read_spec(data_spec, source, cache_dir)  # a bad spec fails before the file is read
    data = read_predictions(path)
    coverage = _coverage(data, path, data_spec, source, cache_dir, model_name, train_set, allow_partial)
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
    result = {
        "predictions_file": str(path),
        "model_name": model_name,
        "train_set": train_set,
        "coverage": coverage,
        **result,
        "roc": roc_curves(data["references"], data["probabilities"], data["label_names"]),
    }
    report = (
        write_report(result, report_dir, model_name=model_name, train_set=train_set) if report_dir else None
    )
    result["report"] = None if report is None else str(report)
    return result


def evaluate_split(
    checkpoint: str | os.PathLike,
    dataset,
    *,
    protocol: str = "paper",
    batch_size: int = 32,
    device: str | None = None,
    ci_by_patient: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    where: str = "the dataset",
) -> dict:
    """Run a trained classifier on one split and score it: ``score(predict(checkpoint, dataset))``.

    Args:
        checkpoint: The classifier (a training output folder, its ``model/`` folder or its weights file).
        dataset: A ``datasets.Dataset`` split with ``image`` and ``label`` (and optionally ``country`` and
            ``patient_id``) columns.
        protocol: ``paper`` or ``standard``.
        batch_size: Images per forward pass.
        device: Torch device; None picks one.
        ci_by_patient: Bootstrap patients (the split's ``patient_id``) instead of images.
        n_bootstrap: Bootstrap resamples for ``standard`` intervals.
        seed: Bootstrap seed.
        where: The split's name, for messages.

    Returns:
        The ``score`` result (per country when the split has a ``country`` column), plus ``model_name`` and
        ``train_set`` from the checkpoint.
    """
    from fulora_data.builders.build import column
    from fulora_data.classifier.predict import predict

    out = predict(checkpoint, dataset, batch_size=batch_size, device=device)
    countries = column(dataset, "country") if "country" in dataset.column_names else None
    patient_ids = None
    if ci_by_patient:
        ids = column(dataset, "patient_id") if "patient_id" in dataset.column_names else None
        patient_ids = _patients(ids, where)
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
    roc = roc_curves(out["reference"], out["probabilities"], out["label_names"])
    return {"model_name": out.get("model_name"), "train_set": out.get("train_set"), **result, "roc": roc}


# The study's table is on the whole African test split (``AfricanBuilder.EXPECTED_SPLITS``).
STUDY_TEST_SIZE = 233


def _coverage(data, path, data_spec, source, cache_dir, model_name, train_set, allow_partial) -> dict:
    """Check which test images a predictions file covers (see ``evaluate_predictions``)."""
    from fulora_data.evaluation.reference import published_row

    n = len(data["references"])
    if data_spec is None:
        if published_row(model_name, train_set) is None or n == STUDY_TEST_SIZE:
            return {"test_set": None, "scored": n, "of": None, "partial": False}
        if not allow_partial:
            raise DataError(
                f"{path} has {n} rows but the study's row it would be set beside is on the {STUDY_TEST_SIZE}-image "
                "African test set; join it by image id with --data african:test, or pass --allow-partial"
            )
        return {
            "test_set": "the study's African test set",
            "scored": n,
            "of": STUDY_TEST_SIZE,
            "partial": True,
        }
    from fulora_data.prepare import column

    name, config, split, on_hub = _read_spec(data_spec, source, cache_dir)
    if data["image_ids"] is None:
        raise DataError(f"{path} has no image_id column, which joining it to {data_spec} needs")
    splits = _load_splits(name, config, on_hub, source, cache_dir)
    if split not in splits:
        raise ConfigError(f"{data_spec!r}: {name} has no split {split!r}; it has {', '.join(splits)}")
    dataset = splits[split]
    names = dataset.features["label"].names
    truth = dict(zip(column(dataset, "image_id"), (names[i] for i in column(dataset, "label")), strict=True))
    ids = data["image_ids"]
    foreign = [i for i in ids if i not in truth]
    if foreign:
        raise DataError(
            f"{path}: {len(foreign)} of {n} image ids are not in {data_spec} (first: {foreign[0]!r}); "
            "these are predictions for another test set"
        )
    missing = len(truth) - n
    if missing and not allow_partial:
        raise DataError(
            f"{path} predicts {n} of the {len(truth)} images of {data_spec} ({missing} missing); "
            "predict them all, or pass --allow-partial to score this subset"
        )
    wrong = sum(
        1 for i, ref in zip(ids, data["references"], strict=True) if data["label_names"][ref] != truth[i]
    )
    if wrong:
        raise DataError(
            f"{path}: the reference of {wrong} of {n} images differs from their label in {data_spec}"
        )
    return {"test_set": data_spec, "scored": n, "of": len(truth), "partial": bool(missing)}


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
        source: The dataset's archive or extracted folder (see ``fulora data prepare``); not for a
            published dataset.
        cache_dir: Where built datasets are cached; not for a published dataset.
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
        ConfigError: For a bad data spec or split name, or a path that holds no classifier (checked once,
            here, before any data is built).
        DataError: If the split is empty.
    """
    from fulora_data.classifier.predict import resolve_checkpoint
    from fulora_data.devices import check_device
    from fulora_data.hub_pull import resolve_model

    check_device(device)  # before any download or build
    name, config, split, on_hub = _read_spec(data_spec, source, cache_dir)
    if Path(checkpoint).exists() or "/" not in str(checkpoint):
        folder = resolve_checkpoint(checkpoint)
    else:  # ORG/NAME[@REVISION]: a classifier pushed with `fulora model push`
        folder = resolve_checkpoint(resolve_model(checkpoint, kind="classifier"))
    splits = _load_splits(name, config, on_hub, source, cache_dir)
    if split not in splits:
        raise ConfigError(f"{data_spec!r}: {name} has no split {split!r}; it has {', '.join(splits)}")
    dataset = splits[split]
    if len(dataset) == 0:
        raise DataError(f"{data_spec!r}: the test set is empty, there is nothing to evaluate")
    result = evaluate_split(
        folder,
        dataset,
        protocol=protocol,
        batch_size=batch_size,
        device=device,
        ci_by_patient=ci_by_patient,
        n_bootstrap=n_bootstrap,
        seed=seed,
        where=data_spec,
    )
    model_name, train_set = result.pop("model_name"), result.pop("train_set")
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
