"""``fulora data push`` and ``fulora model push``: publish a dataset export or a model folder to the Hub."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data import hub as library


def push_options(func):
    """Options shared by both push commands."""
    for option in reversed(
        [
            click.argument("folder", type=click.Path(path_type=Path)),
            click.option("--repo-id", required=True, help="The Hub repository, e.g. fulora/synthetic."),
            click.option("--tag", default=None, help="Release tag; a tag never moves."),
            click.option("--private", is_flag=True, help="Create the repository as private."),
            click.option("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)."),
            click.option(
                "--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)."
            ),
            click.option("--message", "-m", "commit_message", default=None, help="Commit message."),
        ]
    ):
        func = option(func)
    return func


def _report(result: dict) -> None:
    for rel, why in (result.get("skipped") or {}).items():
        click.echo(f"skipped {rel}: {why}", err=True)
    tag = f" tag {result['tag']}" if result["tag"] else ""
    if result["pushed"]:
        click.echo(f"Pushed {result['repo_id']} commit {result['commit']}{tag}: {result['url']}")
    else:
        click.echo(
            f"{result['repo_id']}{tag} already points at identical content; nothing pushed: {result['url']}"
        )


@click.command("push")
@push_options
def push_dataset(folder: Path, **options) -> None:
    """Push a dataset export FOLDER (from `fulora data export`) and tag it v<version> (or --tag)."""
    _report(library.push_dataset(folder, **options))


@click.group("model")
def model() -> None:
    """Publish trained models (LoRA adapters, classifiers)."""


@model.command("push")
@push_options
def push_model(folder: Path, **options) -> None:
    """Push a model FOLDER (README.md model card + safetensors), tagged with --tag if given."""
    _report(library.push_model(folder, **options))
