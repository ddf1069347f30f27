"""The multilingual benchmarks a study's targets can be averaged into (XTREME, XTREME-R).

A benchmark is its task slots in its paper's order and the name of the language set it scores
(``TaskInfo.language_sets``); which task fills a slot, under which other names and by which
metric, each task declares on its ``TaskInfo`` (``benchmark_slot``, ``benchmark_aliases``,
``benchmark_metric``). Torch-free: the report and the planner read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    #: the ``TaskInfo.language_sets`` entry holding the languages the benchmark averages
    language_set: str
    slots: tuple[str, ...]


BENCHMARKS = (
    Benchmark("XTREME", "xtreme", ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa",
                                   "bucc", "tatoeba")),
    Benchmark("XTREME-R", "xtreme_r", ("xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa",
                                       "mewslix", "lareqa", "tatoeba")),
)


def _declared() -> dict[str, list[tuple[str, tuple[str, ...], str]]]:
    """Slot -> (task, its aliases, its benchmark metric) of every task that declares the slot,
    the task named like the slot first."""
    from trainables.tasks import task_info, task_names

    known = {slot for bench in BENCHMARKS for slot in bench.slots}
    slots: dict[str, list[tuple[str, tuple[str, ...], str]]] = {}
    for name in task_names():
        info = task_info(name)
        if not info.benchmark_slot:
            continue
        if info.benchmark_slot not in known:
            raise ValueError(f"task {name}: benchmark_slot {info.benchmark_slot!r} is no slot of "
                             f"{', '.join(b.name for b in BENCHMARKS)} (slots: {', '.join(sorted(known))})")
        slots.setdefault(info.benchmark_slot, []).append((name, info.benchmark_aliases,
                                                          info.benchmark_metric))
    for slot, fillers in slots.items():
        fillers.sort(key=lambda filler: filler[0] != slot)  # stable: then by task name
    return slots


def benchmark_slots() -> dict[str, tuple[tuple[str, ...], ...]]:
    """Benchmark -> its slots in order, each the task names that fill it (aliases after the
    tasks): the report's benchmark columns."""
    declared = _declared()
    out = {}
    for bench in BENCHMARKS:
        missing = [slot for slot in bench.slots if slot not in declared]
        if missing:
            raise ValueError(f"benchmark {bench.name}: no task declares benchmark_slot {missing}")
        out[bench.name] = tuple(tuple([task for task, _, _ in declared[slot]]
                                      + [alias for _, aliases, _ in declared[slot] for alias in aliases])
                                for slot in bench.slots)
    return out


def benchmark_metrics() -> dict[str, str]:
    """Task name (aliases included) -> the metric benchmarks average for it, where declared."""
    return {name: metric for fillers in _declared().values() for task, aliases, metric in fillers
            if metric for name in (task, *aliases)}


def benchmark_language_sets() -> dict[str, str]:
    """Benchmark -> the name of its languages' set in ``TaskInfo.language_sets``."""
    return {bench.name: bench.language_set for bench in BENCHMARKS}
