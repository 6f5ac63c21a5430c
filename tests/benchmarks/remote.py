"""Code the benchmarks run on their schedulers and workers, pickled by value
(those processes cannot import the tests).

`LossCounter`, a scheduler plugin, counts every transition of a watched key out of state "memory"
to anything else while the benchmark's client still holds it. A retirement
that first moves a worker's data elsewhere causes none; a worker that leaves
holding the only copy causes one per key (the scheduler then recomputes it,
which is why the final results alone would not show the loss).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin

NAME = "benchmark-loss-counter"


class LossCounter(SchedulerPlugin):
    name = NAME

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lost: set[str] = set()
        self.counting = True

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if self.counting and start == "memory" and finish != "memory" and str(key).startswith(self.prefix):
            self.lost.add(str(key))


def result_task():
    """The task: a result of `size` bytes, distinct per i. Made at run time, so
    Dask's pickle (which tries the standard pickle, by reference, first) falls
    back to cloudpickle, by value."""
    def result(i: int, size: int) -> bytes:
        return i.to_bytes(4, "little") * (size // 4)
    return result


def in_memory(dask_scheduler, prefix: str) -> int:
    """Run on the scheduler: how many keys with this prefix are held in memory now."""
    return sum(ts.state == "memory" for key, ts in dask_scheduler.tasks.items() if str(key).startswith(prefix))


def lost_keys(dask_scheduler) -> int:
    """Run on the scheduler: how many watched keys left memory; stops counting."""
    plugin = dask_scheduler.plugins[NAME]
    plugin.counting = False
    return len(plugin.lost)
