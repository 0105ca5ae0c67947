"""The process pool of the offline data tools: order, errors, worker count."""

from __future__ import annotations

import time

import pytest

from bimer_tf.data.process_pool import available_cpus, map_in_processes


def slow_square(number: int) -> int:
    """Earlier items take longer, so finishing order is the reverse of input order."""
    time.sleep(0.05 * (4 - number))
    return number * number


def fail_on_two(number: int) -> int:
    if number == 2:
        raise ValueError(f"item {number} is broken")
    return number


def test_available_cpus_is_a_positive_count():
    assert available_cpus() >= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_in_input_order(workers):
    assert list(map_in_processes(slow_square, [0, 1, 2, 3], workers)) == [0, 1, 4, 9]


def test_unordered_results_are_all_there():
    assert sorted(map_in_processes(slow_square, [0, 1, 2, 3], 2, ordered=False)) == [0, 1, 4, 9]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_error_is_raised_not_swallowed(workers):
    with pytest.raises(ValueError, match="item 2 is broken"):
        list(map_in_processes(fail_on_two, [0, 1, 2, 3], workers))
