"""Install fulora with every dependency at the lower bound setup.cfg allows, in a fresh venv, and run tests.

    python scripts/check_lower_bounds.py                      # core dependencies, the core tests
    python scripts/check_lower_bounds.py --extras train,eval,audit --tests tests   # everything (large: torch)

Each ``name>=X`` of ``install_requires`` (and of the extras asked for) becomes the constraint ``name==X``, so
pip installs exactly the oldest versions fulora claims to support; the script then runs the tests against
them and exits with pytest's status. It prints the versions it tested. It needs the package index (pip) and
a Python that the oldest versions have wheels for (numpy 1.24 has none past Python 3.11). ``make
lower-bounds`` runs it; docs/dependencies.md says when (before changing a bound).
"""

from __future__ import annotations

import argparse
import configparser
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests that need only the core dependencies (no torch, diffusers, evaluate or imagehash).
CORE_TESTS = [
    "tests/test_builders.py",
    "tests/test_cli_data.py",
    "tests/test_export.py",
    "tests/test_hub.py",
    "tests/test_hub_pull.py",
    "tests/test_io.py",
    "tests/test_taxonomy.py",
    "tests/test_archives.py",
]


def requirements(extras: list[str]) -> list[str]:
    """The requirement lines of ``install_requires`` and of ``extras`` (``%(train)s`` references expanded)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += config["options.extras_require"][extra].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def lower_bounds(lines: list[str]) -> list[str]:
    """``name==X`` for each requirement with a ``>=X`` bound, its environment marker kept."""
    from packaging.requirements import Requirement

    pins = {}
    for line in lines:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                marker = f"; {requirement.marker}" if requirement.marker else ""
                pins[requirement.name.lower()] = f"{requirement.name}=={spec.version}{marker}"
    return sorted(pins.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--extras", default="", help="Comma-separated extras to install too (train,eval,audit)."
    )
    parser.add_argument(
        "--venv", type=Path, default=None, help="Where to make the venv (default: a temp folder)."
    )
    parser.add_argument("--tests", nargs="*", default=None, help="Tests to run (default: the core tests).")
    args = parser.parse_args()
    extras = [e for e in args.extras.split(",") if e]
    pins = lower_bounds(requirements(extras))
    venv = args.venv or Path(tempfile.mkdtemp(prefix="fulora-lower-"))
    constraints = venv.parent / f"{venv.name}-constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    print("lower bounds:\n  " + "\n  ".join(pins), flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    target = f".[{','.join(extras)}]" if extras else "."
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run(
        [*pip, "-c", str(constraints), "-e", target, "pytest>=8.0", "pytest-timeout>=2.3"],
        check=True,
        cwd=ROOT,
    )
    subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True)
    tests = args.tests if args.tests is not None else CORE_TESTS
    return subprocess.run([python, "-m", "pytest", "-q", "-x", *tests], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
