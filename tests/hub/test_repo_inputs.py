"""A published dataset's repo id where fulora takes a dataset: compare SETs, evaluate predictions --data,
audit --against and train classifier --data (its record, card and resume check).

A tiny African set is exported once and pushed to the stand-in Hub (tests/hub_server.py) in each test,
under a repo name of its own; everything goes through the real huggingface_hub and datasets clients.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from fulora_data import samples
from fulora_data.audit.run import audit_dataset
from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.export import export
from fulora_data.hub import push_dataset
from fulora_data.hub_pull import load_repo_dataset
from fulora_data.prepare import prepare

SIZE = 75  # the smallest Inception input: the comparison's forward passes stay cheap


def _unique(name: str) -> str:
    return f"fulora/{name}-{uuid.uuid4().hex[:8]}"


def _json(output: str) -> dict:
    """The JSON document a --json command printed after any progress bars."""
    return json.loads(output[output.index('{\n  "') :])


def _one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def african(tmp_path_factory):
    """A tiny African source, its local build and its export folder (config ``all``)."""
    root = tmp_path_factory.mktemp("repo_inputs")
    source = samples.write_african_source(root / "af", patients_per_country=2, seed=21)
    cache = root / "cache"
    export("african", ["all"], root / "export", source=source, cache_dir=cache)
    local = prepare("african", "all", source=source, cache_dir=cache)
    return {"source": source, "cache": cache, "export": root / "export", "local": local}


@pytest.fixture
def repo(hub_server, african):
    """The African export pushed (tag v1.0.0) under a repo name of this test's own."""
    name = _unique("african")
    push_dataset(african["export"], name, token=hub_server.token)
    return name


def test_compare_reads_a_set_by_repo_id_with_source_dash(repo, african, tmp_path):
    pytest.importorskip("torchvision")
    from fulora_data.compare.features import random_inception_weights

    weights = random_inception_weights(tmp_path / "inception.pth", seed=0, calibrate_size=SIZE)
    common = ["--plane", "brain", "--plane", "femur", "--per-plane", "2", "--image-size", str(SIZE)]
    common += ["--weights", str(weights), "--bootstrap", "0", "--cache-dir", str(african["cache"])]
    sets = [f"{repo}@v1.0.0/all:test", "african:test"]
    run = CliRunner().invoke(
        main,
        ["data", "compare", *sets, "--source", "-", "--source", str(african["source"]), *common, "--json"],
    )
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert [s["spec"] for s in result["sets"]] == sets
    # The published test split is the local one, image for image: the same draw, FID 0.
    for plane in ("Fetal brain", "Fetal femur"):
        pair = result["planes"][plane]["pairs"][0]
        assert pair["images"] == [2, 2] and pair["fid"] == pytest.approx(0, abs=1e-3)
    assert result["features"]["computed"] == 4  # the repo's images were the local ones' digests

    refused = CliRunner().invoke(
        main, ["data", "compare", *sets, "--source", str(african["source"]), "--source", "-", *common]
    )
    assert "is a published dataset, read from the Hub: give --source - for it" in _one_line_error(refused, 2)


def test_evaluate_predictions_joins_to_a_repo_test_split(repo, african, tmp_path):
    test = load_repo_dataset(f"{repo}@v1.0.0", "all")["test"]
    names = test.features["label"].names
    path = tmp_path / "predictions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "reference", "prediction"])
        for index, (image_id, label) in enumerate(zip(test["image_id"], test["label"], strict=True)):
            wrong = names[(label + 1) % len(names)]
            writer.writerow([image_id, names[label], names[label] if index % 2 else wrong])
    spec = f"{repo}@v1.0.0/all:test"
    run = CliRunner().invoke(main, ["evaluate", "predictions", str(path), "--data", spec, "--json"])
    assert run.exit_code == 0, run.output
    result = _json(run.output)
    assert result["coverage"] == {"test_set": spec, "scored": len(test), "of": len(test), "partial": False}
    assert result["accuracy"] == pytest.approx((len(test) // 2) / len(test))

    for command in (
        ["evaluate", "predictions", str(path), "--data", spec, "--source", str(african["source"])],
        ["evaluate", "--model", str(tmp_path), "--data", spec, "--cache-dir", str(tmp_path)],
    ):
        error = _one_line_error(CliRunner().invoke(main, command), 2)
        assert f"--data {spec!r} is a published dataset" in error and "--source and --cache-dir" in error


def test_audit_against_a_published_training_set(repo, african):
    result = audit_dataset(
        "african", "all", source=african["source"], cache_dir=african["cache"], against=f"{repo}@v1.0.0/all"
    )
    memo = result["memorisation"]
    images = sum(len(split) for split in african["local"].values())
    # Audited against its own published copy: every image is found, memorised, in the training set.
    assert result["against"] == f"{repo}@v1.0.0/all"
    assert memo["training_images"] == images and memo["memorised"] == images
    with pytest.raises(
        ConfigError, match="^against_source does not apply to `against` .*: it is a published dataset"
    ):
        audit_dataset("african", against=f"{repo}@v1.0.0", against_source=african["source"])


def _train(args: list[str], out: Path):
    base = ["train", "classifier", "--arch", "resnet18", "--weights", "none", "--image-size", "32"]
    base += ["--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--validation-size", "4"]
    return CliRunner().invoke(main, [*base, *args, "--out", str(out)])


def test_train_records_the_repo_revision_and_config_and_resume_checks_them(repo, hub_server, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    run = _train(["--train-set", "ES", "--data", f"{repo}@v1.0.0"], out)  # no config: the card's default
    assert run.exit_code == 0, run.output
    config = json.loads((out / "model" / "config.json").read_text())
    dataset = config["dataset"]
    commit = hub_server.tags(repo)["v1.0.0"]
    assert {k: dataset[k] for k in ("name", "repo", "revision", "commit", "config")} == {
        "name": repo.split("/")[1],
        "repo": repo,
        "revision": "v1.0.0",
        "commit": commit,
        "config": "all",
    }
    assert config["train_config"]["hub_data"] == f"{repo}@v1.0.0"
    card = ModelCard((out / "model" / "README.md").read_text())
    assert card.data.datasets == [repo]
    assert f"the published dataset `{repo}` at revision `v1.0.0` (commit `{commit[:12]}`), config `all`" in card.text
    assert "`spanish`" not in card.text and "built locally" not in card.text

    # A resumed run on other data (another revision, or the locally built set) is refused.
    for other in (["--data", f"{repo}@main"], []):
        error = _one_line_error(_train(["--train-set", "ES", *other, "--resume", "--epochs", "2"], out))
        assert "--resume:" in error and "hub_data=" in error

    # Options that only shape a locally built set are refused with --data, before any download.
    for option in (["--source", str(tmp_path)], ["--data-option", "seed=3"], ["--synthetic-source", "x"]):
        served = len(hub_server.requests)
        error = _one_line_error(
            _train(["--train-set", "HB", "--data", f"{repo}@v1.0.0", *option], tmp_path / "x"), 2
        )
        assert f"--data '{repo}@v1.0.0' trains on a published dataset, which {option[0]}" in error
        assert len(hub_server.requests) == served
