"""Releases: a default config in every export, a version that can grow, and nothing local on the Hub."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner
from huggingface_hub import DatasetCard

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError
from fulora_data.export import MANIFEST, export, public
from fulora_data.hub import HubError, push_dataset


@pytest.fixture(scope="module")
def spanish(tmp_path_factory):
    root = tmp_path_factory.mktemp("release_sources")
    source = samples.write_spanish_source(
        root / "es", per_plane=230, test_per_plane=1, with_cervix=False, seed=21, sizes=((24, 20),)
    )
    return {"source": source, "cache": root / "cache"}


def _export(spanish, out, *configs, **extra):
    args = ["data", "export", "spanish", *(a for c in configs for a in ("-c", c)), "--out", str(out)]
    args += ["--source", str(spanish["source"]), "--cache-dir", str(spanish["cache"])]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return CliRunner().invoke(main, args)


def _repo() -> str:
    return f"fulora/spanish-{uuid.uuid4().hex[:8]}"


def test_the_studys_two_subsets_get_a_default_config_that_load_dataset_uses(spanish, hub_server, tmp_path):
    out = tmp_path / "export"
    result = _export(spanish, out, "es-1150", "lora-100")
    assert result.exit_code == 0, result.output
    assert "default: es-1150" in result.output  # the builder's default (es) is not exported: the first
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["default_config"] == "es-1150"
    card = DatasetCard.load(out / "README.md")
    assert {c["config_name"]: c.get("default", False) for c in card.data.configs} == {
        "es-1150": True,
        "lora-100": False,
    }
    assert 'which `load_dataset("fulora/spanish")` loads when no config is named, is `es-1150`' in " ".join(
        card.text.split()
    )
    repo = _repo()
    push_dataset(out, repo, token=hub_server.token)
    loaded = datasets.load_dataset(repo, cache_dir=str(tmp_path / "cache"))  # no config name
    expected = datasets.load_dataset(str(out), "es-1150")
    assert list(loaded["train"]["image_id"]) == list(expected["train"]["image_id"])


def test_default_config_can_be_chosen_and_must_be_exported(spanish, tmp_path):
    out = tmp_path / "export"
    assert _export(spanish, out, "es-1150", "lora-100", default_config="lora-100").exit_code == 0
    assert json.loads((out / MANIFEST).read_text())["default_config"] == "lora-100"
    # A later export into the same folder keeps the chosen default.
    assert _export(spanish, out, "es").exit_code == 0
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs if c.get("default")] == ["lora-100"]
    bad = _export(spanish, tmp_path / "other", "es", default_config="full")
    assert (
        bad.exit_code == 1 and "--default-config 'full' is not among the exported configs (es)" in bad.output
    )
    assert not (tmp_path / "other").exists()


def test_a_release_grows_under_a_new_version_and_old_tags_stay(spanish, hub_server, tmp_path):
    repo = _repo()
    first, second = tmp_path / "v1.0.0", tmp_path / "v1.1.0"
    assert _export(spanish, first, "es-1150").exit_code == 0
    v1 = push_dataset(first, repo, token=hub_server.token)
    # Adding a config to the released version is refused: its tag never moves...
    assert _export(spanish, first, "lora-100").exit_code == 0
    with pytest.raises(HubError, match="bump the version"):
        push_dataset(first, repo, token=hub_server.token)
    # ...so the grown release gets a new version, in a new folder: card, manifest and tag agree.
    result = _export(spanish, second, "es-1150", "lora-100", version="1.1.0")
    assert result.exit_code == 0 and "exported spanish 1.1.0" in result.output
    v2 = push_dataset(second, repo, token=hub_server.token)
    assert v2["tag"] == "v1.1.0" and hub_server.tags(repo) == {"v1.0.0": v1["commit"], "v1.1.0": v2["commit"]}
    files = hub_server.files(repo, "v1.1.0")
    assert json.loads(files[MANIFEST])["version"] == "1.1.0"
    assert "Release `1.1.0` (Hub tag `v1.1.0`)" in files["README.md"].decode()
    assert 'revision="v1.1.0"' in files["README.md"].decode()
    assert not any(p.startswith("data/lora-100/") for p in hub_server.files(repo, "v1.0.0"))
    for bad in ("1.1", "v1.2.0", "1.2.0-rc1"):
        with pytest.raises(ConfigError, match="MAJOR.MINOR.PATCH"):
            export("spanish", ["es"], tmp_path / "x", source=spanish["source"], version=bad)


def test_public_replaces_local_paths_by_names_and_checksums(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("a,b\n")
    record = {
        "labels": str(csv),
        "real_source": str(tmp_path / "folder"),
        "nested": [{"location": str(csv), "kind": "archive"}, "https://zenodo.org/records/1/files/x.zip"],
        "rule": "fulora_data.builders.hybrid.draw_indices",
        "seed": 0,
    }
    out = public(record)
    assert out["labels"]["file"] == "labels.csv" and len(out["labels"]["sha256"]) == 64
    assert out["real_source"] == "folder" and out["nested"][0]["location"] == "labels.csv"
    assert out["nested"][1] == record["nested"][1] and out["rule"] == record["rule"] and out["seed"] == 0
    assert str(tmp_path) not in json.dumps(out)


def test_nothing_local_and_no_token_reaches_the_hub(hub_server, tmp_path):
    root = tmp_path / "publisher-private-folder"
    real = samples.write_spanish_source(root / "es", per_plane=4, test_per_plane=1, seed=31)
    synthetic, labels = samples.write_synthetic_release(root / "syn", per_plane=2, seed=32)
    out = tmp_path / "export"
    options = {"real_config": "es", "verify_checksum": False, "synthetic_per_plane": 2, "labels": str(labels)}
    export("hybrid", ["es1150-syn5000"], out, cache_dir=tmp_path / "cache", real_source=real,
           synthetic_source=synthetic, **options)  # fmt: skip
    export("synthetic", ["release"], tmp_path / "syn-export", cache_dir=tmp_path / "cache", source=synthetic,
           labels=str(labels), verify_checksum=False)  # fmt: skip
    repo = _repo()
    push_dataset(out, repo, token=hub_server.token)
    push_dataset(tmp_path / "syn-export", repo.replace("spanish", "synthetic"), token=hub_server.token)
    manifest = json.loads((out / MANIFEST).read_text())
    sources = manifest["details"]["es1150-syn5000"]["options"]
    assert (
        sources["real_source"] == "FETAL_PLANES_DB" and sources["synthetic_source"]["file"] == synthetic.name
    )
    assert sources["labels"] == {"file": labels.name, "sha256": sources["labels"]["sha256"]}

    everything = []
    for stored in hub_server.repos.values():
        everything += list(stored.git_blobs.values()) + list(stored.lfs.values())
        everything += [f"{c.title}\n{c.description}".encode() for c in stored.commits.values()]
    assert len(everything) > 6
    secrets = [str(tmp_path), str(Path.home()), "publisher-private-folder", hub_server.token]
    for blob in everything:
        for secret in secrets:
            assert secret.encode() not in blob, secret


def test_a_symlinked_out_exports_into_its_target_and_the_current_folder_is_refused(
    spanish, tmp_path, monkeypatch
):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    first = _export(spanish, link, "lora-100")
    assert first.exit_code == 0, first.output
    assert link.is_symlink() and (real / MANIFEST).is_file()
    again = _export(spanish, link, "es-1150")
    assert again.exit_code == 0, again.output
    assert json.loads((real / MANIFEST).read_text())["configs"] == ["lora-100", "es-1150"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["link", "real"]
    monkeypatch.chdir(real)
    here = _export(spanish, Path("."), "lora-100")
    assert here.exit_code == 2 and "is the current folder" in here.output


def test_growing_an_export_keeps_its_release_version(spanish, tmp_path):
    out = tmp_path / "release"
    assert _export(spanish, out, "lora-100", version="1.1.0").exit_code == 0
    grown = _export(spanish, out, "es-1150")
    assert grown.exit_code == 0, grown.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["version"] == "1.1.0" and manifest["configs"] == ["lora-100", "es-1150"]
    other = _export(spanish, out, "es-1150", version="2.0.0")
    assert other.exit_code == 1 and "holds version 1.1.0" in other.output


def test_push_checks_data_exactly_but_lets_an_attached_report_go_up(spanish, tmp_path):
    from fulora_data.hub import read_export_manifest

    out = tmp_path / "release"
    assert _export(spanish, out, "lora-100").exit_code == 0
    (out / "compare").mkdir()
    (out / "compare" / "report.md").write_text("# How close is synthetic to real?\n")
    assert read_export_manifest(out)["configs"] == ["lora-100"]
    (out / "data" / "lora-100" / "extra.parquet").write_bytes(b"PAR1")
    with pytest.raises(
        DataError,
        match=r"holds 1 files that fulora_export.json does not list \(first: 'data/lora-100/extra.parquet'\)",
    ):
        read_export_manifest(out)


def test_builder_options_on_a_published_set_are_one_error_line():
    result = CliRunner().invoke(main, ["data", "audit", "fulora/spanish@v1.0.0", "--seed", "3"])
    assert result.exit_code == 2  # builder options on a published set: a bad option (docs/cli.md)
    assert result.output.strip().splitlines() == [
        "Error: fulora/spanish@v1.0.0 is a published dataset, already built: it takes no builder option "
        "(got --seed)"
    ]
