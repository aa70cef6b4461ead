"""No silently wrong data: contradicting options, PNGs edited in place, truncated or damaged archives."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.archives import extract_archive
from fulora_data.cli import main
from fulora_data.errors import ArchiveError, ConfigError
from fulora_data.prepare import column, prepare


def _cli(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_country_config_and_another_country_are_refused(tmp_path):
    source = samples.write_african_source(tmp_path / "src", patients_per_country=2)
    result = _cli("data", "prepare", "african", "-c", "Ghana", "--country", "Egypt", "--source", source,
                  "--cache-dir", tmp_path / "c")  # fmt: skip
    assert result.exit_code == 1 and "'Ghana' is Ghana only but --country is 'Egypt'" in result.output
    with pytest.raises(ConfigError):
        prepare("african", "Ghana", source=source, cache_dir=tmp_path / "c", country="egypt")
    ghana = prepare("african", "Ghana", source=source, cache_dir=tmp_path / "c", country="ghana")
    assert set(column(ghana["train"], "country")) == {"Ghana"}


def test_png_overwritten_in_place_is_rebuilt(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    first = prepare("spanish", "es", source=source, cache_dir=tmp_path / "c")["train"]
    image_id = first[0]["image_id"]
    png = source / "Images" / f"{image_id}.png"
    stat = png.stat()
    new = samples.png_bytes(samples.render_plane_image("Fetal femur", (40, 40), np.random.default_rng(9)))
    png.write_bytes(new)
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    os.utime(png.parent, ns=(png.parent.stat().st_atime_ns, png.parent.stat().st_mtime_ns))
    second = prepare("spanish", "es", source=source, cache_dir=tmp_path / "c")["train"]
    row = second.cast_column("image", __import__("datasets").Image(decode=False))[0]
    assert row["image_id"] == image_id and row["image"]["bytes"] == new


def _plain_tar_of(folder, dest):
    with tarfile.open(dest, "w") as tf:
        tf.add(folder, arcname=folder.name)
    return dest


def test_plain_tar_cut_at_a_member_boundary_is_an_error(tmp_path):
    folder = samples.write_african_source(tmp_path / "src", patients_per_country=2)
    whole = _plain_tar_of(folder, tmp_path / "Zenodo_dataset.tar")
    with tarfile.open(whole) as tf:
        cut = tf.getmembers()[-5].offset
    truncated = tmp_path / "cut" / "Zenodo_dataset.tar"
    truncated.parent.mkdir()
    truncated.write_bytes(whole.read_bytes()[:cut])
    with pytest.raises(ArchiveError, match="ends early"):
        extract_archive(truncated, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    result = _cli("data", "prepare", "african", "--source", truncated, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 1 and "Zenodo_dataset.tar ends early" in result.output
    assert prepare("african", source=whole, cache_dir=tmp_path / "c2")["test"].num_rows > 0


def test_tar_xz_damaged_in_its_index_is_an_error(tmp_path):
    archive = samples.write_african_source(tmp_path / "src", patients_per_country=2, archive=True)
    data = bytearray(archive.read_bytes())
    data[-24] ^= 0xFF  # in the xz index: the tar data decompresses fine, the stream check does not
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt"):
        extract_archive(archive, tmp_path / "x")
    result = _cli("data", "prepare", "african", "--source", archive, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 1 and "Zenodo_dataset.tar.xz is corrupt" in result.output
    assert not any((tmp_path / "c").rglob("*.png"))
