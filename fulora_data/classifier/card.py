"""Render a trained classifier's model card from ``cards/classifier_card.md`` and its ``config.json``.

Every value in the card comes from the saved config, weights and training history, never typed by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fulora_data.errors import ConfigError, DataError, redact
from fulora_data.hub import PLACEHOLDER
from fulora_data.io import atomic_write_text

TEMPLATE = "classifier_card.md"  # in cards/, read with fulora_data.cards.template()

TRAIN_SET_DESCRIPTIONS = {
    "ES": "the Spanish FETAL_PLANES_DB training images without Maternal cervix",
    "ES+DA": "the Spanish FETAL_PLANES_DB training images without Maternal cervix, with data augmentation",
    "HB": "the hybrid set: real Spanish FETAL_PLANES_DB images and synthetic FU-LoRA images",
    "HB+DA": "the hybrid set (real Spanish and synthetic FU-LoRA images), with data augmentation",
}
# torchvision's ImageNet weights that are also a Hub repository (timm's ``tv_in1k`` copies are torchvision's
# IMAGENET1K_V1 weights, the DEFAULT fulora loads for these architectures). The other architectures' default
# torchvision weights have no Hub copy, so their cards name no base model rather than a repo that is not it.
BASE_MODELS = {"resnet18": "timm/resnet18.tv_in1k"}
RESULTS_FILE = "eval_results.json"
RESULTS_BEGIN, RESULTS_END = "<!-- fulora:results -->", "<!-- fulora:results-end -->"
_METRICS = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("auc", "AUC"),
)
# How each metric was computed, per protocol (``fulora_data.evaluation.metrics``' docstring): the
# ``model-index`` entries' ``args``, in scikit-learn's argument names where there is one.
_METRIC_ARGS = {
    "paper": {
        "precision": {"average": "macro", "labels": "classes present in the references", "zero_division": 0},
        "recall": {"average": "macro", "labels": "classes present in the references", "zero_division": 0},
        "f1": {"average": "macro", "labels": "classes present in the references", "zero_division": 0},
        "auc": {"multi_class": "ovr", "average": "macro", "scores": "hard predictions (the study's)"},
    },
    "standard": {
        "precision": {"average": "macro", "labels": "all the model's classes", "zero_division": 0},
        "recall": {"average": "macro", "labels": "all the model's classes", "zero_division": 0},
        "f1": {"average": "macro", "labels": "all the model's classes", "zero_division": 0},
        "auc": {"multi_class": "ovr", "average": "macro", "scores": "predicted probabilities"},
    },
}


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _history_table(history: list[dict]) -> str:
    if not history:
        return ""
    lines = [
        "| Epoch | Train loss | Train accuracy | Validation accuracy | Validation loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in history:
        lines.append(
            f"| {row['epoch']} | {_number(row['train_loss'])} | {_number(row['train_accuracy'])} | "
            f"{_number(row['validation_accuracy'])} | {_number(row['validation_loss'])} |"
        )
    return "\n".join(lines)


def _source_text(value) -> str:
    """A source as a public card may name it: a file by name and sha256, never a local folder's name."""
    if isinstance(value, dict) and "file" in value:
        return f"`{value['file']}` (sha256 `{value.get('sha256', '')[:16]}`)"
    if value is None:
        return "downloaded from its published location"
    return "a local folder"


def training_data(config: dict) -> tuple[list[str] | None, str]:
    """What a classifier was trained on, from what the run read: the card's ``datasets`` and its data line.

    A run that read a published dataset (``--data ORG/NAME``) names that repo, revision and commit; a run
    that built its data locally says so, with the builder, config, options, sources (file name and sha256)
    and the built data's fingerprint, and claims no Hub dataset.

    Returns:
        ``(datasets, text)``: the Hub datasets for the metadata (None for a local build) and the Markdown.
    """
    dataset = config.get("dataset", {})
    train = config.get("train_config", {})
    if dataset.get("repo"):
        repo = dataset["repo"]
        where = f"`{repo}`" + (f" at revision `{dataset['revision']}`" if dataset.get("revision") else "")
        if dataset.get("commit"):
            where += f" (commit `{dataset['commit'][:12]}`)"
        if dataset.get("config"):
            where += f", config `{dataset['config']}`"
        return [repo], f"the published dataset {where}"
    name, config_name = dataset.get("name", "unknown"), dataset.get("config", "unknown")
    parts = [f"built locally by fulora (not a Hub dataset): `{name}` config `{config_name}`"]
    options = train.get("dataset_options") or {}
    if options:
        shown = ", ".join(
            f"`{key}={value}`" if not isinstance(value, dict) else f"`{key}` = {_source_text(value)}"
            for key, value in sorted(options.items())
        )
        parts.append(f"options {shown}")
    if name == "hybrid":
        parts.append(f"real source {_source_text(train.get('source'))}")
        parts.append(f"synthetic source {_source_text(train.get('synthetic_source'))}")
    elif "source" in train:
        parts.append(f"source {_source_text(train.get('source'))}")
    if dataset.get("fingerprint"):
        parts.append(f"built data fingerprint `{dataset['fingerprint']}`")
    return None, "; ".join(parts)


_POLICY_TEXT = {
    "patient": ", whole patients",
    "study": ", random images as in the study",
    "the dataset's own validation split": ", the dataset's own validation split",
}


def render_model_card(
    config: dict,
    *,
    history: list[dict] | None = None,
    parameters: int | None = None,
    results: list[dict] | None = None,
    repo_id: str | None = None,
) -> str:
    """Render the card of a classifier from its saved ``config.json`` content.

    The metadata is a ``ModelCardData`` (``ModelCard.from_template``): ``base_model`` only where the
    initial weights are a Hub repository, ``datasets`` only the Hub dataset the run read (``--data``; a
    locally built set is described in the body, see :func:`training_data`), and a ``model-index`` with the
    zero-shot results when the model was evaluated (``results``, see :func:`record_results`).

    Args:
        config: The classifier's config (as written by ``fulora_data.classifier.train``).
        history: Per-epoch training rows, shown as a table.
        parameters: The model's parameter count, if known.
        results: Recorded evaluations (the content of ``eval_results.json``).
        repo_id: The Hub repository the snippet downloads from (default: ``fulora_data.hub.PLACEHOLDER``,
            which ``push_model`` replaces with the repo it pushes to).

    Returns:
        The card's Markdown, starting with its YAML metadata.

    Raises:
        SourceNotFoundError: If the template file is missing (a broken installation).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from fulora_data.cards import template

    train = config["train_config"]
    weights = config.get("weights", "none")
    initialisation = {
        "imagenet": "torchvision ImageNet weights",
        "file": "ImageNet weights from a local file",
        "none": "random (no pretraining)",
    }.get(weights, weights)
    dataset = config.get("dataset", {})
    best = config.get("best", {})
    hub_datasets, data_text = training_data(config)
    title = config.get("title", config["arch"])
    model_name = f"{config['arch']}-{config['train_set']}".lower().replace("+", "-")
    data = ModelCardData(
        # No library_name: the Hub's list of libraries (huggingface.js model-libraries.ts) has none for
        # plain torchvision + safetensors weights; "pytorch" is not on it. The card's snippet loads them.
        pipeline_tag="image-classification",
        license="mit",
        base_model=BASE_MODELS.get(config["arch"]) if weights == "imagenet" else None,
        datasets=hub_datasets,
        metrics=["accuracy"],
        tags=["fulora", "fetal-ultrasound", "image-classification", "torchvision", "safetensors", config["arch"]],
        model_name=model_name,
        eval_results=eval_results(results or []) or None,
    )
    values = {
        "arch": config["arch"],
        "title": title,
        "labels": ", ".join(config["label_names"]),
        "num_classes": config["num_classes"],
        "parameters": f"{parameters:,}" if parameters else "n/a",
        "initialisation": initialisation,
        "image_size": config["image_size"],
        "train_set": config["train_set"],
        "train_set_description": TRAIN_SET_DESCRIPTIONS.get(config["train_set"], config["train_set"]),
        "training_data": data_text,
        "repo_id": repo_id or PLACEHOLDER,
        # ViT-B/16 is built for its input size; the CNNs take any size.
        "get_model_extra": f", image_size={config['image_size']}" if config["arch"] == "vit_b_16" else "",
        "num_images": dataset.get("num_images", "n/a"),
        "train_images": config.get("images", {}).get("train", "n/a"),
        "validation_images": config.get("images", {}).get("validation", "n/a"),
        "validation_policy": _POLICY_TEXT.get(config.get("validation_policy"), ""),
        "augmentation": (
            "RandomRotation(15), RandomResizedCrop(scale 0.08-1), RandomHorizontalFlip"
            if config.get("augment")
            else "none"
        ),
        "learning_rate": train["learning_rate"],
        "momentum": train["momentum"],
        "weight_decay": train["weight_decay"],
        "scheduler": train["scheduler"],
        "batch_size": train["batch_size"],
        "epochs": train["epochs"],
        "seed": train["seed"],
        "mixed_precision": train["mixed_precision"],
        "best_epoch": best.get("epoch", "n/a"),
        "best_accuracy": _number(best.get("accuracy")),
        "best_loss": _number(best.get("loss")),
        "history": _history_table(history or []),
        "synthetic_note": " and synthetic images generated by a LoRA adapter fine-tuned on real ones"
        if dataset.get("name") == "hybrid"
        else "",
        "fulora_version": config.get("fulora_version", "unknown"),
    }
    text = str(ModelCard.from_template(data, template_str=template(TEMPLATE), **values))
    return _with_results_section(text, results or [])


def eval_results(results: list[dict]) -> list:
    """``EvalResult`` entries (the card's ``model-index``) from recorded evaluations, per country too."""
    from huggingface_hub import EvalResult

    entries = []
    for recorded in results:
        protocol = recorded["protocol"]
        scopes = [(recorded.get("dataset_config"), recorded["metrics"], None)]
        scopes += [(config, m, config) for config, m in sorted(recorded.get("per_country", {}).items())]
        for config, metrics, country in scopes:
            for key, label in _METRICS:
                if metrics.get(key) is None:
                    continue
                args = {"protocol": protocol, **_METRIC_ARGS.get(protocol, {}).get(key, {})}
                entries.append(
                    EvalResult(
                        task_type="image-classification",
                        task_name="Fetal plane classification (zero-shot)",
                        dataset_type=recorded["dataset_type"],
                        dataset_name=recorded["dataset_name"],
                        dataset_config=config,
                        dataset_split=recorded["split"],
                        dataset_revision=recorded.get("revision"),
                        dataset_args={"country": country} if country else None,
                        metric_type=key if key != "auc" else "roc_auc",
                        metric_name=f"{label} ({protocol} protocol)",
                        metric_value=round(float(metrics[key]), 6),
                        metric_args=args,
                    )
                )
    return entries


def _with_interval(value, interval) -> str:
    if value is None or not interval:
        return _number(value)
    return f"{_number(value)} [{_number(interval[0])}, {_number(interval[1])}]"


def _data_label(recorded: dict) -> str:
    """The results table's data cell; for a Hub model also the revision and commit that were evaluated."""
    if not recorded.get("model_commit"):
        return recorded["data"]
    return f"{recorded['data']}` (model `{recorded['model_revision']}` = `{recorded['model_commit'][:10]}`)"


def _with_results_section(text: str, results: list[dict]) -> str:
    start, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if not results or start == -1 or end == -1:
        return text
    rows = ["| Data | Protocol | Images | " + " | ".join(label for _, label in _METRICS) + " |"]
    rows.append("|---|---|---:|" + "---:|" * len(_METRICS))
    notes = []
    for recorded in results:
        scopes = [(_data_label(recorded), recorded["metrics"], recorded.get("ci"))] + [
            (f"{recorded['data']} {country}", metrics, None)
            for country, metrics in sorted(recorded["per_country"].items())
        ]
        if recorded.get("ci"):
            ci = recorded["ci"]
            notes.append(
                f"`{recorded['data']}` ({recorded['protocol']}): {int(round(ci.get('level', 0.95) * 100))}% "
                f"{ci.get('method', 'percentile bootstrap')} intervals in brackets, {ci.get('n_bootstrap')} "
                f"resamples by {ci.get('unit', 'image')}, seed {ci.get('seed')}."
            )
        for where, metrics, ci in scopes:
            intervals = (ci or {}).get("intervals") or {}
            cells = [_with_interval(metrics.get(key), intervals.get(key)) for key, _ in _METRICS]
            rows.append(
                f"| `{where}` | {recorded['protocol']} | {metrics.get('n', 'n/a')} | "
                + " | ".join(cells)
                + " |"
            )
    section = (
        f"{RESULTS_BEGIN}\n## Zero-shot results\n\nComputed by `fulora evaluate` on data the model never saw "
        "(also in the card's `model-index`, with how each metric was computed in its `args`):\n\n"
        + "\n".join(rows)
        + ("\n\n" + "\n".join(f"- {note}" for note in notes) if notes else "")
        + f"\n{RESULTS_END}"
    )
    return text[:start] + section + text[end + len(RESULTS_END) :]


def result_record(result: dict) -> dict:
    """What ``eval_results.json`` keeps of an ``evaluate_checkpoint`` result (numbers, data, protocol).

    Data read from the Hub is named by its repo and the revision asked for; data built locally by its
    builder name (``dataset_type``: no Hub repo is claimed) and the builder's version as its revision.
    """
    from fulora_data.dataset_ref import DatasetRef

    spec = result["data"]
    ref = DatasetRef.parse(spec, option="--data", split="required")
    name, config, split = ref.dataset, ref.config, ref.split
    hub = ref.on_hub
    if hub:
        dataset_type, revision = ref.name, ref.revision
    else:
        from fulora_data.builders import get_builder_class

        builder = get_builder_class(name)
        config = config or builder.DEFAULT_CONFIG_NAME
        versions = {c.name: str(c.version) for c in builder.BUILDER_CONFIGS}
        dataset_type, revision = name, versions.get(config)
    keep = ("n", *(key for key, _ in _METRICS))
    ci = result.get("ci")
    return {
        "data": spec,
        "dataset_type": dataset_type,
        "dataset_name": name if hub else f"{name} (built locally by fulora)",
        "dataset_config": config,
        "split": split,
        "revision": revision,
        "protocol": result["protocol"],
        "metrics": {key: result.get(key) for key in keep},
        "ci": {key: ci[key] for key in ("level", "method", "unit", "n_bootstrap", "seed", "intervals") if key in ci}
        if ci
        else None,
        "per_country": {
            c: {key: m.get(key) for key in keep} for c, m in (result.get("per_country") or {}).items()
        },
    }


def write_model_card(model_dir: str | os.PathLike, *, history: list[dict] | None = None) -> Path:
    """Render ``README.md`` into a saved classifier folder (written to a temporary name, then renamed)."""
    from safetensors import safe_open

    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text())
    parameters = 0
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                parameters += _product(handle.get_slice(key).get_shape())
    results = _read_results(folder)
    text = render_model_card(config, history=history, parameters=parameters, results=results)
    return atomic_write_text(folder / "README.md", text)


def _product(shape) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total


def _read_results(folder: Path) -> list[dict]:
    path = folder / RESULTS_FILE
    if not path.is_file():
        return []
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err})") from None
    return results if isinstance(results, list) else []


def _merged(results: list[dict], record: dict) -> list[dict]:
    """One entry per (data, protocol): a new evaluation of the same data replaces the old one."""
    kept = [r for r in results if (r.get("data"), r.get("protocol")) != (record["data"], record["protocol"])]
    return [*kept, record]


def _card_with_results(card_text: str, results: list[dict]) -> str:
    from huggingface_hub import ModelCard

    card = ModelCard(card_text)
    card.data.eval_results = eval_results(results) or None
    if not card.data.model_name:
        card.data.model_name = "fulora-classifier"
    return _with_results_section(str(card), results)


def check_results_target(
    model: str | os.PathLike, *, token: str | None = None, endpoint: str | None = None
) -> dict | None:
    """Where ``--push-results`` will write for ``model``, checked before the evaluation runs.

    Results of a Hub model go in a commit on its main branch (a tag never moves). A revision other than
    main is accepted only when its weights and config are main's (same LFS sha256 and blob ids), so the
    scores never sit next to another model's weights; otherwise this refuses, saying how to publish them.

    Returns:
        ``{"repo", "revision", "commit", "main"}`` for a Hub model (the evaluated revision, its commit and
        main's commit), None for a local folder.

    Raises:
        ConfigError: For a revision whose weights are not main's.
        HubError: If the Hub cannot be asked.
    """
    from fulora_data.classifier.predict import CONFIG_NAME, WEIGHTS_NAME
    from fulora_data.hub_pull import is_repo_spec, parse_repo_spec

    if not is_repo_spec(model):
        return None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    from fulora_data.hub import HubError

    repo_id, revision = parse_repo_spec(str(model), what="--model")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        evaluated = api.repo_info(repo_id, revision=revision).sha
        main = api.repo_info(repo_id, revision="main").sha
        if evaluated != main:

            def ids(commit: str) -> dict:
                paths = api.get_paths_info(repo_id, [WEIGHTS_NAME, CONFIG_NAME], revision=commit)
                return {p.path: (p.lfs.sha256 if p.lfs else p.blob_id) for p in paths}

            differ = ids(evaluated) != ids(main)
        else:
            differ = False
    except (HfHubHTTPError, HTTPError, OSError) as err:
        raise HubError(f"could not check {repo_id} on the Hub: {redact(' '.join(str(err).split()))}") from None
    if differ:
        raise ConfigError(
            f"--push-results: {repo_id}@{revision} (commit {evaluated[:10]}) holds other weights than "
            f"{repo_id}'s main branch, where results are committed (a tag never moves), so its scores would "
            f"describe another model; evaluate {repo_id} (main) to publish there, or `fulora model pull "
            f"{repo_id}@{revision} --local-dir DIR`, evaluate --model DIR --push-results, then push DIR"
        )
    return {"repo": repo_id, "revision": revision or "main", "commit": evaluated, "main": main}


def record_results(
    model: str | os.PathLike,
    result: dict,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> dict:
    """Add an evaluation to a classifier's card (``model-index`` and a results table) and ``eval_results.json``.

    A local model folder is updated in place (``fulora model push`` then publishes the results with it). A
    Hub repo ``ORG/NAME[@REVISION]`` gets a new commit on its main branch with the updated card and
    ``eval_results.json``; tags never move, so a tagged release keeps its card.

    The evaluated revision and its commit are recorded with the numbers (``model_revision``,
    ``model_commit``); a revision whose weights are not main's is refused (``check_results_target``).

    Args:
        model: The ``--model`` that was evaluated: a local checkpoint or a Hub repo id.
        result: What ``fulora_data.evaluation.evaluate_checkpoint`` returned.
        token: Hub token with write access (for a repo).
        endpoint: Hub URL.

    Returns:
        ``{"where", "commit"}``: the folder or repo updated, and the new commit (None for a folder).
    """
    from fulora_data.classifier.predict import resolve_checkpoint
    from fulora_data.hub_pull import is_repo_spec, parse_repo_spec, resolve_model
    from fulora_data.io import atomic_write_json, atomic_write_text

    record = result_record(result)
    if not is_repo_spec(model):
        folder = resolve_checkpoint(model)
        results = _merged(_read_results(folder), record)
        atomic_write_json(folder / RESULTS_FILE, results)
        atomic_write_text(
            folder / "README.md", _card_with_results((folder / "README.md").read_text(), results)
        )
        return {"where": str(folder), "commit": None}
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    from fulora_data.hub import HubError

    repo_id, _ = parse_repo_spec(str(model), what="--model")
    target = check_results_target(model, token=token, endpoint=endpoint)
    record = {**record, "model_revision": target["revision"], "model_commit": target["commit"]}
    # The card as it is on main now (a results commit goes on top of main, never onto a tag).
    folder = resolve_model(f"{repo_id}@{target['main']}", kind="classifier", token=token, endpoint=endpoint)
    results = _merged(_read_results(folder), record)
    card = _card_with_results((folder / "README.md").read_text(encoding="utf-8"), results)
    operations = [
        CommitOperationAdd("README.md", card.encode()),
        CommitOperationAdd(RESULTS_FILE, (json.dumps(results, indent=2) + "\n").encode()),
    ]
    try:
        commit = HfApi(endpoint=endpoint, token=token).create_commit(
            repo_id,
            operations,
            commit_message=f"Add {record['protocol']}-protocol results on {record['data']} (fulora evaluate)",
            revision="main",
            parent_commit=target["main"],  # main must still hold the weights checked above
        )
    except (HfHubHTTPError, HTTPError, OSError) as err:
        raise HubError(f"pushing the results to {repo_id} failed: {redact(' '.join(str(err).split()))}") from None
    return {"where": repo_id, "commit": commit.oid}
