"""End to end: train a tiny classifier with ``fulora train classifier``, score it with ``fulora evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fulora_data.classifier import predict
from fulora_data.cli import main
from fulora_data.evaluation import evaluate_split, score
from fulora_data.prepare import column, prepare
from fulora_data.samples import write_african_source, write_spanish_source


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    spanish = write_spanish_source(root / "es", per_plane=4, test_per_plane=1, seed=3)
    african = write_african_source(root / "af", patients_per_country=2, seed=4)
    cache, out = root / "cache", root / "resnet18-es-da"
    args = ["train", "classifier", "--arch", "resnet18", "--train-set", "ES+DA", "--source", str(spanish)]
    args += ["--cache-dir", str(cache), "--weights", "none", "--image-size", "32", "--epochs", "1"]
    args += ["--batch-size", "8", "--num-workers", "0", "--validation-size", "4", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return {"spanish": spanish, "african": african, "cache": cache, "out": out}


def test_train_then_evaluate_zero_shot(run):
    args = ["evaluate", "--model", str(run["out"]), "--data", "african:test", "--source", str(run["african"])]
    args += ["--cache-dir", str(run["cache"]), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)  # progress bars go to stderr
    # independently: the predictions of the checkpoint, scored by hand
    test = prepare("african", source=run["african"], cache_dir=run["cache"])["test"]
    out = predict(run["out"], test)
    reference, prediction = np.array(out["reference"]), np.array(out["prediction"])
    assert scores["accuracy"] == pytest.approx(float((reference == prediction).mean()))
    countries = np.array(column(test, "country"))
    assert set(scores["per_country"]) == set(countries)
    for country, row in scores["per_country"].items():
        mask = countries == country
        assert row["accuracy"] == pytest.approx(float((reference[mask] == prediction[mask]).mean()))
    assert np.array(scores["confusion_matrix"]).sum() == len(test)
    # The CLI's JSON is exactly the library's score of the library's predictions on the same split.
    expected = score(
        out["reference"],
        out["prediction"],
        label_names=out["label_names"],
        probabilities=out["probabilities"],
        countries=list(countries),
        protocol="paper",
    )
    assert {k: v for k, v in scores.items() if k in expected} == json.loads(json.dumps(expected))
    assert scores["model_name"] == "resnet18" and scores["train_set"] == "ES+DA"


def test_evaluating_on_data_with_another_class_count_is_one_error_line(run):
    args = [
        "evaluate",
        "--model",
        str(run["out"]),
        "--data",
        "spanish/full:test",
        "--source",
        str(run["spanish"]),
    ]
    args += ["--cache-dir", str(run["cache"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert (
        "Error: " in result.output and "5-class classifier" in result.output and "6 classes" in result.output
    )
    assert "Traceback" not in result.output


def test_hybrid_training_set_end_to_end(run, tmp_path):
    """HB trains on real + synthetic rows, with builder options passed through --data-option."""
    from fulora_data.samples import write_generated_folder

    generated = write_generated_folder(tmp_path / "gen", per_plane=3, seed=5)
    out = tmp_path / "resnet18-hb"
    args = ["train", "classifier", "--arch", "resnet18", "--train-set", "HB", "--source", str(run["spanish"])]
    args += ["--synthetic-source", str(generated), "--cache-dir", str(run["cache"]), "--weights", "none"]
    args += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--num-workers", "0"]
    args += ["--data-option", "real_config=es", "--data-option", "synthetic_config=generated"]
    args += ["--data-option", "synthetic_per_plane=2", "--out", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    real = len(prepare("spanish", "es", source=run["spanish"], cache_dir=run["cache"])["train"])
    assert summary["images"]["train"] + summary["images"]["validation"] == real + 2 * 5
    hybrid = prepare(
        "hybrid",
        cache_dir=run["cache"],
        real_source=run["spanish"],
        synthetic_source=generated,
        real_config="es",
        synthetic_config="generated",
        synthetic_per_plane=2,
    )
    assert summary["images"] == {"train": len(hybrid["train"]), "validation": len(hybrid["validation"])}
    args = ["evaluate", "--model", str(out), "--data", "african:test", "--source", str(run["african"])]
    args += ["--cache-dir", str(run["cache"]), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    test = prepare("african", source=run["african"], cache_dir=run["cache"])["test"]
    expected = evaluate_split(out, test, protocol="paper")
    scores = json.loads(result.stdout)
    assert {k: scores[k] for k in expected} == json.loads(json.dumps(expected))
    assert scores["train_set"] == "HB"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("nonsense=1", "dataset_options: spanish has no option 'nonsense'"),
        ("no-equals", "expected KEY=VALUE"),
    ],
)
def test_bad_data_options_are_refused(run, tmp_path, option, message):
    args = ["train", "classifier", "--train-set", "ES", "--source", str(run["spanish"]), "--weights", "none"]
    args += ["--data-option", option, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
