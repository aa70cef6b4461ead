"""`evaluate --model ORG/NAME@REV --push-results` (fulora_data/classifier/card.py): the scores go onto main
only when main holds the evaluated weights, and record the revision and commit evaluated."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from classifier_fixtures import _train, sources  # noqa: F401  (module fixture)
from click.testing import CliRunner

from fulora_data.classifier.card import check_results_target
from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.hub import push_model

torch = pytest.importorskip("torch")


def _fake_classifier(folder, value: float):
    """Just the files check_results_target compares (it never loads them)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"fc.weight": torch.full((5, 2), value)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# clf\n")
    return folder


def test_the_results_target_is_main_and_a_revision_with_other_weights_is_refused(hub_server, tmp_path):
    model = f"fulora/clf-{uuid.uuid4().hex[:8]}"
    push_model(_fake_classifier(tmp_path / "a", 0.0), model, token=hub_server.token, tag="v1")
    (tmp_path / "a" / "README.md").write_text("---\nlicense: mit\n---\n# clf, same weights\n")
    push_model(tmp_path / "a", model, token=hub_server.token, tag="v1.1")  # a card change only
    head = hub_server.head(model, "model")
    same = check_results_target(f"{model}@v1")  # v1's weights are main's: fine, its commit recorded
    assert same == {"repo": model, "revision": "v1", "commit": hub_server.tags(model, "model")["v1"], "main": head}
    push_model(_fake_classifier(tmp_path / "b", 1.0), model, token=hub_server.token, tag="v2")
    with pytest.raises(ConfigError, match=rf"{model}@v1 \(commit [0-9a-f]{{10}}\) holds other weights"):
        check_results_target(f"{model}@v1")
    assert check_results_target(f"{model}@v2")["revision"] == "v2"
    assert check_results_target(str(tmp_path / "a")) is None  # a local folder is updated in place


def _other_weights(folder, out):
    """A copy of a classifier folder with different weights (same architecture and config)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, out)
    state = load_file(str(out / "model.safetensors"))
    state = {k: (v * 1.5 if k.endswith("fc.weight") else v) for k, v in state.items()}  # another head
    save_file(state, str(out / "model.safetensors"))
    return out


@pytest.mark.slow  # trains and evaluates a classifier, and moves its 45 MB weights through the stand-in Hub
def test_results_of_an_older_revision_are_refused_before_evaluating_and_mains_are_recorded(
    hub_server, sources, tmp_path  # noqa: F811
):
    _train(["--train-set", "ES", "--source", str(sources["spanish"]), "--cache-dir", str(sources["cache"])],
           tmp_path / "es")  # fmt: skip
    model = f"fulora/clf-{uuid.uuid4().hex[:8]}"
    push_model(tmp_path / "es" / "model", model, token=hub_server.token, tag="v1")
    push_model(_other_weights(tmp_path / "es" / "model", tmp_path / "v2"), model, token=hub_server.token, tag="v2")
    main_before = hub_server.head(model, "model")
    common = ["--data", "african:test", "--source", str(sources["african"]), "--cache-dir", str(sources["cache"])]
    runner = CliRunner(env={"HF_TOKEN": hub_server.token})

    refused = runner.invoke(main, ["evaluate", "--model", f"{model}@v1", *common, "--push-results"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert f"{model}@v1" in refused.output and "holds other weights than" in refused.output
    assert "accuracy" not in refused.output.lower()  # refused before the evaluation ran
    assert hub_server.head(model, "model") == main_before

    pushed = runner.invoke(main, ["evaluate", "--model", f"{model}@v2", *common, "--push-results"])
    assert pushed.exit_code == 0, pushed.output
    files = hub_server.files(model, "main", "model")
    recorded = json.loads(files["eval_results.json"])
    assert [(r["model_revision"], r["model_commit"]) for r in recorded] == [("v2", hub_server.tags(model, "model")["v2"])]
    assert files["model.safetensors"] == hub_server.files(model, "v2", "model")["model.safetensors"]
    assert f"(model `v2` = `{recorded[0]['model_commit'][:10]}`)" in files["README.md"].decode()
