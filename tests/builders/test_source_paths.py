"""A path read from data must stay under its source root."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import DataError
from fulora_data.io import resolve_under
from fulora_data.prepare import prepare


def _secret_png(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(
        samples.png_bytes(
            samples.render_plane_image("Fetal brain", (32, 32), __import__("numpy").random.default_rng(0))
        )
    )
    return secret


def _rewrite_spanish(source, name):
    csv_path = source / "FETAL_PLANES_DB_data.csv"
    text = csv_path.read_text(encoding="utf-8-sig").splitlines()
    cells = text[1].split(";")
    cells[0] = name
    text[1] = ";".join(cells)
    csv_path.write_text("\n".join(text) + "\n", encoding="utf-8")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_spanish_image_name_cannot_leave_the_source(tmp_path, kind):
    secret = _secret_png(tmp_path)
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    hostile = (
        "../" * 8 + str(secret.with_suffix(""))[1:] if kind == "relative" else str(secret.with_suffix(""))
    )
    _rewrite_spanish(source, hostile)
    result = CliRunner().invoke(
        main,
        [
            "data",
            "prepare",
            "spanish",
            "-c",
            "full",
            "--source",
            str(source),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "line 2" in result.output and "Image_name" in result.output and hostile in result.output
    assert not (tmp_path / "c" / "spanish").exists() or not any((tmp_path / "c" / "spanish").rglob("*.arrow"))


@pytest.mark.parametrize("column", ["Center", "Image_name"])
def test_african_center_and_name_cannot_leave_the_source(tmp_path, column):
    secret = _secret_png(tmp_path)
    source = samples.write_african_source(tmp_path / "src", patients_per_country=2)
    csv_path = source / "African_planes_database.csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if column == "Center":
        rows[0]["Center"] = "../../elsewhere"
        rows[0]["Image_name"] = "secret"
    else:
        rows[0]["Image_name"] = str(secret.with_suffix(""))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    expected = "line 2.*points outside" if column == "Center" else "line 2.*is an absolute or foreign path"
    with pytest.raises(DataError, match=expected):
        prepare("african", "all", source=source, cache_dir=tmp_path / "c")


def test_symlink_out_of_the_root_is_refused(tmp_path):
    secret = _secret_png(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(secret)
    with pytest.raises(DataError, match="outside"):
        resolve_under(root, "link.png", "x.csv line 3")
    assert resolve_under(root, "sub/ok.png", "x.csv line 3") == root / "sub" / "ok.png"


def test_a_plain_name_and_a_link_inside_the_root_are_accepted_under_their_own_names(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.png").write_bytes(b"x")
    (root / "a.png").symlink_to(Path("real") / "a.png")
    (root / "b.png").write_bytes(b"y")
    assert resolve_under(root, "a.png", "x.csv line 2") == root / "a.png"
    assert resolve_under(str(root), "b.png", "x.csv line 3") == root / "b.png"
    assert resolve_under(root, "missing.png", "x.csv line 4") == root / "missing.png"


def test_a_folder_link_out_of_the_root_is_refused_for_a_name_under_it(tmp_path):
    secret = _secret_png(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(secret.parent)
    with pytest.raises(DataError, match="x.csv line 5: 'sub/.*' points outside"):
        resolve_under(root, f"sub/{secret.name}", "x.csv line 5")


def test_generated_manifest_shard_name_cannot_leave_the_folder(tmp_path):
    from fulora_data.generated import MANIFEST, read_generated

    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=1)
    manifest = json.loads((folder / MANIFEST).read_text())
    outside = tmp_path / "evil.tar"
    (folder / manifest["shards"][0]["file"]).rename(outside)
    old = manifest["shards"][0]["file"]
    manifest["shards"][0]["file"] = "../evil.tar"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    meta = folder / "metadata.jsonl"
    meta.write_text(meta.read_text().replace(f'"shard": "{old}"', '"shard": "../evil.tar"'))
    with pytest.raises(DataError, match="outside"):
        read_generated(folder)
