"""What the Hub accepts in a card's YAML, field by field: checks shared by the card tests.

Each card is parsed with huggingface_hub's own classes (``ModelCard``/``ModelCardData`` with ``EvalResult``
for ``model-index``, ``DatasetCard``/``DatasetCardData``), which raise on a malformed ``model-index``; then
every top-level key must be one the Hub documents, and every value of a closed vocabulary one of its
documented values. The vocabularies below are copied from the documentation cited beside each; a value
missing here is a value the Hub does not list.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

# huggingface_hub's DatasetCardData docstring (repocard_data.py) and the Hub's dataset card spec,
# https://github.com/huggingface/hub-docs/blob/main/datasetcard.md (fields and their example values).
ANNOTATIONS_CREATORS = {
    "found",
    "crowdsourced",
    "expert-generated",
    "machine-generated",
    "no-annotation",
    "other",
}
SIZE_CATEGORIES = {
    "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B",
    "10B<n<100B", "100B<n<1T", "n>1T", "other",
}  # fmt: skip
# source_datasets: "original" or "extended", or "extended|<dataset>" naming what it extends (DatasetCardData).
SOURCE_DATASETS = re.compile(r"original|extended(\|[\w./-]+)?")
# The Hub's task taxonomy (huggingface.js packages/tasks/src/pipelines.ts): the tasks fulora's cards use,
# and the sub-task ids listed under image-classification there.
TASK_CATEGORIES = {
    "image-classification",
    "text-to-image",
    "image-to-image",
    "unconditional-image-generation",
}
TASK_IDS = {"multi-class-image-classification", "multi-label-image-classification"}
# The Hub's license identifiers (https://huggingface.co/docs/hub/repositories-licenses): those fulora uses.
LICENSES = {
    "cc-by-4.0",
    "cc-by-nc-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-sa-4.0",
    "mit",
    "creativeml-openrail-m",
    "other",
}
# Model libraries the Hub recognises (huggingface.js packages/tasks/src/model-libraries.ts); "pytorch" and
# "torchvision" are not among them, so a plain torchvision model names none.
LIBRARIES = {"diffusers", "transformers", "timm", "peft", "sentence-transformers", "open_clip"}
# Model card keys beyond ModelCardData's arguments that the Hub documents
# (https://huggingface.co/docs/hub/model-cards#model-card-metadata, model-cards-components (widget,
# <Gallery />), and diffusers' LoRA cards: instance_prompt, base_model_relation).
MODEL_EXTRA_KEYS = {
    "model-index",
    "widget",
    "instance_prompt",
    "base_model_relation",
    "inference",
    "thumbnail",
}
BASE_MODEL_RELATIONS = {"adapter", "merge", "quantized", "finetune"}
# Dataset card keys beyond DatasetCardData's arguments (datasets' own: configs, dataset_info; the Hub: tags).
DATASET_EXTRA_KEYS = {"configs", "dataset_info", "tags"}
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _arguments(cls) -> set[str]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "ignore_metadata_errors"}
    return names | {"model-index" if n == "eval_results" else n for n in names}


def check_model_card(text: str, folder: Path | None = None) -> dict:
    """Parse a model card with huggingface_hub and check every YAML field; return the YAML as a dict.

    Args:
        text: The card.
        folder: The folder the card sits in: every ``widget`` image must be a file there.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    card = ModelCard(text, ignore_metadata_errors=False)  # a bad model-index raises here
    assert isinstance(card.data, ModelCardData)
    raw = card.data.to_dict()
    unknown = set(raw) - _arguments(ModelCardData) - MODEL_EXTRA_KEYS - {"model_name"}
    assert not unknown, f"keys the Hub does not document: {sorted(unknown)}"
    if raw.get("library_name") is not None:
        assert raw["library_name"] in LIBRARIES, raw["library_name"]
    for license in _as_list(raw.get("license")):
        assert license in LICENSES, license
    for repo in _as_list(raw.get("base_model")) + _as_list(raw.get("datasets")):
        assert REPO_ID.fullmatch(repo), f"not a Hub repo id: {repo!r}"
    if raw.get("base_model_relation") is not None:
        assert raw["base_model_relation"] in BASE_MODEL_RELATIONS
    if raw.get("pipeline_tag") is not None:
        assert raw["pipeline_tag"] in TASK_CATEGORIES, raw["pipeline_tag"]
    assert all(isinstance(tag, str) and tag.strip() == tag and tag for tag in _as_list(raw.get("tags")))
    for entry in _as_list(raw.get("widget")):
        assert set(entry) <= {"text", "output", "parameters"} and isinstance(entry["text"], str)
        url = entry["output"]["url"]
        assert not url.startswith(("/", "..")) and "\\" not in url
        if folder is not None:
            assert (folder / url).is_file(), f"widget image {url} is not in the folder"
    for result in card.data.eval_results or []:
        assert isinstance(result, EvalResult)
        assert result.task_type in TASK_CATEGORIES and result.dataset_type and result.metric_type
        assert isinstance(result.metric_value, (int, float))
    return raw


def check_dataset_card(text: str) -> dict:
    """Parse a dataset card with huggingface_hub and check every YAML field; return the YAML as a dict."""
    from huggingface_hub import DatasetCard, DatasetCardData

    card = DatasetCard(text, ignore_metadata_errors=False)
    assert isinstance(card.data, DatasetCardData)
    raw = card.data.to_dict()
    unknown = set(raw) - _arguments(DatasetCardData) - DATASET_EXTRA_KEYS
    assert not unknown, f"keys the Hub does not document: {sorted(unknown)}"
    for value in _as_list(raw.get("annotations_creators")):
        assert value in ANNOTATIONS_CREATORS, value
    for value in _as_list(raw.get("size_categories")):
        assert value in SIZE_CATEGORIES, value
    for value in _as_list(raw.get("source_datasets")):
        assert SOURCE_DATASETS.fullmatch(value), value
    for value in _as_list(raw.get("task_categories")):
        assert value in TASK_CATEGORIES, value
    for value in _as_list(raw.get("task_ids")):
        assert value in TASK_IDS, value
    for license in _as_list(raw.get("license")):
        assert license in LICENSES, license
    return raw
