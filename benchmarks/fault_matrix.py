"""Reliability benchmark: run each known fault against the ``fulora`` CLI and tabulate what happens.

For every fault (the hardening issue's list, plus faults fulora already handled) the script makes a small
seeded source in a fresh temporary folder, breaks it the way an attacker or an unlucky user would, runs the
CLI (in-process with click's ``CliRunner``; in a subprocess killed by its own PID for the kill faults) and
records:

* ``exit``: the exit code (1 for a refused input, 2 for a refused option, 0 for success);
* ``message``: the one ``Error:`` line, or ``TRACEBACK <type>`` when an exception escaped;
* ``left``: leftovers: staging, partial or temporary files, or files a failed command wrote;
* ``rerun``: whether the data is intact after the rerun that a user would try next (the same command
  with the fault removed, or simply again after a kill);
* ``verdict``: ``ok``, ``TRACEBACK``, ``SILENT`` (exit 0 with wrong data), ``LEFTOVER`` or ``RERUN``.

It is a benchmark, not a test: it prints the table and totals and always exits 0. Run from the
repository root::

    python benchmarks/fault_matrix.py            # every fault (a few minutes on 2 cores)
    python benchmarks/fault_matrix.py -k tar     # only faults whose name contains "tar"
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The Hub faults push to tests/hub_server.py's stand-in, which speaks LFS, not Xet; huggingface_hub reads
# this once, at import (fulora_data.cli imports it).
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import numpy as np  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.cli import main  # noqa: E402

_LEFTOVER = re.compile(r"(\.partial-\d+$|^\..*\.tmp-|\.incomplete|^\..*\.old$)")


@dataclass
class Outcome:
    exit: int
    message: str
    traceback: bool


@dataclass
class Fault:
    name: str
    run: Callable[[Path], tuple[Outcome, bool | None, str]]  # -> outcome, rerun intact (None: n/a), note
    expect_success: bool = False  # the right answer is exit 0 (with the right data)


def cli(*args, env: dict | None = None) -> Outcome:
    with _env(env or {}):
        result = CliRunner().invoke(main, [os.fspath(a) if isinstance(a, Path) else str(a) for a in args])
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    if escaped:
        return Outcome(
            result.exit_code, f"TRACEBACK {type(result.exception).__name__}: {result.exception}", True
        )
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return Outcome(result.exit_code, errors[-1] if errors else "", False)


@contextlib.contextmanager
def _env(values: dict):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def subprocess_python(code: str, *args) -> tuple[int, str]:
    run = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600
    )
    lines = [line for line in run.stderr.splitlines() if line.strip() and "examples/s" not in line]
    return run.returncode, (lines[-1] if lines else "")


def leftovers(root: Path) -> list[str]:
    """Paths under ``root`` that a killed or failed command should not have left."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.name.endswith(".lock"):  # lock files (filelock, datasets) stay by design; they hold no data
            continue
        if _LEFTOVER.search(path.name) or (path.parent.name == "data" and path.name.startswith(".")):
            found.append(rel)
    return sorted(found)


def new_files(root: Path, before: set[str]) -> list[str]:
    """Files a failed command wrote (lock files and empty folders aside)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".lock") and p.relative_to(root).as_posix() not in before
    )


def files_of(root: Path) -> set[str]:
    return (
        {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    )


# ----------------------------------------------------------------------------- fixtures
def spanish(ws: Path, **kw) -> Path:
    kw.setdefault("per_plane", 2)
    kw.setdefault("test_per_plane", 1)
    return samples.write_spanish_source(ws / "src", **kw)


def african(ws: Path, **kw) -> Path:
    return samples.write_african_source(ws / "src", patients_per_country=2, **kw)


def png(seed=0, size=(48, 40)) -> bytes:
    return samples.png_bytes(samples.render_plane_image("Fetal brain", size, np.random.default_rng(seed)))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def corrupt_pixels_valid_crc(data: bytes) -> bytes:
    out, pos = data[:8], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            body = body[:2] + bytes(b ^ 0x5A for b in body[2:])
        out += _chunk(kind, body)
        pos += 12 + length
    return out


def huge_header_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def set_spanish_cell(source: Path, row: int, column: str, value: str) -> None:
    path = source / "FETAL_PLANES_DB_data.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = [h.strip() for h in lines[0].split(";")]
    cells = lines[row].split(";")
    cells[header.index(column)] = value
    lines[row] = ";".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def edit_african(source: Path, change: Callable[[list[dict]], None]) -> None:
    path = source / "African_planes_database.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    change(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def prepare_args(ws: Path, source, name="spanish", config="full", *extra):
    return ["data", "prepare", name, "-c", config, "--source", source, "--cache-dir", ws / "cache", *extra]


def export_args(ws: Path, source, config="full", out="out", *extra):
    return ["data", "export", "spanish", "-c", config, "--source", source, "--cache-dir", ws / "cache",
            "--out", ws / out, *extra]  # fmt: skip


def push_check(folder: Path) -> Outcome:
    # Refused before the Hub is contacted; the endpoint is unreachable, so a folder that passes says so.
    return cli(
        "data", "push", folder, "--repo-id", "fulora/x", "--token", "hf_x", "--endpoint", "http://127.0.0.1:9"
    )


def refused_then(
    ws: Path, outcome: Outcome, fix: Callable[[], None], args
) -> tuple[Outcome, bool | None, str]:
    """Common shape: the fault is refused; after ``fix`` the same command succeeds."""
    fix()
    again = cli(*args)
    return outcome, again.exit == 0, ""


# ----------------------------------------------------------------------------- the faults
def f_traversal(kind):
    def run(ws):
        source = spanish(ws)
        secret = ws / "secret.png"
        secret.write_bytes(png(5))
        original = (source / "FETAL_PLANES_DB_data.csv").read_bytes()
        value = (
            str(secret.with_suffix(""))
            if kind == "absolute"
            else "../" * 12 + str(secret.with_suffix(""))[1:]
        )
        set_spanish_cell(source, 1, "Image_name", value)
        args = prepare_args(ws, source, "spanish", "es")
        out = cli(*args)
        return refused_then(
            ws, out, lambda: (source / "FETAL_PLANES_DB_data.csv").write_bytes(original), args
        )

    return run


def f_african_center(ws):
    source = african(ws)
    (ws / "elsewhere").mkdir()
    (ws / "elsewhere" / "x.png").write_bytes(png(3))

    def spoil(rows):
        rows[0]["Center"], rows[0]["Image_name"] = "../../elsewhere", "x"

    original = (source / "African_planes_database.csv").read_bytes()
    edit_african(source, spoil)
    args = prepare_args(ws, source, "african", "all")
    return refused_then(
        ws, cli(*args), lambda: (source / "African_planes_database.csv").write_bytes(original), args
    )


_KILL_EXPORT = """
import os, signal, sys
import fulora_data.export as ex
real = ex.write_parquet_shards
def killer(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
ex.write_parquet_shards = killer
ex.export("spanish", ["full"], sys.argv[1], source=sys.argv[2], cache_dir=sys.argv[3])
"""


def f_kill_export(first: bool):
    def run(ws):
        source = spanish(ws)
        out = ws / "out"
        if not first:
            assert cli(*export_args(ws, source)).exit == 0
        before = {p: (out / p).read_bytes() for p in files_of(out)}
        code, _ = subprocess_python(_KILL_EXPORT, out, source, ws / "cache")
        intact_after_kill = {p: (out / p).read_bytes() for p in files_of(out)} == before
        again = cli(*export_args(ws, source))
        ok = again.exit == 0 and push_check(out).message.startswith("Error: could not reach")
        note = "" if intact_after_kill else "old export changed by the kill"
        return (
            Outcome(code, f"killed (exit {code}); rerun: {again.message or 'ok'}", False),
            ok and intact_after_kill,
            note,
        )

    return run


_KILL_PREPARE = """
import os, signal, sys
import fulora_data.builders.base as base
real = base.FuloraBuilder._example
count = [0]
def killer(self, *args, **kwargs):
    count[0] += 1
    if count[0] == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)
base.FuloraBuilder._example = killer
from fulora_data.prepare import prepare
prepare("spanish", "full", source=sys.argv[1], cache_dir=sys.argv[2])
"""


def f_kill_prepare(ws):
    source = spanish(ws, archive=True)
    code, _ = subprocess_python(_KILL_PREPARE, source, ws / "cache")
    again = cli(*prepare_args(ws, source))
    return Outcome(code, f"killed (exit {code}); rerun: {again.message or 'ok'}", False), again.exit == 0, ""


def f_push_spoiled(how):
    def run(ws):
        source = spanish(ws)
        out = ws / "out"
        cli(*export_args(ws, source, "full", "out", "--max-shard-size", "3000"))
        shard = sorted((out / "data" / "full").glob("train-*.parquet"))[0]
        saved = shard.read_bytes()
        if how == "deleted":
            shard.unlink()
        elif how == "truncated":
            shard.write_bytes(saved[:-200])
        else:
            (out / "data" / ".full-x1").mkdir()
            (out / "data" / ".full-x1" / shard.name).write_bytes(saved)
        outcome = push_check(out)
        would_push = "could not reach the Hub" in outcome.message  # passed the checks: a Hub would take it
        again = cli(*export_args(ws, source))
        intact = again.exit == 0 and push_check(out).message.startswith("Error: could not reach")
        return outcome, intact, "SILENT" if would_push else ""

    return run


def f_image(damage, processes: int | None = None):
    # processes: check in that many worker processes (FULORA_CHECK_PROCESSES), as a large source is.
    env = {} if processes is None else {"FULORA_CHECK_PROCESSES": str(processes)}

    def run(ws):
        source = spanish(ws)
        victim = sorted((source / "Images").iterdir())[2]
        saved = victim.read_bytes()
        victim.write_bytes(corrupt_pixels_valid_crc(saved) if damage == "pixels" else huge_header_png())
        args = prepare_args(ws, source)
        outcome = cli(*args, env=env)
        named = victim.name in outcome.message
        result = refused_then(ws, outcome, lambda: victim.write_bytes(saved), args)
        return result[0], result[1], "" if named or outcome.exit == 0 else "file not named"

    return run


def f_empty(kind):
    def run(ws):
        if kind == "train-only source, full":
            source = spanish(ws, test_per_plane=0)
            args = prepare_args(ws, source)
            outcome = cli(*args)
            cli(*args)  # the poisoned build used to stay cached: a second run must say the same
            return outcome, cli(*prepare_args(ws, source, "spanish", "es")).exit == 0, ""
        if kind == "header-only CSV":
            source = spanish(ws)
            path = source / "FETAL_PLANES_DB_data.csv"
            original = path.read_bytes()
            path.write_text(path.read_text(encoding="utf-8-sig").splitlines()[0] + "\n")
            args = prepare_args(ws, source, "spanish", "es")
            return refused_then(ws, cli(*args), lambda: path.write_bytes(original), args)
        if kind == "subset selects nothing":
            source = spanish(ws)
            subset = ws / "subset.csv"
            subset.write_text("Image_name,Plane\nx,Maternal cervix\n")
            outcome = cli(*prepare_args(ws, source, "spanish", "es", "--subset-csv", subset))
            return outcome, cli(*prepare_args(ws, source, "spanish", "es")).exit == 0, ""
        source = african(ws)
        edit_african(source, lambda rows: [r.update(Train="1") for r in rows if r["Center"] == "Ghana"])
        outcome = cli(*prepare_args(ws, source, "african", "Ghana"))
        return outcome, cli(*prepare_args(ws, source, "african", "Egypt")).exit == 0, ""

    return run


def f_country_contradiction(ws):
    source = african(ws)
    outcome = cli(*prepare_args(ws, source, "african", "Ghana", "--country", "Egypt"))
    return outcome, cli(*prepare_args(ws, source, "african", "Ghana")).exit == 0, ""


def f_png_in_place(ws):
    """Success is right here, with the new bytes."""
    from datasets import Image as ImageFeature

    from fulora_data.prepare import prepare

    source = spanish(ws)
    first = prepare("spanish", "es", source=source, cache_dir=ws / "cache")["train"]
    image_id = first[0]["image_id"]
    path = source / "Images" / f"{image_id}.png"
    stat, folder = path.stat(), path.parent.stat()
    path.write_bytes(png(77))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    os.utime(path.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
    outcome = cli(*prepare_args(ws, source, "spanish", "es"))
    second = prepare("spanish", "es", source=source, cache_dir=ws / "cache")["train"]
    served = second.cast_column("image", ImageFeature(decode=False))[0]["image"]["bytes"]
    right = served == path.read_bytes()
    return Outcome(outcome.exit, outcome.message or ("served the new bytes" if right else "served the OLD bytes"),
                   outcome.traceback), right, "" if right else "SILENT"  # fmt: skip


def f_tar_cut(ws):
    folder = african(ws)
    whole = ws / "whole" / "Zenodo_dataset.tar"
    whole.parent.mkdir()
    with tarfile.open(whole, "w") as tf:
        tf.add(folder, arcname=folder.name)
    with tarfile.open(whole) as tf:
        cut = tf.getmembers()[-10].offset
    bad = ws / "cut" / "Zenodo_dataset.tar"
    bad.parent.mkdir()
    bad.write_bytes(whole.read_bytes()[:cut])
    outcome = cli(*prepare_args(ws, bad, "african", "all"))
    return outcome, cli(*prepare_args(ws, whole, "african", "all")).exit == 0, ""


def f_xz_index(ws):
    archive = african(ws, archive=True)
    saved = archive.read_bytes()
    data = bytearray(saved)
    data[-24] ^= 0xFF
    archive.write_bytes(bytes(data))
    args = prepare_args(ws, archive, "african", "all")
    return refused_then(ws, cli(*args), lambda: archive.write_bytes(saved), args)


def f_zip_escape(ws):
    bad = ws / "FETAL_PLANES_ZENODO.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../escape.txt", "x")
        zf.writestr("FETAL_PLANES_DB_data.csv", "x")
    outcome = cli(*prepare_args(ws, bad, "spanish", "es"))
    return outcome, None, "" if not (ws.parent / "escape.txt").exists() else "ESCAPED"


def f_tar_symlink(ws):
    bad = ws / "Zenodo_dataset.tar.xz"
    with tarfile.open(bad, "w:xz") as tf:
        info = tarfile.TarInfo("Zenodo_dataset/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return cli(*prepare_args(ws, bad, "african", "all")), None, ""


def f_zip_truncated(ws):
    archive = spanish(ws, archive=True)
    saved = archive.read_bytes()
    archive.write_bytes(saved[: len(saved) // 2])
    args = prepare_args(ws, archive, "spanish", "es")
    return refused_then(ws, cli(*args), lambda: archive.write_bytes(saved), args)


def f_missing_source(ws):
    return cli(*prepare_args(ws, ws / "nope.zip", "spanish", "es")), None, ""


_RACE_PREPARE = """
import sys, time
import fulora_data.archives as archives
real = archives._extract_tar
def slow(*args, **kwargs):
    real(*args, **kwargs)
    time.sleep(2)
archives._extract_tar = slow
from fulora_data.prepare import prepare
prepare("african", sys.argv[1], source=sys.argv[2], cache_dir=sys.argv[3])
"""

_RACE_EXPORT = """
import sys, time
import fulora_data.export as ex
real = ex.write_parquet_shards
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[5]))
    return real(*args, **kwargs)
ex.write_parquet_shards = slow
ex.export("spanish", [sys.argv[1]], sys.argv[2], source=sys.argv[3], cache_dir=sys.argv[4])
"""


def _together(code, *argvs):
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *map(str, a)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in argvs
    ]  # fmt: skip
    results = [p.communicate(timeout=600) for p in procs]
    lines = [[x for x in err.splitlines() if x.strip() and "examples/s" not in x] for _, err in results]
    return [p.returncode for p in procs], [x[-1] if x else "" for x in lines]


def f_race_prepare(ws):
    archive = african(ws, archive=True)
    codes, lines = _together(_RACE_PREPARE, ("all", archive, ws / "cache"), ("Ghana", archive, ws / "cache"))
    worst = max(codes)
    message = next((line for code, line in zip(codes, lines, strict=True) if code), "both exit 0")
    return Outcome(worst, message, "Traceback" in " ".join(lines) and worst != 0), worst == 0, ""


def f_race_export(ws):
    import yaml

    source = spanish(ws)
    out = ws / "out"
    cli(*export_args(ws, source, "es"))
    cli(*export_args(ws, source, "full", "warm"))
    codes, lines = _together(
        _RACE_EXPORT, ("full", out, source, ws / "cache", 0.5), ("es", out, source, ws / "cache", 5)
    )
    manifest = json.loads((out / "fulora_export.json").read_text())
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    agree = sorted(manifest["configs"]) == sorted(c["config_name"] for c in card["configs"]) == ["es", "full"]
    message = "both exit 0; manifest and card " + ("agree" if agree else "DISAGREE")
    return Outcome(max(codes), message, False), agree, "" if agree else "SILENT"


def f_folder(kind):
    def run(ws):
        source = spanish(ws)
        (ws / "afile").write_text("x")
        preds = ws / "p.csv"
        preds.write_text("reference,prediction\nFetal brain,Fetal brain\n")
        if kind == "--cache-dir is a file":
            return cli(*prepare_args(ws, source, "spanish", "es")[:-1], ws / "afile"), None, ""
        if kind == "--cache-dir under a file":
            return cli(*prepare_args(ws, source, "spanish", "es")[:-1], ws / "afile" / "c"), None, ""
        if kind == "--out under a file":
            return cli(*export_args(ws, source, "es", "afile/out")), None, ""
        if kind == "--report under a file":
            return cli("evaluate", "predictions", preds, "--report", ws / "afile" / "r"), None, ""
        locked = ws / "ro"
        locked.mkdir()
        os.chmod(locked, 0o555)
        # Root ignores permissions; an immutable folder (chattr +i) refuses new entries even to root.
        immutable = os.geteuid() == 0 and _chattr("+i", locked)
        try:
            if kind == "read-only --cache-dir":
                outcome = cli(*prepare_args(ws, source, "spanish", "es")[:-1], locked / "c")
            elif kind == "read-only --out":
                outcome = cli(*export_args(ws, source, "es", "ro/out"))
            else:
                outcome = cli("evaluate", "predictions", preds, "--report", locked / "r")
        finally:
            if immutable:
                _chattr("-i", locked)
            os.chmod(locked, 0o755)
        note = "run as root: permissions not enforced" if os.geteuid() == 0 and not immutable else ""
        return outcome, None, note

    return run


def _chattr(flag: str, path: Path) -> bool:
    """Set or clear a file attribute; whether it worked (chattr may be missing, or the file system refuse)."""
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except OSError:
        return False


def f_predictions(kind):
    def run(ws):
        path = ws / "p.csv"
        if kind == "non-UTF-8 CSV":
            path.write_bytes("reference,prediction\nFetal brain,Fetal f\xe9mur\n".encode("latin-1"))
            return cli("evaluate", "predictions", path), None, ""
        if kind == "few rows beside the study's row":
            path.write_text("reference,prediction\n" + "Fetal brain,Fetal brain\n" * 5)
            return (
                cli("evaluate", "predictions", path, "--model-name", "resnet18", "--train-set", "ES"),
                None,
                "",
            )
        source = african(ws)
        from fulora_data.prepare import column, prepare

        test = prepare("african", source=source, cache_dir=ws / "cache")["test"]
        names = test.features["label"].names
        rows = list(zip(column(test, "image_id"), (names[i] for i in column(test, "label")), strict=True))
        rows = rows + rows[:2] if kind == "duplicated ids" else rows + [("foreign", rows[0][1])]
        path.write_text("image_id,reference,prediction\n" + "".join(f"{i},{p},{p}\n" for i, p in rows))
        return cli("evaluate", "predictions", path, "--data", "african:test", "--source", source,
                   "--cache-dir", ws / "cache"), None, ""  # fmt: skip

    return run


def f_option(kind):
    def run(ws):
        source = spanish(ws)
        if kind == "--seed -1":
            return cli(*prepare_args(ws, source, "spanish", "lora-100", "--seed", "-1")), None, ""
        if kind == "--max-shard-size 0":
            return cli(*export_args(ws, source, "es", "out", "--max-shard-size", "0")), None, ""
        if kind == "--num-proc -3":
            return (
                cli(
                    "data",
                    "audit",
                    "spanish",
                    "--source",
                    source,
                    "--cache-dir",
                    ws / "cache",
                    "--num-proc",
                    "-3",
                ),
                None,
                "",
            )
        if kind == "--md5 with a folder":
            return cli(*prepare_args(ws, source, "spanish", "es", "--md5", "0" * 32)), None, ""
        if kind.startswith("repo id"):
            cli(*export_args(ws, source, "es"))
            outcome = cli("data", "push", ws / "out", "--repo-id", kind.split()[-1], "--token", "hf_x",
                          "--endpoint", "http://127.0.0.1:9")  # fmt: skip
            # Passing to the network means a reachable Hub's client would raise on it (a traceback).
            return outcome, None, "UNCHECKED" if "could not reach the Hub" in outcome.message else ""
        if kind == "non-UTF-8 --source":
            odd = ws / os.fsdecode(b"odd\xffname")
            shutil.copytree(source, odd)
            return cli(*prepare_args(ws, odd, "spanish", "es")), None, ""
        if kind == "--against-source missing":
            return cli("data", "audit", "spanish", "-c", "es", "--source", source, "--cache-dir", ws / "cache",
                       "--against", "african", "--against-source", ws / "nope.tar.xz"), None, ""  # fmt: skip
        # credentials in --endpoint
        cli(*export_args(ws, source, "es"))
        outcome = cli("data", "push", ws / "out", "--repo-id", "fulora/x", "--token", "hf_secrettoken1",
                      "--endpoint", "http://alice:s3cret@127.0.0.1:9")  # fmt: skip
        leaked = any(s in outcome.message for s in ("s3cret", "alice", "hf_secrettoken1"))
        return outcome, None, "LEAKED" if leaked else ""

    return run


def f_malformed_manifest(ws):
    source = spanish(ws)
    out = ws / "out"
    cli(*export_args(ws, source, "es"))
    path = out / "fulora_export.json"
    saved = path.read_text()
    path.write_text(json.dumps({**json.loads(saved), "configs": "es"}))
    before = files_of(out)
    outcome = cli(*export_args(ws, source, "full"))
    untouched = files_of(out) == before
    path.write_text(saved)
    again = cli(*export_args(ws, source, "full"))
    return outcome, untouched and again.exit == 0, "" if untouched else "half-moved config"


def f_orphan_partial(ws):
    archive = african(ws, archive=True)
    cli(*prepare_args(ws, archive, "african", "all"))
    extracted = ws / "cache" / "fulora_extracted"
    (name,) = [p.name for p in extracted.iterdir() if not p.name.startswith(".")]
    shutil.rmtree(extracted / name)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (extracted / f".{name}.tmp-{dead.stdout.strip()}-0badf00d").mkdir()
    outcome = cli(*prepare_args(ws, archive, "african", "Ghana"))
    return Outcome(outcome.exit, outcome.message or "rebuilt", outcome.traceback), outcome.exit == 0, ""


def f_failed_build_extraction(ws):
    archive = spanish(ws, test_per_plane=0, archive=True)
    outcome = cli(*prepare_args(ws, archive))
    extracted = ws / "cache" / "fulora_extracted"
    kept = extracted.is_dir() and any(not p.name.startswith(".") for p in extracted.iterdir())
    return (
        outcome,
        cli(*prepare_args(ws, archive, "spanish", "es")).exit == 0,
        "extraction kept" if kept else "",
    )


def f_expansion_cap(ws):
    archive = spanish(ws, archive=True)
    outcome = cli(*prepare_args(ws, archive, "spanish", "es"), env={"FULORA_MAX_EXTRACT_BYTES": "1000"})
    return outcome, cli(*prepare_args(ws, archive, "spanish", "es")).exit == 0, ""


def f_bad_label(ws):
    path = ws / "p.csv"
    path.write_text("reference,prediction\nFetal brain,Fetal liver\n")
    return cli("evaluate", "predictions", path), None, ""


FAULTS = [
    Fault("Image_name ../ traversal", f_traversal("relative")),
    Fault("Image_name absolute path", f_traversal("absolute")),
    Fault("african Center ../ traversal", f_african_center),
    Fault("kill during first export", f_kill_export(True), expect_success=True),
    Fault("kill during re-export", f_kill_export(False), expect_success=True),
    Fault("kill during prepare", f_kill_prepare, expect_success=True),
    Fault("push: shard deleted", f_push_spoiled("deleted")),
    Fault("push: shard truncated", f_push_spoiled("truncated")),
    Fault("push: stray hidden shard", f_push_spoiled("stray")),
    Fault("PNG corrupt pixels, valid CRC", f_image("pixels")),
    Fault("PNG header 100000x100000", f_image("huge")),
    Fault("PNG corrupt pixels, in worker processes", f_image("pixels", processes=2)),
    Fault("PNG header 100000x100000, in workers", f_image("huge", processes=2)),
    Fault("empty split: train-only source, full", f_empty("train-only source, full")),
    Fault("empty split: header-only CSV", f_empty("header-only CSV")),
    Fault("empty split: subset selects nothing", f_empty("subset selects nothing")),
    Fault("empty split: country without test rows", f_empty("country")),
    Fault("-c Ghana --country Egypt", f_country_contradiction),
    Fault("PNG overwritten in place", f_png_in_place, expect_success=True),
    Fault("plain tar cut at member boundary", f_tar_cut),
    Fault("tar.xz damaged in its index", f_xz_index),
    Fault("zip member ../ escape", f_zip_escape),
    Fault("tar symlink to /etc/passwd", f_tar_symlink),
    Fault("zip truncated", f_zip_truncated),
    Fault("missing --source", f_missing_source),
    Fault("two prepares, one archive, one cache", f_race_prepare, expect_success=True),
    Fault("two exports into one export", f_race_export, expect_success=True),
    Fault("--cache-dir is a file", f_folder("--cache-dir is a file")),
    Fault("--cache-dir under a file", f_folder("--cache-dir under a file")),
    Fault("--out under a file", f_folder("--out under a file")),
    Fault("--report under a file", f_folder("--report under a file")),
    Fault("read-only --cache-dir", f_folder("read-only --cache-dir")),
    Fault("read-only --out", f_folder("read-only --out")),
    Fault("read-only --report", f_folder("read-only --report")),
    Fault("predictions: non-UTF-8 CSV", f_predictions("non-UTF-8 CSV")),
    Fault("predictions: duplicated ids", f_predictions("duplicated ids")),
    Fault("predictions: foreign ids", f_predictions("foreign ids")),
    Fault("predictions: few rows beside study", f_predictions("few rows beside the study's row")),
    Fault("predictions: bad label cell", f_bad_label),
    Fault("--seed -1", f_option("--seed -1")),
    Fault("repo id org/x--y", f_option("repo id org/x--y")),
    Fault("repo id org/x..y", f_option("repo id org/x..y")),
    Fault("non-UTF-8 --source path", f_option("non-UTF-8 --source")),
    Fault("malformed fulora_export.json", f_malformed_manifest),
    Fault("orphan extraction of a dead process", f_orphan_partial, expect_success=True),
    Fault("failed build keeps extraction", f_failed_build_extraction),
    Fault("archive over the expansion cap", f_expansion_cap),
    Fault("--md5 with a folder source", f_option("--md5 with a folder")),
    Fault("--against-source missing", f_option("--against-source missing")),
    Fault("credentials in --endpoint", f_option("credentials in --endpoint")),
    Fault("--max-shard-size 0", f_option("--max-shard-size 0")),
    Fault("--num-proc -3", f_option("--num-proc -3")),
]


# ----------------------------------------------------------------------------- generation faults
_GENERATE_WORLD: dict[str, Path] = {}


def _generate_world() -> dict[str, Path]:
    """A tiny base and a tiny adapter, made once per matrix run (outside every fault's workspace)."""
    if not _GENERATE_WORLD:
        import atexit

        import peft
        import torch

        from fulora_data.adapter import DIFFUSERS_FILE, AdapterInfo, save_adapter_file
        from fulora_data.tiny_sd import build_tiny_components, save_tiny_pipeline

        root = Path(tempfile.mkdtemp(prefix="fulora-fault-generate-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        unet = build_tiny_components(0)["unet"]
        unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in unet.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        state = {f"unet.{k}": v.detach().clone() for k, v in peft.get_peft_model_state_dict(unet).items()}
        info = AdapterInfo(base_model="tiny-sd", base_model_revision="", rank=4, alpha=4.0, targets="attention",
                           text_encoder=False, clip_skip=1)  # fmt: skip
        (root / "adapter").mkdir()
        save_adapter_file(root / "adapter" / DIFFUSERS_FILE, state, info)
        _GENERATE_WORLD.update(
            base=save_tiny_pipeline(root / "tiny-sd"), adapter=root / "adapter", root=root, state=state, info=info
        )
    return _GENERATE_WORLD


def generate_args(out: Path, **changes) -> list:
    world = _generate_world()
    options = {"base": world["base"], "adapter": world["adapter"], "planes": "brain", "samplers": "euler",
               "per_plane": 2, "width": 16, "height": 16, "steps": 2, "batch_size": 1, "cpu": True, **changes}  # fmt: skip
    args = []
    for key, value in options.items():
        if value is not None:
            flag = "--" + key.replace("_", "-")
            args += [flag] if value is True else [flag, value]
    return ["generate", *args, "--out", out, "--no-progress"]


def _images(out: Path) -> int:
    from fulora_data.generated import read_manifest

    manifest = read_manifest(out) if out.is_dir() else None
    return manifest["num_images"] if manifest else 0


def f_generate_number(option: str, value: str):
    def run(ws):
        out = ws / "out"
        outcome = cli(*generate_args(out, **{option: value}))
        note = "SILENT" if _images(out) else ""  # images made from a NaN or absurd number
        rerun = cli(*generate_args(out)).exit == 0 and _images(out) == 2
        return outcome, rerun, note

    return run


# ----------------------------------------------------------------------------- Hub, compare, evaluate faults
# (issue 18, the `faults` part). The Hub is tests/hub_server.py's stand-in, which speaks the real protocol;
# the CLI runs in a subprocess, since huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import.
SECRET = "s3cret-pw"
TOKEN_SECRET = "hf_faultmatrixsecret123"
_TESTS = Path(__file__).resolve().parents[1] / "tests"


@contextlib.contextmanager
def stand_in_hub():
    sys.path.insert(0, str(_TESTS))
    try:
        from hub_server import StandInHub
    finally:
        sys.path.remove(str(_TESTS))
    with StandInHub() as hub:
        yield hub


def cli_sub(ws: Path, hub, *args, env: dict | None = None) -> tuple[Outcome, str]:
    """Run ``fulora ARGS`` in a fresh process aimed at the stand-in Hub; return the outcome and all output."""
    full_env = {
        **os.environ,
        "HF_ENDPOINT": hub.url if hub is not None else "http://127.0.0.1:9",
        "HF_HOME": str(ws / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    full_env.pop("HF_TOKEN", None)
    if hub is not None and "HF_TOKEN" not in (env or {}):
        full_env["HF_TOKEN"] = hub.token
    run = subprocess.run(
        [sys.executable, "-c", "from fulora_data.cli import main; main()", *map(str, args)],
        capture_output=True, text=True, timeout=600, env=full_env,
    )  # fmt: skip
    output = run.stdout + run.stderr
    traceback = "Traceback (most recent call last)" in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    message = "TRACEBACK " + output.strip().splitlines()[-1] if traceback else (errors[-1] if errors else "")
    return Outcome(run.returncode, message, traceback), output


def _pushed_export(ws: Path, hub) -> tuple[str, Path]:
    sys.path.insert(0, str(_TESTS))
    try:
        from hub_exports import make_export
    finally:
        sys.path.remove(str(_TESTS))
    from fulora_data.hub import push_dataset

    repo = "fulora/faults"
    make_export(ws / "export", configs={"a": {"train": 1, "test": 1}})
    push_dataset(ws / "export", repo, token=hub.token, endpoint=hub.url)
    return repo, ws / "export"


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shift_labels(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = Path(os.path.realpath(path))
    table = pq.read_table(real)
    index = table.column_names.index("label")
    labels = pa.array([(v + 1) % 5 for v in table.column("label").to_pylist()], table.schema.field(index).type)
    real.chmod(0o644)
    pq.write_table(table.set_column(index, table.schema.field(index), labels), real)


def f_tampered_cache(ws):
    with stand_in_hub() as hub:
        repo, export_folder = _pushed_export(ws, hub)
        first, _ = cli_sub(ws, hub, "data", "pull", f"{repo}@v1.0.0")
        shard = next((ws / "hf-home").rglob("snapshots/*/data/a/train-*.parquet"))
        published = _sha(shard)
        _shift_labels(shard)
        outcome, _ = cli_sub(ws, hub, "data", "pull", f"{repo}@v1.0.0", env={"HF_HUB_OFFLINE": "1"})
        again, _ = cli_sub(ws, hub, "data", "pull", f"{repo}@v1.0.0")  # online: repaired
        return outcome, first.exit == 0 and again.exit == 0 and _sha(shard) == published, ""


def f_endpoint_credentials(command):
    def run(ws):
        if command == "doctor":
            env = {"HF_ENDPOINT": f"https://user:{SECRET}@hub.example.org/?token={TOKEN_SECRET}"}
            outcome, output = cli_sub(ws, None, "doctor", env=env)
            return outcome, None, "LEAKED" if SECRET in output or TOKEN_SECRET in output else ""
        with stand_in_hub() as hub:
            repo, _ = _pushed_export(ws, hub)
            hub.fail_next("info", 500, times=50)  # the Hub's error names the URL it was asked
            endpoint = hub.url.replace("http://", f"http://user:{SECRET}@")
            outcome, output = cli_sub(ws, hub, *command.split(), repo, "--endpoint", endpoint)
            return outcome, None, "LEAKED" if SECRET in output or TOKEN_SECRET in output else ""

    return run


# ----------------------------------------------------------------------------- training faults
# `train lora` on a tiny diffusers pipeline (fulora_data.tiny_sd, built once per matrix run) and a 5-image
# procedural Spanish set, at 32 px with 8 px buckets, a few steps. A finished 2-step run (a checkpoint at
# step 2 and an adapter) is made once too; the resume and checkpoint faults work on a copy of it.
_TRAIN: dict = {}

_FULORA = """
import sys, warnings
warnings.simplefilter("ignore")
from fulora_data.cli import main
main(sys.argv[1:], prog_name="fulora")
"""

_FSIZE_FULORA = """
import resource, signal, sys, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk would
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
warnings.simplefilter("ignore")
from fulora_data.cli import main
main(sys.argv[2:], prog_name="fulora")
"""


def train_world() -> dict:
    """The shared tiny base, source, latent cache, smoke preset and one finished run (made on first use)."""
    if _TRAIN:
        return _TRAIN
    import atexit

    import yaml

    from fulora_data.lora.config import LoraConfig
    from fulora_data.tiny_sd import save_tiny_pipeline

    root = Path(tempfile.mkdtemp(prefix="fulora-fault-train-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    base = save_tiny_pipeline(root / "base")
    source = samples.write_spanish_source(root / "src", per_plane=1, test_per_plane=1, seed=0)
    values = dict(base=str(base), data_config="es", source=str(source), cache_dir=str(root / "cache"),
                  resolution=32, bucket_step=8, batch_size=1, max_steps=2, text_encoder_lr=0.0,
                  checkpoint_every=2, validation_every=0, validation_inference_steps=1, seed=3)  # fmt: skip
    config = LoraConfig.preset("smoke", **values).to_dict()
    config.pop("train_text_encoder", None)
    preset = root / "tiny.yaml"
    preset.write_text(yaml.safe_dump(config))
    _TRAIN.update(root=root, base=base, source=source, cache=root / "cache", preset=preset)
    _TRAIN["other"] = save_tiny_pipeline(root / "other", seed=1)
    finished = cli(*train_args(root / "finished"))
    if finished.exit != 0:
        raise RuntimeError(f"the shared 2-step run failed: {finished.message}")
    _TRAIN["finished"] = root / "finished"
    return _TRAIN


def train_args(out: Path, *extra) -> list:
    return ["train", "lora", "--preset", _TRAIN["preset"], "--out", out, *extra]


def finished_copy(ws: Path) -> Path:
    world = train_world()
    return Path(
        shutil.copytree(world["finished"], ws / "run", ignore=shutil.ignore_patterns(".fulora.lock*"))
    )


def digests(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def subprocess_outcome(run: subprocess.CompletedProcess | tuple[int, str]) -> Outcome:
    code, err = (run.returncode, run.stderr) if isinstance(run, subprocess.CompletedProcess) else run
    lines = [x for x in err.splitlines() if x.strip() and "examples/s" not in x and "Warning" not in x]
    errors = [x for x in lines if x.startswith("Error:")]
    message = errors[-1] if errors else (lines[-1] if lines and code else "")
    traceback = "Traceback (most recent call last)" in err
    return Outcome(code, f"TRACEBACK {message}" if traceback else message, traceback)


def trained(out: Path) -> bool:
    """Whether a command got as far as training (a checkpoint, an adapter or logs in ``out``)."""
    return (
        any((out / name).exists() for name in ("checkpoint", "logs"))
        or (out / "adapter").is_dir()
        and any(p.suffix == ".safetensors" for p in (out / "adapter").iterdir())
    )


def f_train_foreign_file(ws):
    train_world()
    out = ws / "proj"
    (out / "adapter").mkdir(parents=True)
    notes = out / "adapter" / "notes.txt"
    notes.write_text("my notes\n")
    outcome = cli(*train_args(out))
    kept = notes.is_file() and notes.read_text() == "my notes\n"
    if not kept:
        return outcome, False, "LOST"
    named = "notes.txt" in outcome.message
    notes.rename(ws / "notes.txt")
    again = cli(*train_args(out))
    return outcome, again.exit == 0, "" if named or outcome.exit == 0 else "file not named"


def f_train_two_runs(ws):
    train_world()
    out = ws / "proj"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-c",
        _FULORA,
        *map(str, train_args(out, "--max-steps", "200", "--checkpoint-every", "0")),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline
        and first.poll() is None
        and not (list(out.glob(".fulora.lock*")) or trained(out))
    ):
        time.sleep(0.2)
    second = subprocess.run(command[:-4] + ["--max-steps", "2", "--checkpoint-every", "0"], capture_output=True,
                            text=True, env=env, timeout=600)  # fmt: skip
    raced = first.poll() is None  # the first was still training when the second ended
    first_err = first.communicate(timeout=600)[1]
    outcome = subprocess_outcome(second)
    names_holder = f"PID {first.pid}" in outcome.message
    note = ""
    if not raced and outcome.exit == 0:
        note = "first ended before the second ran"
    elif outcome.exit == 0:
        note = "SILENT"  # two writers in one --out, both exit 0
    elif outcome.exit and not names_holder:
        note = "holder not named"
    intact = first.returncode == 0 and trained(out)
    if outcome.exit != 0 and first.returncode != 0:
        note = note or "LOST"
    return outcome, intact and "Traceback" not in first_err, note


def f_train_resume(change):
    def run(ws):
        world = train_world()
        extra, fragment = ["--max-steps", "3"], ""
        if change == "more images":
            out = finished_copy(ws)
            bigger = samples.write_spanish_source(ws / "src10", per_plane=2, test_per_plane=1, seed=0)
            extra += ["--source", bigger, "--cache-dir", ws / "cache"]
            fragment = "10"
        elif change == "learning rate":
            out = finished_copy(ws)
            extra += ["--learning-rate", "2e-3"]
            fragment = "learning_rate"
        else:  # other weights in the same --base folder
            base = Path(shutil.copytree(world["base"], ws / "base"))
            out = ws / "run"
            first = cli(*train_args(out, "--base", base))
            if first.exit != 0:
                return first, None, "first run failed"
            for weights in (world["other"] / "unet").glob("*.safetensors"):
                shutil.copy(weights, base / "unet" / weights.name)
            extra += ["--base", base]
            fragment = "base"
        before = digests(out / "checkpoint")
        outcome = cli(*train_args(out, "--resume", *extra))
        if outcome.exit == 0:
            return outcome, None, "SILENT"  # trained on as if it were the same run
        unchanged = digests(out / "checkpoint") == before
        return (
            outcome,
            None,
            "" if fragment in outcome.message else "difference not named" if unchanged else "LOST",
        )

    return run


def f_generate_nan_adapter(ws):
    from fulora_data.adapter import DIFFUSERS_FILE, save_adapter_file

    world = _generate_world()
    spoiled = {k: v.clone() for k, v in world["state"].items()}
    spoiled[sorted(spoiled)[0]][0, 0] = float("nan")
    (ws / "nan-adapter").mkdir()
    save_adapter_file(ws / "nan-adapter" / DIFFUSERS_FILE, spoiled, world["info"])
    out = ws / "out"
    outcome = cli(*generate_args(out, adapter=ws / "nan-adapter"))
    return outcome, cli(*generate_args(out)).exit == 0, "SILENT" if outcome.exit == 0 else ""


def f_generate_unknown_key(ws):
    import torch

    from fulora_data.adapter import DIFFUSERS_FILE, save_adapter_file

    world = _generate_world()
    extra = {**world["state"], "unet.mid_block.nothing.lora_A.weight": torch.zeros(4, 64)}
    (ws / "extra").mkdir()
    save_adapter_file(ws / "extra" / DIFFUSERS_FILE, extra, world["info"])
    out = ws / "out"
    outcome = cli(*generate_args(out, adapter=ws / "extra"))
    rerun = cli(*generate_args(out, adapter=ws / "extra", allow_unmatched=True)).exit == 0
    return outcome, rerun, "SILENT" if outcome.exit == 0 else ""


def f_generate_against(kind: str):
    def run(ws):
        source = spanish(ws)
        out = ws / "out"
        against = {
            "bad source": {"against": "spanish/lora-100", "against_source": ws / "nope.tar.xz"},
            "unknown config": {"against": "spanish/lora-7", "against_source": source},
            "missing repo": {"against": "fulora/no-such-set/lora-100"},
        }[kind]
        env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if kind == "missing repo" else {}
        outcome = cli(*generate_args(out, cache_dir=ws / "cache", **against), env=env)
        late = _images(out) > 0  # refused only after making the images: the check came late
        rerun = cli(*generate_args(out)).exit == 0
        return outcome, rerun, "LATE" if late else ""

    return run


def f_train_number(args):
    def run(ws):
        world = train_world()
        out = ws / "out"
        extra = ["--base", world["base"]] if args[0] == "--clip-skip" else []
        outcome = cli(*train_args(out, *extra, *args))
        if outcome.exit == 0:
            return outcome, None, "SILENT"
        return outcome, None, "LATE" if trained(out) else ""

    return run


def f_local_dir_readme(ws):
    with stand_in_hub() as hub:
        repo, _ = _pushed_export(ws, hub)
        mine = ws / "mine"
        mine.mkdir()
        (mine / "README.md").write_text("my notes\n")
        outcome, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", mine)
        lost = (mine / "README.md").read_text() != "my notes\n"
        again, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", ws / "fresh")
        return outcome, again.exit == 0, "LOST" if lost else ""


def f_local_dir_locked(ws):
    with stand_in_hub() as hub:
        repo, _ = _pushed_export(ws, hub)
        target = ws / "pulled"
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time\nfrom fulora_data.io import folder_lock\n"
             f"with folder_lock({str(target)!r}, '--local-dir'):\n    print('held', flush=True); time.sleep(120)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            holder.stdout.readline()
            outcome, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", target)
        finally:
            holder.kill()
            holder.wait()
        again, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", target)
        named = f"PID {holder.pid}" in outcome.message
        return outcome, again.exit == 0, "" if named or outcome.exit == 0 else "holder not named"


def f_local_dir_disk_full(ws):
    mount = ws / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        return Outcome(0, "", False), None, "run as root with mount rights: no tmpfs here, skipped"
    try:
        with stand_in_hub() as hub:
            repo, _ = _pushed_export(ws, hub)
            outcome, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", mount / "pulled")
            left = [p.relative_to(mount).as_posix() for p in mount.rglob("*") if p.is_file()]
            again, _ = cli_sub(ws, hub, "data", "pull", repo, "--local-dir", ws / "roomy")
            return outcome, again.exit == 0, f"left on the full disk: {left[:2]}" if outcome.exit and left else ""
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def f_model_push_strays(ws):
    sys.path.insert(0, str(_TESTS))
    try:
        from hub_exports import make_model
    finally:
        sys.path.remove(str(_TESTS))
    folder = ws / "adapter"
    make_model(folder)
    (folder / ".env").write_text(f"HF_TOKEN={TOKEN_SECRET}\n")
    (ws / "private.safetensors").write_bytes(b"someone else's weights")
    os.symlink(ws / "private.safetensors", folder / "linked.safetensors")
    with stand_in_hub() as hub:
        outcome, output = cli_sub(ws, hub, "model", "push", folder, "--repo-id", "fulora/strays")
        files = hub.files("fulora/strays", repo_type="model") if outcome.exit == 0 else {}
        leaked = ".env" in files or any(b"someone else's" in c or TOKEN_SECRET.encode() in c for c in files.values())
        return outcome, None, "LEAKED" if leaked or TOKEN_SECRET in output else ""


def f_sixteen_bit(ws):
    import io

    from PIL import Image

    source = spanish(ws)
    victim = sorted((source / "Images").glob("*.png"))[0]
    with Image.open(victim) as image:
        shape = (image.height, image.width)
    values = (np.arange(shape[0] * shape[1]).reshape(shape) * 7 % 65536).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    victim.write_bytes(buffer.getvalue())
    outcome = cli(*prepare_args(ws, source))
    if outcome.exit:
        return outcome, None, ""
    from fulora_data.prepare import prepare

    splits = prepare("spanish", "full", source=source, cache_dir=ws / "cache")
    row = next(r for split in splits.values() for r in split if r["image_id"] == victim.stem)
    got = np.asarray(row["image"])
    expected = ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)  # by value range
    return outcome, None, "" if np.array_equal(got, expected) else "SILENT"


def f_compare_report(ws):
    report = ws / "report"
    report.mkdir()
    (report / "report.md").write_text("my notes\n")
    outcome = cli("data", "compare", "synthetic/generated", "synthetic/generated", "--source", ws / "a",
                  "--source", ws / "b", "--weights", ws / "missing.pt", "--report", report)  # fmt: skip
    lost = (report / "report.md").read_text() != "my notes\n"
    named = "not written by fulora" in outcome.message
    return outcome, None, "LOST" if lost else ("" if named else "UNCHECKED")


def f_compare_self_interval(ws):
    from fulora_data.compare.metrics import compare_features

    x = np.random.default_rng(0).normal(size=(35, 2048))
    result = compare_features(x, x, bootstrap=50)
    low, high = result["fid_interval"]
    inside = low <= result["fid"] <= high
    message = f"FID {result['fid']:.3g} in [{low:.3g}, {high:.3g}]"
    return Outcome(0, message, False), None, "" if inside else "SILENT"


def f_device(command, device):
    def run(ws):
        if command == "compare":
            args = ["data", "compare", "synthetic/generated", "synthetic/generated", "--source", ws / "a",
                    "--source", ws / "b", "--weights", ws / "missing.pt"]  # fmt: skip
        else:
            args = ["evaluate", "--model", ws / "missing", "--data", "african:test", "--source", ws / "src"]
        outcome = cli(*args, "--device", device, "--cache-dir", ws / "cache")
        named = outcome.exit == 2 and "--device" in outcome.message
        return outcome, None, "" if named or outcome.traceback else "UNCHECKED"

    return run


def f_generate_failed_then_fixed(kind: str):
    def run(ws):
        out = ws / "out"
        bad = {"--steps 2000 ddim": {"steps": 2000, "samplers": "ddim"}, "--width 65536": {"width": 65536}}[kind]
        outcome = cli(*generate_args(out, **bad))
        fixed = cli(*generate_args(out, samplers="ddim"))
        return outcome, fixed.exit == 0 and _images(out) == 2, ""

    return run


_RACE_GENERATE = "import sys\nfrom fulora_data.cli import main\nmain(['generate', *sys.argv[1:]], prog_name='fulora')"


def f_race_generate(ws):
    out = ws / "out"
    argv = [str(a) for a in generate_args(out, per_plane=4)[1:]]
    codes, lines = _together(_RACE_GENERATE, argv, argv)
    refused = [line for code, line in zip(codes, lines, strict=True) if code]
    intact = _images(out) == 4
    if sorted(codes) == [0, 0]:  # they did not overlap: the second found the set complete
        return Outcome(0, "both exit 0 (no overlap)", False), intact, "" if intact else "SILENT"
    named = bool(refused) and "PID" in refused[0] and "Traceback" not in " ".join(lines)
    message = refused[0] if refused else "both exit 0"
    return Outcome(0 if 0 in codes and named else max(codes), message, "Traceback" in message), intact, ""


GENERATION_FAULTS = [
    Fault("generate --adapter-scale nan", f_generate_number("adapter_scale", "nan")),
    Fault("generate --adapter-scale 1e30", f_generate_number("adapter_scale", "1e30")),
    Fault("generate --guidance nan", f_generate_number("guidance", "nan")),
    Fault("generate --guidance inf", f_generate_number("guidance", "inf")),
    Fault("generate NaN adapter weights", f_generate_nan_adapter),
    Fault("generate adapter with an unknown key", f_generate_unknown_key),
    Fault("generate --against bad source", f_generate_against("bad source")),
    Fault("generate --against unknown config", f_generate_against("unknown config")),
    Fault("generate --against missing repo", f_generate_against("missing repo")),
    Fault("generate --steps 2000 ddim, then fixed", f_generate_failed_then_fixed("--steps 2000 ddim")),
    Fault("generate --width 65536, then fixed", f_generate_failed_then_fixed("--width 65536")),
    Fault("two generates into one --out", f_race_generate, expect_success=True),
]
FAULTS += GENERATION_FAULTS


def f_push_results_revision(ws):
    from safetensors.numpy import save_file

    from fulora_data.hub import push_model

    with stand_in_hub() as hub:
        for tag, value in (("v1", 0.0), ("v2", 1.0)):
            folder = ws / tag
            folder.mkdir()
            save_file({"fc.weight": np.full((5, 2), value, np.float32)}, str(folder / "model.safetensors"))
            (folder / "config.json").write_text(json.dumps({"arch": "resnet18"}))
            (folder / "README.md").write_text("---\nlicense: mit\n---\n# clf\n")
            push_model(folder, "fulora/clf", token=hub.token, tag=tag, endpoint=hub.url)
        head = hub.head("fulora/clf", "model")
        outcome, _ = cli_sub(ws, hub, "evaluate", "--model", "fulora/clf@v1", "--data", "african:test",
                             "--source", ws / "nowhere", "--push-results")  # fmt: skip
        moved = hub.head("fulora/clf", "model") != head
        named = "holds other weights" in outcome.message
        return outcome, None, "SILENT" if moved else ("" if named else "UNCHECKED")


FAULTS += [
    Fault("tampered Hub cache, labels shifted", f_tampered_cache),
    Fault("HF_ENDPOINT credentials: doctor", f_endpoint_credentials("doctor"), expect_success=True),
    Fault("endpoint credentials: data pull, Hub 500", f_endpoint_credentials("data pull")),
    Fault("endpoint credentials: model pull, Hub 500", f_endpoint_credentials("model pull")),
    Fault("data pull --local-dir over user README", f_local_dir_readme),
    Fault("two pulls into one --local-dir", f_local_dir_locked),
    Fault("disk full: data pull --local-dir", f_local_dir_disk_full),
    Fault("model push: .env and outside symlink", f_model_push_strays, expect_success=True),
    Fault("16-bit PNG in the source", f_sixteen_bit, expect_success=True),
    Fault("compare --report over user report.md", f_compare_report),
    Fault("compare: set vs itself, FID interval", f_compare_self_interval, expect_success=True),
    Fault("compare --device banana", f_device("compare", "banana")),
    Fault("evaluate --device banana", f_device("evaluate", "banana")),
    Fault("compare --device cuda without GPU", f_device("compare", "cuda")),
    Fault("evaluate --device cuda without GPU", f_device("evaluate", "cuda")),
    Fault("evaluate @v1 --push-results, main is v2", f_push_results_revision),
]


def f_train_latent_cache(ws):
    world = train_world()
    cache = Path(shutil.copytree(world["cache"], ws / "cache"))
    latents = sorted(p for p in cache.rglob("*.safetensors") if "latent" in p.parent.name)
    if not latents:
        return Outcome(-1, "HARNESS no latent cache files found", True), None, ""
    victim = latents[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    outcome = cli(
        *train_args(ws / "out", "--cache-dir", cache, "--max-steps", "1", "--checkpoint-every", "0")
    )
    from safetensors.torch import load_file

    try:
        healed = all(t.numel() > 0 for t in load_file(str(victim)).values())
    except Exception:
        healed = False
    return outcome, healed, "" if healed or outcome.exit != 0 else "SILENT"


def f_train_cut_checkpoint(ws):
    out = finished_copy(ws)
    files = sorted((out / "checkpoint").iterdir())
    victim = next((p for p in files if p.name == "optimizer.pt"), max(files, key=lambda p: p.stat().st_size))
    saved = victim.read_bytes()
    victim.write_bytes(saved[:100])
    outcome = cli(*train_args(out, "--resume", "--max-steps", "3"))
    if outcome.exit == 0:
        return outcome, None, "SILENT"
    named = victim.name in outcome.message
    victim.write_bytes(saved)
    again = cli(*train_args(out, "--resume", "--max-steps", "3"))
    return outcome, again.exit == 0, "" if named else "file not named"


def f_train_disk_full(ws):
    out = finished_copy(ws)
    before = digests(out / "checkpoint")
    largest = max((out / "checkpoint").iterdir(), key=lambda p: p.stat().st_size)
    args = train_args(out, "--resume", "--max-steps", "4", "--checkpoint-every", "2")
    run = subprocess.run([sys.executable, "-c", _FSIZE_FULORA, str(largest.stat().st_size - 1), *map(str, args)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         timeout=600)  # fmt: skip
    outcome = subprocess_outcome(run)
    kept = digests(out / "checkpoint") == before
    if not kept:
        return outcome, False, "LOST"
    if outcome.exit == 0:
        return outcome, None, "SILENT"
    again = cli(*args)
    return outcome, again.exit == 0, ""


def f_train_push_no_token(ws):
    train_world()
    out = ws / "out"
    env = {"HF_TOKEN": "", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_XET": "1"}
    outcome = cli(*train_args(out, "--push-to-hub", "fulora/x"), env=env)
    if outcome.exit == 0:
        return outcome, None, "SILENT"
    return outcome, None, "LATE" if trained(out) else ""


def f_train_push_foreign_namespace(ws):
    train_world()
    out = ws / "out"
    with stand_in_hub() as hub:  # its token's user may write under its own name and "fulora" only
        outcome, _ = cli_sub(ws, hub, *train_args(out, "--push-to-hub", "not-my-org/adapter"))
    if outcome.exit == 0:
        return outcome, None, "SILENT"
    return outcome, None, "LATE" if trained(out) else ""


TRAINING_FAULTS = [
    Fault("train: user's file in --out/adapter", f_train_foreign_file),
    Fault("train: two runs into one --out", f_train_two_runs),
    Fault("train: --resume, source gained images", f_train_resume("more images")),
    Fault("train: --resume, --learning-rate changed", f_train_resume("learning rate")),
    Fault("train: --resume, other weights in --base", f_train_resume("other weights")),
    Fault("train: --alpha 1e30", f_train_number(["--alpha", "1e30"])),
    Fault("train: --clip-skip 7 (5-layer encoder)", f_train_number(["--clip-skip", "7"])),
    Fault("train: --seed -1", f_train_number(["--seed", "-1"])),
    Fault("train: --seed 2**70", f_train_number(["--seed", str(2**70)])),
    Fault("train: truncated latent-cache file", f_train_latent_cache, expect_success=True),
    Fault("train: truncated checkpoint on --resume", f_train_cut_checkpoint),
    Fault("train: file-size limit while checkpointing", f_train_disk_full),
    Fault("train: --push-to-hub without a token", f_train_push_no_token),
    Fault("train: --push-to-hub where the token cannot write", f_train_push_foreign_namespace),
]
FAULTS += TRAINING_FAULTS


def verdict(fault: Fault, outcome: Outcome, rerun: bool | None, note: str, left: list[str]) -> str:
    if outcome.traceback:
        return "TRACEBACK"
    if note.startswith("run as root"):
        return "skipped"
    if note in (
        "SILENT",
        "LEAKED",
        "ESCAPED",
        "UNCHECKED",
        "half-moved config",
        "file not named",
        "extraction kept",
        "LATE",
        "LOST",
        "holder not named",
    ):
        return note.upper().replace(" ", "-")
    if not fault.expect_success and outcome.exit == 0:
        return "SILENT"
    if left:
        return "LEFTOVER"
    if rerun is False:
        return "RERUN"
    return "ok"


def main_(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", default="", help="only faults whose name contains this")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    rows, start = [], time.perf_counter()
    for fault in FAULTS:
        if args.k.lower() not in fault.name.lower():
            continue
        ws = Path(tempfile.mkdtemp(prefix="fulora-fault-"))
        try:
            try:
                outcome, rerun, note = fault.run(ws)
            except Exception as err:  # the harness itself failed: report it as such
                outcome, rerun, note = Outcome(-1, f"HARNESS {type(err).__name__}: {err}", True), None, ""
            left = leftovers(ws)
            row = (fault.name, outcome, rerun, note, left, verdict(fault, outcome, rerun, note, left))
            rows.append(row)
            print(_format(row), flush=True)
        finally:
            with contextlib.suppress(OSError):
                for path in ws.rglob("*"):
                    if path.is_dir():
                        path.chmod(0o755)
            shutil.rmtree(ws, ignore_errors=True)
    counts = {}
    for row in rows:
        counts[row[5]] = counts.get(row[5], 0) + 1
    tracebacks = sum(1 for r in rows if r[1].traceback)
    silent = sum(1 for r in rows if r[5] == "SILENT")
    print()
    print(
        f"totals: {len(rows)} faults; {counts.get('ok', 0)} ok; {counts.get('skipped', 0)} skipped; "
        f"{tracebacks} tracebacks; {silent} silent wrong "
        f"results; {sum(1 for r in rows if r[4])} with leftovers; "
        f"{sum(1 for r in rows if r[2] is True)} of {sum(1 for r in rows if r[2] is not None)} reruns intact; "
        f"verdicts {dict(sorted(counts.items()))}; {time.perf_counter() - start:.0f} s"
    )


def _format(row) -> str:
    name, outcome, rerun, note, left, verdict_ = row
    message = outcome.message.replace("\n", " ")
    if len(message) > 110:
        message = message[:107] + "..."
    rerun_text = "n/a" if rerun is None else ("yes" if rerun else "NO")
    left_text = f"{len(left)} ({left[0]})" if left else "0"
    extra = f"  [{note}]" if note else ""
    return f"{verdict_:<9} {name:<40} exit {outcome.exit:>3}  left {left_text:<4} rerun {rerun_text:<3}  {message}{extra}"


if __name__ == "__main__":
    main_()
