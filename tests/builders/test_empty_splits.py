"""An empty split is one clear sentence, never a traceback, and not cached."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner
from conftest import SHARED

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.prepare import prepare


def _cli(*args):
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _no_build_cached(cache):
    return not any(cache.rglob("*.arrow"))


def test_full_config_of_a_train_only_source(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=0)
    for _ in range(2):  # the poisoned build used to stay cached: the second run must say the same
        result = _cli(
            "data", "prepare", "spanish", "-c", "full", "--source", source, "--cache-dir", tmp_path / "c"
        )
        assert (
            result.exit_code == 1
            and result.output.startswith("Error:")
            and "'full' test split" in result.output
        )
        assert len(result.output.strip().splitlines()) == 1
    assert _no_build_cached(tmp_path / "c")
    assert prepare("spanish", "es", source=source, cache_dir=tmp_path / "c")["train"].num_rows > 0


def test_header_only_csv(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=1, test_per_plane=1)
    csv_path = source / "FETAL_PLANES_DB_data.csv"
    csv_path.write_text(csv_path.read_text(encoding="utf-8-sig").splitlines()[0] + "\n", encoding="utf-8")
    result = _cli("data", "info", "spanish", "-c", "es", "--source", source, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 1 and "would hold no images" in result.output


def test_subset_list_that_selects_nothing(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    subset = tmp_path / "subset.csv"
    subset.write_text("Image_name,Plane\nwhatever,Maternal cervix\n")  # a class outside es: skipped
    result = _cli(
        "data",
        "prepare",
        "spanish",
        "-c",
        "es",
        "--subset-csv",
        subset,
        "--source",
        source,
        "--cache-dir",
        tmp_path / "c",
    )
    assert result.exit_code == 1 and "would hold no images" in result.output
    assert _no_build_cached(tmp_path / "c")


def test_country_without_test_rows_and_audit(tmp_path):
    source = samples.write_african_source(tmp_path / "src", patients_per_country=2)
    csv_path = source / "African_planes_database.csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["Center"] == "Ghana":
            row["Train"] = "1"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = _cli(
        "data", "prepare", "african", "-c", "Ghana", "--source", source, "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 1 and "'Ghana' test split would hold no images" in result.output
    result = _cli(
        "data", "audit", "african", "-c", "Ghana", "--source", source, "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 1 and "would hold no images" in result.output


@pytest.mark.skipif(
    not (samples.__file__ and (SHARED / "data" / "fetal_planes_db_sample").is_dir()),
    reason="../shared is absent",
)
def test_shared_sample_full_config(tmp_path):
    sample = SHARED / "data" / "fetal_planes_db_sample"
    result = _cli(
        "data", "prepare", "spanish", "-c", "full", "--source", sample, "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 1 and "test split would hold no images" in result.output
