"""Scheduling benchmark: makespan / lower bound of the paper-grid plan, new scheduler vs stages.

A benchmark of scheduling only: trials *sleep* for their cost-model duration (scaled down so a
run takes at most ~3 minutes); nothing is trained, no data is read, no GPU is needed (a local
Ray instance declares logical GPUs). It measures how well the order of trials fills the GPUs,
not how fast training is. The plan is search_spaces/paper.yaml's (9 intermediate tasks + the
multi-task row, baseline, 9 targets, 3 seeds: 327 jobs).

Lower bound = max(critical path, total work / GPUs). Cases: (a) one trial per job, (b) Optuna
with 4 samples per job (all 4 may run at once). Modes:

* ``--sim`` (default): a discrete-event simulation (``sweep.simulate``) of both orders on 16
  and 64 GPUs: the DAG order as ``DagSearcher`` issues it, the former stage-by-stage order
  (stage barriers, 400-trial Tune batches, one searched job at a time).
* ``--ray``: the real thing on a local Ray instance, ``DagSearcher`` in one Tuner (and, for
  case (a), the former order as one Tuner per stage); slow on a 2-core machine, where Tune's
  per-trial overhead (actor start, result processing) is a large share of a scaled-down trial.

``--memory N``: driver memory of the searcher issuing and completing an N-trial plan (no Ray).
``--tune-memory N``: the driver's resident memory while a real Tuner runs N no-op trials.

    python bench/bench_scheduler.py --sim
    python bench/bench_scheduler.py --ray --gpus 16 --case a --target-s 90
    python bench/bench_scheduler.py --memory 10000
    python bench/bench_scheduler.py --tune-memory 2000 --gpus 64
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep.costs import CostModel  # noqa: E402
from sweep.simulate import SimJob, lower_bound, simulate_dag, simulate_stages  # noqa: E402

PAPER = Path(__file__).resolve().parents[1] / "search_spaces" / "paper.yaml"
log = logging.getLogger("bench_scheduler")


def paper_plan():
    from sweep.plan import build_plan
    from sweep.spec import load_spec

    return build_plan(load_spec(PAPER))


def sim_jobs(plan, samples: int, scale: float = 1.0) -> list[SimJob]:
    costs = CostModel()
    return [SimJob(j.id, j.stage, j.depends_on, costs.seconds(j) * scale, samples, None, samples > 1)
            for j in plan.jobs]


def run_sim() -> None:
    plan = paper_plan()
    print(f"paper plan: {len(plan.jobs)} jobs {plan.counts()} (simulated, cost-model durations)")
    print(f"{'gpus':>4} {'case':<20} {'lower bound h':>13} {'new / LB':>9} {'stages / LB':>12}")
    for gpus in (16, 64):
        for case, samples in (("a: 1 trial/job", 1), ("b: optuna 4/job", 4)):
            jobs = sim_jobs(plan, samples)
            lb = lower_bound(jobs, gpus)
            print(f"{gpus:>4} {case:<20} {lb / 3600:>13.2f} {simulate_dag(jobs, gpus) / lb:>9.3f} "
                  f"{simulate_stages(jobs, gpus) / lb:>12.3f}")


def sleep_trial(config: dict) -> None:
    from ray import tune

    time.sleep(config["trial"]["sleep_s"])
    tune.report({"dev/score": float(config["trial"].get("score", 0.5)), "done_at": time.time()})


def run_ray(gpus: int, case: str, target_s: float, old: bool) -> None:
    import ray
    from ray import tune
    from ray.tune import RunConfig, TuneConfig, Tuner

    from sweep.scheduler import DagSearcher, GridQueue, OptunaQueue

    plan = paper_plan()
    samples = 4 if case == "b" else 1
    raw = sim_jobs(plan, samples)
    scale = target_s / lower_bound(raw, gpus)
    jobs = {j.id: j for j in sim_jobs(plan, samples, scale)}
    lb = lower_bound(list(jobs.values()), gpus)
    ray.init(num_cpus=gpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    storage = Path(os.environ.get("BENCH_STORAGE", "/tmp/bench_scheduler")).resolve()
    trainable = tune.with_resources(sleep_trial, {"CPU": 1, "GPU": 1})

    def config(job_id: str, name: str) -> dict:
        return {"trial": {"trial_id": f"{job_id}-{name}", "job_id": job_id, "sleep_s": jobs[job_id].seconds}}

    timing = trial_timing()
    started = time.time()
    if not old:
        space = {"learning_rate": {"distribution": "loguniform", "low": 1e-5, "high": 1e-3}}

        def start_job(job):
            if samples == 1:
                return GridQueue([config(job.id, "g0")])
            return OptunaQueue(space, seed=job.seed, metric="dev/score", mode="max", num_samples=samples,
                               make_config=lambda name, params: config(job.id, name), record=lambda n, p: None)

        done: dict[str, int] = {}

        class Release(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                job_id = trial.config["trial"]["job_id"]
                done[job_id] = done.get(job_id, 0) + 1
                if done[job_id] == samples:
                    searcher.job_done(job_id, True)

        searcher = DagSearcher(plan.jobs, start_job=start_job, demand=lambda j: {"CPU": 1, "GPU": 1},
                               capacity=ray.cluster_resources, trials=lambda j: samples,
                               concurrency=lambda j: samples)
        Tuner(trainable, param_space={},
              tune_config=TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True,
                                     max_concurrent_trials=10_000),
              run_config=RunConfig(name=f"dag-{int(started)}", storage_path=str(storage), verbose=0,
                                   callbacks=[Release(), timing])).fit()
    else:  # the former order: one Tuner per stage (all of a stage's trials in one grid)
        assert samples == 1, "the former order with Optuna (one Tuner per job) is simulated only"
        for stages in (("intermediate",), ("target", "eval")):
            batch = [config(j.id, "g0") for j in plan.jobs if j.stage in stages]
            Tuner(trainable, param_space={"trial": tune.grid_search([b["trial"] for b in batch])},
                  tune_config=TuneConfig(reuse_actors=True),
                  run_config=RunConfig(name=f"stages-{int(started)}-{stages[0]}", storage_path=str(storage),
                                       verbose=0, callbacks=[timing])).fit()
    makespan = time.time() - started
    order = "stages" if old else "new"
    print(f"ray gpus={gpus} case={case} {order}: makespan {makespan:.1f} s, "
          f"lower bound {lb:.1f} s, ratio {makespan / lb:.3f} (measured on real Ray Tune, sleep workload)")
    measured = timing.jobs(jobs)
    lb_measured = lower_bound(measured, gpus)
    overhead = statistics.fmean(m.seconds - jobs[m.id].seconds for m in measured)
    simulate = simulate_stages if old else simulate_dag
    ideal = simulate(measured, gpus)  # this order with these durations and no dispatch gap
    trials = sum(m.trials for m in measured)
    gap = (makespan - ideal) / (trials / gpus)
    print(f"ray gpus={gpus} case={case} {order}: trials took {overhead:.2f} s longer than their sleep "
          f"on average; with the measured trial durations the lower bound is {lb_measured:.1f} s "
          f"(ratio {makespan / lb_measured:.3f}) and this order would take {ideal:.1f} s without "
          f"gaps between trials: Tune's dispatch left {gap:.2f} s idle per trial and GPU slot")
    real = sim_jobs(plan, samples)  # the cost model's durations, unscaled
    real_lb = lower_bound(real, gpus)
    projected = (simulate(real, gpus) + gap * trials / gpus) / real_lb
    print(f"ray gpus={gpus} case={case} {order}: projected at the paper grid's real durations "
          f"(lower bound {real_lb / 3600:.2f} h) with that gap per trial: ratio {projected:.4f} "
          f"(a projection from this run's gap, not a measurement)")
    ray.shutdown()


def trial_timing():
    """A Ray Tune callback noting when each trial started and completed, as the driver saw it,
    so that the lower bound can be recomputed from what trials really took on this machine
    (defined here: ``--sim`` and ``--memory`` import no Ray)."""
    from ray import tune

    class TrialTiming(tune.Callback):
        def __init__(self):
            self.start: dict[str, float] = {}
            self.took: dict[str, list[float]] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.start[trial.trial_id] = time.time()

        def on_trial_complete(self, iteration, trials, trial, **info):
            job_id = trial.config["trial"]["job_id"]
            self.took.setdefault(job_id, []).append(time.time() - self.start[trial.trial_id])

        def jobs(self, planned: dict) -> list:
            """The plan's jobs with each trial's measured duration (the job's mean)."""
            return [replace(j, seconds=statistics.fmean(self.took.get(j.id, [j.seconds])))
                    for j in planned.values()]

    return TrialTiming()


@dataclass(frozen=True)
class FakeJob:
    """The fields of a plan ``Job`` the searcher reads."""

    id: str
    stage: str
    depends_on: tuple
    model: str = "xlm-roberta-large"
    hyperparameters: dict = None
    tasks: tuple = ("mnli",)
    task_options: dict = None
    settings: dict = None
    target: str = None
    label: str = ""
    seed: int = 1


def fake_jobs(trials: int) -> list[FakeJob]:
    """``trials`` one-trial jobs: a tenth intermediate, the rest targets depending on them."""
    inter = [FakeJob(f"i{k}", "intermediate", ()) for k in range(trials // 10)]
    return inter + [FakeJob(f"t{k}", "target", (f"i{k % len(inter)}",)) for k in range(trials - len(inter))]


def run_memory(trials: int) -> None:
    """The searcher's memory while it issues and completes ``trials`` one-trial jobs, 64 at a time."""
    import tracemalloc

    from sweep.scheduler import DagSearcher, GridQueue

    jobs = fake_jobs(trials)
    tracemalloc.start()
    searcher = DagSearcher(jobs, start_job=lambda j: GridQueue([{"trial": {"trial_id": j.id}}]),
                           demand=lambda j: {"GPU": 1}, capacity=lambda: {"GPU": 64})
    marks, live, n, completed = [], [], 0, 0
    while True:
        cfg = searcher.suggest(f"x{n}")
        if cfg and cfg != "FINISHED":
            live.append((f"x{n}", cfg["trial"]["trial_id"]))
            n += 1
            continue
        if not live:
            break
        tid, job_id = live.pop(0)
        searcher.on_trial_complete(tid, {"time_total_s": 60.0})
        searcher.job_done(job_id, True)
        completed += 1
        if completed % (trials // 5) == 0:
            marks.append((completed, tracemalloc.get_traced_memory()[0]))
    peak = tracemalloc.get_traced_memory()[1]
    print(f"searcher, {trials} trials: traced memory after " +
          ", ".join(f"{k} done {m / 2**20:.2f} MiB" for k, m in marks) +
          f"; peak {peak / 2**20:.2f} MiB (most of it is the plan itself, built up front)")


def noop_trial(config: dict) -> None:
    from ray import tune

    tune.report({"dev/score": 0.5})


def run_tune_memory(trials: int, gpus: int = 64) -> None:
    """The driver's resident memory while one Tuner fed by ``DagSearcher`` runs ``trials``
    one-trial jobs (no-op trials, ``gpus`` logical GPUs): what a long study costs the driver,
    Tune's own trial bookkeeping included."""
    import psutil
    import ray
    from ray import tune
    from ray.tune import RunConfig, TuneConfig, Tuner

    from sweep.scheduler import DagSearcher, GridQueue

    jobs = fake_jobs(trials)
    marks: list[tuple[int, float]] = []

    def rss_mib() -> float:  # a fresh Process each time: the callback must pickle (no lock inside)
        return psutil.Process().memory_info().rss / 2**20

    every = max(1, trials // 5)

    class Release(tune.Callback):
        done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            searcher.job_done(trial.config["trial"]["job_id"], True)
            Release.done += 1
            if Release.done % every == 0:
                marks.append((Release.done, rss_mib()))

    ray.init(num_cpus=gpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    searcher = DagSearcher(jobs, start_job=lambda j: GridQueue([{"trial": {"trial_id": j.id, "job_id": j.id}}]),
                           demand=lambda j: {"CPU": 1, "GPU": 1}, capacity=ray.cluster_resources)
    before = rss_mib()
    started = time.time()
    storage = Path(os.environ.get("BENCH_STORAGE", "/tmp/bench_scheduler")).resolve()
    Tuner(tune.with_resources(noop_trial, {"CPU": 1, "GPU": 1}), param_space={},
          tune_config=TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True,
                                 max_concurrent_trials=10_000),
          run_config=RunConfig(name=f"memory-{int(started)}", storage_path=str(storage), verbose=0,
                               callbacks=[Release()])).fit()
    ray.shutdown()
    growth = (marks[-1][1] - marks[0][1]) / max(1, marks[-1][0] - marks[0][0]) * 1024
    print(f"Tune driver, {trials} trials in {time.time() - started:.0f} s: RSS {before:.0f} MiB before, "
          + ", ".join(f"{k} done {m:.0f} MiB" for k, m in marks)
          + f"; {growth:.1f} KiB per further trial (Tune keeps every finished trial's record)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true")
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--old", action="store_true", help="with --ray: the former stage-by-stage order")
    parser.add_argument("--gpus", type=int, default=16)
    parser.add_argument("--case", choices=("a", "b"), default="a")
    parser.add_argument("--target-s", type=float, default=90.0, help="scaled lower bound, seconds")
    parser.add_argument("--memory", type=int, metavar="TRIALS")
    parser.add_argument("--tune-memory", type=int, metavar="TRIALS",
                        help="driver RSS of a real Tuner running TRIALS no-op trials")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.memory:
        run_memory(args.memory)
    elif args.tune_memory:
        run_tune_memory(args.tune_memory, args.gpus)
    elif args.ray:
        run_ray(args.gpus, args.case, args.target_s, args.old)
    else:
        run_sim()


if __name__ == "__main__":
    main()
