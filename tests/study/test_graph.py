"""The study's graph of steps: identities from content, states from records, resume, failures.

These graphs are small: steps whose ``run`` writes a few bytes, so every rule of the graph is checked in
milliseconds. The same ``run_graph`` runs the smoke study (tests/study/test_run.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fulora_data.errors import ConfigError
from fulora_data.study.graph import DONE, STALE, TODO, Archive, Graph, Output, Step, StepError, plan_states
from fulora_data.study.run import run_graph


def _writer(text_of):
    """A step run that writes ``value.txt`` from its settings and inputs, and counts its calls."""
    calls = []

    def run(ctx):
        calls.append(ctx.out.name)
        ctx.out.mkdir(parents=True, exist_ok=True)
        parts = [text_of(ctx)] + [
            (p.read_text() if p.is_file() else (p / "value.txt").read_text()) for _, p in sorted(ctx.inputs.items())
        ]
        (ctx.out / "value.txt").write_text("|".join(parts))
        return {"parts": len(parts)}

    return run, calls


def _chain(tmp_path: Path, *, a="1", b="2", c="3", archive_text="raw"):
    """source archive -> a -> b -> c, and d reading only the archive."""
    archive = tmp_path / "source.txt"
    if not archive.exists() or archive.read_text() != archive_text:
        archive.write_text(archive_text)
    runs = {}
    steps = []
    for name, value, inputs in (
        ("a", a, {"raw": Archive(str(archive), "raw")}),
        ("b", b, {"a": Output("a")}),
        ("c", c, {"b": Output("b")}),
        ("d", "4", {"raw": Archive(str(archive), "raw")}),
    ):
        run, calls = _writer(lambda ctx, value=value: value)
        runs[name] = calls
        steps.append(Step(name, "toy", {"value": value}, inputs, run))
    return Graph(steps, {"name": "toy"}), runs


def _states(graph, study):
    return {name: plan.state for name, plan in plan_states(graph, study).items()}


def test_a_fresh_study_runs_every_step_in_order_and_writes_one_record_each(tmp_path):
    graph, runs = _chain(tmp_path)
    study = tmp_path / "study"
    result = run_graph(graph, study, log=lambda m: None)
    assert result["ran"] == ["a", "b", "c", "d"]
    assert (study / "c" / "value.txt").read_text() == "3|2|1|raw"
    record = json.loads((study / ".state" / "c.json").read_text())
    assert record["identity"] == plan_states(graph, study)["c"].identity
    assert set(record["inputs"]) == {"b"} and record["summary"] == {"parts": 2}
    assert _states(graph, study) == {"a": DONE, "b": DONE, "c": DONE, "d": DONE}


def test_a_rerun_runs_nothing_and_says_so(tmp_path):
    graph, runs = _chain(tmp_path)
    study = tmp_path / "study"
    run_graph(graph, study, log=lambda m: None)
    lines: list[str] = []
    again = run_graph(graph, study, log=lines.append)
    assert again["ran"] == [] and all(len(calls) == 1 for calls in runs.values())
    assert lines == ["nothing to do: all 4 steps of the 'toy' study are done"]


def test_changing_one_setting_makes_exactly_the_steps_that_read_it_stale(tmp_path):
    graph, _ = _chain(tmp_path)
    study = tmp_path / "study"
    run_graph(graph, study, log=lambda m: None)
    changed, runs = _chain(tmp_path, b="two")
    plans = plan_states(changed, study)
    assert {n: p.state for n, p in plans.items()} == {"a": DONE, "b": STALE, "c": STALE, "d": DONE}
    assert plans["b"].why == "settings changed: value"
    result = run_graph(changed, study, log=lambda m: None)
    assert result["ran"] == ["b", "c"] and runs["a"] == [] and runs["d"] == []
    assert (study / "c" / "value.txt").read_text() == "3|two|1|raw"


def test_identity_is_the_archive_content_not_its_path_or_time(tmp_path):
    graph, _ = _chain(tmp_path)
    study = tmp_path / "study"
    run_graph(graph, study, log=lambda m: None)
    archive = tmp_path / "source.txt"
    archive.write_text("raw")  # same bytes, new mtime: nothing changes
    assert set(_states(graph, study).values()) == {DONE}
    moved = tmp_path / "moved"
    study.rename(moved)  # the study folder moved: still done
    assert set(_states(graph, moved).values()) == {DONE}
    archive.write_text("new bytes")  # the archive's content changed: every step reading it, and theirs
    assert _states(graph, moved) == {"a": STALE, "b": STALE, "c": STALE, "d": STALE}


def test_a_missing_archive_is_named_in_the_plan_and_refused_before_anything_runs(tmp_path):
    step = Step("a", "toy", {}, {"raw": Archive(str(tmp_path / "absent.zip"), "spanish")}, _writer(lambda c: "x")[0])
    graph = Graph([step], {"name": "toy"})
    plans = plan_states(graph, tmp_path / "study")
    assert plans["a"].state == TODO and "sources.spanish" in plans["a"].why and "absent.zip" in plans["a"].why
    with pytest.raises(ConfigError, match="sources.spanish: .*absent.zip' does not exist"):
        run_graph(graph, tmp_path / "study", log=lambda m: None)
    assert not (tmp_path / "study" / "a").exists()


def test_a_failing_step_stops_the_run_naming_it_and_the_next_run_continues_from_it(tmp_path):
    archive = tmp_path / "source.txt"
    archive.write_text("raw")
    attempts = []

    def flaky(ctx):
        attempts.append(sorted(p.name for p in ctx.out.glob("*")) if ctx.out.exists() else [])
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / "partial.txt").write_text("half")  # the step's own resumable progress
        if len(attempts) == 1:
            raise ConfigError("the base model cannot be loaded")
        (ctx.out / "value.txt").write_text("done")
        return {}

    first, first_calls = _writer(lambda c: "1")
    after, after_calls = _writer(lambda c: "3")
    graph = Graph(
        [
            Step("a", "toy", {}, {"raw": Archive(str(archive), "raw")}, first),
            Step("b", "toy", {}, {"a": Output("a")}, flaky),
            Step("c", "toy", {}, {"b": Output("b")}, after),
        ],
        {"name": "toy"},
    )
    study = tmp_path / "study"
    with pytest.raises(StepError, match="step 'b' failed: the base model cannot be loaded"):
        run_graph(graph, study, log=lambda m: None)
    assert not (study / ".state" / "b.json").exists() and after_calls == []
    assert _states(graph, study) == {"a": DONE, "b": TODO, "c": TODO}
    result = run_graph(graph, study, log=lambda m: None)
    assert result["ran"] == ["b", "c"] and first_calls == ["a"]
    assert attempts[1] == ["partial.txt"]  # the same identity handed the folder back to the step's resume


def test_a_step_rerun_with_another_identity_starts_from_an_empty_folder(tmp_path):
    archive = tmp_path / "source.txt"
    archive.write_text("raw")
    seen = []

    def run(ctx):
        seen.append(sorted(p.name for p in ctx.out.glob("*")) if ctx.out.exists() else [])
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / f"v{ctx.out.stat().st_ino}.txt").write_text("x")
        return {}

    for value in ("1", "2"):
        graph = Graph([Step("a", "toy", {"v": value}, {"raw": Archive(str(archive), "raw")}, run)], {"name": "t"})
        run_graph(graph, tmp_path / "study", log=lambda m: None)
    assert seen == [[], []]


def test_a_folder_the_study_did_not_write_is_refused_not_deleted(tmp_path):
    graph, _ = _chain(tmp_path)
    study = tmp_path / "study"
    (study / "a").mkdir(parents=True)
    (study / ".state").mkdir()
    (study / "a" / "mine.txt").write_text("precious")
    with pytest.raises(ConfigError, match="holds files the study did not write"):
        run_graph(graph, study, log=lambda m: None)
    assert (study / "a" / "mine.txt").read_text() == "precious"


def test_a_folder_with_files_that_is_no_study_is_refused_before_anything_runs(tmp_path):
    graph, runs = _chain(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds files that are not a fulora study"):
        run_graph(graph, tmp_path / "other", log=lambda m: None)
    assert runs["a"] == [] and sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


def test_a_cycle_or_an_unknown_input_is_refused():
    run = _writer(lambda c: "x")[0]
    with pytest.raises(ConfigError, match="cycle"):
        Graph([Step("a", "toy", {}, {"b": Output("b")}, run), Step("b", "toy", {}, {"a": Output("a")}, run)])
    with pytest.raises(ConfigError, match="reads the output of 'z', which is no step"):
        Graph([Step("a", "toy", {}, {"z": Output("z")}, run)])
