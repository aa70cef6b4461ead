"""The ``fulora`` command: a thin click layer; each command parses options and calls one library function."""

from __future__ import annotations

import re

import click

from fulora_data import __version__
from fulora_data.cli.grammar import add_verbosity_options, fit_hints, quiet_option, verbose_option
from fulora_data.errors import FuloraError, OptionValueError, redact


class BadValue(click.BadParameter):
    """A bad option value the library found (``OptionValueError``, or a ``ConfigError`` naming its config
    ``field``): exit 2, the message as the library wrote it."""

    def format_message(self) -> str:
        return self.message


class FuloraGroup(click.Group):
    """A click group that reports fulora's errors as one line and a non-zero exit, without a traceback.

    Exit codes (docs/cli.md): 2 for a bad option value (click's own parameter errors, the library's
    ``OptionValueError`` and a ``ConfigError`` that names the config ``field`` it refuses), 1 for any other
    failure.
    """

    def main(self, *args, **kwargs):
        add_verbosity_options(self)  # commands attached after import get -q/-v too
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the command line below this group
        try:
            return super().invoke(ctx)
        except FuloraError as err:
            # The leaf command's flags: house's field -> flag rewrite first, then the cli's hints (flags the
            # command lacks in another spelling), then nothing local is printed (redact).
            command = ctx.meta.get("fulora.command") or self.leaf(words)
            message = redact(fit_hints(in_flags(err, command), command))
            if isinstance(err, OptionValueError) or getattr(err, "field", None):
                raise BadValue(message) from None  # a bad option value: exit 2
            raise click.ClickException(message) from None
        except OSError as err:
            # The file system refused something fulora did not check first (a folder made read-only while
            # it ran, a full disk): one line naming the path, not a traceback.
            where = f" {err.filename}" if err.filename else ""
            raise click.ClickException(redact(f"cannot write or read{where}: {err.strerror or err}")) from None

    def leaf(self, words: list[str]) -> click.Command:
        """The command the words name (``data compare ...`` -> ``compare``), or this group."""
        command: click.Command = self
        for word in words:
            if not isinstance(command, click.Group) or word not in command.commands:
                break
            command = command.commands[word]
        return command


def in_flags(err: FuloraError, command: click.Command) -> str:
    """The error's message with config field names written as ``command``'s flags.

    The library names fields: a :class:`~fulora_data.errors.ConfigError` with ``field`` starts with that
    field's name (``resolution must be ...``), and a message may mention another field in backticks
    (``pass `mixed_precision` no``). Each becomes the flag of the click option whose parameter name is that
    field (``--resolution must be ...``, ``pass --mixed-precision no``): the one place where fields meet
    flags. A field with no option on this command (set in a YAML preset) keeps its name.
    """
    message, field = str(err), getattr(err, "field", None)
    flags = {
        param.name: max(param.opts, key=len)
        for param in command.params
        if isinstance(param, click.Option) and param.name
    }
    if field in flags and message.startswith(field):
        message = flags[field] + message[len(field) :]
    return re.sub(r"`(\w+)`", lambda match: flags.get(match[1], match[0]), message)


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
from fulora_data.cli.study import study  # noqa: E402
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
main.add_command(study)
main.add_command(train)
train.add_command(lora)
data.add_command(pull_dataset)
model.add_command(pull_model)
add_verbosity_options(main)  # last: every command attached above gets -q/-v
