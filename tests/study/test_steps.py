"""Study steps that the smoke run leaves out: publishing to the (stand-in) Hub with ``--push-to``."""

from __future__ import annotations

import json
import shutil

from fulora_data.demo import demo_changes
from fulora_data.study.presets import merge
from fulora_data.study.run import run_study
from fulora_data.study.steps import _repo_name


def test_repo_names_keep_only_characters_the_hub_accepts():
    assert _repo_name("resnet18-HB+DA") == "resnet18-HB-DA" and _repo_name("sd15-lora-r128") == "sd15-lora-r128"


def test_push_to_publishes_every_dataset_adapter_and_classifier_last(smoke_study, hub_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    folder = tmp_path / "study"
    shutil.copytree(smoke_study[0], folder, ignore=shutil.ignore_patterns("run.lock"))
    changes = merge(demo_changes(1, 2), {"publish": {"org": "fulora"}})
    result = run_study(folder, "smoke", changes=changes, log=lambda m: None)
    assert result["ran"] == ["publish"]  # nothing else changed: only the new last step runs
    pushed = json.loads((folder / "publish" / "pushed.json").read_text())
    repos = {item["repo_id"]: item for item in pushed}
    assert set(repos) == {
        "fulora/african", "fulora/hybrid", "fulora/spanish", "fulora/synthetic",
        "fulora/sd15-lora-tiny", "fulora/resnet18-ES", "fulora/resnet18-HB",
    }  # fmt: skip
    for name in ("african", "hybrid", "spanish", "synthetic"):
        item = repos[f"fulora/{name}"]
        assert hub_server.tags(item["repo_id"]) == {item["tag"]: item["commit"]}
    adapter = repos["fulora/sd15-lora-tiny"]
    assert hub_server.head(adapter["repo_id"], "model") == adapter["commit"]
    on_hub = hub_server.files(adapter["repo_id"], repo_type="model")
    local = folder / "lora-tiny" / "adapter" / "pytorch_lora_weights.safetensors"
    assert on_hub["pytorch_lora_weights.safetensors"] == local.read_bytes()
    classifier = hub_server.files("fulora/resnet18-HB", repo_type="model")
    assert classifier["model.safetensors"] == (folder / "classifier" / "resnet18-HB" / "model" / "model.safetensors").read_bytes()
    assert hub_server.token not in (folder / "publish" / "pushed.json").read_text()
