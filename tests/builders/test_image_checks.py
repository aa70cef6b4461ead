"""Every image is fully decoded once at build time (huge headers included)."""

from __future__ import annotations

import struct
import zlib

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.builders.checks import check_image_bytes
from fulora_data.cli import main
from fulora_data.errors import DataError


def _chunks(data: bytes):
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield pos, kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def corrupt_idat_valid_crc(data: bytes) -> bytes:
    """Damage the compressed pixels of a PNG and fix the chunk CRC, so only a full decode notices."""
    out = data[:8]
    for _, kind, body in _chunks(data):
        if kind == b"IDAT":
            raw = zlib.decompress(body)
            body = zlib.compress(raw)[:2] + bytes(b ^ 0x5A for b in zlib.compress(raw)[2:-4]) + b"\0\0\0\0"
        out += _chunk(kind, body)
    return out


def huge_header_png(width=100000, height=100000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def _png():
    import numpy as np

    return samples.png_bytes(samples.render_plane_image("Fetal brain", (64, 48), np.random.default_rng(1)))


def test_corrupt_pixels_under_valid_crcs_are_refused():
    import io

    from PIL import Image

    bad = corrupt_idat_valid_crc(_png())
    with Image.open(io.BytesIO(bad)) as image:
        image.verify()  # what was checked before: passes
    with pytest.raises(DataError, match="x.png does not decode"):
        check_image_bytes(bad, "x.png")
    check_image_bytes(_png(), "ok.png")


@pytest.mark.parametrize("damage", ["pixels", "huge"])
@pytest.mark.parametrize("command", ["prepare", "info", "export"])
def test_prepare_info_export_name_the_file(tmp_path, damage, command):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    victim = sorted((source / "Images").iterdir())[3]
    victim.write_bytes(
        corrupt_idat_valid_crc(victim.read_bytes()) if damage == "pixels" else huge_header_png()
    )
    args = [
        "data",
        command,
        "spanish",
        "-c",
        "full",
        "--source",
        str(source),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    if command == "export":
        args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert victim.name in result.output and "Traceback" not in result.output
    assert ("does not decode" if damage == "pixels" else "more pixels than fulora's cap") in result.output
    assert not (tmp_path / "out").exists()
