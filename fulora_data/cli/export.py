"""``fulora data export``: write a Hub-ready folder (Parquet shards, card, manifest) for a dataset."""

from __future__ import annotations

import click

from fulora_data.cli.grammar import echo_json, json_option, out_option
from fulora_data.cli.options import builder_options, builder_values, cache_option, source_option


@click.command("export")
@click.argument("name")
@click.option(
    "--config",
    "-c",
    "configs",
    multiple=True,
    help="Config to export (repeat for several; default: the default).",
)
@out_option("The export folder.", required=True)
@click.option(
    "--max-shard-size",
    type=click.IntRange(min=1),
    default=None,
    help="Most bytes of data per Parquet shard (500 MB).",
)
@click.option("--repo-id", default=None, help="Hub repository named in the card (default fulora/NAME).")
@click.option(
    "--default-config",
    default=None,
    help="Config that load_dataset(REPO) loads with no name (default: the builder's, else the first).",
)
@click.option(
    "--version",
    "release_version",
    default=None,
    metavar="X.Y.Z",
    help="Release version, tagged v<version> on push (default: the data version); bump it to grow a release.",
)
@source_option
@cache_option
@builder_options
@json_option("the export's manifest (fulora_export.json) and folder")
def export_command(
    name,
    configs,
    out,
    max_shard_size,
    repo_id,
    default_config,
    release_version,
    source,
    cache_dir,
    as_json,
    **options,
) -> None:
    """Export dataset NAME to OUT: data/<config>/<split>-*.parquet, README.md card, fulora_export.json."""
    from fulora_data.export import DEFAULT_MAX_SHARD_SIZE, export

    manifest = export(
        name,
        list(configs),
        out,
        source=source,
        cache_dir=cache_dir,
        max_shard_size=DEFAULT_MAX_SHARD_SIZE if max_shard_size is None else max_shard_size,
        repo_id=repo_id,
        default_config=default_config,
        version=release_version,
        **builder_values(name, **options),
    )
    if as_json:
        echo_json({"out": str(out), **manifest})
        return
    default = [c for c in manifest["configs"] if manifest["details"][c].get("default")]
    for config in configs or default:  # without --config the default config was exported
        sizes = ", ".join(
            f"{s} {d['num_examples']}" for s, d in manifest["details"][config]["splits"].items()
        )
        click.echo(f"{name}/{config} {manifest['version']}: {sizes}")
    click.echo(
        f"exported {name} {manifest['version']} to {out} (configs: {', '.join(manifest['configs'])}; "
        f"default: {manifest['default_config']})"
    )
