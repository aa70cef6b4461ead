"""Checksums and safe extraction of the archives the datasets are published in.

Extraction refuses any member that would land outside the target folder (``../`` parts, absolute paths,
links pointing out) and writes into a temporary sibling folder that is renamed only once every member is
out, so a corrupt, truncated or hostile archive never leaves a half-extracted folder behind.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from fulora_data.errors import ArchiveError, ChecksumError, UnsafeArchiveError
from fulora_data.io import atomic_folder

_CHUNK = 4 * 1024 * 1024
_PROGRESS_FROM_BYTES = 256 * 1024 * 1024


def file_digests(path: str | os.PathLike) -> dict[str, str | int]:
    """Return the md5 and sha256 hex digests and the size of a file, in one pass.

    Args:
        path: The file to hash.

    Returns:
        ``{"md5": ..., "sha256": ..., "num_bytes": ...}``.
    """
    path = Path(path)
    size = path.stat().st_size
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with (
        open(path, "rb") as handle,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"Checksum {path.name}",
            disable=size < _PROGRESS_FROM_BYTES,
        ) as bar,
    ):
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            bar.update(len(chunk))
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "num_bytes": size}


def verify_checksum(path: str | os.PathLike, digests: dict, *, md5: str | None, sha256: str | None) -> None:
    """Compare a file's digests with the published ones; a ``None`` published value is not checked.

    Raises:
        ChecksumError: If a published checksum differs from the file's.
    """
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected and digests[algorithm] != expected.lower():
            raise ChecksumError(
                f"{path} has {algorithm} {digests[algorithm]} but the published file has {expected}; "
                "the download is corrupt or it is another file: download it again"
            )


def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Return a member's relative path, refusing one that would escape the extraction folder."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    drive_like = len(normalised) > 1 and normalised[1] == ":"
    if path.is_absolute() or drive_like or ".." in path.parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would be written outside the extraction folder; refusing to extract"
        )
    return path


def archive_kind(path: str | os.PathLike) -> str:
    """Return ``"zip"`` or ``"tar"`` for an archive, by its content rather than its name.

    Raises:
        ArchiveError: If the file is neither a zip nor a (compressed) tar archive.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        pass
    name = path.name.lower()
    if name.endswith(".zip"):
        raise ArchiveError(f"{path} is not a readable zip archive: it is corrupt or truncated")
    if ".tar" in name or name.endswith((".tgz", ".txz")):
        raise ArchiveError(f"{path} is not a readable tar archive: it is corrupt or truncated")
    raise ArchiveError(f"{path} is neither a zip nor a tar archive")


# Most bytes an archive may expand to (its members' sizes, as its index or headers declare them). The
# study's largest archive expands to about 2 GB; the environment variable raises or lowers the cap.
MAX_EXTRACT_BYTES_ENV = "FULORA_MAX_EXTRACT_BYTES"
DEFAULT_MAX_EXTRACT_BYTES = 64 * 1024**3


def max_extract_bytes() -> int:
    """The cap on an archive's expanded size: ``$FULORA_MAX_EXTRACT_BYTES`` or 64 GiB.

    Raises:
        ConfigError: If the environment variable is not a positive whole number.
    """
    from fulora_data.errors import ConfigError

    text = os.environ.get(MAX_EXTRACT_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_EXTRACT_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_EXTRACT_BYTES_ENV} must be a positive number of bytes, got {text!r}")
    return value


def _check_expanded_size(archive: Path, total: int, limit: int | None) -> None:
    limit = max_extract_bytes() if limit is None else limit
    if total > limit:
        raise ArchiveError(
            f"{archive} would expand to {total} bytes, more than the cap of {limit} bytes; if you trust it, "
            f"raise the cap with {MAX_EXTRACT_BYTES_ENV}"
        )


def remove_orphan_extractions(folder: str | os.PathLike, name: str) -> int:
    """Remove extraction folders whose extracting process is gone (killed mid-extraction).

    Extraction writes into ``atomic_folder``'s temporary sibling ``.<name>.tmp-<pid>-<random>``; one whose
    process no longer runs will never be renamed into place.

    Returns:
        How many were removed.
    """
    removed = 0
    for path in Path(folder).glob(f".{name}.tmp-*"):
        try:
            os.kill(int(path.name.removeprefix(f".{name}.tmp-").split("-", 1)[0]), 0)
            continue  # that process still runs: its extraction is in progress
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue  # alive, owned by another user
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def extract_archive(
    archive: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int | None = None
) -> Path:
    """Extract a zip or tar archive into ``dest``, all or nothing.

    Args:
        archive: The archive file.
        dest: The folder to create; it must not exist yet.
        max_bytes: Most bytes the members may hold in all (default: ``max_extract_bytes()``).

    Returns:
        ``dest``.

    Raises:
        UnsafeArchiveError: If a member would be written outside ``dest``.
        ArchiveError: If the archive is corrupt or truncated.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    try:
        with atomic_folder(dest) as partial:  # removed again if extraction fails
            if kind == "zip":
                _extract_zip(archive, partial, max_bytes)
            else:
                _extract_tar(archive, partial, max_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError) as err:
        if isinstance(err, OSError) and not isinstance(err, tarfile.TarError) and err.errno is not None:
            raise
        raise ArchiveError(f"{archive} is corrupt or truncated ({err}); download it again") from err
    return dest


def _extract_zip(archive: Path, target: Path, max_bytes: int | None = None) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_member_name(archive, info.filename)
        _check_expanded_size(archive, sum(info.file_size for info in members), max_bytes)
        for info in tqdm(members, desc=f"Extract {archive.name}", unit=" files", disable=len(members) < 200):
            relative = _check_member_name(archive, info.filename)
            out = target.joinpath(*relative.parts)
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            if out.stat().st_size != info.file_size:  # the index is the truth about what a member holds
                raise ArchiveError(
                    f"{archive}: member {info.filename!r} holds {out.stat().st_size} bytes but the index says "
                    f"{info.file_size}; the archive is corrupt: download it again"
                )


def _extract_tar(archive: Path, target: Path, max_bytes: int | None = None) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            _check_member_name(archive, member.name)
            if member.issym() or member.islnk():
                link = PurePosixPath(member.name).parent / member.linkname
                if (
                    PurePosixPath(member.linkname).is_absolute()
                    or ".." in PurePosixPath(os.path.normpath(str(link))).parts
                ):
                    raise UnsafeArchiveError(
                        f"{archive}: link {member.name!r} points outside the extraction folder; refusing to extract"
                    )
        _check_expanded_size(archive, sum(member.size for member in members if member.isfile()), max_bytes)
        bar = tqdm(members, desc=f"Extract {archive.name}", unit=" files", disable=len(members) < 200)
        for member in bar:
            try:
                tf.extract(member, target, filter="data")
            except tarfile.FilterError as err:
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} refused: {err}") from err
        # tarfile stops listing members, without a word, where the file ends or turns to garbage: a tar cut
        # at a member boundary reads as a shorter archive. A whole one ends with a zero block there.
        tf.fileobj.seek(tf.offset)
        end = tf.fileobj.read(tarfile.BLOCKSIZE)
        if len(end) < tarfile.BLOCKSIZE or end.strip(b"\0"):
            raise ArchiveError(
                f"{archive} ends early after {len(members)} members (no end-of-archive block): it is truncated "
                "or corrupt; download it again"
            )
        # Read the compressed stream to its end, so that its trailing checks (xz index and footer, gzip
        # CRC) are verified too: damage there would otherwise go unnoticed.
        while tf.fileobj.read(_CHUNK):
            pass
