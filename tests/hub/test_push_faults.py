"""The stand-in Hub failing mid-push (an HTTP 500, a dropped connection): the push retries or fails cleanly.

Whatever happens, the repository never shows a partial commit, a tag never points at anything but the
complete export, and running the same push again finishes it without uploading a held object twice.
"""

from __future__ import annotations

import pytest
from hub_exports import local_files, make_export
from hub_server import DROP

from fulora_data.hub import HubError, push_dataset

REPO = "fulora/faults"
FAULTS = [
    ("preupload", 500),
    ("preupload", DROP),
    ("lfs-batch", 500),
    ("lfs-upload", 500),
    ("lfs-upload", DROP),
    ("commit", 500),
    ("commit", DROP),
    ("tag", 500),
    ("tag", DROP),
]


def _complete(hub_server, commit: str, folder) -> bool:
    repo = hub_server.repo(REPO)
    files = {path: repo.read(blob) for path, blob in repo.commits[commit].files.items()}
    files.pop(".gitattributes", None)
    return files == local_files(folder)


@pytest.mark.parametrize(
    ("route", "fault"), FAULTS, ids=[f"{r}-{'drop' if f == DROP else f}" for r, f in FAULTS]
)
def test_a_failure_mid_push_leaves_no_partial_commit_and_no_moved_tag(hub_server, tmp_path, route, fault):
    folder = tmp_path / "export"
    make_export(folder, configs={"full": {"train": 3, "test": 1}})
    if fault == DROP:
        hub_server.drop_next(route)
    else:
        hub_server.fail_next(route, fault)
    try:
        first = push_dataset(folder, REPO, token=hub_server.token)
    except HubError as err:
        first = None
        assert "run the same command again" in str(err) or "failed" in str(err)
    repo = hub_server.repo(REPO)
    # Every commit on the branch is either the Hub's initial one or the complete export.
    for oid, commit in repo.commits.items():
        assert commit.parent is None or _complete(hub_server, oid, folder), f"partial commit after {route}"
    if first is None:
        assert "v1.0.0" not in hub_server.tags(REPO)
    else:
        assert _complete(hub_server, hub_server.tags(REPO)["v1.0.0"], folder)

    again = push_dataset(folder, REPO, token=hub_server.token)
    tag = hub_server.tags(REPO)["v1.0.0"]
    assert again["commit"] == tag and _complete(hub_server, tag, folder)
    if first is not None:
        assert again["pushed"] is False and tag == first["commit"]  # the tag did not move
    uploads = [oid for name, oid in hub_server.lfs_uploads if name == REPO]
    assert len(uploads) == len(set(uploads)) == len(list(folder.rglob("*.parquet")))
    assert len([c for c in repo.commits.values() if c.parent]) == 1  # one export, one commit


@pytest.fixture
def large(monkeypatch):
    """Make every export a 'large release' so the chunked path runs on tiny data."""
    from fulora_data import hub

    monkeypatch.setattr(hub, "LARGE_RELEASE_FILES", 1)
    monkeypatch.setattr(hub, "CHUNK_FILES", 2)


def test_a_large_release_uploads_in_chunks_and_commits_once(hub_server, tmp_path, large):
    import datasets

    folder = tmp_path / "export"
    rows = make_export(folder, configs={"full": {"train": 3, "test": 2}, "old": {"train": 1}})
    hub_server.drop_next("commit")  # everything pre-uploaded, then the link goes down
    with pytest.raises(HubError, match="run the same command again"):
        push_dataset(folder, REPO, token=hub_server.token)
    assert not hub_server.tags(REPO) and len(hub_server.repo(REPO).commits) == 1  # only the Hub's initial
    assert hub_server.count("lfs-batch") >= 3  # 6 shards in chunks of 2
    result = push_dataset(folder, REPO, token=hub_server.token)
    assert _complete(hub_server, result["commit"], folder)
    assert len(hub_server.lfs_uploads) == 6  # the rerun uploaded nothing twice
    loaded = datasets.load_dataset(REPO, "full", revision="v1.0.0", cache_dir=str(tmp_path / "cache"))
    assert list(loaded["train"]["text"]) == [r["text"] for r in rows["full"]["train"]]

    # The next release drops a config: the chunked commit deletes its files too (the folder is authoritative).
    second = tmp_path / "export2"
    make_export(second, version="1.1.0", configs={"full": {"train": 3, "test": 2}})
    push_dataset(second, REPO, token=hub_server.token)
    assert not any(p.startswith("data/old/") for p in hub_server.files(REPO, "v1.1.0"))
    assert any(p.startswith("data/old/") for p in hub_server.files(REPO, "v1.0.0"))
