"""Dependency-driven scheduling of a whole study in one Ray Tune experiment.

``DagSearcher`` is a Ray Tune ``Searcher`` that knows the plan: ``suggest()`` hands Tune the next
trial of a *ready* job (every job it depends on has finished), the ready job with the longest
remaining path first (the cost model's seconds along the job's longest chain of dependents).
It returns ``None`` while nothing is ready or the cluster is full (Tune asks again), and
``Searcher.FINISHED`` once every trial is issued. There are no stage or batch barriers: a target
starts the moment its intermediate job is recorded, a baseline target at once.

Each job hands out its trials through a queue: ``GridQueue`` (a fixed list) or ``OptunaQueue``
(an Optuna study per job, ask/tell, seeded by the job, with its own ``num_samples`` and
``max_concurrent``), so searched jobs run side by side. ``PerJobScheduler`` gives every job its
own ASHA brackets, so tasks with different metric scales never compete.

Trials in flight are bounded by the cluster's resources as the searcher counts them: a trial's
demand is its workers' CPUs/GPUs (a multi-worker trial reserves only 0.1 CPU in Tune itself, its
Ray Train workers the rest), so a study of any size never queues more than fits.
"""
from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from typing import Any, Callable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from sweep.costs import CostModel

log = logging.getLogger(__name__)

CAPACITY_REFRESH_S = 5.0
PRIORITY_REFRESH_S = 30.0


def trial_demand(resources: dict) -> dict[str, float]:
    """What one trial holds while it runs: its workers' CPUs and GPUs (plus the launcher's
    0.1 CPU of a multi-worker trial)."""
    workers = int(resources.get("workers", 1) or 1)
    cpu, gpu = float(resources.get("cpu", 1) or 0), float(resources.get("gpu", 0) or 0)
    demand = {"CPU": cpu * workers + (0.1 if workers > 1 else 0.0)}
    if gpu:
        demand["GPU"] = gpu * workers
    return demand


class GridQueue:
    """A job's fixed trial configs, handed out in order."""

    def __init__(self, configs: list[dict], max_concurrent: int | None = None):
        self.pending = deque(configs)
        self.max_concurrent = max_concurrent
        self.running = 0

    def next(self) -> dict | None:
        if not self.pending or (self.max_concurrent and self.running >= self.max_concurrent):
            return None
        self.running += 1
        return self.pending.popleft()

    @property
    def exhausted(self) -> bool:
        return not self.pending

    @property
    def expected(self) -> int:
        return len(self.pending) + self.running

    def complete(self, key: str, result: dict | None, error: bool) -> None:
        self.running -= 1


def optuna_distributions(space: dict) -> dict:
    """The searched part of a job's space (``{"grid": ...}`` or ``{"distribution": ...}``) as
    Optuna distributions; fixed values are not searched."""
    import optuna.distributions as d

    out = {}
    for name, value in sorted(space.items()):
        if not isinstance(value, dict):
            continue
        if "grid" in value:
            out[name] = d.CategoricalDistribution(list(value["grid"]))
        elif value["distribution"] == "choice":
            out[name] = d.CategoricalDistribution(list(value["values"]))
        elif value["distribution"] == "uniform":
            out[name] = d.FloatDistribution(value["low"], value["high"])
        elif value["distribution"] == "loguniform":
            out[name] = d.FloatDistribution(value["low"], value["high"], log=True)
        elif value["distribution"] == "randint":
            out[name] = d.IntDistribution(int(value["low"]), int(value["high"]))
    return out


class OptunaQueue:
    """One job's Optuna study through ask/tell: exactly ``num_samples`` trials in all.

    ``known`` lists the job's trials from earlier runs, ``(name, params, state, value)`` with
    state ``complete`` / ``fail`` / ``stopped`` (told to the study again) or ``issued`` (cut off:
    asked again with the same values, so it continues from its resume state).
    ``make_config(name, params)`` builds a trial's config; ``record(name, params)`` keeps a new
    trial's values before it starts (for the next resume).
    """

    def __init__(self, space: dict, *, seed: int, metric: str, mode: str, num_samples: int,
                 make_config: Callable[[str, dict], dict], record: Callable[[str, dict], None],
                 known: list[tuple[str, dict, str, float | None]] = (), max_concurrent: int | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric, self.mode = metric, mode
        self.num_samples, self.max_concurrent = num_samples, max_concurrent
        self.make_config, self.record = make_config, record
        self.distributions = optuna_distributions(space)
        self.study = optuna.create_study(direction="maximize" if mode == "max" else "minimize",
                                         sampler=optuna.samplers.TPESampler(seed=seed))
        self.names: list[str] = []
        self._again: deque[str] = deque()
        self._asked: dict[str, Any] = {}
        for name, params, state, value in known:
            self.names.append(name)
            if state == "issued":
                self.study.enqueue_trial(params)
                self._again.append(name)
            else:
                self._tell_known(params, state, value)
        self.running = 0
        self.told = len(self.names) - len(self._again)

    def _tell_known(self, params: dict, state: str, value: float | None) -> None:
        from optuna.trial import TrialState, create_trial

        params = {k: v for k, v in params.items() if k in self.distributions}
        ok = state in ("complete", "stopped") and value is not None
        self.study.add_trial(create_trial(params=params, distributions=self.distributions,
                                          value=value if ok else None,
                                          state=TrialState.COMPLETE if ok else TrialState.FAIL))

    @property
    def exhausted(self) -> bool:
        return not self._again and len(self.names) >= self.num_samples

    @property
    def expected(self) -> int:
        return self.num_samples - self.told

    def next(self) -> dict | None:
        if self.exhausted or (self.max_concurrent and self.running >= self.max_concurrent):
            return None
        trial = self.study.ask(self.distributions)
        if self._again:  # an interrupted trial: same name, same values (enqueued)
            name = self._again.popleft()
        else:
            name = f"s{len(self.names):03d}"
            self.names.append(name)
            self.record(name, dict(trial.params))
        self.running += 1
        config = self.make_config(name, dict(trial.params))
        self._asked[config["trial"]["trial_id"]] = trial
        return config

    def complete(self, key: str, result: dict | None, error: bool) -> None:
        from optuna.trial import TrialState

        self.running -= 1
        self.told += 1
        trial = self._asked.pop(key, None)
        if trial is None:
            return
        value = (result or {}).get(self.metric)
        if error or not isinstance(value, (int, float)):
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, float(value))


class _Node:
    __slots__ = ("job", "waiting_on", "state", "queue", "path", "in_flight")

    def __init__(self, job):
        self.job = job
        self.waiting_on = 0
        self.state = "waiting"   # waiting | ready | active | done | failed | blocked
        self.queue = None
        self.path = 0.0
        self.in_flight = 0


class DagSearcher(Searcher):
    """Hands Tune the trials of a study's jobs as their dependencies finish (see the module doc).

    ``start_job(job) -> queue`` builds a ready job's trial queue (the runner knows ``init_from``
    then); ``job_done(job_id, ok)`` (called by the runner once a job is recorded) releases its
    dependents, or blocks them (``on_blocked(job)``). ``capacity()`` gives the cluster's
    ``{"CPU", "GPU"}``; ``demand(job)`` one trial's share of it; ``trials(job)`` and
    ``concurrency(job)`` shape the job's length in the longest-path priority.
    """

    def __init__(self, jobs: list, *, start_job: Callable, demand: Callable[[Any], dict],
                 capacity: Callable[[], dict], on_blocked: Callable | None = None,
                 cost_model: CostModel | None = None, trials: Callable[[Any], int] = lambda j: 1,
                 concurrency: Callable[[Any], int] = lambda j: 1, max_in_flight: int | None = None,
                 on_change: Callable[["DagSearcher"], None] | None = None, clock=time.monotonic):
        super().__init__()
        self.nodes = {j.id: _Node(j) for j in jobs}
        self.start_job, self.demand, self.capacity = start_job, demand, capacity
        self.on_blocked, self.on_change, self.clock = on_blocked, on_change, clock
        self.costs = cost_model or CostModel()
        self.trials, self.concurrency = trials, concurrency
        self.max_in_flight = max_in_flight
        self.dependents: dict[str, list[str]] = {j.id: [] for j in jobs}
        for job in jobs:
            for dep in job.depends_on:
                if dep in self.nodes:
                    self.dependents[dep].append(job.id)
                    self.nodes[job.id].waiting_on += 1
        self.order = {j.id: i for i, j in enumerate(jobs)}
        self.live: dict[str, tuple[str, str, dict]] = {}   # Tune trial id -> (job id, key, demand)
        self.used: dict[str, float] = {}
        self.started: dict[str, float] = {}                # Tune trial id -> when issued
        self._cap, self._cap_at = {}, -1e18
        self._heap: list[tuple[float, int, str]] = []
        self._parked: set[str] = set()                     # active jobs at their max_concurrent
        self._paths_at = self.clock()
        self._compute_paths()
        for node in self.nodes.values():
            if node.waiting_on == 0:
                self._make_ready(node)

    # ------------------------------------------------------------------ priority
    def job_seconds(self, job) -> float:
        """The job's length on the critical path: its trials in waves of its concurrency."""
        waves = -(-max(1, self.trials(job)) // max(1, self.concurrency(job)))
        return self.costs.seconds(job) * waves

    def _compute_paths(self) -> None:
        for job_id in sorted(self.nodes, key=self.order.get, reverse=True):  # plan order is topological
            node = self.nodes[job_id]
            tail = max((self.nodes[d].path for d in self.dependents[job_id]), default=0.0)
            node.path = self.job_seconds(node.job) + tail

    def _push(self, node: _Node) -> None:
        heapq.heappush(self._heap, (-node.path, self.order[node.job.id], node.job.id))

    def _refresh_priorities(self) -> None:
        if self.clock() - self._paths_at < PRIORITY_REFRESH_S:
            return
        self._paths_at = self.clock()
        self._compute_paths()
        self._heap = [(-self.nodes[j].path, o, j) for _, o, j in self._heap]
        heapq.heapify(self._heap)

    def _make_ready(self, node: _Node) -> None:
        node.state = "ready"
        self._push(node)

    # ------------------------------------------------------------------ resources
    def _capacity(self) -> dict:
        now = self.clock()
        if now - self._cap_at >= CAPACITY_REFRESH_S:  # nodes that join raise it
            self._cap, self._cap_at = dict(self.capacity()), now
        return self._cap

    def _fits(self, demand: dict) -> bool:
        if not self.live:
            return True  # one trial always goes (an infeasible one is Ray's to report)
        cap = self._capacity()
        return all(self.used.get(r, 0.0) + v <= cap.get(r, 0.0) + 1e-9 for r, v in demand.items())

    # ------------------------------------------------------------------ Searcher
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        if self.max_in_flight and len(self.live) >= self.max_in_flight:
            return None
        self._refresh_priorities()
        while self._heap:
            _, _, job_id = self._heap[0]
            node = self.nodes[job_id]
            if node.state not in ("ready", "active"):
                heapq.heappop(self._heap)
                continue
            demand = self.demand(node.job)
            if not self._fits(demand):
                return None  # strict priority: the longest path waits for room, nothing jumps it
            heapq.heappop(self._heap)
            if node.queue is None:
                node.state = "active"
                node.queue = self.start_job(node.job)
                if node.state != "active":  # the job was recorded at once (nothing left to run)
                    continue
            config = node.queue.next()
            if config is None:
                if not node.queue.exhausted:
                    self._parked.add(job_id)  # at its max_concurrent: back when a trial ends
                continue
            self.live[trial_id] = (job_id, config["trial"]["trial_id"], demand)
            self.started[trial_id] = self.clock()
            for r, v in demand.items():
                self.used[r] = self.used.get(r, 0.0) + v
            node.in_flight += 1
            if not node.queue.exhausted:
                self._push(node)
            log.info("trial %s of %s (%s) issued: remaining path %.0f s, %d in flight",
                     config["trial"]["trial_id"], job_id, node.job.label, node.path, len(self.live))
            self._changed()
            return config
        if self.pending_jobs() == 0:
            return Searcher.FINISHED
        return None

    def pending_jobs(self) -> int:
        """Jobs that may still issue a trial."""
        return sum(1 for n in self.nodes.values()
                   if n.state in ("waiting", "ready") or
                   (n.state == "active" and n.queue is not None and not n.queue.exhausted))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        entry = self.live.pop(trial_id, None)
        if entry is None:
            return
        job_id, key, demand = entry
        for r, v in demand.items():
            self.used[r] = self.used.get(r, 0.0) - v
        node = self.nodes[job_id]
        node.in_flight -= 1
        if node.queue is not None:
            node.queue.complete(key, result, error)
        started = self.started.pop(trial_id, None)
        seconds = (result or {}).get("time_total_s") or (self.clock() - started if started else None)
        if not error and seconds:
            self.costs.observe(node.job, float(seconds))
        if job_id in self._parked:
            self._parked.discard(job_id)
            if node.state == "active" and not node.queue.exhausted:
                self._push(node)
        self._changed()

    def job_done(self, job_id: str, ok: bool) -> None:
        """The runner recorded the job (finished, or failed): release or block its dependents."""
        node = self.nodes.get(job_id)
        if node is None or node.state in ("done", "failed", "blocked"):
            return
        node.state = "done" if ok else "failed"
        if not node.in_flight:
            node.queue = None  # a finished job's search state goes: memory stays flat
        for dep_id in self.dependents[job_id]:
            dep = self.nodes[dep_id]
            if ok:
                dep.waiting_on -= 1
                if dep.waiting_on == 0 and dep.state == "waiting":
                    self._make_ready(dep)
            else:
                self._block(dep)
        self._changed()

    def _block(self, node: _Node) -> None:
        if node.state in ("done", "failed", "blocked"):
            return
        node.state = "blocked"
        if self.on_blocked is not None:
            self.on_blocked(node.job)
        for dep_id in self.dependents[node.job.id]:
            self._block(self.nodes[dep_id])

    def save(self, checkpoint_path: str) -> None:
        """Tune's experiment checkpoint: nothing to keep, a resume reads the study's own files."""
        with open(checkpoint_path, "w") as fh:
            fh.write("{}")

    def restore(self, checkpoint_path: str) -> None:
        pass

    # ------------------------------------------------------------------ progress
    def counts(self) -> dict[str, dict[str, int]]:
        """Per stage: jobs done / running / ready / waiting (failed and blocked too)."""
        out: dict[str, dict[str, int]] = {}
        for node in self.nodes.values():
            state = {"active": "running" if node.in_flight else "ready"}.get(node.state, node.state)
            stage = out.setdefault(node.job.stage, {})
            stage[state] = stage.get(state, 0) + 1
        return out

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception as exc:  # noqa: BLE001 - a progress file never stops the sweep
                log.warning("could not write the study's progress: %s", exc)


class PerJobScheduler(FIFOScheduler):
    """FIFO across the study, with ASHA brackets of each searched job's own (``make(job_id)``
    returns that job's ``ASHAScheduler``, or None for a job without early stopping)."""

    def __init__(self, make: Callable[[str], TrialScheduler | None]):
        super().__init__()
        self.make = make
        self.per_job: dict[str, TrialScheduler | None] = {}

    def _of(self, trial) -> TrialScheduler | None:
        job_id = trial.config["trial"]["job_id"]
        if job_id not in self.per_job:
            self.per_job[job_id] = self.make(job_id)
        return self.per_job[job_id]

    def on_trial_add(self, tune_controller, trial):
        inner = self._of(trial)
        if inner is not None:
            inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        inner = self._of(trial)
        if inner is not None:
            inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        inner = self._of(trial)
        if inner is None:
            return TrialScheduler.CONTINUE
        return inner.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        inner = self._of(trial)
        if inner is not None:
            inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        inner = self._of(trial)
        if inner is not None:
            inner.on_trial_remove(tune_controller, trial)
