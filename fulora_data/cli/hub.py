"""``fulora data push`` and ``fulora model push``: publish a dataset export or a model folder to the Hub."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data import hub as library
from fulora_data.cli.grammar import echo_json, json_option, repo_id_value, token_option


def push_options(func):
    """Options shared by both push commands: FOLDER, then the repository as REPO_ID or --repo-id."""
    for option in reversed(
        [
            click.argument("folder", type=click.Path(path_type=Path)),
            click.argument("repo", metavar="[REPO_ID]", required=False, default=None),
            click.option(
                "--repo-id", default=None, help="The Hub repository, e.g. fulora/synthetic (or REPO_ID)."
            ),
            click.option("--tag", default=None, help="Release tag; a tag never moves."),
            click.option("--private", is_flag=True, help="Create the repository as private."),
            token_option(),
            click.option(
                "--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)."
            ),
            click.option("--message", "-m", "commit_message", default=None, help="Commit message."),
            json_option("the repository, commit sha, tag and URL"),
        ]
    ):
        func = option(func)
    return func


def _report(result: dict, as_json: bool) -> None:
    for rel, why in (result.get("skipped") or {}).items():
        click.echo(f"skipped {rel}: {why}", err=True)  # stderr: stdout may hold the JSON
    if as_json:
        echo_json(result)
        return
    tag = f" tag {result['tag']}" if result["tag"] else ""
    if result["pushed"]:
        click.echo(f"Pushed {result['repo_id']} commit {result['commit']}{tag}: {result['url']}")
    else:
        click.echo(
            f"{result['repo_id']}{tag} already points at identical content; nothing pushed: {result['url']}"
        )


@click.command("push")
@push_options
def push_dataset(folder: Path, repo: str | None, repo_id: str | None, as_json: bool, **options) -> None:
    """Push a dataset export FOLDER (from `fulora data export`) to REPO_ID; tag it v<version> (or --tag)."""
    repo_id = repo_id_value(repo, repo_id)
    _report(library.push_dataset(folder, repo_id=repo_id, **options), as_json)


@click.group("model")
def model() -> None:
    """Publish trained models (LoRA adapters, classifiers)."""


@model.command("push")
@push_options
def push_model(folder: Path, repo: str | None, repo_id: str | None, as_json: bool, **options) -> None:
    """Push a model FOLDER (README.md model card + safetensors) to REPO_ID, tagged with --tag if given."""
    repo_id = repo_id_value(repo, repo_id)
    _report(library.push_model(folder, repo_id=repo_id, **options), as_json)
