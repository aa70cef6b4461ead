"""Publishing to the Hub, through the real huggingface_hub and datasets clients and a stand-in Hub.

The stand-in (tests/hub_server.py) listens at HF_ENDPOINT during each test that takes ``hub_server``; the
clients are not patched, so what works here is what ``load_dataset("fulora/NAME", CONFIG)`` does for users.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from click.testing import CliRunner
from hub_exports import FEATURES, local_files, make_export, make_model
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from PIL import Image

from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.hub import HubError, push_dataset, push_model

REPO = "fulora/demo"


def pixels(image) -> np.ndarray:
    if isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"]))
    return np.asarray(image)


def test_pushed_dataset_loads_with_load_dataset(hub_server, tmp_path):
    folder = tmp_path / "export"
    rows = make_export(folder)

    result = push_dataset(folder, REPO, token=hub_server.token)

    assert result["pushed"] is True and result["tag"] == "v1.0.0" and result["repo_id"] == REPO
    assert result["url"] == f"{hub_server.url}/datasets/{REPO}"
    assert hub_server.tags(REPO) == {"v1.0.0": result["commit"]} == {"v1.0.0": hub_server.head(REPO)}
    on_hub = hub_server.files(REPO, "v1.0.0")
    assert on_hub.pop(".gitattributes")  # written by the Hub when it created the repository
    assert on_hub == local_files(folder)

    # What a user runs: no script, no trust_remote_code, through HF_ENDPOINT.
    for revision in (None, "v1.0.0"):
        loaded = datasets.load_dataset(REPO, "full", revision=revision, cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == {"train", "test"}
        for split, expected in rows["full"].items():
            assert loaded[split].features == FEATURES
            assert loaded[split]["label"] == [row["label"] for row in expected]
            assert loaded[split]["text"] == [row["text"] for row in expected]
            for got, want in zip(loaded[split]["image"], expected, strict=True):
                np.testing.assert_array_equal(pixels(got), pixels(want["image"]))

    shard = "data/full/train-00001-of-00002.parquet"
    path = hf_hub_download(REPO, shard, repo_type="dataset", revision="v1.0.0", cache_dir=tmp_path / "hub")
    assert Path(path).read_bytes() == (folder / shard).read_bytes()


def test_shards_travel_by_lfs_and_the_card_as_a_regular_file(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)

    push_dataset(folder, REPO, token=hub_server.token)

    shards = sorted(folder.rglob("*.parquet"))
    uploaded = {oid for repo, oid in hub_server.lfs_uploads if repo == REPO}
    assert uploaded == {hashlib.sha256(p.read_bytes()).hexdigest() for p in shards}
    assert hub_server.count("lfs-batch") >= 1 and hub_server.count("lfs-upload") == len(shards)
    tree = hub_server.repo(REPO).resolve("v1.0.0").files
    assert all(tree[p.relative_to(folder).as_posix()].sha256 for p in shards)
    assert tree["README.md"].sha256 is None and tree["fulora_export.json"].sha256 is None
    entries = {e.path: e for e in HfApi().list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert (
        entries["data/full/test-00000-of-00001.parquet"].lfs.sha256
        == hashlib.sha256((folder / "data/full/test-00000-of-00001.parquet").read_bytes()).hexdigest()
    )


def test_pushing_identical_content_under_an_existing_tag_is_a_no_op(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    first = push_dataset(folder, REPO, token=hub_server.token)
    commits, uploads = len(hub_server.repo(REPO).commits), hub_server.count("lfs-upload")

    again = push_dataset(folder, REPO, token=hub_server.token)

    assert again == {**first, "pushed": False}
    assert len(hub_server.repo(REPO).commits) == commits and hub_server.count("lfs-upload") == uploads
    assert hub_server.count("commit") == 1


def test_a_tag_never_moves(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder, seed=0)
    first = push_dataset(folder, REPO, token=hub_server.token)
    make_export(folder, seed=1)  # same version, different images

    with pytest.raises(
        HubError, match=r"tag 'v1.0.0' of fulora/demo .* different content, and a tag never moves"
    ):
        push_dataset(folder, REPO, token=hub_server.token)

    assert hub_server.tags(REPO) == {"v1.0.0": first["commit"]}
    assert hub_server.head(REPO) == first["commit"]  # refused before anything was uploaded
    assert hub_server.count("commit") == 1


def test_new_version_replaces_the_release_and_keeps_the_old_tag(hub_server, tmp_path):
    old = tmp_path / "v1"
    make_export(old, configs={"full": {"train": 2, "test": 1}, "other": {"train": 1}}, seed=0)
    v1 = push_dataset(old, REPO, token=hub_server.token)
    new = tmp_path / "v2"
    rows = make_export(new, version="1.1.0", configs={"full": {"train": 1, "test": 1}}, seed=5)

    v2 = push_dataset(new, REPO, token=hub_server.token)

    assert v2["tag"] == "v1.1.0" and hub_server.tags(REPO) == {"v1.0.0": v1["commit"], "v1.1.0": v2["commit"]}
    now = hub_server.files(REPO, "v1.1.0")
    assert "data/full/train-00001-of-00002.parquet" not in now  # a stale shard would be loaded as data
    # v1.1.0 is exactly its export: no v1.0.0 shards of "other", which its card and manifest no longer list.
    assert now == {**local_files(new), ".gitattributes": now[".gitattributes"]}
    assert hub_server.files(REPO, "v1.0.0") == {**local_files(old), ".gitattributes": now[".gitattributes"]}
    other = datasets.load_dataset(REPO, "other", revision="v1.0.0", cache_dir=str(tmp_path / "cache"))
    assert other["train"].num_rows == 2
    loaded = datasets.load_dataset(REPO, "full", revision="v1.1.0", cache_dir=str(tmp_path / "cache"))
    assert loaded["train"]["text"] == [row["text"] for row in rows["full"]["train"]]
    assert loaded["train"].num_rows == 2


def test_a_failed_commit_resumes_without_uploading_again(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    shards = len(list(folder.rglob("*.parquet")))
    hub_server.fail_next("commit", status=500)

    with pytest.raises(HubError, match="run the same command again to resume"):
        push_dataset(folder, REPO, token=hub_server.token)
    assert hub_server.tags(REPO) == {} and len(hub_server.repo(REPO).commits) == 1  # only the initial commit
    assert hub_server.count("lfs-upload") == shards

    result = push_dataset(folder, REPO, token=hub_server.token)

    assert result["pushed"] and hub_server.count("lfs-upload") == shards  # blobs were not sent twice
    assert hub_server.tags(REPO) == {"v1.0.0": result["commit"]}


def test_a_failed_upload_resumes_with_the_missing_blobs_only(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    shards = {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.parquet")}
    hub_server.fail_next("lfs-upload", status=403)

    with pytest.raises(HubError, match="failed"):
        push_dataset(folder, REPO, token=hub_server.token)
    held = set(hub_server.repo(REPO).lfs)
    assert held < shards

    push_dataset(folder, REPO, token=hub_server.token)

    resent = [oid for _, oid in hub_server.lfs_uploads][len(held) :]
    assert sorted(resent) == sorted(shards - held) and set(hub_server.repo(REPO).lfs) == shards


def test_private_dataset_needs_the_token(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)

    push_dataset(folder, REPO, token=hub_server.token, private=True)

    assert hub_server.repo(REPO).private
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "README.md", repo_type="dataset", cache_dir=tmp_path / "hub", token=False)
    path = hf_hub_download(
        REPO, "README.md", repo_type="dataset", cache_dir=tmp_path / "hub", token=hub_server.token
    )
    assert Path(path).read_bytes() == (folder / "README.md").read_bytes()


def test_stand_in_hub_refuses_what_the_hub_refuses(hub_server):
    api = HfApi(token=hub_server.token)
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(REPO, repo_type="dataset")
    assert exists.value.response.status_code == 409
    api.create_tag(REPO, tag="v1", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as tagged:
        api.create_tag(REPO, tag="v1", repo_type="dataset")
    assert tagged.value.response.status_code == 409
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="v2")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt", repo_type="dataset", token=hub_server.token)


def _drop(name):
    return lambda folder: (folder / name).unlink()


def _write(name, text):
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (_drop("README.md"), DataError, "is not a fulora dataset export: README.md is missing"),
        (_drop("fulora_export.json"), DataError, "fulora_export.json is missing"),
        (_write("fulora_export.json", "{not json"), DataError, "is not valid JSON"),
        (_write("fulora_export.json", "[1]"), DataError, "must hold a JSON object, got list"),
        (_write("fulora_export.json", '{"name": "demo", "configs": ["full"]}'), DataError, "lacks version"),
        (
            _write("fulora_export.json", '{"name": "d", "version": "1", "configs": ["full"]}'),
            DataError,
            "got '1'",
        ),
        (
            _write("fulora_export.json", '{"name": "d", "version": "1.0.0", "configs": []}'),
            DataError,
            "non-empty",
        ),
        (
            _write("fulora_export.json", '{"name": "d", "version": "1.0.0", "configs": ["../x"]}'),
            DataError,
            "bad config",
        ),
        (
            _write("fulora_export.json", '{"name": "d", "version": "1.0.0", "configs": ["full", "es"]}'),
            DataError,
            "no Parquet shards for config 'es'",
        ),
    ],
)
def test_bad_export_folder_is_refused_before_contacting_the_hub(hub_server, tmp_path, spoil, error, message):
    folder = tmp_path / "export"
    make_export(folder)
    spoil(folder)

    with pytest.raises(error, match=message) as caught:
        push_dataset(folder, REPO, token=hub_server.token)

    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
    assert hub_server.requests == []


def test_card_metadata_the_hub_refuses_is_one_clear_error(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    (folder / "README.md").write_text("---\n- not\n- a mapping\n---\n# Demo\n", encoding="utf-8")

    with pytest.raises(
        HubError, match=r"refused the metadata of .*README.md: Invalid metadata in README.md. - YAML"
    ):
        push_dataset(folder, REPO, token=hub_server.token)
    assert hub_server.count("commit") == 0 and hub_server.lfs_uploads == []


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        push_dataset(tmp_path / "nowhere", REPO)
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        push_model(tmp_path / "nowhere", REPO)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repo_id": "demo"}, "repo id must look like 'namespace/name', got 'demo'"),
        ({"repo_id": "a/b/c"}, "got 'a/b/c'"),
        ({"repo_id": REPO, "tag": "v 1"}, "tag must be .* got 'v 1'"),
    ],
)
def test_bad_repo_id_or_tag_is_refused(hub_server, tmp_path, kwargs, message):
    folder = tmp_path / "export"
    make_export(folder)
    with pytest.raises(ConfigError, match=message):
        push_dataset(folder, token=hub_server.token, **kwargs)
    assert hub_server.requests == []


def test_missing_or_refused_token(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)

    with pytest.raises(HubError, match="no Hugging Face token"):
        push_dataset(folder, REPO)
    with pytest.raises(HubError, match="refused the token: Invalid user token"):
        push_dataset(folder, REPO, token="hf_wrong")
    with pytest.raises(HubError, match="rights to create a dataset under the namespace 'someone-else'"):
        push_dataset(folder, "someone-else/demo", token=hub_server.token)
    assert hub_server.repos == {}


def test_unreachable_hub_is_one_clear_error(tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    # Outside the hub_server fixture, HF_ENDPOINT refuses connections like an offline machine.
    with pytest.raises(HubError, match="could not reach the Hub at http://127.0.0.1:"):
        push_dataset(folder, REPO, token="hf_anything")


def test_push_model_sends_safetensors_by_lfs_and_tags(hub_server, tmp_path):
    weights = make_model(tmp_path / "adapter")

    result = push_model(tmp_path / "adapter", "fulora/sd15-lora", token=hub_server.token, tag="v0.1.0")

    assert result["pushed"] and result["url"] == f"{hub_server.url}/fulora/sd15-lora"
    assert hub_server.tags("fulora/sd15-lora", "model") == {"v0.1.0": result["commit"]}
    assert hub_server.lfs_uploads == [("fulora/sd15-lora", hashlib.sha256(weights.read_bytes()).hexdigest())]
    path = hf_hub_download(
        "fulora/sd15-lora", "adapter_model.safetensors", revision="v0.1.0", cache_dir=tmp_path / "hub"
    )
    assert Path(path).read_bytes() == weights.read_bytes()
    assert (
        hub_server.repo("fulora/sd15-lora", "model").resolve("main").files["adapter_config.json"].sha256
        is None
    )


def test_push_model_without_tag_and_a_tag_that_would_move(hub_server, tmp_path):
    make_model(tmp_path / "a", seed=0)
    make_model(tmp_path / "b", seed=1)

    untagged = push_model(tmp_path / "a", "fulora/clf", token=hub_server.token)
    assert untagged["tag"] is None and hub_server.tags("fulora/clf", "model") == {}
    push_model(tmp_path / "a", "fulora/clf", token=hub_server.token, tag="v1")
    with pytest.raises(HubError, match="tag 'v1' of fulora/clf"):
        push_model(tmp_path / "b", "fulora/clf", token=hub_server.token, tag="v1")


@pytest.mark.parametrize(
    ("remove", "message"),
    [("README.md", "has no README.md"), ("adapter_model.safetensors", "no .safetensors")],
)
def test_bad_model_folder_is_refused(hub_server, tmp_path, remove, message):
    make_model(tmp_path / "adapter")
    (tmp_path / "adapter" / remove).unlink()
    with pytest.raises(DataError, match=message):
        push_model(tmp_path / "adapter", "fulora/x", token=hub_server.token)
    assert hub_server.requests == []


def test_cli_data_push_and_model_push(hub_server, tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    runner = CliRunner()
    args = ["data", "push", str(folder), "--repo-id", REPO, "--token", hub_server.token]

    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"Pushed {REPO} commit {hub_server.head(REPO)} tag v1.0.0" in first.output

    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "already points at identical content; nothing pushed" in again.output

    make_export(folder, seed=3)
    moved = runner.invoke(main, args)
    assert moved.exit_code == 1 and moved.output.startswith("Error: tag 'v1.0.0'")
    assert "Traceback" not in moved.output

    make_model(tmp_path / "adapter")
    model = runner.invoke(
        main,
        [
            "model",
            "push",
            str(tmp_path / "adapter"),
            "--repo-id",
            "fulora/lora",
            "--token",
            hub_server.token,
            "--tag",
            "v1",
        ],
    )
    assert model.exit_code == 0, model.output
    assert hub_server.tags("fulora/lora", "model") == {"v1": hub_server.head("fulora/lora", "model")}

    bad = runner.invoke(main, ["data", "push", str(tmp_path / "nowhere"), "--repo-id", REPO])
    assert (
        bad.exit_code == 1 and bad.output.startswith("Error: export folder") and "Traceback" not in bad.output
    )
