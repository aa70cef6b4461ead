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
    help="The study folder: procedural sources, caches, exports, checkpoints and report (a rerun does only what is not done).",
)
def demo(workdir: Path) -> None:
    """Run the smoke study (``fulora study run --preset smoke``) on seeded procedural stand-ins (no download)."""
    from fulora_data.demo import quiet_progress, run_demo

    quiet_progress()
    run_demo(workdir, log=click.echo)
