"""Reading and checking a source's images (fulora_data/builders/checks.py): the thread pool, the worker
processes and the two inflaters."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from builders.test_image_checks import corrupt_idat_valid_crc
from click.testing import CliRunner
from pixel_fixtures import gradient16, sixteen_bit_png

from fulora_data import samples
from fulora_data.builders import checks
from fulora_data.builders.checks import in_order, read_checked
from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError
from fulora_data.prepare import prepare


def test_in_order_keeps_the_order_and_uses_several_threads():
    seen = set()

    def slow_square(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.002 * (x % 3))  # later items often finish first
        return x * x

    assert list(in_order(slow_square, range(60), threads=4)) == [x * x for x in range(60)]
    assert len(seen) > 1 and all(name.startswith("fulora-check") for name in seen)


def test_in_order_raises_a_checks_error_at_its_item_and_stops():
    produced = []

    def check(x: int) -> int:
        if x == 7:
            raise DataError("image 7 does not decode")
        return x

    with pytest.raises(DataError, match="image 7"):
        for value in in_order(check, range(1000), threads=3):
            produced.append(value)
    assert produced == list(range(7))


@dataclass
class _File:
    path: Path


def _pngs(folder: Path, count: int) -> list[_File]:
    folder.mkdir()
    rng = np.random.default_rng(3)
    files = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        path.write_bytes(samples.png_bytes(samples.render_plane_image("Fetal brain", (40 + index % 7, 32), rng)))
        files.append(_File(path))
    return files


def test_read_checked_in_worker_processes_gives_every_file_s_bytes_in_order(tmp_path):
    files = _pngs(tmp_path / "images", 70)
    stream = read_checked(files, processes=2)
    got = [next(stream)]
    assert len(multiprocessing.active_children()) == 2  # checked in two worker processes, not threads
    got += list(stream)
    assert [record.path for record, _ in got] == [f.path for f in files]
    assert [data for _, data in got] == [f.path.read_bytes() for f in files]
    assert [data for _, data in read_checked(files, processes=0)] == [data for _, data in got]


def test_read_checked_in_worker_processes_refuses_the_first_corrupt_file_by_name(tmp_path):
    files = _pngs(tmp_path / "images", 70)
    for victim in (files[41], files[60]):
        victim.path.write_bytes(corrupt_idat_valid_crc(victim.path.read_bytes()))
    produced = []
    with pytest.raises(DataError, match=r"041\.png does not decode as an image"):
        for record, _ in read_checked(files, processes=2):
            produced.append(record)
    assert produced == files[:41]


def test_read_checked_checks_in_process_a_file_that_changed_after_its_worker_checked_it(tmp_path):
    files = _pngs(tmp_path / "images", 40)
    results = checks._check_files([str(f.path) for f in files[:2]])
    assert results == [zlib.crc32(f.path.read_bytes()) for f in files[:2]]  # a good file: its CRC-32
    bad = tmp_path / "bad.png"
    bad.write_bytes(corrupt_idat_valid_crc(files[1].path.read_bytes()))
    assert checks._check_files([str(bad)]) == [None]  # refused: the building process checks it again
    assert checks._check_files([str(tmp_path / "missing.png")]) == [None]  # unreadable: the reader says why
    # Checked by a worker, then replaced by a corrupt file before the building process read it: the
    # stored bytes no longer match the worker's CRC, so they are checked again where they are read.
    stream = read_checked(files, processes=1)
    next(stream)
    time.sleep(0.5)  # the worker has checked every file by now
    files[30].path.write_bytes(corrupt_idat_valid_crc(files[30].path.read_bytes()))
    with pytest.raises(DataError, match=r"030\.png does not decode"):
        list(stream)


def test_read_checked_stores_a_file_repaired_after_its_worker_refused_it(tmp_path):
    files = _pngs(tmp_path / "images", 40)
    good = files[30].path.read_bytes()
    files[30].path.write_bytes(corrupt_idat_valid_crc(good))
    stream = read_checked(files, processes=1)
    next(stream)
    time.sleep(0.5)  # the worker has refused file 30 by now
    files[30].path.write_bytes(good)
    stored = {record.path: data for record, data in stream}
    assert stored[files[30].path] == good and len(stored) == 39


@pytest.mark.parametrize("value", ["-1", "two", "65"])
def test_a_bad_check_processes_setting_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, value)
    with pytest.raises(ConfigError, match=f"FULORA_CHECK_PROCESSES must be a whole number .* got '{value}'"):
        checks.check_processes(10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are used on Linux only")
def test_check_processes_uses_one_worker_per_core_only_for_many_files(monkeypatch):
    monkeypatch.delenv(checks.CHECK_PROCESSES_ENV, raising=False)
    assert checks.check_processes(checks.PROCESS_MIN_IMAGES - 1) == 0
    expected = checks.CHECK_THREADS if checks.CHECK_THREADS > 1 else 0
    assert checks.check_processes(checks.PROCESS_MIN_IMAGES) == expected
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, "3")
    assert checks.check_processes(5) == 3
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, "0")
    assert checks.check_processes(10**6) == 0


def test_a_build_checked_in_worker_processes_equals_one_checked_in_threads_16_bit_scan_included(tmp_path, monkeypatch):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=3, test_per_plane=2)
    sorted((source / "Images").iterdir())[4].write_bytes(sixteen_bit_png(gradient16()))  # stored as 8-bit
    built = {}
    for processes in ("0", "2"):
        monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, processes)
        splits = prepare("spanish", "full", source=source, cache_dir=tmp_path / f"cache-{processes}")
        built[processes] = {name: split.with_format("arrow")[:] for name, split in splits.items()}
    assert built["0"].keys() == built["2"].keys() == {"train", "test"}
    for name in built["0"]:
        assert built["0"][name].equals(built["2"][name])


def test_prepare_in_worker_processes_names_a_corrupt_image_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, "2")
    source = samples.write_spanish_source(tmp_path / "src", per_plane=3, test_per_plane=1)
    victim = sorted((source / "Images").iterdir())[5]
    victim.write_bytes(corrupt_idat_valid_crc(victim.read_bytes()))
    args = ["data", "prepare", "spanish", "-c", "full", "--source", str(source), "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"{victim.name} does not decode as an image" in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "c").rglob("*.arrow"))


@pytest.mark.parametrize("inflate", ["zlib", "isal"])
@pytest.mark.parametrize("damage", ["corrupt stream", "cut short", "bad filter byte"])
def test_both_inflaters_refuse_the_same_damaged_pixel_streams(inflate, damage):
    module = zlib if inflate == "zlib" else pytest.importorskip("isal.isal_zlib")
    width, height = 30, 20
    rows = b"".join(b"\x00" + bytes(range(i, i + width)) for i in range(height))
    stream = zlib.compress(rows)
    if damage == "corrupt stream":
        stream = stream[:2] + bytes(b ^ 0x5A for b in stream[2:-4]) + stream[-4:]
    elif damage == "cut short":
        stream = zlib.compress(rows[: len(rows) // 2])
    else:
        stream = zlib.compress(rows[:31] + b"\x07" + rows[32:])
    png = _png_of(width, height, stream)
    checks._check_png_pixels(_png_of(width, height, zlib.compress(rows)), Path("good.png"), inflate=module)
    with pytest.raises(DataError, match="bad.png does not decode as an image"):
        checks._check_png_pixels(png, Path("bad.png"), inflate=module)


def _png_of(width: int, height: int, stream: bytes) -> bytes:
    from builders.test_image_checks import _chunk

    header = (width).to_bytes(4, "big") + (height).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def test_check_processes_is_zero_off_linux_whatever_is_asked(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, "3")
    assert checks.check_processes(10**6) == 0
    monkeypatch.delenv(checks.CHECK_PROCESSES_ENV)
    assert checks.check_processes(10**6) == 0


def _with_chunk_after_idat(png: bytes, chunk: bytes) -> bytes:
    """Insert ``chunk`` just before IEND (the last 12 bytes)."""
    return png[:-12] + chunk + png[-12:]


@pytest.mark.parametrize(
    "damage",
    ["CRC of a text chunk after the pixels", "cut before IEND", "chunk type not a word", "CRC of IHDR"],
)
def test_the_chunk_walk_refuses_what_pil_verify_refused(damage):
    import io

    from builders.test_image_checks import _chunk
    from PIL import Image

    good = samples.png_bytes(samples.render_plane_image("Fetal brain", (40, 32), np.random.default_rng(5)))
    if damage == "CRC of a text chunk after the pixels":
        text = _chunk(b"tEXt", b"Comment\0hello")
        bad = _with_chunk_after_idat(good, text[:-4] + bytes(4 * [0x55]))
    elif damage == "cut before IEND":
        bad = good[:-12]
    elif damage == "chunk type not a word":
        bad = _with_chunk_after_idat(good, _chunk(b"t-Xt", b"x"))
    else:
        bad = good[:29] + bytes([good[29] ^ 0xFF]) + good[30:]  # IHDR's CRC (bytes 29-32)
    with pytest.raises(Exception), Image.open(io.BytesIO(bad)) as image:  # noqa: B017 - PIL's types vary
        image.verify()
    with pytest.raises(DataError, match="bad.png does not decode as an image"):
        checks.check_image_bytes(bad, Path("bad.png"))
    checks.check_image_bytes(_with_chunk_after_idat(good, _chunk(b"tEXt", b"Comment\0hello")), Path("ok.png"))


def test_prepare_with_a_bad_check_processes_setting_says_so_in_one_line_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(checks.CHECK_PROCESSES_ENV, "two")
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    args = ["data", "prepare", "spanish", "-c", "full", "--source", str(source), "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Error: FULORA_CHECK_PROCESSES must be a whole number from 0 to 64, got 'two'" in result.output
    assert "Traceback" not in result.output and not list((tmp_path / "c").rglob("*.arrow"))
