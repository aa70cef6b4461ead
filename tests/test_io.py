"""One atomic-write guarantee: files and folders appear whole or not at all, written only through io.py."""

from __future__ import annotations

import ast
import json
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


def _draw(files: dict[str, str]):
    def draw(work: Path) -> None:
        for name, text in files.items():
            (work / name).write_text(text)

    return draw


def test_report_folder_replaces_its_own_files_drops_stale_ones_and_keeps_the_users(tmp_path):
    from fulora_data.io import write_report_folder

    folder = tmp_path / "report"
    first = write_report_folder(
        folder, _draw({"report.md": "one", "a.json": "1", "tsne_x.png": "x"}), owned=["tsne_*.png"]
    )
    (folder / "notes.txt").write_text("the user's")
    second = write_report_folder(folder, _draw({"report.md": "two", "a.json": "2"}), owned=["tsne_*.png"])
    assert first == second == folder / "report.md"
    assert {p.name: p.read_text() for p in folder.iterdir() if p.name != ".fulora_written.json"} == {
        "report.md": "two",
        "a.json": "2",
        "notes.txt": "the user's",
    }
    record = json.loads((folder / ".fulora_written.json").read_text())
    assert sorted(record["files"]) == ["a.json", "report.md"]  # the stale figure left the record too


@pytest.mark.parametrize("name", ["report.md", "tsne_mine.png"])
def test_report_folder_never_replaces_or_removes_a_file_fulora_did_not_write(tmp_path, name):
    from fulora_data.errors import ConfigError
    from fulora_data.io import check_report_folder, write_report_folder

    folder = tmp_path / "report"
    folder.mkdir()
    (folder / name).write_text("the user's")
    with pytest.raises(ConfigError, match=f"--report .*{name} exists and was not written by fulora"):
        check_report_folder(folder, "--report", ["report.md", "tsne_*.png"])
    with pytest.raises(ConfigError, match=f"{name} exists and was not written by fulora"):
        write_report_folder(folder, _draw({"report.md": "ours"}), owned=["tsne_*.png"])
    assert (folder / name).read_text() == "the user's"


def test_report_folder_left_whole_when_drawing_fails(tmp_path):
    from fulora_data.io import write_report_folder

    folder = tmp_path / "report"
    write_report_folder(folder, _draw({"report.md": "one"}))

    def broken(work: Path) -> None:
        (work / "report.md").write_text("half")
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report_folder(folder, broken)
    kept = [p.name for p in folder.iterdir() if p.name != ".fulora_written.json"]  # the record of what fulora wrote
    assert kept == ["report.md"] and (folder / "report.md").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_report_folder_that_is_a_file_is_refused_naming_the_option(tmp_path):
    from fulora_data.errors import ConfigError
    from fulora_data.io import write_report_folder

    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match=r"^--report-dir '.*taken' is a file, not a folder$"):
        write_report_folder(tmp_path / "taken", _draw({"report.md": "x"}), option="--report-dir")
    assert (tmp_path / "taken").read_text() == "a file"


def test_log_stderr_writes_one_line_to_stderr_only(capsys):
    from fulora_data.console import log_stderr

    log_stderr("step 1 of 2")
    captured = capsys.readouterr()
    assert captured.err == "step 1 of 2\n" and captured.out == ""
