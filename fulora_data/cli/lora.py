"""``fulora train lora``: fine-tune a LoRA adapter of Stable Diffusion 1.5 (the study's recipe by default)."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data.cli.grammar import echo_json, json_option, out_option, token_option, verbosity


def _check_name(ctx, param, value):
    """Refuse a --name that cannot name the kohya file, as a bad option value (exit 2)."""
    if value is None:
        return None
    from fulora_data.adapter import check_output_name
    from fulora_data.errors import ConfigError

    try:
        return check_output_name(value, option="--name")
    except ConfigError as err:
        raise click.BadParameter(str(err).removeprefix("--name ")) from None


@click.command("lora")
@click.option(
    "--preset",
    default="r8",
    show_default=True,
    help="r8, r32, r128 (the study's adapters), smoke (seconds on a CPU) or a YAML file "
    "(training/configs/lora_r*.yaml); options given here override it.",
)
@click.option(
    "--base", default=None, help="Base model: Hub id, diffusers folder or .safetensors file [SD1.5]."
)
@click.option("--base-revision", default=None, help="Hub commit of the base model [pinned].")
@click.option(
    "--data",
    default=None,
    help="Training set: any fulora dataset with image and text, or a published ORG/NAME[@REV] [spanish].",
)
@click.option("--data-config", default=None, help="Its config [lora-100].")
@click.option(
    "--source", type=click.Path(path_type=Path), default=None, help="The dataset's archive or folder."
)
@click.option("--resolution", type=int, default=None, help="Training resolution, divisible by 8 [512].")
@click.option("--batch-size", type=int, default=None, help="Images per step and process [2].")
@click.option("--rank", type=int, default=None, help="LoRA rank (r8: 8, r32: 32, r128: 128).")
@click.option("--alpha", type=float, default=None, help="LoRA alpha [= rank].")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps [10000].")
@click.option(
    "--learning-rate", "--lr", "learning_rate", type=float, default=None, help="UNet LoRA lr [1e-4]."
)
@click.option("--text-encoder-lr", type=float, default=None, help="Text-encoder LoRA lr; 0 = frozen [5e-5].")
@click.option(
    "--targets", type=click.Choice(["study", "attention"]), default=None, help="LoRA modules [study]."
)
@click.option("--clip-skip", type=int, default=None, help="Clip skip, kohya's sense (diffusers' + 1) [2].")
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=None, help="[fp16].")
@click.option("--seed", type=int, default=None, help="Seed [1234].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Datasets and latent cache.")
@click.option("--checkpoint-every", type=int, default=None, help="Checkpoint every N steps [500].")
@click.option("--validation-every", type=int, default=None, help="Sample one image per plane every N steps.")
@out_option("The run folder: adapter/, checkpoint/, samples and the model card.", required=True)
@click.option(
    "--name",
    "output_name",
    default=None,
    callback=_check_name,
    help="The run's name (kohya's output_name): the kohya file is NAME.safetensors "
    "[the --out folder's name].",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option(
    "--push-to-hub", default=None, metavar="ORG/NAME", help="Push the adapter to this Hub repository."
)
@token_option("Hub token for --push-to-hub (default: HF_TOKEN).", envvar="HF_TOKEN")
@click.option("--private", is_flag=True, help="Create the Hub repository as private.")
@click.option("--cpu", is_flag=True, default=None, help="Train on the CPU even if a GPU is present.")
@click.option(
    "--report-to",
    type=click.Choice(["tensorboard", "wandb", "none"]),
    default=None,
    help="Where loss, lr and validation images are logged [tensorboard when installed, else none].",
)
@json_option("the run's summary")
def lora(preset, out, resume, push_to_hub, token, private, report_to, as_json, **options) -> None:
    """Fine-tune a LoRA adapter of Stable Diffusion 1.5 on a fulora dataset (resumable; both file formats)."""
    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.train import train_lora

    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    config = LoraConfig.preset(preset, **values)
    say = verbosity()
    summary = train_lora(
        config,
        out,
        resume=resume,
        push_to_hub=push_to_hub,
        hub_token=token,
        hub_private=private,
        report_to=report_to,
        progress=say.progress,
        log=say.info,
    )
    if not summary["main_process"]:  # under accelerate launch, one process reports
        return
    if as_json:
        echo_json(summary)
        return
    loss = summary["losses"]["last"]
    click.echo(
        f"LoRA rank {config.rank} on {config.dataset_id}: {summary['steps']}/{config.max_steps} steps, "
        f"last loss {'n/a' if loss is None else f'{loss:.4f}'}, optimizer {summary['optimizer']}"
    )
    click.echo(f"adapter: {summary['adapter_dir']}")
    if summary["hub"]:
        click.echo(f"pushed: {summary['hub'].get('url')}")
