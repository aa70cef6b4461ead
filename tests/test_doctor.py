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
        line.startswith(
            "bitsandbytes missing (pip install -e '.[train]' in a clone of fulora's repository): no 8-bit AdamW"
        )
        for line in report["disabled"]
    )
    assert any("no Hugging Face token" in line for line in report["disabled"])
    assert "MISSING (the [train] extra)" in doctor.format_report(report)


def test_doctor_finds_the_cache_as_the_hub_libraries_do(monkeypatch, tmp_path):
    from fulora_data import doctor

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "ACCELERATE_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", "~/hf")
    report = doctor.diagnose()
    assert report["caches"]["HF_HOME"]["path"] == str(tmp_path / "home" / "hf")  # ~ expanded
    assert report["caches"]["HF_HUB_CACHE"]["path"] == str(tmp_path / "home" / "hf" / "hub")
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    report = doctor.diagnose()
    assert report["caches"]["HF_HOME"]["path"] == str(tmp_path / "xdg" / "huggingface")
    assert str(tmp_path / "xdg" / "huggingface" / "accelerate") in report["accelerate_config"]["detail"]


def test_doctor_says_bitsandbytes_needs_cuda_without_a_gpu(monkeypatch):
    from fulora_data import doctor

    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda name: "0.49.0" if name == "bitsandbytes" else real(name))
    monkeypatch.setattr(doctor, "_gpu", lambda: {"ok": False, "detail": "CUDA not available", "devices": []})
    report = doctor.diagnose()
    assert any("8-bit optimizers (the study's AdamW8bit) need CUDA" in line for line in report["disabled"])
    monkeypatch.setattr(doctor, "_gpu", lambda: {"ok": True, "detail": "CUDA 12, 1 device(s)", "devices": []})
    assert not any("need CUDA" in line for line in doctor.diagnose()["disabled"])
