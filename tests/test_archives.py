"""Archive checksums and extraction, below the builders."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from fulora_data.archives import archive_kind, extract_archive, file_digests, verify_checksum
from fulora_data.errors import ArchiveError, ChecksumError


def test_digests_match_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    digests = file_digests(path)
    assert digests["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert digests["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests["num_bytes"] == 256000
    verify_checksum(path, digests, md5=digests["md5"].upper(), sha256=None)
    with pytest.raises(ChecksumError, match="blob.bin has md5"):
        verify_checksum(path, digests, md5="0" * 32, sha256=None)


def test_extract_is_all_or_nothing(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "a")
        zf.writestr("top/sub/b.txt", "b")
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "top" / "sub" / "b.txt").read_text() == "b"
    with pytest.raises(FileExistsError):
        (tmp_path / "out").mkdir()


def test_unknown_archive_kind(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        archive_kind(path)
    fake = tmp_path / "data.zip"
    fake.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        archive_kind(fake)
