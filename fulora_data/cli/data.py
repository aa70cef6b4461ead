"""``fulora data``: build, describe and list datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fulora_data import prepare as library

source_option = click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=None,
    help="The dataset's archive or its extracted folder; omit to download the archive.",
)
cache_option = click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="Where built datasets are cached."
)
config_option = click.option(
    "--config", "-c", default=None, help="Dataset config (default: the dataset's default)."
)


def builder_options(func):
    """Options that map onto builder config fields (``None`` leaves the config's value)."""
    func = click.option(
        "--subset-csv",
        type=click.Path(path_type=Path),
        default=None,
        help="spanish: keep exactly the images listed in this CSV (an Image_name column).",
    )(func)
    func = click.option(
        "--seed", type=click.IntRange(min=0), default=None, help="spanish, hybrid: seed of the draws."
    )(func)
    func = click.option("--country", default=None, help="african: keep one country.")(func)
    func = click.option(
        "--drop-test-duplicates",
        is_flag=True,
        default=None,
        help="Remove test images whose pixels equal a training image's (a leakage-free test split).",
    )(func)
    func = click.option(
        "--md5",
        "archive_md5",
        default=None,
        help="Refuse the archive unless its md5 is this (for releases without a published checksum).",
    )(func)
    # synthetic and hybrid (issue 3)
    path = click.Path(path_type=Path)
    for flag, kind, text in (
        ("--labels", path, "synthetic, hybrid: labels CSV (Image_name, Plane) if no plane folders."),
        ("--real-config", None, "hybrid: the spanish config of the real part (default es-1150)."),
        ("--real-source", path, "hybrid: the Spanish archive or folder."),
        ("--real-subset-csv", path, "hybrid: keep exactly these Spanish images (an Image_name column)."),
        ("--synthetic-config", None, "hybrid: the synthetic config (release or generated)."),
        ("--synthetic-source", path, "hybrid: the synthetic zip or folder."),
        ("--synthetic-per-plane", int, "hybrid: synthetic images per plane (default 1000)."),
        ("--validation-size", int, "hybrid: images held out for validation (default 200, at most a tenth)."),
    ):
        func = click.option(flag, type=kind, default=None, help=text)(func)
    func = click.option(
        "--no-verify",
        "verify_checksum",
        flag_value=False,
        default=None,
        help="synthetic, hybrid: build from a local archive that is not the published file (skip its md5).",
    )(func)
    return func


def _options(name: str, **values) -> dict:
    accepted = set(library.option_names(name))
    given = {k: v for k, v in values.items() if v is not None}
    for key in given:
        if key not in accepted:
            raise click.BadParameter(
                f"{name} has no option {key.replace('_', '-')!r}", param_hint=f"--{key.replace('_', '-')}"
            )
    return given


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
    summary = library.info(name, config, source=source, cache_dir=cache_dir, **_options(name, **options))
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
    summary = library.info(name, config, source=source, cache_dir=cache_dir, **_options(name, **options))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['name']}/{summary['config']} {summary['version']}")
    for split, n in summary["splits"].items():
        counts = ", ".join(f"{label} {c}" for label, c in summary["label_counts"][split].items())
        click.echo(f"  {split}: {n} images, {summary['num_patients'][split]} patients ({counts})")
