"""One atomic-write guarantee: files and folders appear whole or not at all, written only through io.py."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from fulora_data.io import atomic_file, atomic_folder, atomic_write_json, find_folder

PACKAGE = Path(__file__).resolve().parents[1] / "fulora_data"
# Renames left outside io.py on purpose: a generated shard's ".partial" name is what the resumable writer
# recognises as its own leftover, and an export swaps a whole config folder next to its manifest.
RENAMES_ALLOWED = {"io.py", "generated.py", "export.py"}


def test_atomic_file_replaces_whole_or_keeps_the_old_content(tmp_path):
    target = tmp_path / "a.npy"
    with atomic_file(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.arange(5))
    assert np.array_equal(np.load(target), np.arange(5))
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert np.array_equal(np.load(target), np.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_atomic_folder_and_json(tmp_path):
    with atomic_folder(tmp_path / "run") as folder:
        atomic_write_json(folder / "state.json", {"epoch": 1})
    with pytest.raises(ValueError), atomic_folder(tmp_path / "run") as folder:
        (folder / "state.json").write_text("{}")
        raise ValueError("crash")
    assert find_folder(tmp_path / "run") == tmp_path / "run"
    assert (tmp_path / "run" / "state.json").read_text() == '{\n  "epoch": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_no_module_renames_files_by_hand():
    """``os.replace`` / ``Path.rename`` / ``Path.replace`` outside io.py would be an eleventh writer."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in RENAMES_ALLOWED and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                owner = node.func.value
                if name == "replace" and isinstance(owner, ast.Name) and owner.id == "os":
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} os.replace")
                elif name == "rename":
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .rename")
    assert not found, "write through fulora_data.io instead:\n" + "\n".join(found)
