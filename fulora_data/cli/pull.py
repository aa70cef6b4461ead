"""``fulora data pull`` and ``fulora model pull``: download published fulora work for offline machines."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data import hub_pull as library

_common = [
    click.option(
        "--revision", default=None, help="Tag, branch or commit (default: REPO's @REVISION or main)."
    ),
    click.option(
        "--local-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Download into this folder (default: the Hugging Face cache, HF_HOME).",
    ),
    click.option("--token", default=None, help="Hub token for private repositories (default: HF_TOKEN)."),
    click.option("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)."),
]


def _options(func):
    for option in reversed(_common):
        func = option(func)
    return func


@click.command("pull")
@click.argument("repo")
@click.option("--config", "-c", "configs", multiple=True, help="Config to download (repeat; default: all).")
@_options
def pull_dataset(repo, configs, **options) -> None:
    """Download configs of dataset REPO (ORG/NAME[@REVISION]) and print the call that loads them offline."""
    result = library.pull_dataset(repo, list(configs), **options)
    click.echo(
        f"pulled {result['repo_id']} {result['revision']} (commit {result['commit']}): "
        f"{', '.join(result['configs'])} into {result['path']}"
    )
    click.echo("offline (HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1), load it with:")
    click.echo(f"  from datasets import load_dataset; ds = {result['load']}")
    if options.get("local_dir") is None:  # a --local-dir copy is not in the cache the repo id resolves from
        click.echo(
            "or give fulora the repo id, which now resolves from the cache: "
            f"{result['repo_id']}@{result['revision']}"
        )


@click.command("pull")
@click.argument("repo")
@_options
def pull_model(repo, **options) -> None:
    """Download model REPO (ORG/NAME[@REVISION]: classifier, LoRA adapter or pipeline) for offline use."""
    result = library.pull_model(repo, **options)
    click.echo(
        f"pulled {result['kind']} {result['repo_id']} {result['revision']} (commit {result['commit']}) "
        f"into {result['path']}"
    )
    also = (
        ""
        if options.get("local_dir") is not None
        else f" (or the repo id {result['repo_id']}@{result['revision']})"
    )
    click.echo(f"offline, use: {result['use']}{also}")
