"""``fulora study run`` on the smoke preset: every step, the records, the no-op rerun, exact staleness."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fulora_data.cli import main
from fulora_data.demo import demo_changes
from fulora_data.evaluation.reference import published_row
from fulora_data.study.run import plan_study, run_study

SMOKE_CHANGES = demo_changes(epochs=1, per_plane=2)  # the smoke_study fixture's (tests/study/conftest.py)
SMOKE_STEPS = [
    "sources", "base", "lora-tiny", "generate-tiny", "datasets", "audit", "classifier/resnet18-ES",
    "evaluate/resnet18-ES", "classifier/resnet18-HB", "evaluate/resnet18-HB", "report",
]  # fmt: skip


def test_the_smoke_study_runs_every_step_once_and_records_each(smoke_study):
    folder, result, lines = smoke_study
    assert result["ran"] == SMOKE_STEPS
    assert [line.split(":")[0] for line in lines if line.startswith("[")] == [
        f"[{i}/11] {name}" for i, name in enumerate(SMOKE_STEPS, 1)
    ]
    assert all(row["state"] == "done" for row in result["plan"]["steps"])
    for name in SMOKE_STEPS:
        record = result["records"][name]
        assert record["identity"] and len(record["output_digest"]) == 64 and record["device"] == "cpu"
        assert not (folder / ".state" / f"{name.replace('/', '__')}.started.json").exists()
    # the evaluation's scores are the study protocol's on the African test split, with intervals
    scores = json.loads((folder / "evaluate" / "resnet18-HB" / "scores.json").read_text())
    assert scores["protocol"] == "paper" and scores["n"] == 48
    for metric, value in scores["scores"].items():
        low, high = scores["intervals"]["values"][metric]
        assert low <= value <= high
    # the generation read the adapter the LoRA step wrote: its input digest is the adapter folder's
    adapter = result["records"]["generate-tiny"]["inputs"]["adapter"]
    from fulora_data.study.graph import folder_digest

    assert adapter == folder_digest(folder / "lora-tiny" / "adapter")


def test_a_rerun_is_a_no_op_that_says_so(smoke_study):
    folder, result, _ = smoke_study
    lines: list[str] = []
    again = run_study(folder, "smoke", changes=SMOKE_CHANGES, log=lines.append)
    assert again["ran"] == [] and lines == ["nothing to do: all 11 steps of the 'smoke' study are done"]
    assert again["records"] == result["records"]


def _states(folder, changes):
    plan = plan_study(folder, "smoke", changes)
    return {row["name"]: row["state"] for row in plan["steps"]}


def test_changing_the_classifier_epochs_makes_exactly_the_classifiers_and_what_reads_them_stale(smoke_study):
    folder, _, _ = smoke_study
    from fulora_data.study.presets import merge

    states = _states(folder, merge(SMOKE_CHANGES, {"classifiers": {"config": {"epochs": 2}}}))
    stale = {name for name, state in states.items() if state != "done"}
    assert stale == {"classifier/resnet18-ES", "classifier/resnet18-HB", "evaluate/resnet18-ES",
                     "evaluate/resnet18-HB", "report"}  # fmt: skip
    assert all(states[name] == "stale" for name in stale)


def test_changing_the_images_per_plane_makes_exactly_the_generation_and_its_readers_stale(smoke_study):
    folder, _, _ = smoke_study
    from fulora_data.study.presets import merge

    changes = merge(SMOKE_CHANGES, {"generations": {"tiny": {"config": {"per_plane": 3}}}})
    stale = {name for name, state in _states(folder, changes).items() if state != "done"}
    # ES reads only the Spanish archive: it stays done; HB reads the synthetic set
    assert stale == {"generate-tiny", "datasets", "classifier/resnet18-HB", "evaluate/resnet18-HB", "report"}


def test_the_report_holds_the_published_table_beside_the_runs(smoke_study):
    folder, _, _ = smoke_study
    markdown = (folder / "report" / "report.md").read_text()
    scores = json.loads((folder / "evaluate" / "resnet18-ES" / "scores.json").read_text())
    paper = published_row("resnet18", "ES")
    ours = round(100 * scores["scores"]["accuracy"], 2)
    low, high = (round(100 * v, 2) for v in scores["intervals"]["values"]["accuracy"])
    row = next(line for line in markdown.splitlines() if line.startswith("| resnet18 | ES |"))
    assert row.split(" | ")[2] == f"{ours:.2f} [{low:.2f}, {high:.2f}] / {paper['accuracy']:.2f} / {ours - paper['accuracy']:+.2f}"
    assert "| resnet18 | HB |" in markdown and "phantom data" in markdown
    data = json.loads((folder / "report" / "report.json").read_text())
    steps = [s["step"] for s in data["provenance"]["steps"]]
    assert steps[:2] == ["sources", "base"] and "classifier/resnet18-HB" in steps
    assert data["audit"]["exact_duplicate_pairs"] == json.loads((folder / "audit" / "audit.json").read_text())["audit"]["exact_duplicate_pairs"]


def test_the_plan_of_a_finished_study_shows_measured_seconds(smoke_study):
    folder, _, _ = smoke_study
    result = CliRunner().invoke(main, ["study", "plan", "--preset", "smoke", "--out", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    # the CLI plan is of the preset's own sizes (4 images per plane, 4 epochs), not the test's (2, 1): the
    # steps that read those settings are stale, those that do not (sources, base model, adapter, audit) done
    stale = {row["name"] for row in plan["steps"] if row["state"] != "done"}
    assert stale == {"generate-tiny", "datasets", "classifier/resnet18-ES", "evaluate/resnet18-ES",
                     "classifier/resnet18-HB", "evaluate/resnet18-HB", "report"}  # fmt: skip
    plan = plan_study(folder, "smoke", SMOKE_CHANGES)
    assert plan["to_run"] == 0 and all(row["estimate"]["source"] == "measured" for row in plan["steps"])


def test_a_second_run_on_the_same_folder_is_refused_while_one_runs(smoke_study, tmp_path):
    from filelock import FileLock

    from fulora_data.errors import ConfigError

    folder, _, _ = smoke_study
    lock = FileLock(str(folder / ".state" / "run.lock"))
    with lock, pytest.raises(ConfigError, match="is being run by another 'fulora study run'"):
        run_study(folder, "smoke", changes=SMOKE_CHANGES, log=lambda m: None)


def _copy_study(folder, tmp_path):
    import shutil

    copy = tmp_path / "study"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("run.lock"))
    return copy


def test_only_the_report_reruns_when_only_its_note_changes(smoke_study, tmp_path):
    from fulora_data.study.presets import merge

    folder = _copy_study(smoke_study[0], tmp_path)
    changes = merge(SMOKE_CHANGES, {"report": {"note": "a changed note"}})
    result = run_study(folder, "smoke", changes=changes, log=lambda m: None)
    assert result["ran"] == ["report"]
    assert "> a changed note" in (folder / "report" / "report.md").read_text()


@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_the_submitit_executor_runs_the_steps_left_as_jobs(smoke_study, tmp_path, cluster):
    pytest.importorskip("submitit")
    from fulora_data.study.presets import merge
    from fulora_data.study.run import SubmititExecutor

    folder = _copy_study(smoke_study[0], tmp_path)
    changes = merge(SMOKE_CHANGES, {"report": {"note": f"through submitit's {cluster} executor"}})
    executor = SubmititExecutor(folder=tmp_path / "jobs", cluster=cluster)
    result = run_study(folder, "smoke", changes=changes, executor=executor, log=lambda m: None)
    assert result["ran"] == ["report"] and result["plan"]["to_run"] == 0
    assert f"> through submitit's {cluster} executor" in (folder / "report" / "report.md").read_text()
    assert any((tmp_path / "jobs").iterdir())  # submitit's job files: it did run the step


def test_a_worker_process_reports_a_failing_step_in_one_line(smoke_study, tmp_path):
    import subprocess
    import sys

    folder = _copy_study(smoke_study[0], tmp_path)
    done = subprocess.run([sys.executable, "-m", "fulora_data.study.worker", str(folder), "no-such-step"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].endswith("has no step 'no-such-step'")


@pytest.mark.slow
def test_a_run_killed_in_the_middle_finishes_on_the_next_run_with_the_same_results(smoke_study, tmp_path):
    """Kill ``fulora study run`` during the first classifier, then rerun with one worker process per
    (pretend) GPU: the two classifiers and evaluations run in parallel and give the first run's scores."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from fulora_data.study.presets import merge
    from fulora_data.study.run import LocalExecutor

    preset = tmp_path / "smoke-test.yaml"
    preset.write_text(yaml.safe_dump(merge({"from": "smoke", "name": "smoke"}, SMOKE_CHANGES)))
    folder = tmp_path / "killed"
    command = [sys.executable, "-c", "from fulora_data.cli import main; main()", "study", "run",
               "--preset", str(preset), "--out", str(folder)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = folder / ".state" / "classifier__resnet18-ES.started.json"
    deadline = time.monotonic() + 900
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run ended or stalled before the first classifier started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / ".state" / "classifier__resnet18-ES.json").exists()
    lines: list[str] = []
    result = run_study(folder, str(preset), executor=LocalExecutor(devices=["0", "1"]), log=lines.append)
    assert result["ran"][0] == "classifier/resnet18-ES" and result["plan"]["to_run"] == 0
    assert any("started on device 1" in line for line in lines)  # two steps at once, one per device
    for cell in ("resnet18-ES", "resnet18-HB"):
        ours = json.loads((folder / "evaluate" / cell / "scores.json").read_text())
        first = json.loads((smoke_study[0] / "evaluate" / cell / "scores.json").read_text())
        assert ours["scores"] == first["scores"]
