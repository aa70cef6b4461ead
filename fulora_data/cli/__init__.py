"""The ``fulora`` command: a thin click layer; each command parses options and calls one library function."""

from __future__ import annotations

import click

from fulora_data import __version__
from fulora_data.errors import FuloraError


class FuloraGroup(click.Group):
    """A click group that reports fulora's errors as one line and a non-zero exit, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FuloraError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=FuloraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fulora")
def main() -> None:
    """fulora: synthetic fetal-ultrasound datasets, LoRA training, generation and zero-shot evaluation."""


# Command modules register themselves on import; keep one line per module.
from fulora_data.cli import audit as _audit  # noqa: E402, F401  (registers `fulora data audit`)
from fulora_data.cli import export as _export  # noqa: E402, F401  (registers `fulora data export`)
from fulora_data.cli.data import data  # noqa: E402
from fulora_data.cli.demo import demo  # noqa: E402
from fulora_data.cli.doctor import doctor  # noqa: E402
from fulora_data.cli.evaluate import evaluate  # noqa: E402
from fulora_data.cli.generate import generate  # noqa: E402
from fulora_data.cli.hub import model  # noqa: E402
from fulora_data.cli.train import train  # noqa: E402

main.add_command(data)
main.add_command(demo)
main.add_command(doctor)
main.add_command(evaluate)
main.add_command(generate)
main.add_command(model)
main.add_command(train)
