"""``fulora demo``: the whole pipeline on the embedded default data."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data.cli.grammar import echo_json, json_option, out_option, verbosity


@click.command("demo")
@out_option(
    "The study folder: procedural sources, caches, exports, checkpoints and report (a rerun does only "
    "what is not done).",
    aliases=("--workdir",),
    default=Path(".fulora-demo"),
    show_default=True,
)
@json_option("the summary (adapter, generation, sizes, exports, audit, zero-shot metrics)")
def demo(out: Path, as_json: bool) -> None:
    """Run the smoke study (``fulora study run --preset smoke``) on seeded procedural stand-ins (no download)."""
    from fulora_data.demo import quiet_progress, run_demo

    quiet_progress()
    say = verbosity()
    # The steps go to stdout unless stdout holds the JSON; -q silences them.
    log = say.info if as_json else (lambda message: None) if say.quiet else click.echo
    summary = run_demo(out, log=log)
    if as_json:
        echo_json(summary)
