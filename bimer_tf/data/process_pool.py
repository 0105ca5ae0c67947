"""Run one function over many items on a pool of worker processes.

The offline data tools (`prepare`, `augment_audio`) spend their time in
per-file work (decoding, resampling, writing WAVs) that needs no shared
state, so they spread it over processes:

    for result in map_in_processes(work, items, workers=available_cpus()):
        ...

With one worker everything runs in this process, one item after the other.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterator, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cpus() -> int:
    """The cores this process may run on: the default number of workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_in_processes(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    *,
    ordered: bool = True,
    chunksize: int = 1,
) -> Iterator[Result]:
    """Yields `function(item)` for every item, each as soon as it is done.

    With `workers` <= 1 the items run here, in order. Otherwise a pool of
    `workers` processes runs them: results come in input order when `ordered`,
    else in the order they finish. `function` and the items must pickle
    (`function` defined at a module's top level). An exception raised by
    `function` stops the work and is raised here, the same type with the
    same message, whichever process it happened in; the pool's processes are
    ended then, and when the caller stops iterating early.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    # "spawn", not "fork": the caller may have TensorFlow or BLAS threads
    # running, and forking a process while its threads run can deadlock the child.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        run = pool.imap if ordered else pool.imap_unordered
        yield from run(function, items, chunksize=chunksize)
