"""``fulora train``: train models. ``fulora train classifier`` trains one of the study's plane classifiers."""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data.classifier.config import TRAIN_SETS, TrainConfig, parse_train_set
from fulora_data.classifier.models import ARCHITECTURES
from fulora_data.classifier.train import train as train_classifier
from fulora_data.cli.grammar import echo_json, json_option, out_option, token_option, verbosity
from fulora_data.cli.options import data_option, parse_data_options


@click.group("train")
def train() -> None:
    """Train models: LoRA adapters of Stable Diffusion (lora) and the study's zero-shot plane classifiers."""


@train.command("classifier")
@click.option("--arch", type=click.Choice(list(ARCHITECTURES)), default=None, help="Architecture [resnet18].")
@click.option("--train-set", default=None, help=f"Training set: {', '.join(TRAIN_SETS)} [ES].")
@click.option("--source", type=click.Path(path_type=Path), default=None, help="Spanish archive or folder.")
@click.option(
    "--synthetic-source",
    type=click.Path(path_type=Path),
    default=None,
    help="HB only: the synthetic images for the hybrid set.",
)
@click.option(
    "--preset",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML preset (training/configs/classifier_*.yaml); options given here override it.",
)
@click.option(
    "--weights", default=None, help="imagenet, none (random init) or a local weights file [imagenet]."
)
@click.option("--epochs", type=int, default=None, help="Training epochs [20].")
@click.option("--batch-size", type=int, default=None, help="Batch size [24].")
@click.option(
    "--learning-rate", "--lr", "learning_rate", type=float, default=None, help="SGD learning rate [1e-3]."
)
@click.option("--image-size", type=int, default=None, help="Input size [224].")
@click.option(
    "--validation-size", type=int, default=None, help="Training images held out for validation [200]."
)
@click.option(
    "--validation-policy",
    type=click.Choice(["patient", "study"]),
    default=None,
    help="How the hold-out is drawn when the training set has no validation split: patient (whole "
    "patients, none on both sides) or study (random images, as the study did) [patient].",
)
@click.option("--seed", type=int, default=None, help="Seed [0].")
@click.option("--num-workers", type=int, default=None, help="DataLoader workers [2].")
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=None, help="[no].")
@click.option("--cpu", is_flag=True, default=None, help="Train on the CPU even if a GPU is present.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Where datasets are cached.")
@data_option
@click.option(
    "--data",
    "hub_data",
    default=None,
    metavar="ORG/NAME[@REV][/CONFIG]",
    help="Train on a published fulora dataset (e.g. fulora/hybrid@v1.0.0) instead of building the training "
    "set (not with --source, --synthetic-source or --data-option; --resume needs the same --data).",
)
@out_option("The run folder: model/, checkpoint/ and the metrics.", required=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out after its last finished epoch.")
@click.option(
    "--push-to-hub", default=None, metavar="REPO", help="Push the trained model to this Hub repository."
)
@token_option("Hub token for --push-to-hub (default: HF_TOKEN).", envvar="HF_TOKEN")
@click.option("--private", is_flag=True, help="Create the Hub repository as private.")
@click.option(
    "--report-to",
    type=click.Choice(["tensorboard", "wandb", "none"]),
    default=None,
    help="Where epoch metrics and the confusion matrix are logged [tensorboard when installed, else none].",
)
@json_option("the run's summary")
def classifier(
    preset,
    out,
    resume,
    push_to_hub,
    token,
    private,
    report_to,
    as_json,
    train_set,
    cache_dir,
    data_options,
    hub_data,
    **options,
) -> None:
    """Train a plane classifier with the study's settings (resumable; keeps the best validation epoch)."""
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    values["dataset_options"] = parse_data_options(data_options) if data_options else None
    values["train_set"] = parse_train_set(train_set) if train_set is not None else None
    values["data_cache_dir"] = str(cache_dir) if cache_dir is not None else None
    values["hub_data"] = hub_data  # --train-set still names the run (and decides augmentation)
    config = TrainConfig.from_yaml(preset, **values) if preset else TrainConfig.preset("paper", **values)
    say = verbosity()
    summary = train_classifier(
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
    if as_json:
        echo_json(summary)
        return
    best = summary["best"]
    accuracy = "n/a" if best["accuracy"] is None else f"{best['accuracy']:.4f}"
    click.echo(
        f"{config.arch} on {config.train_set}: {summary['epochs_done']}/{config.epochs} epochs, best epoch "
        f"{best['epoch']} (validation accuracy {accuracy})"
    )
    click.echo(f"model: {summary['model_dir']}")
    if summary["hub"]:
        click.echo(f"pushed: {summary['hub'].get('url')}")


# Library hints name the hybrid's flags; here its real part is --source (see fit_hints).
classifier.hint_flags = {"--real-source": "--source"}
