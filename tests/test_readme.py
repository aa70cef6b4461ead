"""The README's "try it on a CPU" commands run as written (issue 19, item 1).

A CPU-runnable command is a ```bash block directly preceded by an HTML comment ``<!-- cpu -->`` or
``<!-- cpu writes: PATH PATH ... -->``. The blocks run in README order, each with ``bash -e``, in one fresh
temporary folder (the README's first CPU block prepares it, as it tells the reader to), with the
virtualenv's ``bin`` first on ``PATH`` and the Hugging Face caches inside the folder. Each must exit 0 and
leave every file its ``writes:`` list promises.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!--\s*cpu(?:\s+writes:(?P<writes>[^>]*?))?\s*-->\s*\n```bash\n(?P<body>.*?)\n```", re.S)


def cpu_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(commands, promised files)`` of every CPU-marked bash block, in order."""
    return [(m["body"], (m["writes"] or "").split()) for m in BLOCK.finditer(text)]


def test_readme_marks_a_cpu_command_for_every_step_of_the_loop():
    commands = "\n".join(body for body, _ in cpu_blocks(README.read_text(encoding="utf-8")))
    for step in ("fulora train lora", "fulora generate", "fulora data prepare hybrid",
                 "fulora train classifier", "fulora evaluate", "fulora study run"):  # fmt: skip
        assert step in commands, f"no CPU-marked README command runs {step!r}"


@pytest.mark.slow
def test_readme_cpu_commands_run_as_written_and_write_what_they_promise(tmp_path):
    blocks = cpu_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 7
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HOME"] = str(tmp_path / "hf-home")
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    work = tmp_path / "work"
    work.mkdir()
    for body, writes in blocks:
        run = subprocess.run(["bash", "-e", "-c", body], cwd=work, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"README block failed:\n{body}\n--- stderr ---\n{run.stderr[-3000:]}"
        for name in writes:
            assert (work / name).is_file(), f"README block did not write {name}:\n{body}"
            assert (work / name).stat().st_size > 0, name
