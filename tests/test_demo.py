"""`fulora demo`: the main job on the embedded default data, end to end."""

from __future__ import annotations

import datasets
from click.testing import CliRunner

from fulora_data.audit import audit_dataset
from fulora_data.cli import main
from fulora_data.demo import run_demo
from fulora_data.evaluation import evaluate_split
from fulora_data.prepare import prepare


def test_demo_runs_every_step_and_its_outputs_load(tmp_path):
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", epochs=1, log=lines.append)
    assert summary["sizes"]["spanish/lora-100"] == {"train": 100}
    assert summary["sizes"]["african/all"]["test"] > 0
    hybrid = summary["sizes"]["hybrid/es1150-generated"]
    assert hybrid["train"] + hybrid["validation"] == 100 + summary["sizes"]["synthetic/generated"]["train"]
    exported = datasets.load_dataset(summary["exports"]["spanish/lora-100"], "lora-100", split="train")
    assert len(exported) == 100 and exported.features["label"].names[0] == "Other"
    assert (tmp_path / "demo" / "hub" / "synthetic" / "README.md").is_file()
    assert set(summary["audit"]) >= {"exact_duplicate_pairs", "cross_split_duplicate_pairs"}
    # The demo's figures are the library's on the same data, not just numbers in range.
    sources = tmp_path / "demo" / "sources"
    cache = tmp_path / "demo" / "cache"
    african = prepare("african", "all", source=sources / "Zenodo_dataset.tar.xz", cache_dir=cache)
    assert summary["sizes"]["african/all"] == {split: len(rows) for split, rows in african.items()}
    expected = evaluate_split(summary["model_dir"], african["test"], protocol="paper")
    assert summary["zero_shot"] == {k: expected[k] for k in ("accuracy", "recall", "precision", "f1", "auc")}
    expected_audit = audit_dataset(
        "african", "all", source=sources / "Zenodo_dataset.tar.xz", cache_dir=cache
    )
    assert summary["audit"] == expected_audit["audit"]
    assert (tmp_path / "demo" / "report" / "report.md").is_file()
    assert lines[0].startswith("[1/6]") and any(line.startswith("[6/6]") for line in lines)


def test_demo_command_has_help():
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "--workdir" in result.output
