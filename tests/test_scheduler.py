"""DagSearcher, OptunaQueue and the simulation, without Ray: the order trials are issued in."""
from __future__ import annotations

from dataclasses import dataclass, field

from ray.tune.search import Searcher

from sweep.scheduler import DagSearcher, GridQueue, OptunaQueue, trial_demand


@dataclass(frozen=True)
class J:
    id: str
    stage: str
    depends_on: tuple = ()
    tasks: tuple = ("mnli",)
    model: str = "xlm-roberta-large"
    seed: int = 1
    label: str = ""
    target: str | None = None
    hyperparameters: dict = field(default_factory=dict, hash=False, compare=False)
    task_options: dict = field(default_factory=dict, hash=False, compare=False)
    settings: dict = field(default_factory=dict, hash=False, compare=False)


def _searcher(jobs, gpus=2, demand=None, trials=1, cpus=64):
    def start(job):
        return GridQueue([{"trial": {"trial_id": f"{job.id}-{k}", "job_id": job.id}} for k in range(trials)])

    return DagSearcher(jobs, start_job=start, demand=demand or (lambda j: {"GPU": 1}),
                       capacity=lambda: {"GPU": gpus, "CPU": cpus})


def _issue(searcher, n):
    out = []
    for k in range(n):
        cfg = searcher.suggest(f"t{len(searcher.started) + k}-{id(out)}")
        if not isinstance(cfg, dict):
            break
        out.append(cfg["trial"]["trial_id"])
    return out


def test_baseline_target_goes_before_the_intermediate_job_finishes_and_dependents_follow_it():
    jobs = [J("i-big", "intermediate", tasks=("anli_plus",)), J("i-small", "intermediate", tasks=("ccg",)),
            J("t-none", "target", tasks=("tydiqa",)), J("t-big", "target", ("i-big",), tasks=("tydiqa",))]
    s = _searcher(jobs, gpus=2)
    first = [s.suggest("a")["trial"]["job_id"], s.suggest("b")["trial"]["job_id"]]
    assert first == ["i-big", "i-small"]          # longest remaining path first
    assert s.suggest("c") is None                 # the cluster is full
    s.on_trial_complete("b", {"time_total_s": 10})
    s.job_done("i-small", True)
    assert s.suggest("c")["trial"]["job_id"] == "t-none"   # no stage barrier
    s.on_trial_complete("a", {"time_total_s": 100})
    assert s.suggest("d") is None                  # i-big's trial ended, but it is not recorded yet
    s.job_done("i-big", True)
    assert s.suggest("d")["trial"]["job_id"] == "t-big"
    s.on_trial_complete("c", {})
    s.on_trial_complete("d", {})
    s.job_done("t-none", True)
    s.job_done("t-big", True)
    assert s.suggest("e") == Searcher.FINISHED
    assert s.counts()["target"] == {"done": 2}


def test_a_failed_intermediate_job_blocks_its_dependents():
    jobs = [J("i", "intermediate"), J("t", "target", ("i",))]
    blocked = []
    s = DagSearcher(jobs, start_job=lambda j: GridQueue([{"trial": {"trial_id": j.id}}]),
                    demand=lambda j: {"GPU": 1}, capacity=lambda: {"GPU": 4}, on_blocked=blocked.append)
    s.suggest("a")
    s.on_trial_complete("a", None, error=True)
    s.job_done("i", False)
    assert [j.id for j in blocked] == ["t"] and s.suggest("b") == Searcher.FINISHED


def test_multi_worker_trials_count_their_workers_gpus():
    demand = trial_demand({"cpu": 4, "gpu": 1, "workers": 2})
    assert demand == {"CPU": 8.1, "GPU": 2}
    jobs = [J(f"i{k}", "intermediate") for k in range(5)]
    s = _searcher(jobs, gpus=4, demand=lambda j: demand)
    assert len(_issue(s, 5)) == 2                # 2 trials x 2 workers fill 4 GPUs


def test_max_in_flight_and_per_job_concurrency():
    jobs = [J("i", "intermediate")]
    s = DagSearcher(jobs, start_job=lambda j: GridQueue([{"trial": {"trial_id": f"i-{k}"}} for k in range(5)],
                                                        max_concurrent=2),
                    demand=lambda j: {"GPU": 1}, capacity=lambda: {"GPU": 8})
    assert len(_issue(s, 5)) == 2
    s.on_trial_complete(next(iter(s.live)), {})
    assert len(_issue(s, 5)) == 1


def _optuna(known=(), num_samples=4, issued=None):
    issued = issued if issued is not None else {}
    space = {"learning_rate": {"distribution": "loguniform", "low": 1e-5, "high": 1e-3}, "epochs": 2}
    return OptunaQueue(space, seed=3, metric="dev/score", mode="max", num_samples=num_samples,
                       make_config=lambda name, p: {"trial": {"trial_id": f"j-{name}", "name": name, "hp": p}},
                       record=lambda name, p: issued.__setitem__(name, p), known=known)


def test_an_interrupted_search_continues_to_exactly_num_samples_trials():
    issued: dict = {}
    q = _optuna(issued=issued)
    a, b = q.next(), q.next()
    q.complete(a["trial"]["trial_id"], {"dev/score": 0.7}, False)
    # interrupted here: a finished, b cut off; a new driver reads them back
    known = [("s000", issued["s000"], "complete", 0.7), ("s001", issued["s001"], "issued", None)]
    again = _optuna(known, issued=issued)
    configs = []
    while (c := again.next()) is not None:
        configs.append(c)
        again.complete(c["trial"]["trial_id"], {"dev/score": 0.5}, False)
    names = [c["trial"]["name"] for c in configs]
    assert names == ["s001", "s002", "s003"]                 # the cut-off one first, then new ones
    assert configs[0]["trial"]["hp"] == b["trial"]["hp"]     # with the same values
    assert len(again.study.trials) == 4 and again.exhausted


def test_the_paper_grid_simulates_within_ten_percent_of_the_lower_bound():
    from bench.bench_scheduler import paper_plan, sim_jobs
    from sweep.simulate import lower_bound, simulate_dag, simulate_stages

    plan = paper_plan()
    for gpus in (16, 64):
        for samples in (1, 4):
            jobs = sim_jobs(plan, samples)
            lb = lower_bound(jobs, gpus)
            assert simulate_dag(jobs, gpus) <= 1.10 * lb
            assert simulate_stages(jobs, gpus) > 1.2 * lb
