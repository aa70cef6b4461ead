"""``fulora study plan|run``: the whole study as one resumable command (logic: ``fulora_data.study``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fulora_data.cli.grammar import echo_json, json_option, out_option, token_option, verbosity

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
@out_option("The study folder whose state to show.")
@json_option("the plan")
def plan_command(preset: str, sources: tuple[str, ...], out: Path | None, as_json: bool) -> None:
    """Show every step with its state (done / stale / to do) and device-time estimate."""
    from fulora_data.study.run import format_plan, plan_study

    plan = plan_study(out, preset, source_changes(sources))
    if as_json:
        echo_json(plan)
        return
    click.echo(format_plan(plan))


@study.command("run")
@preset_option
@source_option
@out_option("The study folder (reused by a rerun).", required=True)
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
    "(token: --token, HF_TOKEN or the login).",
)
@token_option("Hub token with write access, for --push-to (default: HF_TOKEN or `hf auth login`).")
@json_option("the steps run and skipped")
def run_command(
    preset: str,
    sources: tuple[str, ...],
    out: Path,
    executor: str,
    push_to: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Run every step the plan says is not done, in order; a rerun continues where the last one stopped."""
    from fulora_data.study.run import SubmititExecutor, run_study

    changes = source_changes(sources)
    if push_to is not None:
        if not push_to or "/" in push_to:
            raise click.BadParameter(f"takes a Hub user or organisation; got {push_to!r}", param_hint="--push-to")
        changes["publish"] = {"org": push_to}
    if token:
        # Through the environment, as HF_TOKEN: the token is never a setting (settings are recorded), and a
        # step run in another process (accelerate, slurm) inherits it.
        os.environ["HF_TOKEN"] = token
    chosen = SubmititExecutor(cluster="slurm") if executor == "slurm" else None
    say = verbosity()
    # The steps go to stdout unless stdout holds the JSON; -q silences them.
    log = say.info if as_json else (lambda message: None) if say.quiet else click.echo
    result = run_study(out, preset, changes=changes, executor=chosen, log=log)
    if as_json:
        echo_json(result)
        return
    if result["ran"]:
        click.echo(f"ran {len(result['ran'])} steps; report: {out / 'report' / 'report.html'}")
