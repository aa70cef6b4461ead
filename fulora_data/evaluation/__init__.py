"""Zero-shot evaluation of fetal-plane classifiers: the study's protocol and a standard one.

Public API:

* ``score(references, predictions, *, label_names, ...)``: metrics under ``paper`` or ``standard``
  (definitions in ``fulora_data.evaluation.metrics``).
* ``read_predictions(path)``: a checked predictions CSV (format in ``fulora_data.evaluation.predictions``).
* ``write_report(result, out_dir, *, model_name=None, train_set=None)``: a Markdown report with a
  confusion-matrix PNG, beside the study's published row.
* ``evaluate_predictions(path, ...)`` and ``evaluate_checkpoint(checkpoint, data_spec, ...)``: what the
  ``fulora evaluate`` commands run; ``evaluate_split(checkpoint, dataset, ...)``: a classifier run on one
  split and scored (what ``evaluate_checkpoint`` and the study's grid share).
* ``load_metric(protocol="paper")``: the same metrics as an ``evaluate`` metric, loaded from the local
  script ``ZERO_SHOT_METRIC_PATH`` with no Hub access.

Importing this package needs only numpy; scikit-learn, matplotlib and evaluate are imported when used.
"""

from __future__ import annotations

from pathlib import Path

from fulora_data.evaluation.metrics import PROTOCOLS, score
from fulora_data.evaluation.predictions import read_predictions
from fulora_data.evaluation.reference import paper_results, published_row
from fulora_data.evaluation.report import format_summary, write_report
from fulora_data.evaluation.run import (
    evaluate_checkpoint,
    evaluate_predictions,
    evaluate_split,
)

ZERO_SHOT_METRIC_PATH = Path(__file__).with_name("zero_shot.py")
"""The ``evaluate`` metric script; ``evaluate.load(str(ZERO_SHOT_METRIC_PATH))`` works offline."""


def load_metric(protocol: str = "paper", **kwargs):
    """Load the ``zero_shot`` metric through ``evaluate.load`` from the local script, offline.

    Args:
        protocol: ``"paper"`` or ``"standard"`` (the metric's config name).
        **kwargs: Passed to ``evaluate.load`` (default ``keep_in_memory=True``).

    Returns:
        An ``evaluate.EvaluationModule``.

    Raises:
        ConfigError: If the protocol is unknown.
        MissingExtraError: If ``evaluate`` is not installed.
    """
    from fulora_data.errors import ConfigError, require

    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    evaluate = require("evaluate", "eval")
    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(ZERO_SHOT_METRIC_PATH), protocol, **kwargs)


__all__ = [
    "PROTOCOLS",
    "ZERO_SHOT_METRIC_PATH",
    "evaluate_checkpoint",
    "evaluate_predictions",
    "evaluate_split",
    "format_summary",
    "load_metric",
    "paper_results",
    "published_row",
    "read_predictions",
    "score",
    "write_report",
]
