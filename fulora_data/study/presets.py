"""The study's settings as data: the ``study`` preset (the paper), ``smoke`` (the demo), YAML changes.

A preset is one nested mapping. ``build_graph`` turns it into steps; a YAML file (``--preset FILE.yaml``)
names a preset to start from (``from: study``, default ``study``) and changes any setting or adds variants,
merged key by key (a mapping merges into a mapping; anything else replaces). ``null`` removes a key, e.g.
``compare: null`` drops the comparison. For example, generating with every adapter::

    from: study
    sources: {spanish: /data/FETAL_PLANES_ZENODO.zip, african: /data/Zenodo_dataset.tar.xz}
    generations:
      r8: {adapter: r8, preset: study}
      r32: {adapter: r32, preset: study}

Settings (every key of a step's part of the mapping is part of that step's identity):

- ``sources``: ``{spanish: PATH, african: PATH}`` (archives or extracted folders), or ``{procedural:
  {...}}`` for the embedded stand-ins written by a ``sources`` step.
- ``base``: ``{model: HUB_ID_OR_FOLDER}`` or ``{tiny: true}`` (a step writes the tiny random pipeline).
- ``adapters``: ``NAME: {preset: r8|r32|r128|smoke, config: {LoraConfig fields}}``, one ``lora-NAME`` step each.
- ``generations``: ``NAME: {adapter: NAME, preset: study|null, config: {GenerateConfig fields}}``.
- ``synthetic``: the generation the synthetic and hybrid sets (HB) are made of.
- ``datasets``: ``{export: bool, sets: [{name, config, options}]}``; an option ``"@spanish"``,
  ``"@african"`` or ``"@synthetic"`` is that input's path.
- ``audit``: ``{dataset, config}`` of the set audited for duplicates and leakage.
- ``classifiers``: ``{preset: paper|smoke, models: [...], train_sets: [...], config: {TrainConfig fields},
  hybrid_options: {...}}``: one ``classifier/MODEL-SET`` and one ``evaluate/MODEL-SET`` step per cell.
- ``evaluation``: ``{data: african:test, protocol: paper, n_bootstrap, seed}``.
- ``compare``: ``{sets: [{set, source, label}], per_plane, image_size, weights, bootstrap, seed}``.
- ``publish``: ``{org, private, tag, prefix}`` (``--push-to ORG``): a last step pushing every exported
  dataset, adapter and classifier through ``fulora_data.hub`` (token: ``HF_TOKEN`` or the login).
- ``device``: ``cpu`` or ``gpu`` (which estimates the plan shows; ``cpu`` also forces CPU runs).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from fulora_data.errors import ConfigError
from fulora_data.lora.config import SD15
from fulora_data.study.graph import Archive, Graph, Output, Step
from fulora_data.study.steps import runner

MODELS: tuple[str, ...] = ("densenet169", "mobilenet_v2", "efficientnet_b0", "resnet18", "vit_b_16")
TRAIN_SETS: tuple[str, ...] = ("ES", "ES+DA", "HB", "HB+DA")

PHANTOM_NOTE = (
    "phantom data: procedural images and a random-weight generator; these numbers show the pipeline runs "
    "and mean nothing clinically"
)

_SETS = [
    {"name": "spanish", "config": "es", "options": {"source": "@spanish"}},
    {"name": "spanish", "config": "es-1150", "options": {"source": "@spanish"}},
    {"name": "spanish", "config": "lora-100", "options": {"source": "@spanish"}},
    {"name": "african", "config": "all", "options": {"source": "@african"}},
    {"name": "synthetic", "config": "generated", "options": {"source": "@synthetic"}},
    {
        "name": "hybrid",
        "config": "es1150-generated",
        "options": {"real_source": "@spanish", "real_config": "es-1150", "synthetic_source": "@synthetic"},
    },
]

STUDY: dict[str, Any] = {
    "name": "study",
    "device": "gpu",
    "sources": {"spanish": None, "african": None},
    "base": {"model": SD15},  # the Hub's SD 1.5 (runwayml/stable-diffusion-v1-5 is gone), pinned by LoraConfig
    # The study's three adapters, 10,000 steps each on the 100-image LoRA set (kohya, clip skip 2).
    "adapters": {
        name: {"preset": name, "config": {"data_config": "lora-100", "max_steps": 10_000}}
        for name in ("r8", "r32", "r128")
    },
    # 500 images x {euler, unipc} x 5 planes with the r128 adapter, at 512 px (A1111 defaults).
    "generations": {"r128": {"adapter": "r128", "preset": "study", "config": {"seed": 0}}},
    "synthetic": "r128",
    "datasets": {"export": True, "sets": _SETS},
    "audit": {"dataset": "african", "config": "all"},
    "classifiers": {
        "preset": "paper",
        "models": list(MODELS),
        "train_sets": list(TRAIN_SETS),
        "config": {},
        # HB: es-1150 + 1,000 synthetic images per plane (the 5,000), as the study's hybrid set.
        "hybrid_options": {"synthetic_config": "generated", "real_config": "es-1150", "synthetic_per_plane": 1000},
    },
    "evaluation": {"data": "african:test", "protocol": "paper", "n_bootstrap": 1000, "seed": 0},
    "compare": {
        "sets": [
            {"set": "african/all:test", "source": "african", "label": "Africa"},
            {"set": "synthetic/generated", "source": "synthetic", "label": "Synthesis"},
            {"set": "spanish/es", "source": "spanish", "label": "Spain"},
        ],
        "per_plane": 35,
        "image_size": 224,
        "weights": None,
        "bootstrap": 1000,
        "seed": 1234,
    },
    "report": {"note": ""},
}

SMOKE: dict[str, Any] = {
    "name": "smoke",
    "device": "cpu",
    "sources": {
        "procedural": {
            "spanish_per_plane": 24,
            "spanish_test_per_plane": 4,
            "spanish_seed": 0,
            "african_patients_per_country": 6,
            "african_seed": 1,
        }
    },
    "base": {"tiny": True},
    "adapters": {"tiny": {"preset": "smoke", "config": {"data_config": "lora-100", "max_steps": 6}}},
    "generations": {
        "tiny": {
            "adapter": "tiny",
            "preset": None,
            "config": {"per_plane": 4, "samplers": ["euler", "unipc"], "width": 32, "height": 32, "steps": 3,
                       "batch_size": 4, "shard_size": 40, "seed": 0},
        }
    },  # fmt: skip
    "synthetic": "tiny",
    "datasets": {
        "export": True,
        "sets": [
            {"name": "spanish", "config": "es", "options": {"source": "@spanish"}},
            {"name": "spanish", "config": "lora-100", "options": {"source": "@spanish"}},
            {"name": "african", "config": "all", "options": {"source": "@african"}},
            {"name": "synthetic", "config": "generated", "options": {"source": "@synthetic"}},
            {
                "name": "hybrid",
                "config": "es1150-generated",
                "options": {"real_source": "@spanish", "real_config": "es", "synthetic_source": "@synthetic"},
            },
        ],
    },
    "audit": {"dataset": "african", "config": "all"},
    "classifiers": {
        "preset": "smoke",
        "models": ["resnet18"],
        "train_sets": ["ES", "HB"],
        "config": {"epochs": 4},
        "hybrid_options": {"synthetic_config": "generated", "real_config": "es", "synthetic_per_plane": 8},
    },
    "evaluation": {"data": "african:test", "protocol": "paper", "n_bootstrap": 200, "seed": 0},
    "compare": None,
    "report": {"note": PHANTOM_NOTE},
}

PRESETS: dict[str, dict[str, Any]] = {"study": STUDY, "smoke": SMOKE}


def merge(base: dict, change: dict) -> dict:
    """``change`` merged into a copy of ``base``: mappings key by key, ``None`` removes, the rest replaces."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out[key] = None
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(preset: str | os.PathLike = "study", changes: dict | None = None) -> dict[str, Any]:
    """A preset's settings (``study``, ``smoke`` or a YAML file), with ``changes`` merged in.

    Raises:
        ConfigError: For an unknown preset, or a YAML file that cannot be read or is not a mapping.
    """
    name = str(preset)
    if name in PRESETS:
        settings = copy.deepcopy(PRESETS[name])
    elif name.endswith((".yaml", ".yml")):
        import yaml

        path = Path(name).expanduser()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--preset {name!r}: no such file") from None
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"--preset {name!r} is not readable YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--preset {name!r} must hold a mapping of settings; got {type(data).__name__}")
        start = data.pop("from", "study")
        if start not in PRESETS:
            raise ConfigError(f"--preset {name!r}: 'from' must be one of {', '.join(PRESETS)}; got {start!r}")
        settings = merge(PRESETS[start], data)
        settings.setdefault("name", path.stem)
        if settings.get("name") == start:
            settings["name"] = path.stem
    else:
        raise ConfigError(f"unknown study preset {name!r}; choose study, smoke or a .yaml file")
    return merge(settings, changes or {})


def _require(settings: dict, key: str, kind: type) -> Any:
    value = settings.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"study setting {key!r} must be a {kind.__name__}; got {value!r}")
    return value


def build_graph(settings: dict[str, Any]) -> Graph:
    """The study's steps from its settings, in run order.

    Raises:
        ConfigError: For a setting of the wrong shape, or one naming an adapter or generation that is not
            defined (before anything runs).
    """
    steps: list[Step] = []
    sources = _require(settings, "sources", dict)
    procedural = sources.get("procedural")
    if procedural:
        steps.append(Step("sources", "sources", procedural, {}, runner("sources", procedural), units=1,
                          label="procedural stand-ins of the published archives"))  # fmt: skip
        spanish = Output("sources", "FETAL_PLANES_ZENODO.zip")
        african = Output("sources", "Zenodo_dataset.tar.xz")
    else:
        spanish = Archive(str(sources.get("spanish") or ""), "spanish")
        african = Archive(str(sources.get("african") or ""), "african")
    base = _require(settings, "base", dict)
    base_input: dict[str, Output | Archive] = {}
    base_setting: dict[str, Any] = {}
    if base.get("tiny"):
        steps.append(Step("base", "base", {"tiny": True}, {}, runner("base", {}), label="tiny random-weight SD"))
        base_input = {"base": Output("base")}
    else:
        base_setting = {"base": str(_require(base, "model", str))}

    adapters = settings.get("adapters") or {}
    for name, spec in adapters.items():
        if spec is None:
            continue
        step_settings = {"preset": spec.get("preset", name), "config": spec.get("config") or {}, **base_setting}
        steps.append(Step(
            f"lora-{name}", "lora", step_settings, {**base_input, "spanish": spanish},
            runner("lora", step_settings), units=float(step_settings["config"].get("max_steps", 10_000)),
            label=f"LoRA adapter {name} ({step_settings['preset']}) on spanish/{step_settings['config'].get('data_config', 'lora-100')}",
            device_bound=True,
        ))  # fmt: skip
    generations = settings.get("generations") or {}
    for name, spec in generations.items():
        if spec is None:
            continue
        adapter = spec.get("adapter")
        inputs: dict[str, Output | Archive] = dict(base_input)
        if adapter is not None:
            if adapter not in adapters or adapters[adapter] is None:
                raise ConfigError(f"generation {name!r} uses adapter {adapter!r}, which is not in 'adapters'")
            inputs["adapter"] = Output(f"lora-{adapter}", "adapter")
        step_settings = {"preset": spec.get("preset"), "config": spec.get("config") or {}, **base_setting}
        images = _generation_images(step_settings)
        steps.append(Step(
            f"generate-{name}", "generate", step_settings, inputs, runner("generate", step_settings),
            units=float(images), label=f"{images} images with adapter {adapter}", device_bound=True,
        ))  # fmt: skip
    synthetic_name = settings.get("synthetic")
    synthetic = None
    if synthetic_name is not None:
        if synthetic_name not in generations or generations[synthetic_name] is None:
            raise ConfigError(f"'synthetic' names generation {synthetic_name!r}, which is not in 'generations'")
        synthetic = Output(f"generate-{synthetic_name}")
    named = {"spanish": spanish, "african": african, **({"synthetic": synthetic} if synthetic else {})}

    datasets = settings.get("datasets")
    if datasets:
        wanted = set()
        for spec in datasets["sets"]:
            for value in spec.get("options", {}).values():
                if isinstance(value, str) and value.startswith("@"):
                    if value[1:] not in named:
                        raise ConfigError(f"dataset {spec['name']}/{spec['config']} reads {value}, which is not set")
                    wanted.add(value[1:])
        steps.append(Step("datasets", "datasets", datasets, {k: named[k] for k in sorted(wanted)},
                          runner("datasets", datasets), units=float(len(datasets["sets"])),
                          label=f"{len(datasets['sets'])} sets built and exported"))  # fmt: skip
    audit = settings.get("audit")
    if audit:
        source = named.get(audit["dataset"])
        if source is None:
            raise ConfigError(f"audit: no source for dataset {audit['dataset']!r}")
        steps.append(Step("audit", "audit", audit, {"source": source}, runner("audit", audit),
                          label=f"duplicates and leakage of {audit['dataset']}/{audit['config']}"))  # fmt: skip

    classifiers = settings.get("classifiers")
    evaluation = settings.get("evaluation") or {}
    cells = []
    if classifiers:
        for train_set in classifiers["train_sets"]:
            for model in classifiers["models"]:
                hybrid = train_set.upper().startswith("HB")
                config = dict(classifiers.get("config") or {})
                if hybrid:
                    if synthetic is None:
                        raise ConfigError(f"classifier cell {model}-{train_set} needs 'synthetic' (a generation)")
                    config["dataset_options"] = {**config.get("dataset_options", {}),
                                                 **(classifiers.get("hybrid_options") or {})}  # fmt: skip
                step_settings = {"preset": classifiers["preset"], "model": model, "train_set": train_set,
                                 "config": config}  # fmt: skip
                inputs = {"spanish": spanish, **({"synthetic": synthetic} if hybrid else {})}
                cell = f"{model}-{train_set}"
                steps.append(Step(f"classifier/{cell}", "classifier", step_settings, inputs,
                                  runner("classifier", step_settings), units=1.0,
                                  label=f"{model} on {train_set}", device_bound=True))  # fmt: skip
                if evaluation:
                    eval_settings = {**evaluation, "model": model, "train_set": train_set}
                    steps.append(Step(
                        f"evaluate/{cell}", "evaluate", eval_settings,
                        {"classifier": Output(f"classifier/{cell}"), "source": african},
                        runner("evaluate", eval_settings), label=f"zero-shot on {evaluation['data']}",
                        device_bound=True,
                    ))  # fmt: skip
                    cells.append(cell)
    compare = settings.get("compare")
    if compare:
        inputs = {}
        for spec in compare["sets"]:
            if spec["source"] not in named:
                raise ConfigError(f"compare: set {spec['set']!r} reads source {spec['source']!r}, which is not set")
            inputs[spec["source"]] = named[spec["source"]]
        steps.append(Step("compare", "compare", compare, inputs, runner("compare", compare),
                          units=float(len(compare["sets"])), label="t-SNE figure and FID/KID per plane",
                          device_bound=True))  # fmt: skip
    report = dict(settings.get("report") or {})
    report_inputs = {name: Output(step.name) for step in steps for name in [step.name]}
    report_settings = {**report, "preset": settings.get("name"), "cells": cells}
    steps.append(Step("report", "report", report_settings, report_inputs, runner("report", report_settings),
                      label="report.md and report.html"))  # fmt: skip
    publish = settings.get("publish")
    if publish:
        if not isinstance(publish.get("org"), str) or not publish["org"] or "/" in publish["org"]:
            raise ConfigError(f"publish.org (--push-to) must be a Hub user or organisation; got {publish.get('org')!r}")
        inputs = {s.name: Output(s.name) for s in steps if s.kind in ("lora", "classifier", "datasets")}
        inputs["report"] = Output("report")  # published last, once the report is written
        steps.append(Step("publish", "publish", publish, inputs, runner("publish", publish),
                          label=f"datasets, adapters and classifiers pushed to {publish['org']}"))  # fmt: skip
    return Graph(steps, settings)


def _generation_images(step_settings: dict) -> int:
    from fulora_data.generation.config import PRESETS as GENERATE_PRESETS
    from fulora_data.taxonomy import PLANES

    values = {"planes": PLANES, "per_plane": 10, "samplers": ("euler", "unipc")}
    if step_settings.get("preset"):
        if step_settings["preset"] not in GENERATE_PRESETS:
            raise ConfigError(f"unknown generation preset {step_settings['preset']!r}")
        values.update(GENERATE_PRESETS[step_settings["preset"]])
    values.update(step_settings["config"])
    return len(values["planes"]) * int(values["per_plane"]) * len(values["samplers"])


def counts(graph: Graph) -> dict[str, int]:
    """How many adapters, images and classifier runs the graph makes (the plan's headline)."""
    steps = graph.steps.values()
    return {
        "adapters": sum(1 for s in steps if s.kind == "lora"),
        "images": int(sum(s.units for s in steps if s.kind == "generate")),
        "classifier_runs": sum(1 for s in steps if s.kind == "classifier"),
        "evaluations": sum(1 for s in steps if s.kind == "evaluate"),
        "steps": len(graph.steps),
    }
