"""Extraction leftovers are cleaned, expansion is capped, and options and hints say what was given."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.archives import extract_archive
from fulora_data.cli import main
from fulora_data.errors import ArchiveError, ConfigError, SourceNotFoundError
from fulora_data.prepare import prepare


def _cli(*args):
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def _extractions(cache):
    root = cache / "fulora_extracted"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_orphan_partial_extraction_of_a_dead_process_is_removed(tmp_path):
    archive = samples.write_african_source(tmp_path / "src", patients_per_country=2, archive=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    prepare("african", source=archive, cache_dir=tmp_path / "c")
    (name,) = _extractions(tmp_path / "c")
    orphan = tmp_path / "c" / "fulora_extracted" / f".{name}.tmp-{dead.stdout.strip()}-0badf00d"
    __import__("shutil").rmtree(tmp_path / "c" / "fulora_extracted" / name)
    orphan.mkdir()
    (orphan / "half.png").write_bytes(b"x")
    prepare("african", "Ghana", source=archive, cache_dir=tmp_path / "c")
    assert _extractions(tmp_path / "c") == [name]


def test_failed_build_leaves_no_extraction(tmp_path):
    archive = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=0, archive=True)
    result = _cli(
        "data", "prepare", "spanish", "-c", "full", "--source", archive, "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 1
    assert _extractions(tmp_path / "c") == []
    assert prepare("spanish", "es", source=archive, cache_dir=tmp_path / "c")["train"].num_rows > 0
    assert len(_extractions(tmp_path / "c")) == 1  # a successful build keeps it for the next config


def test_expansion_cap(tmp_path, monkeypatch):
    archive = samples.write_spanish_source(tmp_path / "src", per_plane=1, test_per_plane=0, archive=True)
    with pytest.raises(ArchiveError, match="would expand to .* more than the cap of 1000 bytes"):
        extract_archive(archive, tmp_path / "x", max_bytes=1000)
    assert not (tmp_path / "x").exists()
    monkeypatch.setenv("FULORA_MAX_EXTRACT_BYTES", "1000")
    result = _cli("data", "prepare", "spanish", "--source", archive, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 1 and "FULORA_MAX_EXTRACT_BYTES" in result.output
    monkeypatch.setenv("FULORA_MAX_EXTRACT_BYTES", "lots")
    with pytest.raises(ConfigError, match="positive number of bytes"):
        extract_archive(archive, tmp_path / "y")


def test_md5_for_a_folder_source_is_refused(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=1, test_per_plane=0)
    result = _cli(
        "data", "prepare", "spanish", "--md5", "0" * 32, "--source", source, "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 1 and "--md5 checks an archive" in result.output


def test_hints_name_the_option_that_was_given(tmp_path):
    missing = tmp_path / "nope.zip"
    real = samples.write_spanish_source(tmp_path / "src", per_plane=1, test_per_plane=0)
    result = _cli("data", "prepare", "hybrid", "--real-source", missing, "--synthetic-source", missing,
                  "--cache-dir", tmp_path / "c")  # fmt: skip
    assert (
        result.exit_code == 2  # a path that does not exist is a bad option value
        and "--real-source" in result.output
        and "option real_source" not in result.output
    ), result.output
    from fulora_data.audit.run import audit_dataset

    with pytest.raises(SourceNotFoundError, match=r"does not exist; pass --against-source") as caught:
        audit_dataset(
            "spanish", "es", source=real, cache_dir=tmp_path / "c", against="african", against_source=missing
        )
    assert "pass --source" not in str(caught.value)


def test_endpoint_credentials_are_not_echoed(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("# m\n")
    (folder / "a.safetensors").write_bytes(b"x")
    result = _cli("model", "push", folder, "--repo-id", "org/m", "--token", "hf_abcdefghij",
                  "--endpoint", "http://alice:s3cret@127.0.0.1:9")  # fmt: skip
    assert result.exit_code == 1 and "127.0.0.1:9" in result.output
    assert (
        "s3cret" not in result.output
        and "alice" not in result.output
        and "hf_abcdefghij" not in result.output
    )


def test_zero_shard_size_and_negative_num_proc_are_refused(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=1, test_per_plane=0)
    args = [
        "data",
        "export",
        "spanish",
        "--source",
        source,
        "--cache-dir",
        tmp_path / "c",
        "--out",
        tmp_path / "o",
    ]
    result = _cli(*args, "--max-shard-size", "0")
    assert result.exit_code == 2 and "--max-shard-size" in result.output and not (tmp_path / "o").exists()
    result = _cli(
        "data", "audit", "spanish", "--source", source, "--cache-dir", tmp_path / "c", "--num-proc", "-3"
    )
    assert result.exit_code == 2 and "--num-proc" in result.output
    from fulora_data.audit.run import audit_dataset

    with pytest.raises(ConfigError, match="^num_proc must be at least 1"):
        audit_dataset("spanish", source=source, cache_dir=tmp_path / "c", num_proc=-3)
