"""Predictions are joined to the test set by image_id."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.prepare import column, prepare


@pytest.fixture(scope="module")
def african(tmp_path_factory):
    root = tmp_path_factory.mktemp("african")
    source = samples.write_african_source(root / "src", patients_per_country=2)
    test = prepare("african", source=source, cache_dir=root / "cache")["test"]
    names = test.features["label"].names
    rows = list(zip(column(test, "image_id"), (names[i] for i in column(test, "label")), strict=True))
    return source, root / "cache", rows


def _csv(path, rows):
    path.write_text("image_id,reference,prediction\n" + "".join(f"{i},{p},{p}\n" for i, p in rows))
    return path


def _run(path, african, *extra):
    source, cache, _ = african
    args = ["evaluate", "predictions", str(path), "--data", "african:test", "--source", str(source)]
    return CliRunner().invoke(main, [*args, "--cache-dir", str(cache), "--json", *extra])


def test_joined_by_image_id(tmp_path, african):
    rows = african[2]
    result = _run(_csv(tmp_path / "p.csv", rows[::-1]), african)  # any order
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["accuracy"] == 1.0 and data["coverage"] == {
        "test_set": "african:test",
        "scored": len(rows),
        "of": len(rows),
        "partial": False,
    }


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda rows: rows + rows[:2], "2 image ids appear more than once"),
        (lambda rows: rows + [("not_a_test_image", rows[0][1])], "1 of"),
        (lambda rows: rows[:3], "predicts 3 of the"),
    ],
)
def test_duplicate_foreign_and_missing_ids_are_refused_with_counts(tmp_path, african, spoil, message):
    result = _run(_csv(tmp_path / "p.csv", spoil(african[2])), african)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_allow_partial_scores_a_subset_and_says_so(tmp_path, african):
    rows = african[2]
    report = tmp_path / "report"
    result = _run(_csv(tmp_path / "p.csv", rows[:3]), african, "--allow-partial", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.split("\nreport:")[0])["coverage"]["partial"] is True
    assert f"on 3 of the {len(rows)} images of african:test" in (report / "report.md").read_text()


def test_a_few_rows_beside_the_studys_row_are_refused(tmp_path, african):
    path = _csv(tmp_path / "p.csv", african[2][:5])
    args = ["evaluate", "predictions", str(path), "--model-name", "resnet18", "--train-set", "ES"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "has 5 rows but the study's row" in result.output
    assert CliRunner().invoke(main, [*args, "--allow-partial"]).exit_code == 0


def test_non_utf8_predictions_is_one_sentence(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("reference,prediction\nFetal brain,Fetal f\xe9mur\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["evaluate", "predictions", str(path)])
    assert (
        result.exit_code == 1 and "is not a UTF-8 CSV" in result.output and "Traceback" not in result.output
    )
