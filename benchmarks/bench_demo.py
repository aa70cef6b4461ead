"""Benchmark: ``fulora demo`` (the smoke study) from an empty folder and its no-op rerun, per step.

Timed in fresh processes, as a user runs it: (1) the baseline, a process that only imports what the steps
import (torch, torchvision, diffusers, datasets) and exits, the fixed cost every run pays; (2) ``fulora demo``
into an empty folder; (3) the same command again, which runs nothing. Prints wall seconds of each and the
seconds each step recorded in ``STUDY/.state/STEP.json``. The issue's target is under a minute for (2) on a
quiet 2-core machine after install; on a loaded machine compare (2) with (1) of the same run.

Then renders ``report/report.html`` to a PNG with headless Chromium when it is installed (``--screenshot``).

Usage: python benchmarks/bench_demo.py [--workdir DIR] [--screenshot PNG]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULORA = [sys.executable, "-c", "from fulora_data.cli import main; main()"]


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-demo-"))
    study = root / "demo"
    if study.exists():
        shutil.rmtree(study)
    baseline, _ = timed([sys.executable, "-c", "import torch, torchvision, diffusers, datasets"])
    first, _ = timed([*FULORA, "demo", "--workdir", str(study)])
    again, output = timed([*FULORA, "demo", "--workdir", str(study)])
    print(f"baseline (imports only)  {baseline:7.1f} s")
    print(f"fulora demo, empty folder {first:6.1f} s")
    print(f"fulora demo, rerun        {again:6.1f} s   ({output.splitlines()[0]})")
    for path in sorted((study / ".state").glob("*.json")):
        record = json.loads(path.read_text())
        if "seconds" in record:
            print(f"  {record['step']:<28} {record['seconds']:7.2f} s")
    if args.screenshot and shutil.which("chromium"):
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1280,1400", f"--screenshot={args.screenshot}", (study / "report" / "report.html").as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip
        print(f"report rendered to {args.screenshot}")


if __name__ == "__main__":
    main()
