"""Cards through huggingface_hub's typed card classes; templates read from cards/ or the installed package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fulora_data.cards import template
from fulora_data.errors import ConfigError, SourceNotFoundError

REPO = Path(__file__).resolve().parents[1]


def test_templates_come_from_cards_without_a_symlink_into_the_package():
    assert not (REPO / "fulora_data" / "templates").is_symlink()
    for card in sorted((REPO / "cards").glob("*.md")):
        assert template(card.name) == card.read_text(encoding="utf-8")
    for bad in ("../setup.py", "cards/dataset_card.md", ".hidden.md", "dataset_card.txt", None):
        with pytest.raises(ConfigError, match="file name like"):
            template(bad)
    with pytest.raises(SourceNotFoundError, match="'nothing.md' is missing"):
        template("nothing.md")


def test_a_wheel_carries_the_templates_as_package_data(tmp_path):
    pytest.importorskip("setuptools")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("fulora-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for card in (REPO / "cards").glob("*.md"):
            assert archive.read(f"fulora_data/templates/{card.name}") == card.read_bytes()
    assert "fulora_data/cards.py" in names
    # Installed from the wheel, away from the checkout, template() reads the package data.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    code = "import fulora_data.cards as c; print(c.__file__); print(len(c.template('dataset_card.md')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    where, size = out.stdout.split()
    assert where.startswith(str(target)) and int(size) == len(
        (REPO / "cards" / "dataset_card.md").read_text()
    )
