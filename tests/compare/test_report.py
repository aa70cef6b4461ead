"""The --report folder of `fulora data compare` (fulora_data/compare/report.py): never a user's file lost,
one writer at a time."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner
from compare_fixtures import SIZE, tiny_sets, weights  # noqa: F401  (module fixtures)

from fulora_data.cli import main


def _args(tiny_sets, weights, tmp_path, report) -> list[str]:  # noqa: F811
    args = ["data", "compare", "synthetic/generated", "synthetic/generated"]
    args += ["--source", str(tiny_sets["base"]), "--source", str(tiny_sets["near"])]
    args += ["--per-plane", "3", "--image-size", str(SIZE), "--weights", str(weights), "--bootstrap", "3"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--plane", "Fetal brain", "--report", str(report)]
    return args


def test_a_users_report_md_is_refused_before_any_work_and_kept(tiny_sets, weights, tmp_path):  # noqa: F811
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("my own notes\n")
    run = CliRunner().invoke(main, _args(tiny_sets, weights, tmp_path, report))
    assert run.exit_code != 0 and "Traceback" not in run.output
    assert "report.md exists and was not written by fulora" in run.output
    assert (report / "report.md").read_text() == "my own notes\n"
    assert sorted(p.name for p in report.iterdir()) == ["report.md"]  # nothing half-written beside it
    assert not (tmp_path / "cache").exists()  # refused before a single feature was computed


def test_fulora_replaces_its_own_report_but_not_one_the_user_edited(tiny_sets, weights, tmp_path):  # noqa: F811
    report = tmp_path / "report"
    args = _args(tiny_sets, weights, tmp_path, report)
    assert CliRunner().invoke(main, args).exit_code == 0
    record = json.loads((report / ".fulora_written.json").read_text())
    assert {"report.md", "compare.json", "card_section.md"} <= set(record["files"])
    run = CliRunner().invoke(main, args)  # its own files: replaced
    assert run.exit_code == 0, run.output
    (report / "card_section.md").write_text("edited by hand\n")
    run = CliRunner().invoke(main, args)
    assert "card_section.md exists and was not written by fulora" in run.output
    assert (report / "card_section.md").read_text() == "edited by hand\n"


def test_a_second_compare_into_one_report_folder_is_refused_naming_the_holder(tiny_sets, weights, tmp_path):  # noqa: F811
    report = tmp_path / "report"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from fulora_data.io import folder_lock\n"
            f"with folder_lock({str(report)!r}, '--report'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        run = CliRunner().invoke(main, _args(tiny_sets, weights, tmp_path, report))
        assert run.exit_code != 0 and f"another fulora process (PID {holder.pid})" in run.output
        # Refused at once: a run that waited for the holder would have written its report.
        assert not (report / "report.md").exists()
    finally:
        holder.kill()
        holder.wait()
