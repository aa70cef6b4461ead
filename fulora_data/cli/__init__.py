"""The ``fulora`` command: a thin click layer; each command parses options and calls one library function."""

from __future__ import annotations

import click

from fulora_data import __version__
from fulora_data.cli.grammar import add_verbosity_options, fit_hints, quiet_option, verbose_option
from fulora_data.errors import FuloraError, OptionValueError


class BadValue(click.BadParameter):
    """A bad option value the library found (``OptionValueError``): exit 2, the message as the library wrote it."""

    def format_message(self) -> str:
        return self.message


class FuloraGroup(click.Group):
    """A click group that reports fulora's errors as one line and a non-zero exit, without a traceback.

    Exit codes (docs/cli.md): 2 for a bad option value (click's own parameter errors and the library's
    ``OptionValueError``), 1 for any other failure.
    """

    def main(self, *args, **kwargs):
        add_verbosity_options(self)  # commands attached after import get -q/-v too
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptionValueError as err:
            raise BadValue(fit_hints(str(err), ctx.meta.get("fulora.command"))) from None
        except FuloraError as err:
            raise click.ClickException(fit_hints(str(err), ctx.meta.get("fulora.command"))) from None
        except OSError as err:
            # The file system refused something fulora did not check first (a folder made read-only while
            # it ran, a full disk): one line naming the path, not a traceback.
            where = f" {err.filename}" if err.filename else ""
            raise click.ClickException(f"cannot write or read{where}: {err.strerror or err}") from None


@click.group(cls=FuloraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fulora")
@quiet_option
@verbose_option
def main() -> None:
    """fulora: synthetic fetal-ultrasound datasets, LoRA training, generation and zero-shot evaluation."""


# Command modules define their commands; this is the one place that attaches them to their groups.
from fulora_data.cli.audit import audit_command  # noqa: E402
from fulora_data.cli.compare import compare_command  # noqa: E402
from fulora_data.cli.data import data  # noqa: E402
from fulora_data.cli.demo import demo  # noqa: E402
from fulora_data.cli.doctor import doctor  # noqa: E402
from fulora_data.cli.evaluate import evaluate  # noqa: E402
from fulora_data.cli.export import export_command  # noqa: E402
from fulora_data.cli.generate import generate  # noqa: E402
from fulora_data.cli.hub import model, push_dataset  # noqa: E402
from fulora_data.cli.lora import lora  # noqa: E402
from fulora_data.cli.pull import pull_dataset, pull_model  # noqa: E402
from fulora_data.cli.train import train  # noqa: E402

data.add_command(export_command)
data.add_command(audit_command)
data.add_command(compare_command)
data.add_command(push_dataset)
main.add_command(data)
main.add_command(demo)
main.add_command(doctor)
main.add_command(evaluate)
main.add_command(generate)
main.add_command(model)
main.add_command(train)
train.add_command(lora)
data.add_command(pull_dataset)
model.add_command(pull_model)
add_verbosity_options(main)  # last: every command attached above gets -q/-v
