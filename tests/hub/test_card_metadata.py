"""Cards through huggingface_hub's typed card classes; templates read from cards/ or the installed package."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO_ROOT

from fulora_data.cards import template
from fulora_data.errors import ConfigError, SourceNotFoundError

REPO = REPO_ROOT


def test_templates_come_from_cards_without_a_symlink_into_the_package():
    assert not (REPO / "fulora_data" / "templates").is_symlink()
    for card in sorted((REPO / "cards").glob("*.md")):
        assert template(card.name) == card.read_text(encoding="utf-8")
    for bad in ("../setup.py", "cards/dataset_card.md", ".hidden.md", "dataset_card.txt", None):
        with pytest.raises(ConfigError, match="file name like"):
            template(bad)
    with pytest.raises(SourceNotFoundError, match="'nothing.md' is missing"):
        template("nothing.md")


def test_a_wheel_carries_the_templates_as_package_data(tmp_path):
    pytest.importorskip("setuptools")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("fulora-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for card in (REPO / "cards").glob("*.md"):
            assert archive.read(f"fulora_data/templates/{card.name}") == card.read_bytes()
    assert "fulora_data/cards.py" in names
    # Installed from the wheel, away from the checkout, template() reads the package data.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    code = "import fulora_data.cards as c; print(c.__file__); print(len(c.template('dataset_card.md')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    where, size = out.stdout.split()
    assert where.startswith(str(target)) and int(size) == len(
        (REPO / "cards" / "dataset_card.md").read_text()
    )


# ---------------------------------------------------------------- dataset cards: per-config truth
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fulora_data import samples
    from fulora_data.export import export

    root = tmp_path_factory.mktemp("card_exports")
    generated = samples.write_generated_folder(root / "gen", per_plane=1, seed=41)
    release, _ = samples.write_synthetic_release(root / "syn", per_plane=1, seed=42)
    african = samples.write_african_source(root / "af", patients_per_country=2, seed=43)
    spanish = samples.write_spanish_source(root / "es", per_plane=2, test_per_plane=1, seed=44)
    cache = root / "cache"
    out = {}
    for name, config, source, extra in (
        ("synthetic", "generated", generated, {}),
        ("synthetic", "release", release, {"verify_checksum": False}),
        ("african", "all", african, {}),
        ("spanish", "es", spanish, {}),
    ):
        folder = root / f"{name}-{config}"
        export(name, [config], folder, source=source, cache_dir=cache, **extra)
        out[f"{name}/{config}"] = folder
    return out


def _card(folder):
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md")


def test_dataset_cards_say_per_config_only_what_is_true(exported):

    generated = _card(exported["synthetic/generated"])
    text = " ".join(generated.text.split())
    assert "13228158" not in text and "5,000 images" not in text  # the study release's record and prose
    assert "Images made by fulora's generator (no published source)" in text
    assert "is label 5 only" not in text
    shards = json.loads((exported["synthetic/generated"] / "fulora_export.json").read_text())
    for shard in shards["details"]["generated"]["provenance"]["generated"]["shards"]:
        assert shard["sha256"] not in text  # listed in the manifest, not crowding the card
    assert "each shard's file name and sha256 are in `fulora_export.json`" in text
    assert generated.data.task_categories == ["image-classification", "text-to-image"]

    release = " ".join(_card(exported["synthetic/release"]).text.split())
    assert "DOI [10.5281/zenodo.13228158](https://doi.org/10.5281/zenodo.13228158)" in release
    assert (
        "5,000 images" in release and "fulora's generator" not in release and "is label 5 only" not in release
    )

    african = _card(exported["african/all"])
    assert "is label 5 only" not in african.text and "10.5281/zenodo.7540448" in african.text
    assert african.data.task_categories == ["image-classification"]
    spanish = _card(exported["spanish/es"]).text
    assert "`Maternal cervix` is label 5 only in configs that keep it." in spanish
    for card in (generated.text, release, african.text, spanish):
        for section in ("## Dataset structure", "## Bias, risks and limitations", "## Personal and sensitive information", "## Intended use"):  # fmt: skip
            assert section in card
    assert "Synthetic images are not patients" in generated.text and "one country" in spanish
    assert "de-identified by the source" in spanish and "de-identified by the source" in african.text


def test_dataset_card_yaml_reads_as_dataset_card_data_with_a_default_config(exported, hub_server):
    """The card's YAML parses into huggingface_hub's ``DatasetCardData`` and names a default config.

    ``card.validate`` goes to the stand-in Hub's ``/api/validate-yaml``, which only parses the YAML: this
    is not the Hub's own metadata validation.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    for folder in exported.values():
        card = DatasetCard.load(folder / "README.md")
        assert isinstance(card.data, DatasetCardData)
        card.validate(repo_type="dataset")  # the stand-in's endpoint: YAML that parses
        assert [c for c in card.data.configs if c.get("default")]  # every export has a default config


# ---------------------------------------------------------------- model cards
def _classifier_config(**overrides):
    config = {
        "fulora_version": "0.1.0",
        "arch": "resnet18",
        "title": "ResNet18",
        "num_classes": 5,
        "label_names": ["Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"],
        "image_size": 224,
        "train_set": "HB",
        "augment": False,
        "weights": "imagenet",
        "dataset": {"name": "hybrid", "config": "es1150-syn5000", "num_images": 437},
        "images": {"train": 400, "validation": 37},
        "best": {"epoch": 3, "accuracy": 0.91, "loss": 0.3},
        "train_config": {"learning_rate": 0.001, "momentum": 0.9, "weight_decay": 0.0, "scheduler": "constant",
                         "batch_size": 24, "epochs": 4, "seed": 0, "mixed_precision": "no"},
    }  # fmt: skip
    config.update(overrides)
    return config


RESULT = {
    "data": "african:test",
    "protocol": "paper",
    "n": 233,
    "accuracy": 0.5,
    "precision": 0.6,
    "recall": 0.55,
    "f1": 0.52,
    "auc": 0.8,
    "per_country": {
        "Ghana": {"n": 40, "accuracy": 0.4, "precision": 0.5, "recall": 0.45, "f1": 0.42, "auc": None}
    },
}


def test_classifier_card_metadata_is_typed_and_every_number_is_the_runs(hub_server):
    from huggingface_hub import ModelCard, ModelCardData

    from fulora_data.classifier.card import render_model_card

    card = ModelCard(render_model_card(_classifier_config(), parameters=11_179_077))
    assert isinstance(card.data, ModelCardData)
    card.validate(repo_type="model")
    # Built locally: no Hub dataset is claimed, and the body says so.
    assert card.data.base_model == "timm/resnet18.tv_in1k" and card.data.datasets is None
    assert card.data.library_name is None  # "pytorch" is no library the Hub knows
    assert card.data.eval_results is None and "model-index:" not in str(card)
    assert "1,150" not in card.text and "5,000" not in card.text  # never typed: the run's own numbers
    assert "437 images (400 for training, 37 held out" in card.text and "11,179,077 parameters" in card.text
    assert "built locally by fulora (not a Hub dataset): `hybrid` config `es1150-syn5000`" in card.text
    for arch, weights in (("resnet18", "none"), ("vit_b_16", "imagenet"), ("resnet18", "file")):
        other = ModelCard(render_model_card(_classifier_config(arch=arch, weights=weights)))
        assert other.data.base_model is None  # random, a local file, or no Hub copy of torchvision's weights
    read = {"name": "spanish", "repo": "me/spanish", "revision": "v1.0.0", "commit": "a" * 40, "config": "es"}
    es = ModelCard(render_model_card(_classifier_config(dataset=read)))
    assert es.data.datasets == ["me/spanish"]
    assert "the published dataset `me/spanish` at revision `v1.0.0` (commit `aaaaaaaaaaaa`), config `es`" in es.text


def test_zero_shot_results_reach_the_model_index(tmp_path):
    from huggingface_hub import ModelCard

    from fulora_data.classifier.card import RESULTS_FILE, record_results, render_model_card

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_classifier_config()))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "README.md").write_text(render_model_card(_classifier_config()))
    assert record_results(folder, RESULT) == {"where": str(folder), "commit": None}
    record_results(folder, {**RESULT, "accuracy": 0.625})  # the same data and protocol: replaced, not added
    card = ModelCard.load(folder / "README.md")
    by_scope = {(r.dataset_config, r.metric_type): r for r in card.data.eval_results}
    assert by_scope[("all", "accuracy")].metric_value == 0.625
    assert by_scope[("Ghana", "accuracy")].metric_value == 0.4 and ("Ghana", "roc_auc") not in by_scope
    assert by_scope[("all", "roc_auc")].dataset_type == "african"  # built locally: no Hub repo claimed
    assert by_scope[("all", "roc_auc")].dataset_revision == "1.0.0"  # the builder's version
    assert by_scope[("all", "f1")].metric_args == {
        "protocol": "paper",
        "average": "macro",
        "labels": "classes present in the references",
        "zero_division": 0,
    }
    assert by_scope[("Ghana", "accuracy")].dataset_args == {"country": "Ghana"}
    assert by_scope[("all", "accuracy")].dataset_split == "test"
    assert "model-index:" in (folder / "README.md").read_text()
    assert (
        "| `african:test` | paper | 233 | 0.6250 |" in card.text
        and "not part of this card yet" not in card.text
    )
    assert len(json.loads((folder / RESULTS_FILE).read_text())) == 1
