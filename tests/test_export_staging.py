"""Exports are staged and swapped whole, and push checks the folder against the manifest's shard list."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import DataError
from fulora_data.export import MANIFEST, export
from fulora_data.hub import read_export_manifest


@pytest.fixture(scope="module")
def spanish(tmp_path_factory):
    root = tmp_path_factory.mktemp("spanish")
    return samples.write_spanish_source(root / "src", per_plane=3, test_per_plane=1), root / "cache"


def _export(tmp_path, spanish, name="out", **kwargs):
    source, cache = spanish
    out = tmp_path / name
    export("spanish", ["full"], out, source=source, cache_dir=cache, **kwargs)
    return out


def _push(folder):
    return CliRunner().invoke(main, ["data", "push", str(folder), "--repo-id", "fulora/x", "--token", "hf_x"])


def test_manifest_lists_every_shard_with_size_and_sha256(tmp_path, spanish):
    import hashlib

    out = _export(tmp_path, spanish, max_shard_size=3000)
    files = json.loads((out / MANIFEST).read_text())["files"]
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert sorted(files) == on_disk and len(on_disk) > 2
    for rel, entry in files.items():
        data = (out / rel).read_bytes()
        assert entry == {"num_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert read_export_manifest(out)["configs"] == ["full"]


@pytest.mark.parametrize("spoil", ["delete", "truncate", "stray", "flip"])
def test_push_refuses_a_folder_that_differs_from_its_manifest(tmp_path, spanish, spoil):
    out = _export(tmp_path, spanish, max_shard_size=3000)
    shard = sorted((out / "data" / "full").glob("train-*.parquet"))[0]
    if spoil == "delete":
        shard.unlink()
    elif spoil == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif spoil == "flip":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    else:
        (out / "data" / ".full-abc123").mkdir()
        (out / "data" / ".full-abc123" / "train-00000-of-00001.parquet").write_bytes(shard.read_bytes())
    expected = {
        "delete": "lacks .*, which fulora_export.json lists",
        "truncate": "bytes but fulora_export.json says",
        "flip": "does not match its sha256",
        "stray": "that fulora_export.json does not list",
    }[spoil]
    with pytest.raises(DataError, match=expected):
        read_export_manifest(out)
    result = _push(out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(expected, result.output), result.output


_KILL_DURING_SHARDS = """
import os, signal, sys
import fulora_data.export as ex
real = ex.write_parquet_shards
def killer(dataset, folder, split, **kw):
    files = real(dataset, folder, split, **kw)
    os.kill(os.getpid(), signal.SIGKILL)  # killed by its own PID after one split's shards are out
ex.write_parquet_shards = killer
ex.export("spanish", [sys.argv[3]], sys.argv[1], source=sys.argv[2], cache_dir=sys.argv[4], max_shard_size=3000)
"""


def _killed_export(out, spanish, config):
    import subprocess
    import sys

    source, cache = spanish
    run = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_SHARDS, str(out), str(source), config, str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == -9, run.stderr[-2000:]


def test_killed_first_export_leaves_nothing_that_blocks_the_rerun(tmp_path, spanish):
    out = tmp_path / "out"
    _killed_export(out, spanish, "full")
    assert not out.exists() or not any(out.rglob("*.parquet"))
    _export(tmp_path, spanish)  # refused today: "not a fulora export"
    assert read_export_manifest(out)["configs"] == ["full"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")] == []


def test_killed_reexport_keeps_the_old_export_and_leaves_no_stray_shard(tmp_path, spanish):
    out = _export(tmp_path, spanish)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _killed_export(out, spanish, "full")
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old export is whole
    _export(tmp_path, spanish)
    read_export_manifest(out)  # no hidden leftover shard that push would upload
    assert not any(p.name.startswith(".") for p in out.rglob("*"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")] == []


def test_folder_left_by_an_older_killed_export_is_recognised(tmp_path, spanish):
    out = tmp_path / "out"
    (out / "data" / ".full-k2j3h4").mkdir(parents=True)
    (out / "data" / ".full-k2j3h4" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    _export(tmp_path, spanish)
    assert read_export_manifest(out)["configs"] == ["full"]
