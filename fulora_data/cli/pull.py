"""``fulora data pull`` and ``fulora model pull``: download published fulora work for offline machines."""

from __future__ import annotations

import click

from fulora_data import hub_pull as library
from fulora_data.cli.grammar import echo_json, json_option, out_option, repo_id_value, token_option

_common = [
    click.argument("repo", metavar="[REPO_ID]", required=False, default=None),
    click.option("--repo-id", default=None, help="The Hub repository, ORG/NAME[@REVISION] (or REPO_ID)."),
    click.option(
        "--revision", default=None, help="Tag, branch or commit (default: REPO_ID's @REVISION or main)."
    ),
    out_option(
        "Download into this folder (default: the Hugging Face cache, HF_HOME).",
        aliases=("--local-dir",),
        default=None,
    ),
    token_option("Hub token for private repositories (default: HF_TOKEN)."),
    click.option("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)."),
    json_option("the repository, revision (tag or branch), commit sha and local path"),
]


def _options(func):
    for option in reversed(_common):
        func = option(func)
    return func


def _library_options(options: dict) -> dict:
    """The library's names: ``--out`` is its ``local_dir``."""
    options = dict(options)
    options["local_dir"] = options.pop("out")
    return options


@click.command("pull")
@click.option("--config", "-c", "configs", multiple=True, help="Config to download (repeat; default: all).")
@_options
def pull_dataset(repo, repo_id, configs, as_json, **options) -> None:
    """Download configs of dataset REPO_ID (ORG/NAME[@REVISION]) and print the call that loads them offline."""
    options = _library_options(options)
    result = library.pull_dataset(repo_id_value(repo, repo_id), list(configs), **options)
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"pulled {result['repo_id']} {result['revision']} (commit {result['commit']}): "
        f"{', '.join(result['configs'])} into {result['path']}"
    )
    click.echo("offline (HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1), load it with:")
    click.echo(f"  from datasets import load_dataset; ds = {result['load']}")
    if options.get("local_dir") is None:  # a --out copy is not in the cache the repo id resolves from
        click.echo(
            "or give fulora the repo id, which now resolves from the cache: "
            f"{result['repo_id']}@{result['revision']}"
        )


@click.command("pull")
@_options
def pull_model(repo, repo_id, as_json, **options) -> None:
    """Download model REPO_ID (ORG/NAME[@REVISION]: classifier, LoRA adapter or pipeline) for offline use."""
    options = _library_options(options)
    result = library.pull_model(repo_id_value(repo, repo_id), **options)
    if as_json:
        echo_json(result)
        return
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
