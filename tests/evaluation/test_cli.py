"""``fulora evaluate`` in-process: the predictions form fully, and the --model form up to the classifier."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fulora_data.cli import main

HEADER = "reference,prediction,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax,country\n"
# The hand-worked case of evaluation/test_paper.py, with probabilities peaking at each prediction.
ROWS = [
    ("abdomen", "abdomen", "Ghana"),
    ("abdomen", "Other", "Ghana"),
    ("brain", "brain", "Ghana"),
    ("brain", "Other", "Ghana"),
    ("femur", "femur", "Malawi"),
    ("femur", "femur", "Malawi"),
    ("thorax", "Other", "Malawi"),
    ("thorax", "thorax", "Malawi"),
]
ORDER = ["Other", "abdomen", "brain", "femur", "thorax"]


def _csv(tmp_path, rows=ROWS, header=HEADER):
    lines = []
    for ref, pred, country in rows:
        probs = ["0.6" if name == pred else "0.1" for name in ORDER]
        lines.append(",".join([ref, pred, *probs, country]))
    path = tmp_path / "predictions.csv"
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def _run(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    # Building a dataset prints datasets' progress bars first; the error is the one line after them.
    lines = [
        line for line in result.output.splitlines() if line.strip() and not line.startswith("Generating ")
    ]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_predictions_json_paper(tmp_path):
    result = _run("predictions", _csv(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Fractions, worked out by hand in evaluation/test_paper.py.
    assert data["protocol"] == "paper" and data["n"] == 8
    assert data["accuracy"] == pytest.approx(5 / 8) and data["recall"] == pytest.approx(5 / 8)
    assert data["precision"] == pytest.approx(1.0) and data["f1"] == pytest.approx(3 / 4)
    assert data["auc"] == pytest.approx(13 / 16)
    assert data["per_country"]["Malawi"]["auc"] == pytest.approx(7 / 8)
    assert data["confusion_matrix"][4] == [1, 0, 0, 0, 1]
    assert set(data["per_class"]) == {"Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"}
    assert "ci" not in data and data["report"] is None


def test_predictions_json_standard_with_ci_and_report(tmp_path):
    out = tmp_path / "report"
    result = _run(
        "predictions",
        _csv(tmp_path),
        "--protocol",
        "standard",
        "--json",
        "--n-bootstrap",
        "50",
        "--seed",
        "1",
        "--report",
        out,
        "--model-name",
        "densenet169",
        "--train-set",
        "HB",
        "--allow-partial",  # 8 rows beside the study's 233-image row: refused without it (hardening item 9)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["protocol"] == "standard" and data["ci"]["n_bootstrap"] == 50 and data["ci"]["seed"] == 1
    assert data["auc"] is not None and 0 <= data["ci"]["intervals"]["auc"][0] <= data["auc"]
    assert set(data["per_country"]) == {"Ghana", "Malawi"} and "ci" in data["per_country"]["Ghana"]
    assert data["report"] == str(out / "report.md")
    text = (out / "report.md").read_text()
    assert "densenet169 on HB" in text and "| Accuracy | 62.50 | 75.54 | -13.04 |" in text
    assert (out / "confusion_matrix.png").stat().st_size > 0


def test_predictions_text_output(tmp_path):
    result = _run("predictions", _csv(tmp_path))
    assert result.exit_code == 0, result.output
    assert "protocol: paper   images: 8" in result.output and "Ghana (n=4)" in result.output


def test_predictions_ci_by_patient_needs_patient_ids(tmp_path):
    line = _one_line_error(_run("predictions", _csv(tmp_path), "--protocol", "standard", "--ci-by-patient"))
    assert "patient id" in line and "predictions.csv" in line


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        ([("abdomen", "kidney", "Ghana")], HEADER, "column 'prediction' is 'kidney'"),
        ([("abdomen", "9", "Ghana")], HEADER, "label index '9'"),
        (
            [],
            "reference,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax,country\n",
            "no column 'prediction'",
        ),
        ([], HEADER, "has no rows: the test set is empty"),
    ],
)
def test_predictions_bad_input_exits_with_one_line(tmp_path, rows, header, expected):
    path = _csv(tmp_path, rows=rows, header=header)
    if not rows:
        path.write_text(header)
    line = _one_line_error(_run("predictions", path, "--json"))
    assert str(path) in line and expected in line


def test_predictions_probabilities_not_summing_to_one(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "abdomen,abdomen,0.5,0.5,0.5,0,0,Ghana\n")
    line = _one_line_error(_run("predictions", path))
    assert str(path) in line and "line 2" in line and "sum to 1.5" in line


def test_predictions_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty.csv is empty" in _one_line_error(_run("predictions", empty))
    assert "does not exist" in _one_line_error(_run("predictions", tmp_path / "missing.csv"))


def test_group_usage_errors(tmp_path):
    assert _run().exit_code == 2
    assert "--data" in _run("--model", tmp_path).output and _run("--model", tmp_path).exit_code == 2
    result = _run("--model", tmp_path, "--data", "african:test", "predictions", _csv(tmp_path))
    assert result.exit_code == 2 and "--model, --data belong to the --model form" in result.output
    result = _run("--protocol", "standard", "predictions", _csv(tmp_path))
    assert result.exit_code == 2 and "--protocol belong to the --model form" in result.output


def test_model_form_refuses_bad_spec_and_missing_checkpoint(tmp_path):
    assert "NAME[/CONFIG]:SPLIT" in _one_line_error(_run("--model", tmp_path, "--data", "african"))
    line = _one_line_error(_run("--model", tmp_path / "none.safetensors", "--data", "african:test"))
    assert "none.safetensors" in line and "does not exist" in line


def test_model_form_refuses_an_unknown_split(tmp_path):
    from fulora_data.samples import write_african_source

    source = write_african_source(tmp_path / "african", patients_per_country=2)
    # The checkpoint is resolved (its two files found) before any data is built; it is loaded only after the
    # split is known to exist, so placeholders suffice here.
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"")
    line = _one_line_error(
        _run(
            "--model",
            checkpoint,
            "--data",
            "african:validation",
            "--source",
            source,
            "--cache-dir",
            tmp_path / "c",
        )
    )
    assert "no split 'validation'" in line and "test" in line
