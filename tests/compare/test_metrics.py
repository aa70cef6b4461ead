"""Bootstrap intervals of fulora_data/compare/metrics.py: they contain the estimate they bracket."""

from __future__ import annotations

import numpy as np
import pytest

from fulora_data.compare.metrics import (
    bootstrap_interval,
    compare_features,
    frechet_distance,
    kernel_inception_distance,
)


@pytest.mark.parametrize("images, dims", [(35, 2048), (60, 8)], ids=["gram-route", "plain-route"])
def test_a_set_against_itself_gives_fid_zero_inside_its_interval(images, dims):
    x = np.random.default_rng(0).normal(size=(images, dims)) * 0.5 + 1.0
    result = compare_features(x, x, bootstrap=50, seed=0)
    assert result["fid"] == pytest.approx(0.0, abs=1e-9)
    low, high = result["fid_interval"]
    assert low == 0.0 and high > 0.0  # floored at 0 (a distance) and still a spread
    kid_low, kid_high = result["kid_interval"]
    assert kid_low <= result["kid"] <= kid_high


def test_intervals_of_two_different_sets_contain_both_estimates():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(35, 2048)), rng.normal(0.2, 1.1, size=(35, 2048))
    result = compare_features(x, y, bootstrap=50, seed=0)
    assert result["fid_interval"][0] <= result["fid"] <= result["fid_interval"][1]
    assert result["kid_interval"][0] <= result["kid"] <= result["kid_interval"][1]


def test_plain_bootstrap_interval_contains_the_estimate_and_keeps_the_replicates_spread():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 6)), rng.normal(0.3, 1.0, size=(30, 6))
    for statistic in (frechet_distance, kernel_inception_distance):
        estimate = statistic(x, y)
        low, high = bootstrap_interval(x, y, statistic, replicates=40, seed=5)
        assert low <= estimate <= high
        # The width is the replicates' own 2.5-97.5 % spread (the re-centring moves, never stretches).
        draws = np.random.default_rng(5)
        values = [statistic(x[draws.integers(0, 30, 30)], y[draws.integers(0, 30, 30)]) for _ in range(40)]
        q_low, q_high = np.percentile(values, [2.5, 97.5])
        assert high - low == pytest.approx(q_high - q_low, rel=1e-9)
