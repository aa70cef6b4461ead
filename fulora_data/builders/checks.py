"""Reading a source's image files and checking that each decodes, as fast as the machine allows.

A build stores every image's bytes exactly as the source holds them, so each image is checked once, here:
its header (at most ``MAX_IMAGE_PIXELS``), its chunks' CRCs and, for a PNG, its whole pixel stream
inflated (ISA-L's inflate where installed, zlib's otherwise) against what the header's dimensions need.

Inflating is most of a build's work. Many files (``read_checked`` on a split of ``PROCESS_MIN_IMAGES`` or
more) are checked by worker processes, one per core, while the building process reads the same files, makes
the Arrow tables and writes them: no lock is shared, so the cores stay busy (threads share the GIL with the
writer, and measured about 1.3x slower). A worker returns each good file's CRC-32 and the building process
compares it with the bytes it stores, so what is stored is what was checked; a file a worker refused (or
that changed since) is checked again where it is read, and refused there by name. A few files, or a platform
other than Linux (where ``fork`` is not safe), use a thread pool (``in_order``): reading a file and
inflating release the GIL.
"""

from __future__ import annotations

import collections
import io
import multiprocessing
import os
import re
import signal
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from fulora_data.errors import ConfigError, DataError


class _HasPath(Protocol):
    path: Path


# The most pixels an image may have (width x height): 8192 x 8192, far above any ultrasound frame and far
# below what would exhaust memory when decoded. A larger header is refused before decoding.
MAX_IMAGE_PIXELS = 8192 * 8192


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a container's share)
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


CHECK_THREADS = max(1, min(8, _cores()))
"""Threads that read and check images during a build (one per core, at most 8)."""

CHECK_PROCESSES_ENV = "FULORA_CHECK_PROCESSES"
"""Environment variable: how many worker processes check a build's image files (0: threads only)."""
PROCESS_MIN_IMAGES = 256
"""A split of at least this many image files is checked in worker processes (fewer: a pool costs more)."""
_PROCESS_CHUNK = 32  # files per task sent to a worker: few enough messages, small enough to stay in order


def in_order(func, items, *, threads: int | None = None):
    """Yield ``func(item)`` for every item, in order, computed ``threads`` at a time in a thread pool.

    At most ``4 * threads`` results wait at once, so a slow consumer never holds a whole source in memory.
    An exception raised by ``func`` is raised here, at that item's place, and the pool stops.
    """
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or CHECK_THREADS
    if threads == 1:
        yield from map(func, items)
        return
    window = 4 * threads
    with ThreadPoolExecutor(threads, thread_name_prefix="fulora-check") as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def read_checked(
    records: Sequence[_HasPath], *, processes: int | None = None
) -> Iterator[tuple[_HasPath, bytes]]:
    """Yield ``(record, bytes)`` for every record's image file, in order, each checked (``check_image_bytes``).

    Args:
        records: Objects with a ``path`` (a builder's records).
        processes: Worker processes; ``None`` decides by the number of files, ``FULORA_CHECK_PROCESSES`` and
            the cores, 0 checks in threads.

    Raises:
        DataError: At the first file (in order) that does not decode, naming it.
        OSError: Where a file cannot be read, as reading it would.
    """
    processes = check_processes(len(records)) if processes is None else processes
    if processes < 1:
        yield from in_order(_read_checked, records)
        return
    chunks = [records[i : i + _PROCESS_CHUNK] for i in range(0, len(records), _PROCESS_CHUNK)]
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("fork"), initializer=_leave_interrupts_to_the_builder
    )
    try:
        verdicts = pool.map(_check_files, [[str(record.path) for record in chunk] for chunk in chunks])
        for chunk, results in zip(chunks, verdicts, strict=True):
            for record, result in zip(chunk, results, strict=True):
                data = record.path.read_bytes()
                if result is None or _crc32(data) != result:
                    # Refused or unreadable there, or changed since: checked here, on the bytes stored (a
                    # file refused there raises here with its one sentence, or the reading error does).
                    check_image_bytes(data, record.path)
                yield record, data
    except BaseException:  # an error or an abandoned build: nothing waits for the checks still queued
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def check_processes(files: int) -> int:
    """Worker processes to check ``files`` image files with: ``FULORA_CHECK_PROCESSES`` if set, else one per
    core (at most 8) for ``PROCESS_MIN_IMAGES`` files or more on a machine of two cores or more, else 0;
    always 0 off Linux.

    Raises:
        ConfigError: If ``FULORA_CHECK_PROCESSES`` is not a whole number from 0 to 64.
    """
    # fork starts a worker in milliseconds with fulora already imported; it is safe on Linux only (macOS
    # and Windows check in threads).
    can_fork = sys.platform.startswith("linux")
    value = os.environ.get(CHECK_PROCESSES_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) > 64:
            raise ConfigError(f"{CHECK_PROCESSES_ENV} must be a whole number from 0 to 64, got {value!r}")
        return int(value) if can_fork else 0
    if not can_fork or CHECK_THREADS < 2 or files < PROCESS_MIN_IMAGES:
        return 0
    return CHECK_THREADS


def _leave_interrupts_to_the_builder() -> None:
    """A worker ignores Ctrl-C: the building process stops the build and the pool, with one message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_files(paths: list[str]) -> list[int | None]:
    """A worker's task: for each file, its CRC-32 when it decodes, None when it does not or cannot be read
    (the building process then checks or reads it itself, and says why in one sentence)."""
    results: list[int | None] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            check_image_bytes(data, Path(path))
        except (OSError, DataError):
            results.append(None)
            continue
        results.append(_crc32(data))
    return results


def _read_checked(record: _HasPath) -> tuple[_HasPath, bytes]:
    data = record.path.read_bytes()
    check_image_bytes(data, record.path)
    return record, data


def check_image_bytes(data: bytes, path: Path) -> None:
    """Check that bytes are an image whose pixel data decompresses completely, within ``MAX_IMAGE_PIXELS``.

    PIL's ``verify`` alone checks the PNG chunks' CRCs but never decompresses, so a file whose compressed
    data is corrupt under valid CRCs used to pass and fail only when read later. Now a non-interlaced PNG
    (every image of the study's sources) has every chunk checked as ``verify`` does (type, CRC, the IEND
    that ends the file), its pixel stream inflated (its adler32 checksum verified), its size compared with
    what the header's dimensions require and every row's filter byte checked: what a decoder would reject,
    at about a third of the cost of a full decode. Any other image is fully decoded.

    Raises:
        DataError: If the bytes are not an image, do not decode, or declare more than ``MAX_IMAGE_PIXELS``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"{path} declares {width}x{height} pixels, more than fulora's cap of {MAX_IMAGE_PIXELS} "
                    "(fulora_data.builders.checks.MAX_IMAGE_PIXELS); it is corrupt or not an ultrasound image"
                )
            if image.format == "PNG" and not image.info.get("interlace"):
                _check_png_pixels(data, path)
            else:
                image.load()
    except Image.DecompressionBombError as err:
        raise DataError(
            f"{path} declares more pixels than fulora's cap of {MAX_IMAGE_PIXELS} ({err}); it is corrupt or "
            "not an ultrasound image"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} does not decode as an image ({err})") from err


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_CHUNK_TYPE = re.compile(rb"\w{4}")  # what PIL accepts as a chunk type
try:
    # ISA-L's inflate makes the same checks as zlib's (the stream's structure, its end and its adler32)
    # at about 2.5x the speed on these scans, and releases the GIL as zlib does.
    from isal import isal_zlib as _inflate

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)
    _crc32 = _inflate.crc32
except ImportError:  # isal is a dependency; where it cannot be installed, zlib gives the same verdicts
    _inflate = zlib
    _INFLATE_ERRORS = (zlib.error,)
    _crc32 = zlib.crc32
# Inflated in bounded pieces, each checked and dropped: one piece for a scan (a 1137x787 frame is 0.9 MiB),
# a few for the largest frame allowed, and no bomb can expand past what the header needs.
_INFLATE_PIECE = 4 * 2**20


def _check_png_pixels(data: bytes, path: Path, *, inflate=_inflate) -> None:
    """Inflate a non-interlaced PNG's pixel stream and check it against the header (see check_image_bytes)."""
    # Every chunk as PIL's ``verify`` checks it (a type of four word characters, its CRC, the file ending with
    # IEND), in one walk with the pixel stream's collection; PIL's own pass cost a tenth of a check.
    view, position, idat, header, ended = memoryview(data), 8, [], None, False
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 12 + length
        kind = data[position + 4 : position + 8]
        if end > len(data) or not _CHUNK_TYPE.fullmatch(kind):
            break
        if _crc32(view[position + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise DataError(
                f"{path} does not decode as an image (its {kind.decode('ascii')} chunk fails its CRC check)"
            )
        if kind == b"IHDR":
            header = struct.unpack(">IIBB", data[position + 8 : position + 18])
        elif kind == b"IDAT":
            idat.append(view[position + 8 : end - 4])
        elif kind == b"IEND":
            ended = True
            break
        position = end
    if not ended:
        raise DataError(f"{path} does not decode as an image (it is cut short or broken before its IEND chunk)")
    if header is None or header[3] not in _PNG_CHANNELS:
        raise DataError(f"{path} does not decode as an image (bad PNG header)")
    width, height, depth, colour = header
    row = (width * _PNG_CHANNELS[colour] * depth + 7) // 8 + 1  # one filter byte per row
    inflater, pending, size, bad_filter = inflate.decompressobj(), b"".join(idat), 0, False
    needed = row * height
    try:
        while size <= needed and not inflater.eof:
            piece = inflater.decompress(pending, min(_INFLATE_PIECE, needed + 1 - size))
            pending = inflater.unconsumed_tail
            if not piece and not pending:  # input used up (zlib may hand out what it holds: asked again)
                break
            first = (-size) % row  # where the next row's filter byte falls in this piece
            bad_filter = bad_filter or bool((np.frombuffer(piece, dtype=np.uint8)[first::row] > 4).any())
            size += len(piece)
    except _INFLATE_ERRORS as err:
        raise DataError(f"{path} does not decode as an image (its pixel stream is corrupt: {err})") from None
    if size != needed or not inflater.eof:
        raise DataError(
            f"{path} does not decode as an image (its pixel data inflates to {size} bytes, "
            f"{'complete' if inflater.eof else 'cut short'}, where {width}x{height} needs {needed})"
        )
    if bad_filter:
        raise DataError(f"{path} does not decode as an image (a row has an unknown PNG filter type)")
