"""The study as a graph of steps, and each step's state (done / stale / to do) from content digests.

A ``Step`` has a name, a kind, its settings, its inputs (other steps' outputs, or source archives named by
path) and a ``run`` that calls the same library function as the step's command. Its identity is the
sha256 of its kind, its settings and the content digests of its inputs (an upstream step's output digest,
an archive's file sha256), never a timestamp or a path: moving ``STUDY/`` or touching an archive changes
nothing; a changed setting or changed input bytes make the step, and only what depends on it, stale.

The state of each step is one small JSON record under ``STUDY/.state/``:

- ``<step>.started.json``, written before the step runs, holds the identity it runs with. A rerun with
  the same identity hands the step's folder back to the step's own resume (a classifier's checkpoint, a
  LoRA run's checkpoint, a generation's finished parts); a rerun with another identity removes the folder
  (the started record proves the study wrote it) and starts it afresh.
- ``<step>.json``, written (atomically) only after the step's outputs are complete, holds the identity,
  the inputs' digests, the output digest, a small summary and the seconds it took. ``done`` means this
  record exists, its identity is the one the plan computes now and its outputs are still there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data.errors import ConfigError, FuloraError, SourceNotFoundError
from fulora_data.io import atomic_write_json, file_sha256

STATE_DIR = ".state"
DONE, STALE, TODO = "done", "stale", "to do"


class StepError(FuloraError):
    """A step of the study failed; the message names the step and why."""


@dataclass(frozen=True)
class Output:
    """An input that is another step's output: ``Output("lora-r128")`` (its folder) or a file in it."""

    step: str
    path: str = ""


@dataclass(frozen=True)
class Archive:
    """An input that is a source archive or folder given by the user (its identity: its content digest)."""

    path: str
    name: str = ""


@dataclass
class Context:
    """What a step's ``run`` is given: where it writes, its inputs as paths, the shared cache, a logger."""

    study: Path
    out: Path
    inputs: dict[str, Path]
    cache: Path
    device: str | None
    log: Callable[[str], None]
    summaries: dict[str, dict] = field(default_factory=dict)


@dataclass
class Step:
    """One step of the study.

    Attributes:
        name: Unique name, also its folder under ``STUDY/`` (e.g. ``lora-r128``, ``classifier/resnet18-HB``).
        kind: What it does (``lora``, ``generate``, ``classifier`` ...): the estimate's key.
        settings: Everything it runs with, JSON-serialisable (part of its identity).
        inputs: Named inputs: ``Output`` of another step or ``Archive``.
        run: ``run(ctx) -> summary`` (a small JSON-serialisable dict); writes under ``ctx.out``.
        units: How much work (steps, images, epochs x images) for the estimate.
        label: One line saying what it does, for the plan.
        device_bound: Whether it wants an accelerator (a process per GPU when several are visible).
    """

    name: str
    kind: str
    settings: dict[str, Any]
    inputs: dict[str, Output | Archive]
    run: Callable[[Context], dict[str, Any]]
    units: float = 1.0
    label: str = ""
    device_bound: bool = False

    def upstream(self) -> list[str]:
        return sorted({i.step for i in self.inputs.values() if isinstance(i, Output)})


class Graph:
    """Steps in a valid run order (every step after the steps it reads)."""

    def __init__(self, steps: Iterable[Step], settings: dict[str, Any] | None = None):
        self.steps: dict[str, Step] = {}
        for step in steps:
            if step.name in self.steps:
                raise ConfigError(f"two steps are named {step.name!r}")
            self.steps[step.name] = step
        self.settings = settings or {}
        for step in self.steps.values():
            for name in step.upstream():
                if name not in self.steps:
                    raise ConfigError(f"step {step.name!r} reads the output of {name!r}, which is no step")
        self.order = self._order()

    def _order(self) -> list[str]:
        order: list[str] = []
        seen: dict[str, int] = {}

        def visit(name: str) -> None:
            if seen.get(name) == 2:
                return
            if seen.get(name) == 1:
                raise ConfigError(f"the steps form a cycle through {name!r}")
            seen[name] = 1
            for up in self.steps[name].upstream():
                visit(up)
            seen[name] = 2
            order.append(name)

        for name in self.steps:
            visit(name)
        return order

    def dependents(self, name: str) -> set[str]:
        """Every step that reads ``name``'s output, directly or not."""
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for step in self.steps.values():
                if step.name not in found and any(u == name or u in found for u in step.upstream()):
                    found.add(step.name)
                    changed = True
        return found


# ---- digests -------------------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: the bytes a setting's digest is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def folder_digest(folder: Path) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs of every file under ``folder``."""
    digest = hashlib.sha256()
    folder = Path(folder)
    if folder.is_file():
        return file_sha256(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


class ArchiveDigests:
    """Content digests of source archives, remembered by (size, mtime) so a 2 GB archive is read once.

    The remembered (size, mtime) pair only decides whether to read the file again; the identity is the
    sha256 of its bytes.
    """

    def __init__(self, study: Path):
        self.path = Path(study) / STATE_DIR / "archives.json"
        try:
            self.known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    @staticmethod
    def check(archive: Archive) -> Path:
        """The archive's path, or ``SourceNotFoundError`` saying it is not set or not there."""
        path = archive.path
        if not path:
            raise SourceNotFoundError(
                f"sources.{archive.name} is not set (--source {archive.name}=PATH or a YAML preset)"
            )
        target = Path(path).expanduser()
        if not target.exists():
            where = archive.name if "/" in archive.name else f"sources.{archive.name}"
            raise SourceNotFoundError(f"{where}: {path!r} does not exist")
        return target

    def digest(self, archive: Archive) -> str:
        target = self.check(archive)
        stat = target.stat()
        key = str(target.resolve())
        mark = [stat.st_size, stat.st_mtime_ns] if target.is_file() else None
        entry = self.known.get(key)
        if mark is not None and entry and entry.get("mark") == mark:
            return entry["sha256"]
        value = folder_digest(target)
        if mark is not None:
            self.known[key] = {"mark": mark, "sha256": value}
            self.changed = True
        return value

    def save(self) -> None:
        if self.changed and self.path.parent.is_dir():
            atomic_write_json(self.path, self.known)
            self.changed = False


# ---- state records -------------------------------------------------------------------------------------


def _record_name(step: str) -> str:
    return step.replace("/", "__")


def state_path(study: Path, step: str, started: bool = False) -> Path:
    suffix = ".started.json" if started else ".json"
    return Path(study) / STATE_DIR / f"{_record_name(step)}{suffix}"


def read_record(study: Path, step: str, started: bool = False) -> dict | None:
    path = state_path(study, step, started)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"the study's state record {path} cannot be read ({err}); remove it to rerun") from None
    return value if isinstance(value, dict) else None


@dataclass
class StepPlan:
    """A step's place in the plan: its state, identity (None while an input is not made yet) and why."""

    name: str
    state: str
    identity: str | None
    inputs: dict[str, str | None]
    why: str
    record: dict | None


def step_identity(step: Step, input_digests: dict[str, str | None]) -> str | None:
    if any(v is None for v in input_digests.values()):
        return None
    payload = {"kind": step.kind, "settings": step.settings, "inputs": input_digests}
    return hashlib.sha256(canonical(payload).encode("utf-8")).hexdigest()


def plan_states(graph: Graph, study: Path, archives: ArchiveDigests | None = None) -> dict[str, StepPlan]:
    """Every step's state, in run order.

    A step is ``done`` when its record's identity equals the one computed now (from its settings and its
    inputs' digests) and its folder is there; ``stale`` when it has a record of another identity (or of
    inputs not made yet, or its folder is gone); ``to do`` otherwise. A missing archive is not raised here:
    the step that reads it is ``to do`` with the reason, and ``run`` refuses it before anything runs.
    """
    study = Path(study)
    archives = archives or ArchiveDigests(study)
    plans: dict[str, StepPlan] = {}
    for name in graph.order:
        step = graph.steps[name]
        digests: dict[str, str | None] = {}
        missing: list[str] = []
        for key, source in sorted(step.inputs.items()):
            if isinstance(source, Archive):
                try:
                    digests[key] = archives.digest(source)
                except SourceNotFoundError as err:
                    digests[key] = None
                    missing.append(str(err))
            else:
                up = plans[source.step]
                if up.state == DONE and not source.path:
                    digests[key] = up.record["output_digest"]
                elif up.state == DONE:  # one file or folder of the step's output: its own content digest
                    part = Archive(str(study / source.step / source.path), f"{source.step}/{source.path}")
                    try:
                        digests[key] = archives.digest(part)
                    except SourceNotFoundError as err:
                        digests[key] = None
                        missing.append(str(err))
                else:
                    digests[key] = None
        identity = step_identity(step, digests)
        record = read_record(study, name)
        if record is None:
            state, why = TODO, missing[0] if missing else ""
        elif identity is not None and record.get("identity") == identity:
            if (study / name).exists():
                state, why = DONE, ""
            else:
                state, why = STALE, f"its folder {name}/ is gone"
        else:
            state = STALE
            why = missing[0] if missing else _why_stale(step, record, digests)
        plans[name] = StepPlan(name, state, identity, digests, why, record)
    archives.save()
    return plans


def _why_stale(step: Step, record: dict, digests: dict[str, str | None]) -> str:
    old = record.get("settings", {})
    changed = sorted(k for k in set(old) | set(step.settings) if old.get(k) != step.settings.get(k))
    if changed:
        return "settings changed: " + ", ".join(changed[:4]) + ("..." if len(changed) > 4 else "")
    inputs = sorted(k for k, v in digests.items() if v is None or record.get("inputs", {}).get(k) != v)
    if inputs:
        return "inputs changed: " + ", ".join(inputs)
    return "identity changed"


# ---- running one step ----------------------------------------------------------------------------------


def input_paths(graph: Graph, step: Step, study: Path) -> dict[str, Path]:
    paths = {}
    for key, source in step.inputs.items():
        if isinstance(source, Archive):
            paths[key] = Path(source.path).expanduser()
        else:
            base = Path(study) / source.step
            paths[key] = base / source.path if source.path else base
    return paths


def prepare_folder(study: Path, step: Step, identity: str) -> Path:
    """Ready ``STUDY/<step>`` for a run of ``identity``; returns it.

    The same identity keeps the folder (the step's own resume continues it); another identity, recorded by
    the study, clears it; a folder the study has no record of is refused, never deleted.
    """
    out = Path(study) / step.name
    started = read_record(study, step.name, started=True)
    done = read_record(study, step.name)
    ours = started is not None or done is not None
    if out.exists():
        if not ours:
            raise ConfigError(
                f"{out} holds files the study did not write; move them away or choose another --out"
            )
        previous = (started or {}).get("identity") or (done or {}).get("identity")
        if previous != identity:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
    state_path(study, step.name).unlink(missing_ok=True)
    atomic_write_json(state_path(study, step.name, started=True), {"step": step.name, "identity": identity})
    return out


def finish(study: Path, step: Step, plan: StepPlan, summary: dict, seconds: float, device: str) -> dict:
    """Write the step's record (atomically) once its outputs are complete; returns it."""
    from fulora_data import __version__

    out = Path(study) / step.name
    if not out.exists():
        raise StepError(f"step {step.name!r} finished without writing {out}")
    record = {
        "step": step.name,
        "kind": step.kind,
        "identity": plan.identity,
        "settings": step.settings,
        "inputs": plan.inputs,
        "output_digest": folder_digest(out),
        "summary": summary,
        "seconds": round(seconds, 3),
        "device": device,
        "fulora": __version__,
    }
    atomic_write_json(state_path(study, step.name), record)
    state_path(study, step.name, started=True).unlink(missing_ok=True)
    return record


def relative(path: str | os.PathLike, root: Path) -> str:
    """A path under ``root`` as ``root``-relative POSIX text (what a record holds: nothing local)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name
