"""``fulora data``: build, describe and list datasets."""

from __future__ import annotations

import json

import click

from fulora_data import prepare as library
from fulora_data.cli.options import (
    builder_options,
    builder_values,
    cache_option,
    config_option,
    source_option,
)

__all__ = ["builder_options", "builder_values", "cache_option", "config_option", "data", "source_option"]


@click.group()
def data() -> None:
    """Build, describe, export and audit datasets."""


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List the datasets fulora can build, with their configs."""
    rows = library.list_builders()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']} {row['version']}  ({row['license']}, {row['homepage']})")
        for config in row["configs"]:
            default = " [default]" if config["name"] == row["default_config"] else ""
            click.echo(f"  {config['name']}{default}: {config['description']}")


@data.command("prepare")
@click.argument("name")
@config_option
@source_option
@cache_option
@builder_options
def prepare_command(name, config, source, cache_dir, **options) -> None:
    """Build dataset NAME (or reuse its cached build) and print its split sizes."""
    summary = library.info(
        name, config, source=source, cache_dir=cache_dir, **builder_values(name, **options)
    )
    sizes = ", ".join(f"{split} {n}" for split, n in summary["splits"].items())
    click.echo(f"{summary['name']}/{summary['config']} {summary['version']}: {sizes}")
    click.echo(f"cached at {summary['cache_path']}")


@data.command("info")
@click.argument("name")
@config_option
@source_option
@cache_option
@builder_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(name, config, source, cache_dir, as_json, **options) -> None:
    """Describe dataset NAME: sizes, counts per class and patient, provenance (builds it if needed)."""
    summary = library.info(
        name, config, source=source, cache_dir=cache_dir, **builder_values(name, **options)
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['name']}/{summary['config']} {summary['version']}")
    for split, n in summary["splits"].items():
        counts = ", ".join(f"{label} {c}" for label, c in summary["label_counts"][split].items())
        click.echo(f"  {split}: {n} images, {summary['num_patients'][split]} patients ({counts})")
