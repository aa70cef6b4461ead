"""`fulora data list|prepare|info` in-process, and the real FETAL_PLANES_DB sample when ../shared is there."""

from __future__ import annotations

import ast
import csv
import json

import click
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, needs_shared

from fulora_data.cli import main
from fulora_data.samples import write_african_source, write_spanish_source
from fulora_data.taxonomy import PLANES


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))


def test_every_command_has_help():
    paths = list(_all_commands(main))
    assert ("data", "prepare") in paths and ("data", "info") in paths and ("data", "list") in paths
    for path in [(), *paths]:
        result = run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_list_shows_builders_and_configs():
    result = run("data", "list", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert [c["name"] for c in rows["spanish"]["configs"]] == ["full", "es", "es-1150", "lora-100"]
    assert "Ghana" in [c["name"] for c in rows["african"]["configs"]]
    text = run("data", "list").output
    assert "es [default]" in text and "all [default]" in text


def test_prepare_then_info_json(tmp_path):
    source = write_spanish_source(tmp_path / "src", per_plane=4, test_per_plane=2, seed=9, archive=True)
    cache = str(tmp_path / "cache")
    result = run("data", "prepare", "spanish", "-c", "full", "--source", str(source), "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "spanish/full 1.0.0: train 24, test 12" in result.output
    result = run(
        "data", "info", "spanish", "-c", "full", "--source", str(source), "--cache-dir", cache, "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("name", "config", "version")} == {
        "name": "spanish",
        "config": "full",
        "version": "1.0.0",
    }
    assert summary["splits"] == {"train": 24, "test": 12}
    assert summary["label_counts"]["train"] == {name: 4 for name in [*PLANES, "Maternal cervix"]}
    assert summary["provenance"]["source"]["kind"] == "archive"


def test_info_text_for_african(tmp_path):
    source = write_african_source(tmp_path / "src", patients_per_country=2)
    result = run("data", "info", "african", "--source", str(source), "--cache-dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    assert "african/all 1.0.0" in result.output and "test:" in result.output


@needs_shared
def test_real_sample_has_100_images_20_per_plane(tmp_path):
    sample = SHARED_DATA / "fetal_planes_db_sample"
    result = run("data", "info", "spanish", "--source", str(sample), "--cache-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["splits"] == {"train": 100}
    assert summary["label_counts"]["train"] == {plane: 20 for plane in PLANES}
    assert summary["num_patients"]["train"] == 85


@needs_shared
def test_real_lora_list_selects_exactly_the_listed_images(tmp_path):
    sample = SHARED_DATA / "fetal_planes_db_sample"
    listing = SHARED_DATA / "upstream_lists" / "lora_train_data.csv"
    from fulora_data.prepare import column, prepare

    splits = prepare("spanish", "lora-100", source=sample, cache_dir=tmp_path, subset_csv=listing)
    with open(listing, encoding="utf-8-sig") as handle:
        listed = {r["Image_name"] for r in csv.DictReader(handle) if r["category"] != "cervix"}
    assert len(listed) == 100
    assert set(column(splits["train"], "image_id")) == listed
    assert len(splits["train"]) == 100


@needs_shared
def test_real_hybrid_list_against_the_sample_names_what_is_missing(tmp_path):
    sample = SHARED_DATA / "fetal_planes_db_sample"
    listing = SHARED_DATA / "upstream_lists" / "spain_train_1150_balanced.csv"
    result = run(
        "data",
        "prepare",
        "spanish",
        "-c",
        "es-1150",
        "--source",
        str(sample),
        "--subset-csv",
        str(listing),
        "--cache-dir",
        str(tmp_path),
    )
    assert result.exit_code != 0
    assert "spain_train_1150_balanced.csv lists" in result.output and "not in the 'es' pool" in result.output


@pytest.mark.parametrize("bad", ["--seed", "--cache-dir"])
def test_option_values_are_checked_by_click(bad, tmp_path):
    result = run("data", "info", "spanish", bad)
    assert result.exit_code == 2


def test_data_option_is_the_one_way_and_flags_are_its_aliases(tmp_path):
    from fulora_data.prepare import info as library_info

    source = write_spanish_source(tmp_path / "src", per_plane=6, test_per_plane=1, seed=3)
    common = ["--source", str(source), "--cache-dir", str(tmp_path / "cache"), "--json"]
    # per_plane has no flag: --data-option is the one spelling that reaches every builder option.
    draw = ["--data-option", "per_plane=3"]
    by_flag = run("data", "info", "spanish", *draw, "--seed", "5", *common)
    by_option = run("data", "info", "spanish", *draw, "--data-option", "seed=5", *common)
    assert by_flag.exit_code == 0 and by_option.exit_code == 0, by_flag.output + by_option.output
    assert json.loads(by_flag.stdout) == json.loads(by_option.stdout)
    # ... and both equal the library's result for the same options.
    expected = library_info("spanish", source=source, cache_dir=tmp_path / "cache", per_plane=3, seed=5)
    assert expected["splits"] == {"train": 15}
    assert json.loads(by_option.stdout) == json.loads(json.dumps(expected))
    # one value per option, and only the builder's options
    result = run("data", "info", "spanish", "--seed", "5", "--data-option", "seed=6", *common)
    assert result.exit_code == 2 and "seed is given twice" in result.output
    result = run("data", "prepare", "spanish", "--data-option", "colour=red", *common[:-1])
    assert result.exit_code == 2 and "spanish has no option 'colour'" in result.output


def test_commands_are_attached_in_one_place():
    """Command modules define commands; only ``fulora_data/cli/__init__.py`` attaches them to groups."""
    from pathlib import Path

    import fulora_data.cli

    folder = Path(fulora_data.cli.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "add_command":
                assert path.name == "__init__.py", f"{path.name}:{node.lineno} attaches a command"
            if node.func.attr in ("command", "group") and isinstance(node.func.value, ast.Name):
                owner = node.func.value.id
                assert owner == "click" or owner in _groups_defined_in(tree), (
                    f"{path.name}:{node.lineno} registers onto {owner}, a group from another module"
                )


def _groups_defined_in(tree) -> set[str]:
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("group" in ast.unparse(decorator) for decorator in node.decorator_list)
    }
