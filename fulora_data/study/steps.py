"""What each kind of step runs: one function per kind, each calling the library function of its command.

Every call into the library sits here, once per step kind, so a change of a library signature is one edit:

======================  ==========================================  ====================================
step kind               library function                            command
======================  ==========================================  ====================================
``sources``             ``samples.write_*_source``                  (the demo's procedural archives)
``base``                ``tiny_sd.save_tiny_pipeline``              (the demo's tiny base model)
``lora``                ``lora.train.train_lora``                   ``fulora train lora``
``generate``            ``generation.run.generate``                 ``fulora generate``
``datasets``            ``prepare.info`` + ``export.export``        ``fulora data export``
``audit``               ``audit.run.audit_dataset``                 ``fulora data audit``
``classifier``          ``classifier.train.train``                  ``fulora train classifier``
``evaluate``            ``evaluation.run.evaluate_checkpoint``      ``fulora evaluate``
``compare``             ``compare.compare_sets``                    ``fulora data compare``
``report``              ``study.report.write_report``               ``fulora study run`` (last step)
======================  ==========================================  ====================================
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from fulora_data.study.graph import Context, relative

METRICS: tuple[str, ...] = ("accuracy", "recall", "precision", "f1", "auc")
SPANISH_ARCHIVE = "FETAL_PLANES_ZENODO.zip"
AFRICAN_ARCHIVE = "Zenodo_dataset.tar.xz"


def run_sources(ctx: Context, settings: dict) -> dict:
    """Write the procedural stand-ins of the published archives (same layouts and quirks as the real ones)."""
    from fulora_data import samples

    ctx.out.mkdir(parents=True, exist_ok=True)
    samples.write_spanish_source(
        ctx.out,
        per_plane=settings["spanish_per_plane"],
        test_per_plane=settings["spanish_test_per_plane"],
        seed=settings["spanish_seed"],
        archive=True,
    )
    samples.write_african_source(
        ctx.out, patients_per_country=settings["african_patients_per_country"], seed=settings["african_seed"],
        archive=True,
    )  # fmt: skip
    ctx.log(f"      {SPANISH_ARCHIVE} and {AFRICAN_ARCHIVE} in the published layouts")
    return {"archives": [SPANISH_ARCHIVE, AFRICAN_ARCHIVE]}


def run_base(ctx: Context, settings: dict) -> dict:
    """Write the tiny random-weight Stable Diffusion pipeline (the smoke preset's base model)."""
    from fulora_data.tiny_sd import save_tiny_pipeline

    save_tiny_pipeline(ctx.out)
    return {"base": "tiny random-weight Stable Diffusion"}


def _resumable(out: Path) -> bool:
    """Whether a step's folder holds a checkpoint its trainer can continue (a kill left it there)."""
    from fulora_data.checkpoint import find_checkpoint

    return find_checkpoint(out / "checkpoint") is not None


def _base(ctx: Context, settings: dict) -> str:
    return str(ctx.inputs["base"]) if "base" in ctx.inputs else settings["base"]


def run_lora(ctx: Context, settings: dict) -> dict:
    """``fulora train lora``: fine-tune one adapter; the run's own checkpoint resumes it."""
    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.train import train_lora

    values = dict(settings["config"])
    config = LoraConfig.preset(
        settings["preset"],
        **{
            **values,
            "base": _base(ctx, settings),
            "source": str(ctx.inputs["spanish"]),
            "cache_dir": str(ctx.cache),
            "cpu": ctx.device == "cpu" or values.get("cpu"),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_lora(config, ctx.out, resume=_resumable(ctx.out), progress=False, log=lambda m: None)
    losses = result["losses"]
    ctx.log(f"      adapter r{config.rank}: loss {losses['first']:.3f} -> {losses['last']:.3f} in {result['steps']} steps")
    return {"adapter": relative(result["adapter_dir"], ctx.study), "steps": result["steps"], "losses": losses,
            "rank": config.rank}  # fmt: skip


def run_generate(ctx: Context, settings: dict) -> dict:
    """``fulora generate``: sample a synthetic set with an adapter; a rerun keeps the images made."""
    from fulora_data.generation.config import GenerateConfig
    from fulora_data.generation.run import generate

    values = dict(settings["config"])
    if "samplers" in values:
        values["samplers"] = tuple(values["samplers"])
    if "planes" in values:
        values["planes"] = tuple(values["planes"])
    if ctx.device == "cpu":
        values["cpu"] = True
    base = _base(ctx, settings)
    adapter = str(ctx.inputs["adapter"]) if "adapter" in ctx.inputs else None
    if settings.get("preset"):
        config = GenerateConfig.preset(settings["preset"], base=base, adapter=adapter, **values)
    else:
        config = GenerateConfig(base=base, adapter=adapter, **values)
    result = generate(config, ctx.out, log=lambda m: None, progress=False)
    ctx.log(f"      {result['images']} images ({len(config.planes)} planes x {', '.join(config.samplers)}) "
            "with full provenance")  # fmt: skip
    return {
        "images": result["images"],
        "counts": result["counts"],
        "contact_sheet": relative(result["contact_sheet"], ctx.study),
        "card": relative(result["card"], ctx.study),
    }


def dataset_sets(ctx: Context, settings: dict) -> dict[tuple[str, str], dict[str, Any]]:
    """The datasets the study builds, with their builder options (sources resolved)."""
    sets: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in settings["sets"]:
        options = {}
        for key, value in spec.get("options", {}).items():
            options[key] = str(ctx.inputs[value[1:]]) if isinstance(value, str) and value.startswith("@") else value
        sets[(spec["name"], spec["config"])] = options
    return sets


def run_datasets(ctx: Context, settings: dict) -> dict:
    """Build every set (``fulora data prepare``) and export each as a Hub-ready folder (``fulora data export``)."""
    from fulora_data.export import export
    from fulora_data.prepare import info

    sizes = {}
    exports = {}
    for (name, config), options in dataset_sets(ctx, settings).items():
        summary = info(name, config, cache_dir=ctx.cache, **options)
        sizes[f"{name}/{config}"] = summary["splits"]
        ctx.log(f"      {name}/{config}: {', '.join(f'{k} {v}' for k, v in summary['splits'].items())}")
        if settings.get("export", True):
            out = ctx.out / "hub" / name
            export(name, [config], out, cache_dir=ctx.cache, **options)
            exports[f"{name}/{config}"] = relative(out, ctx.study)
    if exports:
        ctx.log(f"      exported Hub-ready folders (Parquet + dataset card) under {relative(ctx.out / 'hub', ctx.study)}/")
    from fulora_data.io import atomic_write_json

    ctx.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.out / "sizes.json", sizes)
    return {"sizes": sizes, "exports": exports}


def run_audit(ctx: Context, settings: dict) -> dict:
    """``fulora data audit``: duplicates and train/test leakage of a set, with its report."""
    from fulora_data.audit.run import audit_dataset

    result = audit_dataset(
        settings["dataset"], settings["config"], source=ctx.inputs["source"], cache_dir=ctx.cache,
        report=ctx.out,
    )  # fmt: skip
    audit = result["audit"]
    ctx.log(
        f"      exact pairs {audit['exact_duplicate_pairs']}, near pairs {audit['near_duplicate_pairs']}, "
        f"cross-split pairs {audit['cross_split_duplicate_pairs']}"
    )
    keys = ("exact_duplicate_pairs", "near_duplicate_pairs", "cross_split_duplicate_pairs")
    return {"audit": {k: audit[k] for k in keys if k in audit}}


def run_classifier(ctx: Context, settings: dict) -> dict:
    """``fulora train classifier``: one cell of the grid; the run's checkpoint resumes it."""
    from fulora_data.classifier.config import TrainConfig
    from fulora_data.classifier.train import train

    values = dict(settings["config"])
    if ctx.device == "cpu":
        values["cpu"] = True
    if "synthetic" in ctx.inputs:
        values["synthetic_source"] = str(ctx.inputs["synthetic"])
    config = TrainConfig.preset(
        settings["preset"],
        **{**values, "arch": settings["model"], "train_set": settings["train_set"],
           "source": str(ctx.inputs["spanish"]), "data_cache_dir": str(ctx.cache)},
    )  # fmt: skip
    result = train(config, ctx.out, resume=_resumable(ctx.out), progress=False, log=lambda m: None)
    return {"model_dir": relative(result["model_dir"], ctx.study), "epochs": config.epochs}


def run_evaluate(ctx: Context, settings: dict) -> dict:
    """``fulora evaluate``: zero-shot scores with the study's protocol, plus bootstrap intervals of them.

    The scores are ``evaluate_checkpoint``'s. The intervals resample the test images (seeded) and rescore
    each resample with the same protocol: 95% percentile intervals of every metric.
    """
    import numpy as np

    from fulora_data.classifier.predict import predict
    from fulora_data.dataset_ref import DatasetRef
    from fulora_data.evaluation.metrics import paper_scores, standard_scores
    from fulora_data.evaluation.run import evaluate_checkpoint
    from fulora_data.io import atomic_write_json
    from fulora_data.prepare import prepare

    checkpoint = ctx.inputs["classifier"]
    result = evaluate_checkpoint(
        checkpoint, settings["data"], protocol=settings["protocol"], source=ctx.inputs["source"],
        cache_dir=ctx.cache, device=ctx.device, report_dir=ctx.out / "report",
    )  # fmt: skip
    scores = {k: result.get(k) for k in METRICS}
    intervals: dict[str, list[float] | None] = {k: None for k in METRICS}
    n_bootstrap = int(settings.get("n_bootstrap", 0))
    if n_bootstrap > 0:
        ref = DatasetRef.parse(settings["data"], option="evaluation.data", split="required")
        name, config, split = ref.repo, ref.config, ref.split
        dataset = prepare(name, config, source=ctx.inputs["source"], cache_dir=ctx.cache)[split]
        out = predict(checkpoint, dataset, device=ctx.device)
        ref, pred = np.asarray(out["reference"]), np.asarray(out["prediction"])
        rng = np.random.default_rng(int(settings.get("seed", 0)))
        draws: dict[str, list[float]] = {k: [] for k in METRICS}
        for _ in range(n_bootstrap):
            idx = rng.integers(0, len(ref), size=len(ref))
            if settings["protocol"] == "paper":
                s = paper_scores(ref[idx], pred[idx], out["label_names"])
            else:
                s = standard_scores(ref[idx], pred[idx], out["label_names"], out["probabilities"][idx])
            for k in METRICS:
                if s.get(k) is not None and np.isfinite(s[k]):
                    draws[k].append(float(s[k]))
        intervals = {
            k: [float(x) for x in np.percentile(v, [2.5, 97.5])] if v else None for k, v in draws.items()
        }
    payload = {
        "model": settings["model"], "train_set": settings["train_set"], "data": settings["data"],
        "protocol": settings["protocol"], "n": result.get("n"), "scores": scores,
        "intervals": {"level": 0.95, "method": "percentile bootstrap over test images",
                      "n_bootstrap": n_bootstrap, "seed": settings.get("seed", 0), "values": intervals},
    }  # fmt: skip
    atomic_write_json(ctx.out / "scores.json", payload)
    return {"scores": scores, "n": result.get("n")}


def run_compare(ctx: Context, settings: dict) -> dict:
    """``fulora data compare``: the t-SNE figure and FID/KID per plane of the sets."""
    from fulora_data.compare import compare_sets

    weights = settings.get("weights")
    if weights == "random":  # the smoke preset: no ImageNet file offline; features mean nothing
        from fulora_data.compare.features import random_inception_weights

        weights = random_inception_weights(
            ctx.cache / "inception_random.pth", seed=0, calibrate_size=settings["image_size"]
        )
    sets = [spec["set"] for spec in settings["sets"]]
    sources = [str(ctx.inputs[spec["source"]]) for spec in settings["sets"]]
    result = compare_sets(
        sets, sources, labels=[spec["label"] for spec in settings["sets"]], per_plane=settings["per_plane"],
        seed=settings.get("seed", 1234), image_size=settings["image_size"], weights=weights,
        download=settings.get("download", True), cache_dir=ctx.cache, report=ctx.out,
        bootstrap=settings.get("bootstrap", 0), device=ctx.device, log=lambda m: None,
    )  # fmt: skip
    ctx.log(f"      FID/KID over {len(result['planes'])} panels, t-SNE figures in {relative(ctx.out, ctx.study)}/")
    return {"panels": sorted(result["planes"]), "skipped": result.get("skipped")}


def run_report(ctx: Context, settings: dict) -> dict:
    """Write ``report.md`` and the self-contained ``report.html`` from every step's outputs."""
    from fulora_data.study.report import write_report

    paths = write_report(ctx.study, ctx.out, settings)
    ctx.log(f"      {relative(paths['markdown'], ctx.study)} and {relative(paths['html'], ctx.study)}")
    return {"files": [relative(p, ctx.study) for p in paths.values()]}


def _repo_name(text: str) -> str:
    """A Hub repository name from a step's name: letters, digits, ``-`` and ``.`` (``HB+DA`` -> ``HB-DA``)."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


def run_publish(ctx: Context, settings: dict) -> dict:
    """``fulora data push`` / ``fulora model push``: every exported dataset, adapter and classifier, to ORG.

    The token is ``HF_TOKEN`` or the login token, never a setting (settings are recorded). Each dataset is
    tagged with its release version by ``push_dataset``; adapters and classifiers are tagged ``v1`` only if
    ``tag`` is set. The commits go to ``publish/pushed.json`` (and the step's record).
    """
    from fulora_data.hub import push_dataset, push_model
    from fulora_data.io import atomic_write_json

    org = settings["org"]
    pushed = []
    exports = ctx.inputs.get("datasets")
    if exports is not None and (exports / "hub").is_dir():
        for folder in sorted(p for p in (exports / "hub").iterdir() if p.is_dir()):
            result = push_dataset(folder, f"{org}/{_repo_name(settings.get('prefix', '') + folder.name)}",
                                  private=settings.get("private", False))  # fmt: skip
            pushed.append({"what": f"dataset {folder.name}", **result})
    for key, folder in sorted(ctx.inputs.items()):
        if key.startswith("lora-"):
            name = settings.get("prefix", "") + "sd15-" + key
            result = push_model(folder / "adapter", f"{org}/{_repo_name(name)}", private=settings.get("private", False),
                                tag=settings.get("tag"))  # fmt: skip
            pushed.append({"what": f"adapter {key}", **result})
        elif key.startswith("classifier/"):
            name = settings.get("prefix", "") + key.split("/", 1)[1]
            result = push_model(folder / "model", f"{org}/{_repo_name(name)}", private=settings.get("private", False),
                                tag=settings.get("tag"))  # fmt: skip
            pushed.append({"what": f"classifier {key.split('/', 1)[1]}", **result})
    for item in pushed:
        ctx.log(f"      {item['what']}: {item['repo_id']}@{str(item['commit'])[:12]}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    keep = ("what", "repo_id", "commit", "tag", "url", "pushed")
    atomic_write_json(ctx.out / "pushed.json", [{k: item.get(k) for k in keep} for item in pushed])
    return {"pushed": [{k: item.get(k) for k in ("what", "repo_id", "commit", "tag")} for item in pushed]}


RUNNERS = {
    "sources": run_sources,
    "base": run_base,
    "lora": run_lora,
    "generate": run_generate,
    "datasets": run_datasets,
    "audit": run_audit,
    "classifier": run_classifier,
    "evaluate": run_evaluate,
    "compare": run_compare,
    "report": run_report,
    "publish": run_publish,
}


def runner(kind: str, settings: dict):
    """A step's ``run(ctx)`` for a step kind, bound to its settings."""
    function = RUNNERS[kind]

    def run(ctx: Context) -> dict:
        return function(ctx, json.loads(json.dumps(settings)))

    run.__name__ = f"run_{kind}"
    return run


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
