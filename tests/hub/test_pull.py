"""Pulling what fulora publishes under faults (fulora_data/hub_pull.py): a tampered cache, a user's files
in --local-dir, credentials in the endpoint."""

from __future__ import annotations

import hashlib
import os
import uuid

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hub_exports import make_export

from fulora_data.cli import main
from fulora_data.errors import DataError
from fulora_data.hub import push_dataset, push_model
from fulora_data.hub_pull import load_repo_dataset, pull_dataset

SECRET = "s3cret-pw"
TOKEN = "hf_abcdefghijklmnop"


def _unique(name: str) -> str:
    return f"fulora/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pushed(hub_server, tmp_path):
    repo = _unique("faults")
    folder = tmp_path / "export"
    rows = make_export(folder, configs={"a": {"train": 1, "test": 1}})
    push_dataset(folder, repo, token=hub_server.token)
    return repo, folder, rows


def _shift_labels(path) -> None:
    """What a careless or hostile edit of a cached shard does: every label moved by one, in place."""
    import pyarrow as pa

    table = pq.read_table(path)
    index = table.column_names.index("label")
    labels = pa.array([(v + 1) % 5 for v in table.column("label").to_pylist()], table.schema.field(index).type)
    shifted = table.set_column(index, table.schema.field(index), labels)
    real = os.path.realpath(path)
    os.chmod(real, 0o644)
    pq.write_table(shifted, real)


def _sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_tampered_shard_in_the_cache_is_refused_offline_and_repaired_online(pushed, monkeypatch):
    repo, _, rows = pushed
    pulled = pull_dataset(f"{repo}@v1.0.0")
    shard = f"{pulled['path']}/data/a/train-00000-of-00001.parquet"
    published = _sha256(shard)
    _shift_labels(shard)
    assert _sha256(shard) != published
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"the cached data/a/train-00000-of-00001.parquet does not match"):
        load_repo_dataset(f"{repo}@v1.0.0", "a")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    loaded = load_repo_dataset(f"{repo}@v1.0.0", "a")  # online: downloaded again, then used
    assert list(loaded["train"]["label"]) == [r["label"] for r in rows["a"]["train"]]
    assert _sha256(shard) == published


def test_data_pull_again_repairs_a_tampered_cache(pushed):
    repo, _, rows = pushed
    pulled = pull_dataset(f"{repo}@v1.0.0")
    shard = f"{pulled['path']}/data/a/test-00000-of-00001.parquet"
    published = _sha256(shard)
    _shift_labels(shard)
    run = CliRunner().invoke(main, ["data", "pull", f"{repo}@v1.0.0"])
    assert run.exit_code == 0, run.output
    assert _sha256(shard) == published
    labels = pq.read_table(shard).column("label").to_pylist()
    assert labels == [r["label"] for r in rows["a"]["test"]]


def test_data_pull_never_overwrites_a_users_readme_in_local_dir(pushed, tmp_path):
    repo, _, _ = pushed
    local = tmp_path / "mine"
    local.mkdir()
    (local / "README.md").write_text("my project notes\n")
    run = CliRunner().invoke(main, ["data", "pull", repo, "--local-dir", str(local)])
    assert run.exit_code != 0 and "Traceback" not in run.output
    assert "README.md exists and was not written by fulora" in run.output
    assert (local / "README.md").read_text() == "my project notes\n"
    assert not (local / "data").exists()


def test_data_pull_into_its_own_local_dir_again_is_fine_but_an_edited_file_is_kept(pushed, tmp_path):
    repo, _, _ = pushed
    local = tmp_path / "pulled"
    for _ in range(2):
        run = CliRunner().invoke(main, ["data", "pull", repo, "--local-dir", str(local)])
        assert run.exit_code == 0, run.output
    (local / "README.md").write_text("edited after the pull\n")
    run = CliRunner().invoke(main, ["data", "pull", repo, "--local-dir", str(local)])
    assert "README.md exists and was not written by fulora" in run.output
    assert (local / "README.md").read_text() == "edited after the pull\n"


def _model_folder(model):
    import numpy as np
    from safetensors.numpy import save_file

    model.mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(model / "weights.safetensors"))
    (model / "README.md").write_text("---\nlicense: mit\n---\n# m\n")
    return model


def test_model_pull_never_overwrites_a_users_file_in_local_dir(hub_server, tmp_path):
    repo = _unique("model")
    push_model(_model_folder(tmp_path / "model"), repo, token=hub_server.token)
    local = tmp_path / "mine"
    local.mkdir()
    (local / "weights.safetensors").write_bytes(b"the user's own weights")
    run = CliRunner().invoke(main, ["model", "pull", repo, "--local-dir", str(local)])
    assert "weights.safetensors exists and was not written by fulora" in run.output
    assert (local / "weights.safetensors").read_bytes() == b"the user's own weights"


@pytest.mark.parametrize("command", [["data", "pull"], ["model", "pull"]])
@pytest.mark.parametrize("route", ["info", "resolve"])
def test_pull_errors_never_print_the_endpoints_credentials(pushed, hub_server, command, route):
    repo, folder, _ = pushed
    if command[0] == "model":
        push_model(_model_folder(folder.parent / "model"), repo, token=hub_server.token)
    endpoint = hub_server.url.replace("http://", f"http://user:{SECRET}@")
    hub_server.fail_next(route, 500, times=20)  # the Hub's error names the URL it was asked
    run = CliRunner().invoke(main, [*command, repo, "--endpoint", endpoint, "--token", TOKEN])
    assert run.exit_code != 0 and "Error:" in run.output and "for url" in run.output
    assert SECRET not in run.output and TOKEN not in run.output


def test_doctor_never_prints_the_endpoints_credentials(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"https://user:{SECRET}@hub.example.org?token={TOKEN}")
    for args in (["doctor"], ["doctor", "--json"]):
        run = CliRunner().invoke(main, args)
        assert run.exit_code == 0, run.output
        assert SECRET not in run.output and TOKEN not in run.output
        assert "hub.example.org" in run.output
