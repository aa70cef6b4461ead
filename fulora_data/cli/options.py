"""Options shared by the commands that build a dataset, and the one way builder options are read.

Builder options (``fulora data list`` shows each dataset's) are given as ``--data-option KEY=VALUE``
(repeatable) on every command that builds data: ``fulora data prepare|info|export|audit`` and ``fulora train
classifier``. The ``fulora data`` commands also take the common ones as flags (``--subset-csv``, ``--seed``,
``--real-source``, ...): each flag is an alias of ``--data-option`` with its name (``--subset-csv X`` is
``--data-option subset_csv=X``), and both go through ``builder_values``.
"""

from __future__ import annotations

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
data_option = click.option(
    "--data-option",
    "data_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A builder option (see `fulora data list`), e.g. labels=synthetic_train_5000.csv (repeatable).",
)


def builder_options(func):
    """``--data-option KEY=VALUE`` and its flag aliases (``None`` leaves the config's value)."""
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
    # The hybrid assembles two datasets, so it names each part's source and config; synthetic shares --labels.
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
    return data_option(func)


def builder_flag_keys() -> dict[str, str]:
    """Each builder option's ``fulora data`` flag -> its key (``--md5`` -> ``archive_md5``), every builder's.

    An option without a flag of its own gets ``--key-name`` (what library hints call it).
    """
    keys = {f"--{key.replace('_', '-')}": key for row in library.list_builders() for key in row["options"]}
    for param in click.command()(builder_options(lambda **options: None)).params:
        if isinstance(param, click.Option) and param.name in keys.values():
            keys.update(dict.fromkeys(param.opts, param.name))
    return keys


def parse_data_options(pairs: tuple[str, ...] | list[str]) -> dict:
    """Read ``KEY=VALUE`` pairs; ``true``/``false`` and whole numbers become booleans and integers.

    Raises:
        click.BadParameter: For a pair without ``=`` or with an empty key.
    """
    parsed: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--data-option")
        text = value.strip()
        if text.lower() in ("true", "false"):
            parsed[key.strip()] = text.lower() == "true"
        elif text.lstrip("-").isdigit():
            parsed[key.strip()] = int(text)
        else:
            parsed[key.strip()] = text
    return parsed


def builder_values(name: str, data_options: tuple[str, ...] = (), **flags) -> dict:
    """The builder options of dataset ``name`` given on the command line, flags and ``--data-option`` merged.

    Raises:
        click.BadParameter: For an option the builder does not have, or one given twice with two values.
    """
    accepted = set(library.option_names(name))
    given = {k: v for k, v in flags.items() if v is not None}
    hints = {key: f"--{key.replace('_', '-')}" for key in given}
    for key, value in parse_data_options(data_options).items():
        if key in given and str(given[key]) != str(value):
            flag = f"--{key.replace('_', '-')}"
            raise click.BadParameter(
                f"{key} is given twice: {flag} {given[key]!r} and --data-option {key}={value!r}",
                param_hint="--data-option",
            )
        given[key] = value
        hints.setdefault(key, "--data-option")
    for key in given:
        if key not in accepted:
            raise click.BadParameter(f"{name} has no option {key.replace('_', '-')!r}", param_hint=hints[key])
    return given


def device_option(ctx, param, value):
    """click callback of ``--device``: a device this machine has, checked at parse time (exit 2)."""
    from fulora_data.devices import check_device
    from fulora_data.errors import ConfigError

    try:
        return check_device(value, "--device")
    except ConfigError as err:
        raise click.BadParameter(str(err).removeprefix("--device "), param=param) from None
