"""``fulora data compare``: the study's t-SNE figure and FID/KID per plane between image sets."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data.cli.grammar import echo_json, json_option, report_option, verbosity
from fulora_data.cli.options import cache_option, device_option


@click.command("compare")
@click.argument("sets", nargs=-1, required=True)
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Path(path_type=Path),
    help="The archive or folder of each SET, once per SET in the same order; '-' for a SET without one "
    "(a published ORG/NAME set, or one to download); omit all to download every SET.",
)
@click.option("--label", "labels", multiple=True, help="A name per SET for figures and tables, in order.")
@click.option(
    "--plane",
    "planes",
    multiple=True,
    help="A plane to compare (repeat; default: the study's abdomen, brain, femur, thorax).",
)
@click.option(
    "--per-plane", type=int, default=35, show_default=True, help="Images drawn per plane and set (0: all)."
)
@click.option(
    "--seed", type=int, default=1234, show_default=True, help="random_state of the draw, t-SNE, bootstrap."
)
@click.option(
    "--image-size", type=int, default=224, show_default=True, help="Network input side (at least 75)."
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="A torchvision inception_v3 state dict file (default: torchvision's ImageNet weights).",
)
@click.option(
    "--fid-weights",
    type=click.Path(path_type=Path),
    default=None,
    help="pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth), read offline: FID and "
    "KID on the network of published FIDs (default: on the t-SNE network, not comparable).",
)
@click.option("--no-download", is_flag=True, help="Never download the Inception weights.")
@cache_option
@click.option(
    "--feature-cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Where features are cached (default: CACHE_DIR/fulora-features or ~/.cache/fulora/features).",
)
@report_option("compare.json and the t-SNE figures")
@click.option(
    "--bootstrap",
    type=int,
    default=200,
    show_default=True,
    help="Bootstrap replicates per interval (0: none; past 2048 images per set each costs seconds).",
)
@click.option(
    "--tsne-features",
    type=click.Choice(["logits", "pool"]),
    default="logits",
    show_default=True,
    help="What t-SNE embeds: the Inception outputs (the study's) or the pool features.",
)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Images per forward pass.")
@click.option(
    "--device", default=None, callback=device_option, help="cpu, cuda, ... (default: CUDA when available)."
)
@json_option("the full result")
def compare_command(
    sets,
    sources,
    labels,
    planes,
    per_plane,
    seed,
    image_size,
    weights,
    fid_weights,
    no_download,
    cache_dir,
    feature_cache,
    report,
    bootstrap,
    tsne_features,
    batch_size,
    device,
    as_json,
) -> None:
    """Compare image SETs (NAME[/CONFIG][:SPLIT], e.g. african:test synthetic/generated spanish/es-1150).

    A SET may be a published fulora dataset, ORG/NAME[@REV][/CONFIG][:SPLIT] (fulora/synthetic@v1.0.0:train),
    read from the Hub or its cache; its --source is '-'.
    """
    from fulora_data.compare import CompareConfig, compare_sets

    config = CompareConfig(
        sets=list(sets),
        sources=list(sources),
        labels=list(labels),
        planes=list(planes),
        per_plane=per_plane or None,
        seed=seed,
        image_size=image_size,
        weights=weights,
        fid_weights=fid_weights,
        download=not no_download,
        cache_dir=cache_dir,
        feature_cache=feature_cache,
        report=report,
        bootstrap=bootstrap,
        tsne_features=tsne_features,
        batch_size=batch_size,
        device=device,
    )
    result = compare_sets(config, log=verbosity().info)
    if as_json:
        echo_json(result)
        return
    for entry in result["sets"]:
        drawn = ", ".join(f"{p} {n}" for p, n in entry["drawn_per_plane"].items())
        click.echo(f"{entry['label']} ({entry['spec']}): {entry['images']} images; drawn {drawn}")
    from fulora_data.compare.report import network_label

    fid_network = result["settings"]["fid_network"]
    comparable = "" if fid_network["comparable_with_published_fid"] else " (not comparable with published FIDs)"
    click.echo(f"FID and KID on {network_label(fid_network)}{comparable}")
    click.echo(f"t-SNE on {network_label(result['settings']['network'])}")
    for name, panel in result["planes"].items():
        click.echo(f"{name}:")
        for pair in panel["pairs"]:
            low, high = pair["fid_interval"] or (None, None)
            interval = f" [{low:.4g}, {high:.4g}]" if low is not None else ""
            kid = pair["kid_interval"]
            kid_text = f" [{kid[0]:.4g}, {kid[1]:.4g}]" if kid else ""
            flag = "  (few images)" if pair["warnings"] else ""
            click.echo(
                f"  {pair['a']} vs {pair['b']}: FID {pair['fid']:.4g}{interval}, KID {pair['kid']:.4g}{kid_text}, "
                f"n {pair['images'][0]}/{pair['images'][1]}{flag}"
            )
    for plane, why in result["skipped"].items():
        click.echo(f"skipped {plane}: {why}")
    timing = result["features"]
    click.echo(
        f"features: {timing['computed']} computed, {timing['cached']} cached, {timing['seconds']} s"
        + (f" ({timing['images_per_second']} images/s)" if timing["images_per_second"] else "")
    )
    if "report" in result:
        click.echo(f"report: {result['report']}")
