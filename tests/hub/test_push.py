"""`fulora model push` uploads what a model folder is made of, nothing else (fulora_data/hub.py)."""

from __future__ import annotations

import os

from click.testing import CliRunner
from hub_exports import make_model

from fulora_data.cli import main
from fulora_data.hub import model_files, push_model

TOKEN = "hf_secrettokenvalue123"


def _folder_with_strays(tmp_path):
    folder = tmp_path / "adapter"
    make_model(folder)
    (folder / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[remote]\n")
    outside = tmp_path / "private.safetensors"
    outside.write_bytes(b"someone else's weights")
    os.symlink(outside, folder / "linked.safetensors")
    os.symlink(folder / "README.md", folder / "README_link.md")  # a link inside the folder is fine
    (folder / "optimizer.pt").write_bytes(b"a pickle")
    return folder


def test_model_push_uploads_only_model_files_and_says_what_it_skipped(hub_server, tmp_path):
    folder = _folder_with_strays(tmp_path)
    files, skipped = model_files(folder)
    assert set(skipped) == {".env", ".git/config", "linked.safetensors", "optimizer.pt"}
    assert "outside the model folder" in skipped["linked.safetensors"]
    result = push_model(folder, "fulora/strays", token=hub_server.token)
    on_hub = hub_server.files("fulora/strays", repo_type="model")
    assert set(on_hub) - {".gitattributes"} == set(files)
    assert {"README.md", "adapter_model.safetensors", "adapter_config.json", "README_link.md"} <= set(on_hub)
    assert not any(TOKEN.encode() in content for content in on_hub.values())
    assert b"someone else's weights" not in on_hub.values()
    assert set(result["skipped"]) == set(skipped)


def test_cli_model_push_names_each_skipped_file(hub_server, tmp_path):
    folder = _folder_with_strays(tmp_path)
    run = CliRunner().invoke(
        main, ["model", "push", str(folder), "--repo-id", "fulora/strays-cli", "--token", hub_server.token]
    )
    assert run.exit_code == 0, run.output
    for name in (".env", "linked.safetensors", "optimizer.pt"):
        assert f"skipped {name}:" in run.output
    assert TOKEN not in run.output
    assert ".env" not in hub_server.files("fulora/strays-cli", repo_type="model")
