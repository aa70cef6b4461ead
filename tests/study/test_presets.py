"""The study's presets and ``fulora study plan``: the paper's steps and counts, YAML changes, estimates."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.study.presets import build_graph, counts, load_settings
from fulora_data.study.run import plan_study


def test_study_plan_json_lists_the_papers_steps_with_counts_and_estimates():
    result = CliRunner().invoke(main, ["study", "plan", "--preset", "study", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["counts"] == {"adapters": 3, "images": 5000, "classifier_runs": 20, "evaluations": 20, "steps": 48}
    names = [row["name"] for row in plan["steps"]]
    assert [n for n in names if n.startswith("lora-")] == ["lora-r8", "lora-r32", "lora-r128"]
    cells = {n.split("/", 1)[1] for n in names if n.startswith("classifier/")}
    assert cells == {f"{m}-{s}" for m in ("densenet169", "mobilenet_v2", "efficientnet_b0", "resnet18", "vit_b_16")
                     for s in ("ES", "ES+DA", "HB", "HB+DA")}  # fmt: skip
    assert {"generate-r128", "datasets", "audit", "compare", "report"} <= set(names)
    by_name = {row["name"]: row for row in plan["steps"]}
    assert by_name["lora-r128"]["inputs"] == {"spanish": "archive spanish"}
    assert by_name["generate-r128"]["inputs"] == {"adapter": "lora-r128/adapter"}
    assert by_name["classifier/resnet18-HB"]["inputs"] == {"spanish": "archive spanish", "synthetic": "generate-r128"}
    # every step has a positive device-time figure, labelled an estimate (no GPU run has been timed)
    assert all(row["estimate"]["source"] == "estimate" and row["estimate"]["seconds"] > 0 for row in plan["steps"])
    assert all(row["state"] == "to do" for row in plan["steps"])
    assert "sources.spanish is not set" in by_name["lora-r8"]["why"]


def test_study_preset_settings_are_the_papers():
    graph = build_graph(load_settings("study"))
    lora = graph.steps["lora-r128"].settings
    assert lora["preset"] == "r128" and lora["config"] == {"data_config": "lora-100", "max_steps": 10_000}
    generation = graph.steps["generate-r128"].settings
    assert generation["preset"] == "study" and graph.steps["generate-r128"].units == 5000
    sets = {(s["name"], s["config"]) for s in graph.steps["datasets"].settings["sets"]}
    assert {("spanish", "es"), ("spanish", "es-1150"), ("spanish", "lora-100"), ("african", "all"),
            ("synthetic", "generated"), ("hybrid", "es1150-generated")} == sets  # fmt: skip
    evaluate = graph.steps["evaluate/vit_b_16-HB+DA"].settings
    assert evaluate["data"] == "african:test" and evaluate["protocol"] == "paper"
    hb = graph.steps["classifier/densenet169-HB"].settings["config"]["dataset_options"]
    assert hb == {"synthetic_config": "generated", "real_config": "es-1150", "synthetic_per_plane": 1000}


def test_plan_text_table_names_every_step_with_state_and_time():
    result = CliRunner().invoke(main, ["study", "plan", "--preset", "smoke"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("study preset 'smoke' on cpu: 11 steps, 1 adapters, 40 images, 2 classifier runs")
    assert lines[2].split()[:3] == ["sources", "to", "do"]
    assert lines[-1].startswith("11 steps to run, about")


def test_a_yaml_preset_adds_a_generation_per_adapter_without_code(tmp_path):
    preset = tmp_path / "every-adapter.yaml"
    preset.write_text(
        "from: study\n"
        "generations:\n"
        "  r8: {adapter: r8, preset: study}\n"
        "  r32: {adapter: r32, preset: study, config: {per_plane: 100}}\n"
        "classifiers: {models: [resnet18], train_sets: [ES, HB]}\n"
        "compare: null\n"
    )
    plan = plan_study(None, str(preset))
    assert plan["preset"] == "every-adapter"
    names = [row["name"] for row in plan["steps"]]
    assert [n for n in names if n.startswith("generate-")] == ["generate-r128", "generate-r8", "generate-r32"]
    assert plan["counts"]["images"] == 5000 + 5000 + 1000 and plan["counts"]["classifier_runs"] == 2
    assert "compare" not in names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("generations: {x: {adapter: r999}}\n", "generation 'x' uses adapter 'r999', which is not in 'adapters'"),
        ("synthetic: nope\n", "'synthetic' names generation 'nope'"),
        ("from: paper\n", "'from' must be one of study, smoke; got 'paper'"),
        ("- a list\n", "must hold a mapping of settings; got list"),
    ],
)
def test_a_bad_yaml_preset_is_one_sentence_naming_it(tmp_path, text, message):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    result = CliRunner().invoke(main, ["study", "plan", "--preset", str(preset)])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_an_unknown_preset_or_source_name_is_refused():
    with pytest.raises(ConfigError, match="unknown study preset 'paper'"):
        load_settings("paper")
    result = CliRunner().invoke(main, ["study", "plan", "--source", "german=/x.zip"])
    assert result.exit_code == 2 and "spanish=PATH or african=PATH; got 'german=/x.zip'" in result.output


def test_given_sources_that_exist_leave_no_reason_in_the_plan(tmp_path):
    spanish, african = tmp_path / "es.zip", tmp_path / "af.tar.xz"
    spanish.write_bytes(b"zip")
    african.write_bytes(b"xz")
    plan = plan_study(tmp_path / "study", "study", {"sources": {"spanish": str(spanish), "african": str(african)}})
    assert all(row["why"] == "" for row in plan["steps"])
    assert counts(build_graph(load_settings("smoke")))["evaluations"] == 2


def test_push_to_takes_an_organisation_and_adds_publish_as_the_last_step(tmp_path):
    result = CliRunner().invoke(main, ["study", "run", "--preset", "smoke", "--out", str(tmp_path / "s"),
                                       "--push-to", "org/name"])  # fmt: skip
    assert result.exit_code == 2 and "takes a Hub user or organisation; got 'org/name'" in result.output
    assert not (tmp_path / "s").exists()
    graph = build_graph(load_settings("smoke", {"publish": {"org": "fulora"}}))
    assert graph.order[-1] == "publish"
    assert set(graph.steps["publish"].upstream()) == {"datasets", "lora-tiny", "classifier/resnet18-ES",
                                                      "classifier/resnet18-HB", "report"}  # fmt: skip
