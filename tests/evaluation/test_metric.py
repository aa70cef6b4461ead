"""The ``zero_shot`` evaluate metric loads from the local script with no network and wraps ``score``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from fulora_data.errors import ConfigError
from fulora_data.evaluation import ZERO_SHOT_METRIC_PATH, load_metric, score
from fulora_data.taxonomy import PLANES

REPO = REPO_ROOT
REFS = [1, 1, 2, 2, 3, 3, 4, 4]
PREDS = [1, 0, 2, 0, 3, 3, 0, 4]


@pytest.fixture
def offline(monkeypatch):
    """No Hub, and any attempt to open a network connection fails the test."""
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def refuse(self, address):
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return evaluate


def test_evaluate_load_of_the_local_script_offline(offline):
    metric = offline.load(str(ZERO_SHOT_METRIC_PATH), keep_in_memory=True)
    assert metric.name == "zero_shot" and metric.config_name == "default"
    result = metric.compute(references=REFS, predictions=PREDS, countries=["Ghana"] * 4 + ["Malawi"] * 4)
    # Same numbers as score() (worked out by hand in evaluation/test_paper.py): accuracy 5/8, AUC 13/16.
    assert result["protocol"] == "paper"
    assert result["accuracy"] == pytest.approx(5 / 8) and result["auc"] == pytest.approx(13 / 16)
    assert result == score(REFS, PREDS, label_names=PLANES, countries=["Ghana"] * 4 + ["Malawi"] * 4)


def test_load_metric_standard_with_probabilities(offline):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=len(REFS))
    metric = load_metric(protocol="standard")
    assert metric.config_name == "standard"
    result = metric.compute(
        references=REFS, predictions=PREDS, probabilities=probs.tolist(), n_bootstrap=40, seed=3
    )
    expected = score(
        REFS, PREDS, label_names=PLANES, probabilities=probs, protocol="standard", n_bootstrap=40, seed=3
    )
    assert result == expected and result["ci"]["n_bootstrap"] == 40


def test_unknown_protocol_is_refused(offline):
    with pytest.raises(ConfigError, match="'bogus'"):
        load_metric(protocol="bogus")
    with pytest.raises(ConfigError, match="'bogus'"):
        offline.load(str(ZERO_SHOT_METRIC_PATH), "bogus", keep_in_memory=True)


def test_importing_the_package_does_not_import_heavy_dependencies():
    code = (
        "import sys, fulora_data.evaluation, fulora_data.cli; "
        "print([m for m in ('evaluate', 'sklearn', 'matplotlib', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_evaluate_load_in_a_fresh_offline_process(tmp_path):
    """The strongest form: a new interpreter with the offline switches set before evaluate is imported."""
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "PYTHONPATH": str(REPO),
    }
    code = (
        "import json, evaluate; "
        f"m = evaluate.load({str(ZERO_SHOT_METRIC_PATH)!r}, 'paper', keep_in_memory=True); "
        f"print(json.dumps(m.compute(references={REFS}, predictions={PREDS})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["auc"] == pytest.approx(13 / 16)
