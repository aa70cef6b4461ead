"""``fulora_data.dataset_ref``: every spelling of a set parses to one ``DatasetRef`` and prints back as given."""

from __future__ import annotations

import os

import pytest

from fulora_data.dataset_ref import DatasetRef, RepoRef
from fulora_data.errors import ConfigError

LOCAL = [
    ("african", DatasetRef("african")),
    ("african:test", DatasetRef("african", None, "test")),
    ("spanish/es-1150", DatasetRef("spanish", "es-1150")),
    ("african/Ghana:test", DatasetRef("african", "Ghana", "test")),
    ("synthetic/generated:train", DatasetRef("synthetic", "generated", "train")),
]
PUBLISHED = [
    ("fulora/hybrid", DatasetRef("fulora/hybrid")),
    ("fulora/synthetic@v1.0.0:train", DatasetRef("fulora/synthetic", None, "train", "v1.0.0")),
    ("fulora/african@v1.0.0/all:test", DatasetRef("fulora/african", "all", "test", "v1.0.0")),
    ("me/my.set/es1150-syn5000", DatasetRef("me/my.set", "es1150-syn5000")),
    ("a/b/c:test", DatasetRef("a/b", "c", "test")),  # ORG 'a' is no registered dataset
]


@pytest.mark.parametrize(("text", "ref"), LOCAL + PUBLISHED)
def test_every_form_parses_and_prints_back_as_given(text, ref):
    parsed = DatasetRef.parse(text)
    assert parsed == ref
    assert str(parsed) == text
    assert DatasetRef.parse(str(parsed)) == parsed


def test_published_and_local_sets_tell_themselves_apart():
    published = DatasetRef.parse("fulora/african@v1.0.0/all:test")
    assert published.on_hub and published.dataset == "african" and published.repo == "fulora/african@v1.0.0"
    local = DatasetRef.parse("spanish/es-1150")  # a registered NAME before '/' stays NAME/CONFIG
    assert not local.on_hub and local.dataset == "spanish" and local.repo == "spanish"


def test_a_required_split_is_required_and_the_error_names_the_option():
    assert DatasetRef.parse("african:test", split="required").split == "test"
    for bad in ("african", "african:", ":test", "fulora/african@v1"):
        with pytest.raises(ConfigError) as caught:
            DatasetRef.parse(bad, option="--data", split="required")
        assert str(caught.value).startswith("--data must be NAME[/CONFIG]:SPLIT")
        assert str(caught.value).endswith(f"got {bad!r}")


def test_without_a_split_a_colon_stands_before_the_config():
    assert DatasetRef.parse("spanish:lora-100", split="none") == DatasetRef("spanish", "lora-100")
    assert DatasetRef.parse("fulora/hybrid:es-1150", split="none") == DatasetRef("fulora/hybrid", "es-1150")
    assert DatasetRef.parse("fulora/synthetic@v1.0.0/generated", split="none") == DatasetRef(
        "fulora/synthetic", "generated", None, "v1.0.0"
    )
    with pytest.raises(ConfigError, match=r"^--against must be NAME or NAME/CONFIG .*got 'spanish/a:b'$"):
        DatasetRef.parse("spanish/a:b", option="--against", split="none")


@pytest.mark.parametrize(
    "bad",
    ["", " ", ":", ":test", "african:", "a:b:c", "/x", "/lora-100", "spanish/", "a/../b", "x y", None, 3],
)
def test_bad_forms_are_refused_quoting_the_value_and_naming_the_option(bad):
    with pytest.raises(ConfigError) as caught:
        DatasetRef.parse(bad, option="a SET")
    message = str(caught.value)
    assert message.startswith("a SET must be NAME[/CONFIG][:SPLIT]") and message.endswith(f"got {bad!r}")


def test_hub_only_refuses_a_registered_dataset():
    assert DatasetRef.parse("fulora/hybrid@v1/es-1150", split="none", hub_only=True).revision == "v1"
    for bad in ("hybrid", "spanish/es-1150", "fulora/hybrid:train"):
        with pytest.raises(
            ConfigError, match=r"^--data must be a Hub dataset ORG/NAME\[@REVISION\]\[/CONFIG\]"
        ):
            DatasetRef.parse(bad, option="--data", split="none", hub_only=True)


def test_repo_ids_round_trip_and_bad_ones_name_the_option(tmp_path):
    for text in ("fulora/hybrid", "fulora/hybrid@v1.0.0", "me/model@refs/pr/1"):
        assert str(RepoRef.parse(text)) == text
    assert RepoRef.parse("fulora/hybrid@v1.0.0") == RepoRef("fulora/hybrid", "v1.0.0")
    for bad in ("hybrid", "a/b/c", "fulora/", "/abs/path", "a/../b", "org/name@"):
        with pytest.raises(ConfigError, match=rf"^--model must be a local path or a Hub repo .*got {bad!r}$"):
            RepoRef.parse(bad, option="--model")
    (tmp_path / "org" / "name").mkdir(parents=True)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:  # an existing local path always wins over a repo id of the same spelling
        assert not RepoRef.names_repo("org/name") and RepoRef.names_repo("org/other@v1")
    finally:
        os.chdir(here)
