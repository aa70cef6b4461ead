"""The builders' thread pool for image checks (fulora_data/builders/base.py ``in_order``)."""

from __future__ import annotations

import threading
import time

import pytest

from fulora_data.builders.base import in_order
from fulora_data.errors import DataError


def test_in_order_keeps_the_order_and_uses_several_threads():
    seen = set()

    def slow_square(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.002 * (x % 3))  # later items often finish first
        return x * x

    assert list(in_order(slow_square, range(60), threads=4)) == [x * x for x in range(60)]
    assert len(seen) > 1 and all(name.startswith("fulora-check") for name in seen)


def test_in_order_raises_a_checks_error_at_its_item_and_stops():
    produced = []

    def check(x: int) -> int:
        if x == 7:
            raise DataError("image 7 does not decode")
        return x

    with pytest.raises(DataError, match="image 7"):
        for value in in_order(check, range(1000), threads=3):
            produced.append(value)
    assert produced == list(range(7))
