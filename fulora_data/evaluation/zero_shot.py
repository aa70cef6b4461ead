"""``zero_shot``: an ``evaluate`` metric for fetal-plane classifiers tested zero-shot (FU-LoRA).

A thin wrapper over ``fulora_data.evaluation.metrics.score``; the numbers come from scikit-learn. It is a
metric *script* that ``evaluate.load`` runs from this local file, so it needs no Hub access::

    import evaluate
    from fulora_data.evaluation import load_metric, ZERO_SHOT_METRIC_PATH

    metric = load_metric(protocol="paper")  # or: evaluate.load(str(ZERO_SHOT_METRIC_PATH), "paper")
    metric.compute(references=[1, 2, 3], predictions=[1, 0, 3], countries=["Ghana"] * 3)

The config name is the protocol (``paper``, the default, or ``standard``; see ``metrics``).
``evaluate`` imports this file as a standalone module, which is why it imports ``evaluate`` at the top
(the metric class must subclass ``evaluate.Metric``) and reaches the package by absolute imports: the
``fulora`` package must be importable where the metric is loaded. Nothing in ``fulora_data`` imports this
module, so ``import fulora_data`` never needs ``evaluate``.
"""

from __future__ import annotations

import datasets
import evaluate

from fulora_data.errors import ConfigError
from fulora_data.evaluation.metrics import PROTOCOLS, score
from fulora_data.taxonomy import PLANES

_CITATION = """\
@inproceedings{wang2024fulora,
  title     = {Generative Diffusion Model Bootstraps Zero-shot Classification of Fetal Ultrasound Images
               In Underrepresented African Populations},
  author    = {Wang, Fangyijie and others},
  booktitle = {Perinatal, Preterm and Paediatric Image Analysis (PIPPI), MICCAI},
  year      = {2024},
  note      = {arXiv:2407.20072}
}
"""

_DESCRIPTION = """\
Zero-shot classification scores of fetal ultrasound plane classifiers, under the FU-LoRA study's protocol
(`paper`: macro metrics over the classes present in the references and the study's hard-label AUC) or a
`standard` one (macro metrics over all classes, balanced accuracy, one-vs-rest AUC from probabilities,
bootstrap confidence intervals). Both give results per country when countries are passed.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted label indices.
    references (`list` of `int`): true label indices.
    label_names (`list` of `str`, optional): the model's classes in label order; default the study's five
        planes (Other, Fetal abdomen, Fetal brain, Fetal femur, Fetal thorax).
    probabilities (`list` of `list` of `float`, optional): class probabilities per image (rows sum to 1).
    countries (`list` of `str`, optional): country of each image, for per-country results.
    patient_ids (`list` of `str`, optional): patient of each image; bootstrap then resamples patients.
    n_bootstrap (`int`, optional): bootstrap resamples for `standard` confidence intervals (default 1000).
    seed (`int`, optional): bootstrap seed (default 0).
Returns:
    A dict with `accuracy`, `recall`, `precision`, `f1`, `auc` (fractions), `per_class`, `per_country`,
    `confusion_matrix`, `protocol`, `n` and, for `standard`, `balanced_accuracy` and `ci`.
Examples:
    >>> metric = evaluate.load("fulora_data/evaluation/zero_shot.py", "paper")
    >>> metric.compute(references=[1, 1, 2, 2], predictions=[1, 0, 2, 2])["accuracy"]
    0.75
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroShot(evaluate.Metric):
    """Zero-shot fetal-plane classification metric with the ``paper`` and ``standard`` protocols."""

    def _info(self) -> evaluate.MetricInfo:
        protocol = self.protocol
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"unknown evaluation protocol {self.config_name!r}; expected one of {', '.join(PROTOCOLS)}"
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/2407.20072", "https://github.com/13204942/FU-LoRA"],
            license="MIT",
        )

    @property
    def protocol(self) -> str:
        """The protocol this metric computes: its config name, ``paper`` by default."""
        return "paper" if self.config_name == "default" else self.config_name

    def _compute(
        self,
        predictions,
        references,
        label_names=None,
        probabilities=None,
        countries=None,
        patient_ids=None,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> dict:
        return score(
            references,
            predictions,
            label_names=list(PLANES) if label_names is None else label_names,
            probabilities=probabilities,
            countries=countries,
            patient_ids=patient_ids,
            protocol=self.protocol,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
