"""Atomic writes (fulora_data.io) and the trainers' shared checkpoint helpers (fulora_data.checkpoint)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from fulora_data import checkpoint, io
from fulora_data.errors import ConfigError, DataError


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    io.atomic_write_json(target, {"version": 1})
    io.atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "card.md"
    io.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md"]


def test_atomic_folder_swaps_whole_or_not_at_all(tmp_path):
    target = tmp_path / "checkpoint"
    with io.atomic_folder(target) as tmp:
        (tmp / "step.txt").write_text("1")
    with io.atomic_folder(target) as tmp:
        (tmp / "step.txt").write_text("2")
    assert (target / "step.txt").read_text() == "2"
    with pytest.raises(RuntimeError), io.atomic_folder(target) as tmp:
        (tmp / "step.txt").write_text("3")
        raise RuntimeError("killed mid-write")
    assert (target / "step.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_find_folder_recovers_the_previous_version_after_a_crash_between_renames(tmp_path):
    target = tmp_path / "checkpoint"
    old = tmp_path / ".checkpoint.old"
    old.mkdir()
    (old / "step.txt").write_text("7")
    assert io.find_folder(target) == old
    assert checkpoint.find_checkpoint(target) == old
    target.mkdir()
    assert io.find_folder(target) == target


def test_remove_leftovers_removes_only_this_names_temporaries(tmp_path):
    (tmp_path / ".export.tmp-123-abcd").mkdir()
    (tmp_path / ".export.tmp-999-ffff").write_text("x")
    (tmp_path / ".other.tmp-1-aaaa").write_text("keep")
    (tmp_path / "export").mkdir()
    assert io.remove_leftovers(tmp_path, "export") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1-aaaa", "export"]


def test_rng_state_round_trip_restores_every_generator(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    checkpoint.save_rng_state(tmp_path)
    first = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.load_rng_state(tmp_path)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_check_same_run_names_the_first_differing_setting():
    saved = {"rank": 8, "base_model": "a", "dataset": "spanish/lora-100"}
    checkpoint.check_same_run(saved, dict(saved), ["rank", "base_model"], where="runs/x")
    with pytest.raises(ConfigError, match=r"runs/x was trained with rank=8, not 32"):
        checkpoint.check_same_run(saved, {**saved, "rank": 32}, ["rank", "base_model"], where="runs/x")


def test_read_state_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(DataError, match="state.json is missing"):
        checkpoint.read_state(tmp_path)
    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        checkpoint.read_state(tmp_path)
    (tmp_path / "state.json").write_text('{"step": 4}')
    assert checkpoint.read_state(tmp_path) == {"step": 4}
