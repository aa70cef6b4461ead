"""``fulora study plan|run``: the whole study as one resumable command (logic: ``fulora_data.study``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

preset_option = click.option(
    "--preset",
    default="study",
    show_default=True,
    metavar="study|smoke|FILE.yaml",
    help="The paper's study, the smoke run on the embedded data, or a YAML file changing any setting.",
)
source_option = click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME=PATH",
    help="A source archive or folder: spanish=FETAL_PLANES_ZENODO.zip, african=Zenodo_dataset.tar.xz (repeatable).",
)


def source_changes(sources: tuple[str, ...]) -> dict:
    """``--source NAME=PATH`` values as a settings change."""
    found = {}
    for item in sources:
        name, sep, path = item.partition("=")
        if not sep or name not in ("spanish", "african") or not path:
            raise click.BadParameter(f"takes spanish=PATH or african=PATH; got {item!r}", param_hint="--source")
        found[name] = path
    return {"sources": found} if found else {}


@click.group("study")
def study() -> None:
    """The FU-LoRA study, archives to results table and report, as one resumable graph of steps."""


@study.command("plan")
@preset_option
@source_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="The study folder whose state to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_command(preset: str, sources: tuple[str, ...], out: Path | None, as_json: bool) -> None:
    """Show every step with its state (done / stale / to do) and device-time estimate."""
    from fulora_data.study.run import format_plan, plan_study

    plan = plan_study(out, preset, source_changes(sources))
    click.echo(json.dumps(plan, indent=2) if as_json else format_plan(plan))


@study.command("run")
@preset_option
@source_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The study folder (reused by a rerun).")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="local: this machine (one process per GPU when several are visible); slurm: jobs through submitit.",
)
@click.option(
    "--push-to",
    default=None,
    metavar="ORG",
    help="Last, push every exported dataset, adapter and classifier to this Hub user or organisation "
    "(token: HF_TOKEN or the login).",
)
def run_command(preset: str, sources: tuple[str, ...], out: Path, executor: str, push_to: str | None) -> None:
    """Run every step the plan says is not done, in order; a rerun continues where the last one stopped."""
    from fulora_data.study.run import SubmititExecutor, run_study

    changes = source_changes(sources)
    if push_to is not None:
        if not push_to or "/" in push_to:
            raise click.BadParameter(f"takes a Hub user or organisation; got {push_to!r}", param_hint="--push-to")
        changes["publish"] = {"org": push_to}
    chosen = SubmititExecutor(cluster="slurm") if executor == "slurm" else None
    result = run_study(out, preset, changes=changes, executor=chosen, log=click.echo)
    if result["ran"]:
        click.echo(f"ran {len(result['ran'])} steps; report: {out / 'report' / 'report.html'}")
