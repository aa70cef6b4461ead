"""``fulora data``: build, describe and list datasets."""

from __future__ import annotations

import click

from fulora_data import prepare as library
from fulora_data.cli.grammar import echo_json, json_option
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


def option_flag(key: str) -> str:
    """How builder option ``key`` is given to the ``fulora data`` commands: its flag, else ``--data-option``."""
    for param in prepare_command.params:
        if param.name == key and isinstance(param, click.Option):
            return param.opts[0]
    return f"--data-option {key}=VALUE"


@data.command("list")
@json_option("the datasets, their configs and options")
def list_command(as_json: bool) -> None:
    """List the datasets fulora can build, with their configs and builder options."""
    rows = library.list_builders()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']} {row['version']}  ({row['license']}, {row['homepage']})")
        for config in row["configs"]:
            default = " [default]" if config["name"] == row["default_config"] else ""
            click.echo(f"  {config['name']}{default}: {config['description']}")
        if row["options"]:
            click.echo("  options: " + ", ".join(f"{key} ({option_flag(key)})" for key in row["options"]))


@data.command("prepare")
@click.argument("name")
@config_option
@source_option
@cache_option
@builder_options
@json_option("the split sizes and cache path")
def prepare_command(name, config, source, cache_dir, as_json, **options) -> None:
    """Build dataset NAME (or reuse its cached build) and print its split sizes."""
    summary = library.info(
        name, config, source=source, cache_dir=cache_dir, **builder_values(name, **options)
    )
    if as_json:
        echo_json(
            {
                key: summary[key]
                for key in ("name", "config", "version", "splits", "cache_path")
                if key in summary
            }
        )
        return
    sizes = ", ".join(f"{split} {n}" for split, n in summary["splits"].items())
    click.echo(f"{summary['name']}/{summary['config']} {summary['version']}: {sizes}")
    click.echo(f"cached at {summary['cache_path']}")


@data.command("info")
@click.argument("name")
@config_option
@source_option
@cache_option
@builder_options
@json_option("the description")
def info_command(name, config, source, cache_dir, as_json, **options) -> None:
    """Describe dataset NAME: sizes, counts per class and patient, provenance (builds it if needed)."""
    summary = library.info(
        name, config, source=source, cache_dir=cache_dir, **builder_values(name, **options)
    )
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{summary['name']}/{summary['config']} {summary['version']}")
    for split, n in summary["splits"].items():
        counts = ", ".join(f"{label} {c}" for label, c in summary["label_counts"][split].items())
        click.echo(f"  {split}: {n} images, {summary['num_patients'][split]} patients ({counts})")
