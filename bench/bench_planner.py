"""Planner benchmark: intermediate-checkpoint reuse on the paper's grid, and planning speed at scale.

    .venv/bin/python bench/bench_planner.py

The paper's tasks (MNLI, SQuAD, ..., XNLI, PAWS-X, UD-POS, ...) are not all in the task registry,
so this process registers throwaway ``bench_*`` tasks of the same shape: 9 English intermediate
tasks, 7 trainable target tasks and 2 retrieval targets (evaluation only). They exist only inside
this process; no data is loaded and nothing is trained. Timings are printed, never asserted.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from itertools import combinations

from sweep.plan import build_plan, format_plan
from sweep.spec import parse_spec
from trainables.tasks import register, task_names
from trainables.tasks.base import Task, TaskInfo

N_INTERMEDIATE = 9
N_TRAINED_TARGETS = 7
N_RETRIEVAL_TARGETS = 2
PAPER_SEEDS = 3
SCALE_SEEDS = 25
REPEATS = 3
# 40 languages, like XTREME's widest tasks
LANGUAGES = ("en",) + tuple(f"l{i:02d}" for i in range(1, 40))


def _bench_task(name: str, family: str, languages: tuple[str, ...], *, intermediate: bool,
                target: bool, trainable: bool = True) -> str:
    info = TaskInfo(name=name, family=family, languages=languages, main_metric="accuracy",
                    source="bench/bench_planner.py (throwaway, planning only)",
                    intermediate=intermediate, target=target, trainable=trainable)

    def load(self, split, language):
        raise NotImplementedError(f"{name} is a benchmark stand-in without data")

    register(type(f"Bench_{name}", (Task,), {"info": info, "load": load}))
    return name


def register_bench_tasks() -> tuple[list[str], list[str], list[str]]:
    task_names()  # load the real registry first so the bench tasks sit beside it
    inter = [_bench_task(f"bench_inter_{i}", "classification", ("en",), intermediate=True, target=False)
             for i in range(1, N_INTERMEDIATE + 1)]
    trained = [_bench_task(f"bench_target_{i}", "tagging" if i % 2 else "classification", LANGUAGES,
                           intermediate=False, target=True) for i in range(1, N_TRAINED_TARGETS + 1)]
    retrieval = [_bench_task(f"bench_retrieval_{i}", "retrieval", LANGUAGES[1:], intermediate=False,
                             target=True, trainable=False) for i in range(1, N_RETRIEVAL_TARGETS + 1)]
    return inter, trained, retrieval


def spec_dict(name: str, intermediate: list, targets: list[str], seeds: int) -> dict:
    return {
        "name": name,
        "intermediate": ["none", *intermediate],
        "targets": targets,
        "seeds": list(range(1, seeds + 1)),
        "hyperparameters": {"intermediate": {"learning_rate": 1e-5, "epochs": 2},
                            "target": {"learning_rate": [1e-5, 3e-5], "batch_size": 32}},
    }


def median_time(fn, repeats: int = REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    inter, trained, retrieval = register_bench_tasks()
    print(f"python {sys.version.split()[0]}; registered {len(inter)} intermediate, {len(trained)} trained "
          f"target and {len(retrieval)} retrieval bench_* tasks (this process only)\n")

    # ---------------------------------------------------------------- reuse on the paper's grid
    rows = [("grid (+ none baseline)", "jobs", "interm. trainings", "without reuse", "saved", "ratio")]
    grids = [
        (f"{len(inter)} interm. x {len(trained)} trained targets x {PAPER_SEEDS} seeds",
         spec_dict("paper", inter, trained, PAPER_SEEDS)),
        (f"  same + {len(retrieval)} retrieval (eval) targets",
         spec_dict("paper-eval", inter, trained + retrieval, PAPER_SEEDS)),
    ]
    for label, data in grids:
        plan = build_plan(parse_spec(data))
        reuse = plan.reuse()
        expected = (len(inter) * PAPER_SEEDS,
                    len(inter) * len(data["targets"]) * PAPER_SEEDS)
        got = (reuse["intermediate_trainings"], reuse["without_reuse"])
        mark = "" if got == expected else f"  (!= expected {expected})"
        rows.append((label, str(len(plan.jobs)), str(got[0]), str(got[1]), str(reuse["saved"]),
                     f"{got[1] / got[0]:.1f}x{mark}"))
    print("Intermediate-checkpoint reuse")
    print(table(rows))

    # ---------------------------------------------------------------- planner scale
    pairs = [list(p) for p in combinations(inter, 2)]
    big = spec_dict("scale", inter + pairs, trained + retrieval, SCALE_SEEDS)
    t_plan, plan = median_time(lambda: build_plan(parse_spec(big)))
    t_parse, _ = median_time(lambda: parse_spec(big))
    n = len(plan.jobs)
    t_format, text = median_time(lambda: format_plan(plan))
    t_json, js = median_time(lambda: json.dumps(plan.to_dict()))
    counts = plan.counts()
    print(f"\nPlanner scale: {len(big['intermediate'])} intermediate entries (none + {len(inter)} single + "
          f"{len(pairs)} pairs) x {len(big['targets'])} targets x {SCALE_SEEDS} seeds = {n} jobs "
          f"({counts['intermediate']} intermediate, {counts['target']} target, {counts['eval']} eval); "
          f"median of {REPEATS}")
    rows = [("step", "seconds", "jobs/s", "note")]
    rows.append(("parse_spec + build_plan", f"{t_plan:.3f}", f"{n / t_plan:,.0f}",
                 "under 1 s" if t_plan < 1 else "OVER 1 s"))
    rows.append(("  of which parse_spec", f"{t_parse:.3f}", "", ""))
    rows.append(("format_plan", f"{t_format:.3f}", f"{n / t_format:,.0f}", f"{len(text) / 1e6:.1f} MB text"))
    rows.append(("to_dict + json.dumps", f"{t_json:.3f}", f"{n / t_json:,.0f}", f"{len(js) / 1e6:.1f} MB JSON"))
    print(table(rows))
    unique = len({j.id for j in plan.jobs}) == n
    print(f"\nids unique: {unique}; reuse at scale: {plan.reuse()['intermediate_trainings']} intermediate "
          f"trainings instead of {plan.reuse()['without_reuse']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
