"""``fulora data audit``: duplicates, split leakage and memorisation of any fulora dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fulora_data.audit.thresholds import DEFAULT_SIMILARITY, DEFAULT_THRESHOLD, MAX_THRESHOLD
from fulora_data.cli.data import _options, builder_options, cache_option, config_option, data, source_option

_LISTED = 20


def options_for(name: str, **options) -> dict:
    """Builder options for a registered dataset; a published one (ORG/NAME) takes none."""
    from fulora_data.hub_pull import is_repo_spec

    return (
        {k: v for k, v in options.items() if v is not None}
        if is_repo_spec(name)
        else _options(name, **options)
    )  # pairs printed per list; --json and --report hold all of them


def _more(total: int) -> None:
    if total > _LISTED:
        click.echo(f"  ... {total - _LISTED} more (see --json or --report)")


@data.command("audit")
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
    help="Check every image against the training set NAME[/CONFIG] (e.g. spanish/lora-100) for memorisation.",
)
@click.option(
    "--against-source",
    type=click.Path(path_type=Path),
    default=None,
    help="The archive or folder of the --against dataset.",
)
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Write a Markdown report here.")
@click.option("--num-proc", type=int, default=None, help="Worker processes for decoding the images.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
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
    as_json,
    **options,
) -> None:
    """Audit dataset NAME (or a published ORG/NAME[@REVISION]) for duplicates, leakage and memorisation."""
    from fulora_data.audit import audit_dataset

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
        click.echo(json.dumps(result, indent=2))
        return
    found = result["audit"]
    click.echo(f"{name}{'/' + config if config else ''}: {found['images']} images")
    for split, info in found["splits"].items():
        modes = ", ".join(f"{m} {n}" for m, n in info["modes"].items())
        click.echo(
            f"  {split}: {info['images']} images, {info['patients']} patients, modes {modes or '-'}, "
            f"{len(info['sizes'])} sizes ({info['smallest']} to {info['largest']})"
        )
    click.echo(f"exact duplicate pairs: {found['exact_duplicate_pairs']}")
    click.echo(
        f"near duplicate pairs: {found['near_duplicate_pairs']} (pHash <= {threshold} bits, similarity >= {similarity})"
    )
    click.echo(f"cross-split duplicate pairs: {found['cross_split_duplicate_pairs']}")
    click.echo(
        f"pairs whose label / patient disagree: {found['label_disagreement_pairs']} / "
        f"{found['patient_disagreement_pairs']}"
    )
    for pair in found["pairs"][:_LISTED]:
        a, b = pair["a"], pair["b"]
        click.echo(
            f"  {pair['kind']}: {a['split']}/{a['image_id']} ~ {b['split']}/{b['image_id']} "
            f"(pHash {pair['hamming']}, similarity {pair['similarity']})"
        )
    _more(len(found["pairs"]))
    memo = result.get("memorisation")
    if memo is not None:
        click.echo(
            f"memorised against {result['against']}: {memo['memorised']} of {memo['synthetic_images']} images "
            f"(nearest similarity median {memo['similarity']['median']}, max {memo['similarity']['max']})"
        )
        for pair in memo["pairs"][:_LISTED]:
            s, t = pair["synthetic"], pair["training"]
            click.echo(
                f"  {s['split']}/{s['image_id']} ~ {t['split']}/{t['image_id']} ({pair['similarity']})"
            )
        _more(len(memo["pairs"]))
    if "report" in result:
        click.echo(f"report: {result['report']}")
