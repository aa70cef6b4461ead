"""``fulora study plan`` and ``fulora study run``: the plan table, the executors, the resumable run.

``run_study`` runs what the plan says is not done, in order. Each step runs through ``execute_step``
(in this process, in a worker process pinned to one GPU, or in a SLURM job): it rebuilds the graph from
the settings saved in ``STUDY/.state/settings.json``, checks the step's inputs are done, readies its folder
(same identity: the step's own resume; another: a fresh start), calls the library and writes the record
only once the outputs are complete. A kill at any point leaves either no record (the step reruns, resuming
its own checkpoint) or a whole one. A failing step stops the run with ``StepError`` naming the step and why;
the next run continues from it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from fulora_data.errors import ConfigError, FuloraError, install_hint
from fulora_data.io import atomic_write_json
from fulora_data.study.estimates import MEASURED, estimate
from fulora_data.study.graph import (
    DONE,
    STATE_DIR,
    Context,
    Graph,
    StepError,
    StepPlan,
    finish,
    input_paths,
    plan_states,
    prepare_folder,
    read_record,
)
from fulora_data.study.presets import build_graph, counts, load_settings

SETTINGS_FILE = "settings.json"


def _echo(message: str) -> None:
    print(message, flush=True)


# ---- the plan ------------------------------------------------------------------------------------------


def plan_study(
    out: str | os.PathLike | None, preset: str | os.PathLike = "study", changes: dict | None = None
) -> dict[str, Any]:
    """The study's plan: every step with its state, why, inputs, outputs and device-time estimate.

    Args:
        out: The study folder (``None``: a plan for a study not started, every step ``to do``).
        preset: ``study``, ``smoke`` or a YAML file.
        changes: Settings merged over the preset (e.g. ``{"sources": {"spanish": PATH}}``).

    Returns:
        ``{"preset", "device", "counts", "steps": [...], "total_seconds", "to_run"}``; each step:
        ``name``, ``kind``, ``state``, ``why``, ``label``, ``inputs``, ``output``, ``identity``,
        ``estimate`` (``seconds``, ``source``).
    """
    settings = load_settings(preset, changes)
    graph = build_graph(settings)
    return describe_plan(graph, settings, Path(out) if out is not None else None)


def describe_plan(graph: Graph, settings: dict, out: Path | None) -> dict[str, Any]:
    device = settings.get("device", "gpu")
    if out is not None and (out / STATE_DIR).is_dir():
        plans = plan_states(graph, out)
    else:
        plans = _fresh_plans(graph, out)
    rows = []
    for name in graph.order:
        step, plan = graph.steps[name], plans[name]
        if plan.state == DONE and plan.record and "seconds" in plan.record:
            cost = {"seconds": plan.record["seconds"], "source": MEASURED}
        else:
            cost = estimate(step.kind, step.units, device, step.settings, settings.get("name"))
        rows.append(
            {
                "name": name,
                "kind": step.kind,
                "state": plan.state,
                "why": plan.why,
                "label": step.label,
                "inputs": {k: (f"{v.step}/{v.path}".rstrip("/") if hasattr(v, "step") else f"archive {v.name}")
                           for k, v in sorted(step.inputs.items())},  # fmt: skip
                "output": f"{name}/",
                "identity": plan.identity,
                "estimate": cost,
            }
        )
    left = [r for r in rows if r["state"] != DONE]
    return {
        "preset": settings.get("name"),
        "device": device,
        "counts": counts(graph),
        "steps": rows,
        "to_run": len(left),
        "total_seconds": round(sum(r["estimate"]["seconds"] for r in left), 1),
    }


def _fresh_plans(graph: Graph, out: Path | None) -> dict[str, StepPlan]:
    from fulora_data.study.graph import TODO, Archive, ArchiveDigests

    plans = {}
    for name in graph.order:
        why = ""
        for source in graph.steps[name].inputs.values():
            if isinstance(source, Archive):
                try:
                    ArchiveDigests.check(source)  # a study not started: where, not what (no 2 GB read)
                except FuloraError as err:
                    why = str(err)
        plans[name] = StepPlan(name, TODO, None, {}, why, None)
    return plans


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a text table."""
    c = plan["counts"]
    lines = [
        f"study preset {plan['preset']!r} on {plan['device']}: {c['steps']} steps, {c['adapters']} adapters, "
        f"{c['images']:,} images, {c['classifier_runs']} classifier runs, {c['evaluations']} evaluations",
        f"{'step':<34} {'state':<6} {'device time':>12}  what",
    ]
    for row in plan["steps"]:
        cost = row["estimate"]
        time_text = f"{_duration(cost['seconds'])} {'(m)' if cost['source'] == MEASURED else '(e)'}"
        what = row["label"] + (f" [{row['why']}]" if row["why"] else "")
        lines.append(f"{row['name']:<34} {row['state']:<6} {time_text:>12}  {what}")
    lines.append(
        f"{plan['to_run']} steps to run, about {_duration(plan['total_seconds'])} of device time "
        "((e) estimate, (m) measured)"
    )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---- executing one step --------------------------------------------------------------------------------


def load_study(study: Path) -> tuple[dict, Graph]:
    """The settings a run saved in ``STUDY/.state/settings.json`` and their graph."""
    import json

    path = study / STATE_DIR / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{study} holds no study (no {STATE_DIR}/{SETTINGS_FILE}): run 'fulora study run' first") from None
    return settings, build_graph(settings)


def execute_step(
    study: str | os.PathLike,
    name: str,
    *,
    device: str | None = None,
    graph: Graph | None = None,
    log: Callable[[str], None] = _echo,
) -> dict:
    """Run one step of the study saved in ``study`` and write its record; returns the record.

    This is what every executor runs, in this process or another (``graph``: the graph already built in
    this process; default: rebuilt from the settings the run saved).

    Raises:
        StepError: If an input is not done, or the step fails (naming the step and why).
    """
    study = Path(study)
    if graph is None:
        settings, graph = load_study(study)
    else:
        settings = graph.settings
    if name not in graph.steps:
        raise ConfigError(f"the study in {study} has no step {name!r}")
    plans = plan_states(graph, study)
    plan, step = plans[name], graph.steps[name]
    if plan.identity is None:
        waiting = [u for u in step.upstream() if plans[u].state != DONE]
        raise StepError(
            f"step {name!r} cannot run yet: " + (plan.why or f"it reads {', '.join(waiting)}, not done")
        )
    if device is None and settings.get("device") == "cpu":
        device = "cpu"
    out = prepare_folder(study, step, plan.identity)
    ctx = Context(study, out, input_paths(graph, step, study), study / "cache", device, log)
    ctx.cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        summary = step.run(ctx) or {}
    except FuloraError as err:
        raise StepError(f"step {name!r} failed: {err}") from err
    except Exception as err:  # a library bug or an environment fault: still one line naming the step
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
        raise StepError(f"step {name!r} failed: {detail}") from err
    return finish(study, step, plan, summary, time.perf_counter() - started, _device_name(device))


def _device_name(device: str | None) -> str:
    if device == "cpu":
        return "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    except ImportError:
        pass
    return "cpu"


# ---- executors -----------------------------------------------------------------------------------------


class Executor(Protocol):
    """Runs a batch of steps whose inputs are all done; returns when each has finished or failed.

    ``run_batch`` returns one error message per failed step (empty when all succeeded). Steps of one batch
    never read each other's outputs, so they may run in any order or at once.
    """

    def run_batch(
        self, study: Path, names: Sequence[str], log: Callable[[str], None], graph: Graph | None = None
    ) -> dict[str, str]: ...


class LocalExecutor:
    """Runs steps on this machine: one at a time in this process, or one process per GPU.

    Args:
        devices: GPU indices to spread device-bound steps over, one worker process per device (each sees
            only its GPU through ``CUDA_VISIBLE_DEVICES``). ``None``: the visible GPUs when there are more
            than one, else in this process.
    """

    def __init__(self, devices: Sequence[str] | None = None):
        self.devices = list(devices) if devices is not None else _visible_gpus()

    def run_batch(
        self, study: Path, names: Sequence[str], log: Callable[[str], None], graph: Graph | None = None
    ) -> dict[str, str]:
        if len(self.devices) < 2 or len(names) < 2:
            for name in names:  # sequential: the first failure stops the batch
                try:
                    execute_step(study, name, graph=graph, log=log)
                except StepError as err:
                    return {name: str(err)}
            return {}
        return self._parallel(study, names, log)

    def _parallel(self, study: Path, names: Sequence[str], log: Callable[[str], None]) -> dict[str, str]:
        # Each worker writes to its own log file (a pipe left unread would block a chatty step).
        logs = study / STATE_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pending = list(names)
        running: dict[str, tuple[subprocess.Popen, str, Path]] = {}
        free = list(self.devices)
        errors: dict[str, str] = {}
        while pending or running:
            while pending and free and not errors:
                name, device = pending.pop(0), free.pop(0)
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
                command = [sys.executable, "-m", "fulora_data.study.worker", str(study), name]
                path = logs / f"{name.replace('/', '__')}.log"
                log(f"      {name}: started on device {device} (log: {path.relative_to(study)})")
                with open(path, "w", encoding="utf-8") as handle:
                    process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
                running[name] = (process, device, path)
            if not running:
                break
            time.sleep(0.2)
            for name, (process, device, path) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[name]
                free.append(device)
                if process.returncode != 0:
                    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
                    errors[name] = lines[-1] if lines else f"step {name!r} failed (exit {process.returncode})"
                else:
                    log(f"      {name}: done on device {device}")
        return errors


class SubmititExecutor:
    """Runs each batch as jobs through ``submitit`` (SLURM on a cluster, or its local/debug executors).

    Args:
        folder: Where submitit keeps job scripts and logs (default ``STUDY/.state/submitit``).
        cluster: ``None`` (auto: SLURM where ``sbatch`` exists, else local), ``"slurm"``, ``"local"`` or
            ``"debug"`` (in this process, for tests).
        parameters: ``update_parameters`` for the executor (e.g. ``{"slurm_partition": "gpu",
            "gpus_per_node": 1, "timeout_min": 240}``).
    """

    def __init__(self, folder: str | os.PathLike | None = None, cluster: str | None = None,
                 parameters: dict | None = None):  # fmt: skip
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"the SLURM executor needs submitit: {install_hint('cluster')}") from None
        self.folder, self.cluster, self.parameters = folder, cluster, dict(parameters or {})

    def run_batch(
        self, study: Path, names: Sequence[str], log: Callable[[str], None], graph: Graph | None = None
    ) -> dict[str, str]:
        import submitit

        folder = Path(self.folder) if self.folder else study / STATE_DIR / "submitit"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        if self.parameters:
            executor.update_parameters(**self.parameters)
        jobs = {name: executor.submit(execute_step, str(study), name, log=_echo) for name in names}
        errors = {}
        for name, job in jobs.items():
            try:
                job.result()
            except Exception as err:  # submitit wraps the worker's exception
                text = str(err).strip().splitlines()
                errors[name] = next((t for t in reversed(text) if "StepError" in t or "failed" in t),
                                    text[-1] if text else f"step {name!r} failed")  # fmt: skip
            else:
                log(f"      {name}: done (job {job.job_id})")
        return errors


def _visible_gpus() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


# ---- the run -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def study_lock(study: Path) -> Iterator[None]:
    """One writer per study folder: a second ``fulora study run`` on the same folder is refused."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(study / STATE_DIR / "run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"{study} is being run by another 'fulora study run'; wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


def check_study_folder(study: Path, settings: dict) -> None:
    """Refuse a folder that holds files but no study (never written by fulora) before anything runs."""
    if study.exists() and not study.is_dir():
        raise ConfigError(f"--out {study} is a file, not a folder")
    if study.is_dir() and any(study.iterdir()) and not (study / STATE_DIR).is_dir():
        raise ConfigError(f"--out {study} holds files that are not a fulora study; choose an empty or new folder")


def run_study(
    out: str | os.PathLike,
    preset: str | os.PathLike = "study",
    *,
    changes: dict | None = None,
    executor: Executor | None = None,
    log: Callable[[str], None] = _echo,
) -> dict[str, Any]:
    """Run every step the plan says is not done, in order; resumable after a kill at any point.

    Args:
        out: The study folder (created; reused by a rerun).
        preset: ``study``, ``smoke`` or a YAML file.
        changes: Settings merged over the preset.
        executor: How steps run (default ``LocalExecutor()``).
        log: Where progress lines go.

    Returns:
        ``{"ran": [step names], "plan": the plan after the run, "records": {step: record}}``.

    Raises:
        ConfigError: For bad settings or a folder that is not a study (before anything runs).
        StepError: For the first step that failed, naming it and why (its record is not written; the next
            run continues from it).
    """
    settings = load_settings(preset, changes)
    return run_graph(build_graph(settings), out, executor=executor, log=log)


def run_graph(
    graph: Graph,
    out: str | os.PathLike,
    *,
    executor: Executor | None = None,
    log: Callable[[str], None] = _echo,
) -> dict[str, Any]:
    """Run a study graph's steps that are not done (``run_study`` without the presets); same return."""
    study = Path(out)
    settings = graph.settings
    check_study_folder(study, settings)
    (study / STATE_DIR).mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    ran: list[str] = []
    with study_lock(study):
        atomic_write_json(study / STATE_DIR / SETTINGS_FILE, settings)
        plans = plan_states(graph, study)
        left = [n for n in graph.order if plans[n].state != DONE]
        missing = [plans[n].why for n in left if plans[n].why.startswith("sources.")]
        if missing:
            raise ConfigError(missing[0])
        if not left:
            log(f"nothing to do: all {len(graph.order)} steps of the {settings.get('name')!r} study are done")
        total = len(left)
        while left:
            ready = [n for n in left if all(plans[u].state == DONE for u in graph.steps[n].upstream())]
            if not ready:
                raise StepError(f"step {left[0]!r} cannot run: {plans[left[0]].why or 'its inputs are not done'}")
            batch = _batch(graph, ready, executor)
            for name in batch:
                position = total - len(left) + batch.index(name) + 1
                log(f"[{position}/{total}] {name}: {graph.steps[name].label}")
            errors = executor.run_batch(study, batch, log, graph=graph)
            ran += [n for n in batch if n not in errors]
            if errors:
                name, message = next(iter(errors.items()))
                raise StepError(message if name in message else f"step {name!r} failed: {message}")
            plans = plan_states(graph, study)
            left = [n for n in graph.order if plans[n].state != DONE]
    records = {n: read_record(study, n) for n in graph.order}
    return {"ran": ran, "plan": describe_plan(graph, settings, study), "records": records}


def _batch(graph: Graph, ready: list[str], executor: Executor) -> list[str]:
    """Steps to hand the executor at once: in-process runs take one at a time (the plan's order)."""
    if isinstance(executor, LocalExecutor) and len(executor.devices) < 2:
        return ready[:1]
    bound = [n for n in ready if graph.steps[n].device_bound]
    return bound if len(bound) > 1 else ready[:1]
