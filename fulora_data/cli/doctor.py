"""``fulora doctor``: what is installed and usable, and what each missing piece disables."""

from __future__ import annotations

import json

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Check torch, CUDA, diffusers, peft, accelerate, the Hub token (never shown), caches and disk."""
    from fulora_data.doctor import diagnose, format_report

    report = diagnose()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
