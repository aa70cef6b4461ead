"""The FU-LoRA study as one resumable workflow, and the study's classifier grid.

- ``plan_study`` / ``run_study`` (``fulora study plan|run``): the study as a graph of steps, from the
  archives and a base model to the results table beside the published one and a report
  (``graph``, ``presets``, ``steps``, ``run``, ``report``, ``estimates``).
- ``run_grid`` (``scripts/reproduce_grid.py``): the 5 x 4 classifier grid alone (``grid``).
"""

from __future__ import annotations

from fulora_data.study.grid import METRICS, MODELS, cell_dir, comparison_table, run_grid

__all__ = ["METRICS", "MODELS", "cell_dir", "comparison_table", "plan_study", "run_grid", "run_study"]


def plan_study(*args, **kwargs):
    """See ``fulora_data.study.run.plan_study``."""
    from fulora_data.study.run import plan_study as plan

    return plan(*args, **kwargs)


def run_study(*args, **kwargs):
    """See ``fulora_data.study.run.run_study``."""
    from fulora_data.study.run import run_study as run

    return run(*args, **kwargs)
