"""``fulora generate``: a synthetic set from a base model and a LoRA adapter, with per-image provenance.

fulora generate --base REPO_OR_FOLDER --adapter PATH_OR_REPO --out DIR [--preset study] [options]
accelerate launch --num_processes N scripts/generate.py --base ... --out DIR   (one process per GPU)
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from fulora_data.cli.grammar import echo_json, json_option, out_option, verbosity
from fulora_data.generation.config import MAX_ADAPTER_SCALE, MAX_GUIDANCE


class FiniteFloat(click.ParamType):
    """A float that is finite and within ``[low, high]`` (click's FloatRange lets NaN through)."""

    name = "number"

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(
                f"must be a finite number from {self.low:g} to {self.high:g}, got {value!r}", param, ctx
            )
        return number


@click.command("generate")
@click.option("--base", required=True, help="Base model: a Hub repository or a local diffusers folder.")
@click.option("--base-revision", default=None, help="Branch, tag or commit of a Hub base model.")
@click.option(
    "--adapter",
    default=None,
    help="LoRA adapter: a fulora adapter folder, a .safetensors file (kohya or diffusers) or a Hub repository "
    "(e.g. fangyijie/fu-lora with --weight-name fetal_ultrasound_v1.0.safetensors). Omit for the base alone.",
)
@click.option("--weight-name", default=None, help="The adapter file inside the folder or repository.")
@click.option("--adapter-revision", default=None, help="Branch, tag or commit of a Hub adapter.")
@click.option(
    "--adapter-scale",
    type=FiniteFloat(-MAX_ADAPTER_SCALE, MAX_ADAPTER_SCALE),
    default=None,
    help="LoRA scale, -10 to 10.  [default: 1.0]",
)
@click.option(
    "--allow-unmatched",
    is_flag=True,
    default=None,
    help="Sample even if some adapter keys match no module of the base (refused otherwise, naming them).",
)
@click.option(
    "--planes", default=None, help="Comma-separated planes (e.g. brain,femur).  [default: all five]"
)
@click.option("--per-plane", type=int, default=None, help="Images per plane and sampler.  [default: 10]")
@click.option(
    "--samplers",
    default=None,
    help="Comma-separated samplers: euler, unipc, ddim, dpmpp-2m (A1111's, with A1111's settings; "
    "docs/generation.md).  [default: euler,unipc]",
)
@click.option("--steps", type=int, default=None, help="Inference steps.  [default: 20]")
@click.option(
    "--guidance",
    "guidance_scale",
    type=FiniteFloat(0, MAX_GUIDANCE),
    default=None,
    help="Guidance scale, 0 to 30.  [default: 7.0]",
)
@click.option("--negative-prompt", default=None, help="Negative prompt.  [default: none]")
@click.option(
    "--clip-skip",
    type=int,
    default=None,
    help="Clip skip, kohya's sense (1 = last layer, 2 = penultimate).  [default: the adapter's, else 1]",
)
@click.option("--width", type=int, default=None, help="Width in pixels, a multiple of 8.  [default: 512]")
@click.option("--height", type=int, default=None, help="Height in pixels, a multiple of 8.  [default: 512]")
@click.option(
    "--seed", type=int, default=None, help="The run's seed; each image's seed derives from it.  [default: 0]"
)
@click.option("--batch-size", type=int, default=None, help="Images per pipeline call.  [default: 8]")
@click.option("--shard-size", type=int, default=None, help="Images per WebDataset shard.  [default: 1000]")
@click.option(
    "--mixed-precision",
    type=click.Choice(["no", "fp16", "bf16"]),
    default=None,
    help="Precision on a GPU (the CPU samples in fp32).  [default: fp16]",
)
@click.option("--cpu", is_flag=True, default=None, help="Sample on the CPU even when a GPU is present.")
@click.option("--compile", is_flag=True, default=None, help="torch.compile the UNet (GPU; slow first batch).")
@click.option("--channels-last", is_flag=True, default=None, help="Channels-last memory format (GPU).")
@click.option(
    "--against",
    default=None,
    help="The adapter's training set (NAME/CONFIG, e.g. spanish/lora-100): check the images for memorisation.",
)
@click.option("--against-source", default=None, help="The source (archive or folder) of --against.")
@click.option("--cache-dir", default=None, help="Cache of built datasets for the memorisation check.")
@click.option("--preset", type=click.Choice(["study"]), default=None,
              help="study: 500 per plane and sampler, euler and unipc, the study's prompts, 512 px.")  # fmt: skip
@out_option("Output folder: WebDataset shards, fulora_generated.json, card and contact sheet.", required=True)
@json_option("the summary")
@click.option("--no-progress", is_flag=True, help="No progress bar (-q also silences the info lines).")
def generate(out: Path, preset: str | None, as_json: bool, no_progress: bool, **options) -> None:
    """Generate synthetic planes with per-image provenance; resumes a run killed part-way."""
    from fulora_data.generation.run import generate_from_options

    say = verbosity()
    summary = generate_from_options(
        out, preset=preset, progress=say.progress and not no_progress, log=say.info, **options
    )
    if summary.get("rank", 0) != 0:
        return
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"{summary['images']} images in {summary['out']} ({summary['generated_now']} made now"
            + (f", {summary['images_per_second']:.2f} images/s" if summary.get("images_per_second") else "")
            + (f", {summary['load_seconds']:.1f} s loading the models" if summary.get("load_seconds") else "")
            + ")"
        )
        memo = summary["memorisation"]
        click.echo(
            f"memorisation: {memo['memorised']} of {memo['synthetic_images']} images flagged against {memo['against']}"
            if memo.get("checked")
            else f"memorisation: {memo['note']}"
        )
