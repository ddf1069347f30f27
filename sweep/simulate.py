"""A discrete-event simulation of a study on ``slots`` identical trial slots (GPUs).

``dag`` is what ``sweep.scheduler.DagSearcher`` does (a job's trials are released when its
dependencies finish, longest remaining path first); ``stages`` is the engine's former order
(every intermediate job, then every target job; grid trials in Tune batches of at most 400
that end together; each searched job alone, one after another). ``sweep status`` uses ``dag``
for its ETA; ``bench/bench_scheduler.py`` compares both against the lower bound.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass
class SimJob:
    id: str
    stage: str
    depends_on: tuple[str, ...]
    seconds: float            # one trial
    trials: int = 1
    concurrency: int | None = None   # a searched job's max_concurrent (None: as many as fit)
    searched: bool = False


def longest_paths(jobs: list[SimJob]) -> dict[str, float]:
    dependents: dict[str, list[str]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.depends_on:
            if d in dependents:
                dependents[d].append(j.id)
    path: dict[str, float] = {}

    def length(job: SimJob) -> float:
        waves = -(-job.trials // (job.concurrency or job.trials))
        return job.seconds * waves

    for j in reversed(jobs):  # jobs come in topological order
        path[j.id] = length(j) + max((path[d] for d in dependents[j.id]), default=0.0)
    return path


def lower_bound(jobs: list[SimJob], slots: int) -> float:
    """max(critical path, total work / slots)."""
    work = sum(j.seconds * j.trials for j in jobs)
    return max(max(longest_paths(jobs).values(), default=0.0), work / slots)


def simulate_dag(jobs: list[SimJob], slots: int) -> float:
    """Makespan of dependency-driven, longest-path-first scheduling."""
    path = longest_paths(jobs)
    order = {j.id: i for i, j in enumerate(jobs)}
    waiting = {j.id: sum(1 for d in j.depends_on if d in order) for j in jobs}
    dependents: dict[str, list[str]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.depends_on:
            if d in dependents:
                dependents[d].append(j.id)
    by_id = {j.id: j for j in jobs}
    left = {j.id: j.trials for j in jobs}        # trials not yet started
    open_ = {j.id: j.trials for j in jobs}       # trials not yet finished
    running = {j.id: 0 for j in jobs}
    ready = [(-path[j.id], order[j.id], j.id) for j in jobs if waiting[j.id] == 0]
    heapq.heapify(ready)
    events: list[tuple[float, str]] = []
    now, free = 0.0, slots
    parked: list[tuple[float, int, str]] = []
    while ready or events:
        while free and ready:
            item = heapq.heappop(ready)
            job = by_id[item[2]]
            if job.concurrency and running[job.id] >= job.concurrency:
                parked.append(item)
                continue
            left[job.id] -= 1
            running[job.id] += 1
            free -= 1
            heapq.heappush(events, (now + job.seconds, job.id))
            if left[job.id]:
                heapq.heappush(ready, item)
        if not events:
            break
        now, job_id = heapq.heappop(events)
        free += 1
        running[job_id] -= 1
        open_[job_id] -= 1
        for item in parked:
            heapq.heappush(ready, item)
        parked = []
        if open_[job_id] == 0:
            for d in dependents[job_id]:
                waiting[d] -= 1
                if waiting[d] == 0:
                    heapq.heappush(ready, (-path[d], order[d], d))
    return now


def _fifo(trials: list[tuple[str, float]], slots: int, start: float, cap: int | None = None) -> float:
    """Trials in order on ``slots`` (at most ``cap`` at once); when the last one ends."""
    cap = min(slots, cap or slots)
    ends = [start] * cap
    heapq.heapify(ends)
    last = start
    for _, seconds in trials:
        t = heapq.heappop(ends)
        heapq.heappush(ends, t + seconds)
        last = max(last, t + seconds)
    return last


def simulate_stages(jobs: list[SimJob], slots: int, batch: int = 400) -> float:
    """Makespan of the former order: stage barriers, 400-trial batch barriers, one search at a time."""
    now = 0.0
    for stages in (("intermediate",), ("target", "eval")):
        grid = [(j.id, j.seconds) for j in jobs if j.stage in stages and not j.searched for _ in range(j.trials)]
        for start in range(0, len(grid), batch):
            now = _fifo(grid[start:start + batch], slots, now)
        for j in jobs:
            if j.stage in stages and j.searched:
                now = _fifo([(j.id, j.seconds)] * j.trials, slots, now, j.concurrency)
    return now
