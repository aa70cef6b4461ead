"""``fulora data audit``: duplicates, split leakage and memorisation of any fulora dataset."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data.audit.gate import FAIL_ON
from fulora_data.audit.thresholds import DEFAULT_SIMILARITY, DEFAULT_THRESHOLD, MAX_THRESHOLD
from fulora_data.cli.grammar import echo_json, json_option, report_option
from fulora_data.cli.options import (
    builder_options,
    builder_values,
    cache_option,
    config_option,
    source_option,
)
from fulora_data.errors import OptionValueError


def options_for(name: str, **options) -> dict:
    """Builder options for a registered dataset; a published one (ORG/NAME) is already built and takes none."""
    from fulora_data.hub_pull import is_repo_spec

    if not is_repo_spec(name):
        return builder_values(name, **options)
    given = sorted(k for k, v in options.items() if v not in (None, ()))
    if given:
        raise OptionValueError(
            f"{name} is a published dataset, already built: it takes no builder option "
            f"(got --{given[0].replace('_', '-')})"
        )
    return {}


@click.command("audit")
@click.argument("name")
@config_option
@source_option
@cache_option
@builder_options
@click.option(
    "--threshold",
    type=int,
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help=f"Near duplicates: largest pHash Hamming distance, 0 to {MAX_THRESHOLD} bits of 64.",
)
@click.option(
    "--similarity",
    type=float,
    default=DEFAULT_SIMILARITY,
    show_default=True,
    help="Near duplicates and memorised images: smallest 32x32 thumbnail correlation, in (0, 1].",
)
@click.option(
    "--against",
    default=None,
    help="Check every image against the training set NAME[/CONFIG] or a published ORG/NAME[@REV][/CONFIG] (e.g. spanish/lora-100) for memorisation.",
)
@click.option(
    "--against-source",
    type=click.Path(path_type=Path),
    default=None,
    help="The archive or folder of the --against dataset.",
)
@report_option("audit.json and figures of the pairs")
@click.option(
    "--num-proc", type=click.IntRange(min=1), default=None, help="Worker processes for decoding the images."
)
@click.option(
    "--fail-on",
    "fail_on",
    multiple=True,
    type=click.Choice(list(FAIL_ON)),
    help="Exit 1 when the audit finds these (repeatable; memorisation needs --against): a CI gate.",
)
@json_option("the full result")
def audit_command(
    name,
    config,
    source,
    cache_dir,
    threshold,
    similarity,
    against,
    against_source,
    report,
    num_proc,
    fail_on,
    as_json,
    **options,
) -> None:
    """Audit dataset NAME (or a published ORG/NAME[@REVISION]) for duplicates, leakage and memorisation."""
    from fulora_data.audit import audit_dataset, format_summary
    from fulora_data.audit.gate import failed_checks

    if "memorisation" in fail_on and against is None:
        raise click.BadParameter("memorisation needs --against (the set to check)", param_hint="--fail-on")
    result = audit_dataset(
        name,
        config,
        source=source,
        cache_dir=cache_dir,
        threshold=threshold,
        similarity=similarity,
        against=against,
        against_source=against_source,
        report=report,
        num_proc=num_proc,
        **(options_for(name, **options)),
    )
    if as_json:
        echo_json(result)
    else:
        click.echo(format_summary(result, f"{name}{'/' + config if config else ''}"))
    found = failed_checks(result, fail_on)
    if found:
        raise click.ClickException(f"the audit found {'; '.join(found)} (--fail-on {' '.join(fail_on)})")
