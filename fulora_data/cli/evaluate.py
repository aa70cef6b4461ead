"""``fulora evaluate``: score a classifier zero-shot, from a checkpoint or from a predictions CSV.

fulora evaluate --model CKPT --data african:test [--protocol paper|standard] [--json] [--report DIR]
fulora evaluate predictions FILE [--protocol paper|standard] [--json] [--report DIR]
"""

from __future__ import annotations

from pathlib import Path

import click

from fulora_data import evaluation as library
from fulora_data.cli.grammar import echo_json, json_option, token_option
from fulora_data.cli.options import device_option


def _common_options(func):
    """Options shared by both forms: protocol, output and bootstrap."""
    func = click.option(
        "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Bootstrap seed."
    )(func)
    func = click.option(
        "--n-bootstrap",
        type=click.IntRange(min=0),
        default=1000,
        show_default=True,
        help="Bootstrap resamples for the standard protocol's 95% intervals (0: none).",
    )(func)
    func = click.option(
        "--ci-by-patient",
        is_flag=True,
        help="Bootstrap patients (patient_id) instead of images.",
    )(func)
    func = click.option(
        "--report",
        "report_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Write a report folder here: report.md, the results JSON and the confusion-matrix PNG.",
    )(func)
    func = json_option("the results (fractions)")(func)
    func = click.option(
        "--protocol",
        type=click.Choice(library.PROTOCOLS),
        default="paper",
        show_default=True,
        help="paper: exactly the study's table; standard: macro over all classes, OvR AUC, bootstrap CIs.",
    )(func)
    return func


def _echo(result: dict, as_json: bool) -> None:
    if as_json:
        echo_json(result)
    else:
        click.echo(library.format_summary(result))
        if result.get("report"):
            click.echo(f"report: {result['report']}")


@click.group("evaluate", invoke_without_command=True)
@click.option(
    "--model",
    "checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Classifier checkpoint, or a Hub repo ORG/NAME[@REVISION].",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    help="Test data as NAME[/CONFIG]:SPLIT (african:test) or a published ORG/NAME[@REV][/CONFIG]:SPLIT "
    "(then no --source or --cache-dir).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=None,
    help="The dataset's archive or its extracted folder; omit to download the archive.",
)
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="Where built datasets are cached."
)
@click.option(
    "--push-results",
    is_flag=True,
    help="Add the results to the model's card (model-index): in the folder, or a new commit on the repo's main.",
)
@token_option("Hub token with write access, for --push-results to a Hub repo (default: HF_TOKEN).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--device", default=None, callback=device_option, help="Torch device (default: cuda when available)."
)
@_common_options
@click.pass_context
def evaluate(ctx, checkpoint, data_spec, source, cache_dir, push_results, token, batch_size, device, protocol, as_json,
             report_dir, ci_by_patient, n_bootstrap, seed) -> None:  # fmt: skip
    """Evaluate a classifier zero-shot: run --model on --data, or score a CSV with `predictions`."""
    if ctx.invoked_subcommand is not None:
        # Options before the subcommand name belong to the --model form; silently ignoring them would
        # score with settings the user did not ask for.
        given = [
            param.opts[0]
            for param in ctx.command.params
            if param.name not in ("quiet", "verbose")  # -q/-v apply to the whole command line
            and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} belong to the --model form; put options after the subcommand, "
                f"e.g. evaluate {ctx.invoked_subcommand} FILE --protocol standard"
            )
        return
    if checkpoint is None or data_spec is None:
        raise click.UsageError(
            "give --model CKPT and --data NAME[/CONFIG]:SPLIT, or use: evaluate predictions FILE"
        )
    if push_results:  # where the results will go, and whether they may: before the evaluation runs
        from fulora_data.classifier.card import check_results_target

        check_results_target(checkpoint)
    result = library.evaluate_checkpoint(
        checkpoint,
        data_spec,
        protocol=protocol,
        source=source,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        report_dir=report_dir,
        ci_by_patient=ci_by_patient,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    if push_results:
        from fulora_data.classifier.card import record_results

        result["recorded"] = record_results(checkpoint, result, token=token)
    _echo(result, as_json)
    if push_results and not as_json:
        where, commit = result["recorded"]["where"], result["recorded"]["commit"]
        click.echo(f"results added to the card of {where}" + (f" (commit {commit})" if commit else ""))


@evaluate.command("predictions")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model-name", default=None, help="The classifier (e.g. resnet18), to compare with the study.")
@click.option("--train-set", default=None, help="Its training set: ES, ES+DA, HB or HB+DA.")
@click.option(
    "--data",
    "data_spec",
    default=None,
    help="Join rows by image_id to this split: NAME[/CONFIG]:SPLIT (african:test) or a published "
    "ORG/NAME[@REV][/CONFIG]:SPLIT (then no --source or --cache-dir).",
)
@click.option("--source", type=click.Path(path_type=Path), default=None, help="The --data dataset's source.")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="Where built datasets are cached."
)
@click.option("--allow-partial", is_flag=True, help="Score a subset of the test set (the report says so).")
@_common_options
def predictions(file, model_name, train_set, data_spec, source, cache_dir, allow_partial, protocol, as_json,
                report_dir, ci_by_patient, n_bootstrap, seed):  # fmt: skip
    """Score a predictions CSV (columns reference, prediction; optional image_id, prob_<plane>, country)."""
    result = library.evaluate_predictions(
        file,
        data_spec=data_spec,
        source=source,
        cache_dir=cache_dir,
        allow_partial=allow_partial,
        protocol=protocol,
        report_dir=report_dir,
        model_name=model_name,
        train_set=train_set,
        ci_by_patient=ci_by_patient,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    _echo(result, as_json)
