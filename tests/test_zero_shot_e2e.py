"""End to end: train a tiny classifier with ``fulora train classifier``, score it with ``fulora evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fulora_data.classifier import predict
from fulora_data.cli import main
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
