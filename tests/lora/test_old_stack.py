"""Both files of a fresh adapter load on an older stack (transformers 4.57, peft 0.17, diffusers 0.35).

Runs ``scripts/check_old_stack.py`` with the Python named by ``FULORA_OLD_STACK_PYTHON`` (``make
check-old-stack`` builds such an environment in ``.venv-old-stack``); slow, and skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_old_stack.py"
OLD_PYTHON = os.environ.get("FULORA_OLD_STACK_PYTHON", "")


@pytest.mark.slow
@pytest.mark.skipif(not OLD_PYTHON, reason="FULORA_OLD_STACK_PYTHON names no older-stack Python")
def test_both_adapter_files_load_on_the_older_stack_with_the_same_pixels(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--old-python", OLD_PYTHON, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["versions"]["old"]["transformers"].startswith("4.")
    assert len(report["files"]) == 4  # two files on two stacks, every one loaded
    assert max(report["max_abs_diff"].values()) <= 1 / 255
