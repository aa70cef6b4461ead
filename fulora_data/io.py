"""Atomic writes: every file and folder fulora writes appears whole or not at all.

One guarantee everywhere: the content is written under a temporary sibling name, flushed and fsynced,
then renamed over the target (``os.replace``, atomic on POSIX within one file system), and the parent
folder is fsynced so the rename itself survives a power cut. A crash leaves either the old content or
the new, plus at most a temporary sibling whose name starts with ``.<name>.tmp-``; ``remove_leftovers``
clears those on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def file_sha256(path: str | os.PathLike) -> str:
    """A file's sha256 hex digest, read in 4 MiB chunks (the identity of shards, adapters and weights)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, rename, fsync of the folder).

    Returns:
        The path written.
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Let a writer that wants a file name (``np.save``, a plot, a Parquet or zip writer) write atomically.

    Use as ``with atomic_file(out / "x.npy") as tmp: np.save(tmp, array)``: the writer writes ``tmp`` (a
    temporary sibling); leaving the block normally fsyncs it and renames it over ``path`` (then fsyncs the
    folder), leaving it with an exception removes it and keeps ``path`` as it was.

    Yields:
        The temporary path to write.
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically. Returns the path written."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (UTF-8, trailing newline) to ``path`` atomically. Returns the path written."""
    return atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


def _old_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Write a folder completely under a temporary name, then swap it in for ``target``.

    Use as ``with atomic_folder(out / "checkpoint") as tmp: ...write files into tmp...``. Leaving the
    block normally replaces ``target`` (an existing one is moved aside to ``.<name>.old`` and removed
    after the swap, so ``find_folder`` still finds a whole version if a crash falls between the two
    renames); leaving it with an exception removes the temporary folder and keeps ``target`` as it was.

    Yields:
        The temporary folder to write into.
    """
    target = Path(target)
    if target.is_symlink():  # swap the folder it points to; moving the link aside would orphan the data
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.rglob("*"):
            if child.is_file():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        old = _old_sibling(target)
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def find_folder(target: str | os.PathLike) -> Path | None:
    """Return ``target``, or its previous version if a crash fell between ``atomic_folder``'s two renames."""
    target = Path(target)
    if target.is_dir():
        return target
    old = _old_sibling(target)
    return old if old.is_dir() else None


def resolve_under(root: str | os.PathLike, relative: str, where: str) -> Path:
    """Join a path read from data (a CSV cell, a manifest entry) onto its root, refusing any escape.

    The joined path is resolved (``..`` parts and symbolic links followed) and must stay under the resolved
    root, so a hostile cell such as ``../../../home/user/x`` or ``/etc/x`` cannot pull a file from elsewhere
    on the machine into a dataset.

    Args:
        root: The source root the path must stay under.
        relative: The path as read from the data.
        where: Where it was read, e.g. ``"data.csv line 7 column Image_name"``, for the error message.

    Returns:
        ``root / relative`` (not resolved: links inside the root keep their names).

    Raises:
        DataError: If the path is empty, absolute, or resolves outside ``root``.
    """
    from fulora_data.errors import DataError

    text = str(relative)
    if not text or "\0" in text:
        raise DataError(f"{where}: {text!r} is not a file name")
    if os.path.isabs(text) or "\\" in text:
        raise DataError(
            f"{where}: {text!r} is an absolute or foreign path; it must name a file under {Path(root)}"
        )
    # Lexical check first (cheap, and catches names whose target does not exist); then the resolved one,
    # which also catches a symbolic link inside the root that points out of it. Strings, not Paths, until
    # the end: a build resolves thousands of names.
    parts = os.path.normpath(text).split(os.sep)
    joined = os.path.join(os.fspath(root), text)
    if ".." in parts or not _resolves_under(root, joined, single=len(parts) == 1):
        raise DataError(f"{where}: {text!r} points outside {Path(root)}; refusing to read it")
    return Path(joined)


def _resolves_under(root: str | os.PathLike, joined: str, *, single: bool) -> bool:
    """Whether ``joined`` (``root`` joined with a relative name) resolves to a path under ``root`` resolved.

    A name of one part that is not a symbolic link resolves to ``root``'s resolution joined with the name:
    one ``lstat`` says so, where resolving both paths costs one per part of each (a build reads thousands).
    """
    if single:
        try:
            if not stat.S_ISLNK(os.lstat(joined).st_mode):
                return True
        except OSError:  # missing (resolution keeps the name) or unreadable (the read will say so)
            return True
    return Path(joined).resolve().is_relative_to(Path(root).resolve())


def ensure_folder(path: str | os.PathLike, option: str) -> Path:
    """Create a folder fulora will write into (if needed), or say in one sentence why it cannot be.

    Args:
        path: The folder.
        option: How the user named it, e.g. ``"--cache-dir"``, for the message.

    Returns:
        The folder.

    Raises:
        ConfigError: If the folder is a file, lies under a file, or cannot be created or written.
    """
    from fulora_data.errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"{option} {path} cannot be created: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{option} {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path} is not writable")
    return path


def check_report_folder(directory: str | os.PathLike, option: str = "--report", owned: Iterable[str] = ()) -> Path:
    """Refuse a report folder that cannot be written, or that holds a file of a report's name that fulora
    did not write, before the work it reports on runs.

    Args:
        directory: The report folder.
        option: How the user named it, for errors.
        owned: Names or glob patterns of the files this kind of report writes.

    Returns:
        The folder (created if needed).

    Raises:
        ConfigError: If ``directory`` is a file, cannot be created or written, or holds a foreign file of a
            report's name (the folder's :data:`WRITTEN_RECORD` says which files fulora wrote).
    """
    from fulora_data.errors import ConfigError

    if Path(directory).exists() and not Path(directory).is_dir():
        raise ConfigError(f"{option} {str(directory)!r} is a file, not a folder")
    directory = ensure_folder(directory, option)
    refuse_foreign_files(directory, _matches(directory, owned), option)
    return directory


def _matches(directory: Path, patterns: Iterable[str]) -> set[str]:
    """The names in ``directory`` that the names or glob patterns match (a plain name matches itself)."""
    found: set[str] = set()
    for pattern in patterns:
        found |= {path.name for path in directory.glob(pattern)} if any(c in pattern for c in "*?[") else {pattern}
    return found


def write_report_folder(
    directory: str | os.PathLike,
    draw: Callable[[Path], None],
    *,
    owned: Iterable[str] = (),
    last: str = "report.md",
    option: str = "--report",
) -> Path:
    """Write a report folder (audit, compare, evaluation): drawn whole elsewhere, then moved in file by file.

    ``draw`` writes every file of the report into an empty staging folder in the system's temporary
    folder (so a killed run leaves nothing beside the report). Each file is then written into
    ``directory`` atomically, ``last`` (the report's text) at the end: until it is replaced, the folder
    still reads as the earlier, complete report. Files of an earlier report that this one did not draw are
    removed when their names match ``owned`` (a stale figure would show what this run did not find); any
    other file in the folder is left alone. A file to be replaced or removed that fulora did not write (the
    folder's :data:`WRITTEN_RECORD` lists what it wrote, with each file's sha256) stops the write, naming it.

    Args:
        directory: The report folder (created if needed).
        draw: Writes the report's files into the folder it is given.
        owned: Names or glob patterns of the files this kind of report writes.
        last: The file moved in last, whose path is returned.
        option: How the user named the folder, for errors.

    Returns:
        The path of ``last`` in ``directory``.

    Raises:
        ConfigError: If ``directory`` is a file, cannot be created or written, or holds a foreign file that
            this report would replace.
    """
    import tempfile

    directory = check_report_folder(directory, option)
    with tempfile.TemporaryDirectory(prefix="fulora-report-") as tmp:
        work = Path(tmp)
        draw(work)
        written = {path.name for path in work.iterdir()}
        stale = {name for name in _matches(directory, owned) - written if (directory / name).is_file()}
        # Never replace or remove what fulora did not write (a user's own report.md, say).
        refuse_foreign_files(directory, written | stale, option)
        for name in sorted(written, key=lambda name: name == last):
            atomic_write_bytes(directory / name, (work / name).read_bytes())
    for name in stale:
        (directory / name).unlink()
    record_written(directory, sorted(written), removed=sorted(stale))
    return directory / last


def remove_leftovers(folder: str | os.PathLike, name: str) -> int:
    """Remove temporary siblings ``.<name>.tmp-*`` that a killed writer left in ``folder``.

    Returns:
        How many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(f".{name}.tmp-*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


# ---------------------------------------------------------------- what fulora wrote, and one writer
WRITTEN_RECORD = ".fulora_written.json"
"""The record, inside a folder fulora writes into beside other people's files (``--report``,
``--local-dir``), of each file fulora wrote there and its sha256: only a file listed with its current
content may be overwritten or removed."""


def _written(folder: Path, record: str = WRITTEN_RECORD) -> dict[str, str]:
    try:
        record = json.loads((folder / record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def foreign_file(folder: str | os.PathLike, names, *, record_name: str = WRITTEN_RECORD) -> str | None:
    """The first of ``names`` (paths relative to ``folder``) that exists but that fulora did not write.

    A file counts as fulora's when the record (:data:`WRITTEN_RECORD`, or ``record_name`` under the
    folder) lists it with the sha256 it has now; one the user edited since is theirs again.
    """
    folder = Path(folder)
    record = None
    for name in sorted(names):
        path = folder / name
        if not (path.exists() or path.is_symlink()):
            continue
        if record is None:
            record = _written(folder, record_name)
        if path.is_symlink() or not path.is_file() or record.get(name) != file_sha256(path):
            return name
    return None


def refuse_foreign_files(
    folder: str | os.PathLike, names, option: str, *, record_name: str = WRITTEN_RECORD
) -> None:
    """Refuse to write into ``folder`` when one of ``names`` there is a file fulora did not write.

    Raises:
        ConfigError: Naming the file and the option.
    """
    from fulora_data.errors import ConfigError

    found = foreign_file(folder, names, record_name=record_name)
    if found is not None:
        raise ConfigError(
            f"{option} {Path(folder) / found} exists and was not written by fulora (or was changed since), "
            "and fulora never overwrites such a file: move it away or choose another folder"
        )


def record_written(folder: str | os.PathLike, names, *, removed=(), record_name: str = WRITTEN_RECORD) -> None:
    """Add ``names`` (with their sha256 now) to the folder's record of what fulora wrote; drop ``removed``."""
    folder = Path(folder)
    files = _written(folder, record_name)
    for name in removed:
        files.pop(name, None)
    for name in names:
        files[name] = file_sha256(folder / name)
    (folder / record_name).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / record_name, {"written_by": "fulora", "files": dict(sorted(files.items()))})


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, option: str) -> Iterator[None]:
    """Hold the one-writer lock of an output folder; a second writer is refused at once, naming the PID.

    The lock is a ``filelock`` file beside the folder (``.<name>.lock``, so nothing is added to a folder
    that may be published), with the holder's PID in ``.<name>.lock.pid``.

    Raises:
        ConfigError: If another process holds the lock, or the lock cannot be created.
    """
    from filelock import FileLock, Timeout

    from fulora_data.errors import ConfigError

    folder = Path(folder).absolute()
    lock_path = folder.parent / f".{folder.name}.lock"
    pid_path = folder.parent / f".{folder.name}.lock.pid"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path), timeout=0)
        lock.acquire()
    except Timeout:
        try:
            holder = pid_path.read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise ConfigError(
            f"{option} {folder.name} is being written by another fulora process (PID {holder}); wait for it "
            "to finish or choose another folder"
        ) from None
    except OSError as err:
        raise ConfigError(f"{option} {folder} cannot be locked for writing: {err.strerror or err}") from None
    try:
        atomic_write_text(pid_path, f"{os.getpid()}\n")
        yield
    finally:
        pid_path.unlink(missing_ok=True)
        lock.release()


def one_writer(parameter: str, option: str):
    """Decorate a function so that it holds :func:`folder_lock` on its ``parameter`` folder (when given)."""
    import functools
    import inspect

    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments.get(parameter)
            if folder is None:
                return func(*args, **kwargs)
            with folder_lock(folder, option):
                return func(*args, **kwargs)

        return run

    return decorate
