"""One sentence, never a traceback, for bad folders, seeds, repo ids, paths and manifests."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import ConfigError


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return samples.write_spanish_source(tmp_path_factory.mktemp("es") / "src", per_plane=2, test_per_plane=1)


def _one_line(*args, code=1):
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    return errors[0]


def test_cache_dir_that_is_a_file_or_under_one(tmp_path, source):
    (tmp_path / "afile").write_text("x")
    line = _one_line("data", "prepare", "spanish", "--source", source, "--cache-dir", tmp_path / "afile")
    assert "--cache-dir" in line and "is a file" in line
    line = _one_line(
        "data", "prepare", "spanish", "--source", source, "--cache-dir", tmp_path / "afile" / "c"
    )
    assert "--cache-dir" in line and "afile is a file" in line


def test_out_and_report_under_a_file(tmp_path, source):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "out"
    line = _one_line(
        "data", "export", "spanish", "--source", source, "--cache-dir", tmp_path / "c", "--out", out
    )
    assert "--out" in line and "afile is a file" in line
    preds = tmp_path / "p.csv"
    preds.write_text("reference,prediction\nFetal brain,Fetal brain\n")
    line = _one_line("evaluate", "predictions", preds, "--report", tmp_path / "afile" / "r")
    assert "--report" in line


@pytest.mark.parametrize("option", ["--cache-dir", "--out", "--report"])
def test_read_only_folders(tmp_path, source, monkeypatch, option):
    locked = tmp_path / "ro"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the permission check see what a user would
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m: False if str(p).startswith(str(locked)) else real(p, m)
        )
    target = locked / "x"
    if option == "--report":
        preds = tmp_path / "p.csv"
        preds.write_text("reference,prediction\nFetal brain,Fetal brain\n")
        args = ["evaluate", "predictions", preds, "--report", target]
    elif option == "--out":
        args = [
            "data",
            "export",
            "spanish",
            "--source",
            source,
            "--cache-dir",
            tmp_path / "c",
            "--out",
            target,
        ]
    else:
        args = ["data", "prepare", "spanish", "--source", source, "--cache-dir", target]
    line = _one_line(*args)
    # As root the folder is made and the (faked) permission check refuses it; as a user mkdir itself fails.
    expected = "is not writable" if os.geteuid() == 0 else "cannot be created"
    assert option in line and expected in line, line


def test_unexpected_os_error_is_one_line(monkeypatch):
    import fulora_data.prepare as prepare

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/cache/x.arrow")

    monkeypatch.setattr(prepare, "info", refuse)
    line = _one_line("data", "prepare", "spanish")
    assert line == "Error: cannot write or read /data/cache/x.arrow: Permission denied"


def test_negative_seed(tmp_path, source):
    line = _one_line(
        "data", "prepare", "spanish", "-c", "lora-100", "--seed", "-1", "--source", source, code=2
    )
    assert "--seed" in line
    from fulora_data.prepare import prepare

    with pytest.raises(ConfigError, match="seed must be"):
        prepare("spanish", "es-1150", source=source, cache_dir=tmp_path / "c", seed=-1)


@pytest.mark.parametrize("repo_id", ["org/x--y", "org/x..y", "org/x-", "org/" + "a" * 97])
def test_repo_ids_the_hub_refuses(tmp_path, repo_id):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("# m\n")
    (folder / "adapter.safetensors").write_bytes(b"x")
    line = _one_line("model", "push", folder, "--repo-id", repo_id, "--token", "hf_x")
    assert "repo id must look like" in line and repr(repo_id) in line


def test_source_path_that_is_not_utf8(tmp_path, source):
    import shutil

    odd = tmp_path / os.fsdecode(b"odd\xffname")
    shutil.copytree(source, odd)
    line = _one_line("data", "prepare", "spanish", "--source", odd, "--cache-dir", tmp_path / "c", code=2)
    assert "is not valid UTF-8" in line


@pytest.mark.parametrize("spoil", [{"configs": "es"}, {"details": []}, None])
def test_malformed_export_manifest_leaves_the_folder_alone(tmp_path, source, spoil):
    from fulora_data.export import MANIFEST, export

    out = tmp_path / "out"
    export("spanish", ["es"], out, source=source, cache_dir=tmp_path / "c")
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text("[1, 2]" if spoil is None else json.dumps({**manifest, **spoil}))
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    args = ["data", "export", "spanish", "-c", "full", "--source", source, "--cache-dir", tmp_path / "c"]
    line = _one_line(*args, "--out", out)
    assert MANIFEST in line and "malformed" in line
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
