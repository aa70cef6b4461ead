"""The pieces of fulora's one command-line grammar (docs/cli.md), shared by every command.

- ``-q/--quiet`` and ``-v/--verbose`` on the ``fulora`` group and on every command (``Verbosity``);
- ``--token`` for a Hub token, ``--out`` for the folder a command writes, ``--repo-id`` (or the positional
  repository) for a Hub repository: ``token_option``, ``out_option``, ``repo_id_value``;
- ``--json`` printing one JSON document on stdout (``echo_json``);
- old option names kept as hidden aliases (``AliasedOption``), so scripts written for them keep working.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

# Loggers -v turns up to INFO (and -vv to DEBUG): fulora's own and the libraries it drives.
LIBRARY_LOGGERS = (
    "fulora_data",
    "datasets",
    "huggingface_hub",
    "diffusers",
    "transformers",
    "accelerate",
    "peft",
)


class AliasedOption(click.Option):
    """An option that also answers to older names, which ``--help`` does not show.

    ``AliasedOption(["--token"], aliases=["--hub-token"])`` parses ``--hub-token X`` as ``--token X``.
    """

    def __init__(self, param_decls, *args, aliases: tuple[str, ...] | list[str] = (), **kwargs):
        super().__init__(param_decls, *args, **kwargs)
        self.aliases = tuple(aliases)
        self.opts.extend(self.aliases)

    def get_help_record(self, ctx: click.Context):
        shown = self.opts
        self.opts = [opt for opt in shown if opt not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


@dataclass
class Verbosity:
    """How much a command prints besides its result: ``-q`` nothing but the result and errors, ``-v`` logs."""

    quiet: bool = False
    verbose: int = 0

    @property
    def progress(self) -> bool:
        """Whether progress bars are shown."""
        return not self.quiet

    def info(self, message: str) -> None:
        """An info line, on stderr (stdout holds the result, e.g. ``--json``); nothing under ``-q``."""
        if not self.quiet:
            click.echo(message, err=True)


def verbosity() -> Verbosity:
    """The verbosity of the command being run (the default outside a ``fulora`` command)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Verbosity) if ctx is not None else None
    return found if found is not None else Verbosity()


def _set_verbosity(ctx: click.Context, param: click.Parameter, value) -> None:
    # Every command has -q/-v and runs their callbacks, the innermost last: the command an error came from.
    ctx.meta["fulora.command"] = ctx.command
    if not value:
        return
    root = ctx.find_root()
    state = root.find_object(Verbosity)
    if state is None:
        state = root.ensure_object(Verbosity)
    if param.name == "quiet":
        state.quiet = True
    else:
        state.verbose = max(state.verbose, int(value))
    if state.quiet and state.verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; give one")
    _apply(root, state)


def _apply(root: click.Context, state: Verbosity) -> None:
    """Silence progress bars (quiet) or show library logs (verbose), restored when the command ends."""
    done = root.meta.setdefault("fulora.verbosity", {})
    if state.quiet and not done.get("quiet"):
        done["quiet"] = True
        # Every library draws its own progress bars (tqdm, diffusers' and transformers' wrappers) and logs
        # its own notes on stderr: while the command runs, stderr goes nowhere. Errors are unaffected:
        # click prints them after the command's context has closed and given stderr back.
        devnull = root.with_resource(open(os.devnull, "w"))  # noqa: SIM115 (closed with the command)
        root.with_resource(contextlib.redirect_stderr(devnull))
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        if not are_progress_bars_disabled():
            disable_progress_bars()
            root.call_on_close(enable_progress_bars)
        from datasets.utils import logging as datasets_logging

        if datasets_logging.is_progress_bar_enabled():
            datasets_logging.disable_progress_bar()
            root.call_on_close(datasets_logging.enable_progress_bar)
    if state.verbose:
        if "handler" not in done:  # one handler however many -v are given, on the group and the command
            handler = done["handler"] = logging.StreamHandler()  # stderr
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            for name in LIBRARY_LOGGERS:
                logger = logging.getLogger(name)
                before = (logger.level, logger.propagate)
                logger.addHandler(handler)
                logger.propagate = False  # the handler above prints it once

                def restore(logger=logger, before=before):
                    logger.removeHandler(handler)
                    logger.setLevel(before[0])
                    logger.propagate = before[1]

                root.call_on_close(restore)
        level = logging.DEBUG if state.verbose > 1 else logging.INFO
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(level)


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_set_verbosity,
    help="Print only the result and errors: no progress bars, info lines or warnings.",
)
verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    callback=_set_verbosity,
    help="Also show the libraries' logs (datasets, huggingface_hub, diffusers, ...); -vv for debug.",
)


def add_verbosity_options(command: click.Command) -> None:
    """Give ``command`` and every command under it ``-q`` and ``-v`` (idempotent)."""
    names = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if "--quiet" not in names:
        quiet_option(command)
    if "--verbose" not in names:
        verbose_option(command)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity_options(sub)


def token_option(help: str = "Hub token (default: HF_TOKEN or `hf auth login`).", **kwargs):
    """``--token TOKEN`` (``--hub-token`` is a hidden alias), read into the parameter ``token``."""
    return click.option(
        "--token", "token", cls=AliasedOption, aliases=("--hub-token",), default=None, help=help, **kwargs
    )


def out_option(help: str, *, aliases: tuple[str, ...] = (), required: bool = False, **kwargs):
    """``--out DIR``, the folder a command writes (older names as hidden aliases), read into ``out``."""
    kwargs.setdefault("type", click.Path(file_okay=False, path_type=Path))
    return click.option(
        "--out", "out", cls=AliasedOption, aliases=aliases, required=required, help=help, **kwargs
    )


def report_option(writes: str):
    """``--report DIR``: an optional report folder (``report.md`` and ``writes``), read into ``report``."""
    return click.option(
        "--report",
        "report",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Write a report folder here: report.md, {writes}.",
    )


def json_option(what: str = "the result"):
    """``--json``: print ``what`` as one JSON document on stdout, read into ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (paths and other objects as strings)."""
    click.echo(json.dumps(value, indent=2, default=str))


def repo_id_value(positional: str | None, option: str | None, *, argument: str = "REPO_ID") -> str:
    """The Hub repository given as the positional ``argument`` or as ``--repo-id`` (the same one if both).

    Raises:
        click.UsageError: If neither is given, or both with different values (exit 2).
    """
    if positional and option and positional != option:
        raise click.UsageError(
            f"the repository is given twice: {argument} {positional!r} and --repo-id {option!r}; give one"
        )
    value = positional or option
    if not value:
        raise click.UsageError(f"give the Hub repository as {argument} or --repo-id ORG/NAME")
    return value


FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]*")


def command_flags(command: click.Command) -> set[str]:
    """Every option name ``command`` parses."""
    return {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}


def fit_hints(message: str, command: click.Command | None) -> str:
    """``message`` with each flag that ``command`` lacks spelled the way ``command`` takes it.

    The library names a builder option by its ``fulora data`` flag (``--synthetic-per-plane``); a command
    that takes builder options only as ``--data-option KEY=VALUE`` (``fulora train classifier``) gets that
    form instead (``--data-option synthetic_per_plane=VALUE``). A command that takes a library flag under
    another name says so in its ``hint_flags`` attribute (``train classifier``'s ``--source`` is the
    hybrid's ``--real-source``). Other flags are left as they are.
    """
    if command is None:
        return message
    flags = command_flags(command)
    spellings = getattr(command, "hint_flags", {})  # a command's own names for library flags
    keys = {}
    if "--data-option" in flags:
        from fulora_data.cli.options import builder_flag_keys

        keys = builder_flag_keys()

    def fit(match: re.Match) -> str:
        flag = match[0]
        if flag in flags:
            return flag
        if flag in spellings:
            return spellings[flag]
        if flag in keys:
            return f"--data-option {keys[flag]}=VALUE"
        return flag

    return FLAG.sub(fit, message)
