"""``fulora demo``: the whole pipeline on the embedded default data."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path(".fulora-demo"),
    show_default=True,
    help="Folder for the procedural sources, caches, exports, checkpoint and report (reused on a rerun).",
)
def demo(workdir: Path) -> None:
    """Run every step on seeded procedural stand-ins of the published archives (no download)."""
    from fulora_data.demo import run_demo

    run_demo(workdir, log=click.echo)
