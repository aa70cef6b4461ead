"""`fulora doctor`: reports what is usable, never the token."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fulora_data.cli import main

SECRET = "hf_fulora_doctor_secret_do_not_print_42"


def test_doctor_reports_packages_and_never_prints_the_token(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    text = CliRunner().invoke(main, ["doctor"])
    assert text.exit_code == 0, text.output
    assert SECRET not in text.output and "token present" in text.output
    assert "torch" in text.output and "diffusers" in text.output and "GPU:" in text.output
    assert "offline mode is on" in text.output and "free" in text.output
    found = CliRunner().invoke(main, ["doctor", "--json"])
    assert found.exit_code == 0 and SECRET not in found.output
    report = json.loads(found.output)
    assert report["hub"]["token_present"] is True
    assert report["packages"]["peft"]["version"] and report["caches"]["HF_HOME"]["path"] == str(
        tmp_path / "hf"
    )
    assert report["caches"]["HF_HOME"]["free_gib"] > 0


def test_doctor_says_what_a_missing_piece_disables(monkeypatch):
    from fulora_data import doctor

    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda name: None if name == "bitsandbytes" else real(name))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(doctor, "_token_present", lambda: False)
    report = doctor.diagnose()
    assert report["packages"]["bitsandbytes"]["version"] is None
    assert any(
        line.startswith("bitsandbytes missing (pip install 'fulora[train]'): no 8-bit AdamW")
        for line in report["disabled"]
    )
    assert any("no Hugging Face token" in line for line in report["disabled"])
    assert "MISSING (fulora[train])" in doctor.format_report(report)
