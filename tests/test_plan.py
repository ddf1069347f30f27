"""Tests for the planner (``sweep.plan``): job counts and reuse, the dependency DAG, and content-hash
ids that are stable where they must be (resumption) and change where the result would change.

Expected numbers are computed from the spec's inputs (entries × targets × seeds), never copied
from the planner's output. The CLI (``sweep plan``) is tested in ``test_cli_plan.py``.
"""
from __future__ import annotations

import copy
import itertools
import json

import pytest
import yaml

import trainables.tasks as tasks_registry
from sweep.plan import STAGE_ORDER, build_plan, format_plan
from sweep.spec import load_spec, parse_spec
from trainables.tasks import task_info, task_names
from trainables.tasks.base import Task, TaskInfo

EXTRA_TARGET = "test_plan_extra_target"


class _ExtraTarget(Task):
    """A throwaway trainable, target-only task so the toy registry offers four targets."""

    info = TaskInfo(name=EXTRA_TARGET, family="classification", languages=("en", "xs", "xo"),
                    main_metric="accuracy", source="tests/test_plan.py", intermediate=False)

    def load(self, split, language):
        raise NotImplementedError("planning only")


@pytest.fixture
def four_targets(monkeypatch) -> list[str]:
    """The toy target tasks plus one registered for this test (removed again afterwards)."""
    task_names()  # load the registry before patching it
    monkeypatch.setitem(tasks_registry.TASKS.classes, EXTRA_TARGET, _ExtraTarget)
    toy = [n for n in task_names() if n.startswith("toy_") and task_info(n).target]
    assert {"toy_xnli", "toy_pos", "toy_tatoeba"} <= set(toy)
    return toy + [EXTRA_TARGET]


INTERMEDIATES = ["none", "toy_paraphrase", "toy_chunk", ["toy_paraphrase", "toy_chunk"]]


def make_spec(**fields) -> dict:
    data = {
        "name": "plan-test",
        "intermediate": copy.deepcopy(INTERMEDIATES),
        "targets": ["toy_xnli", "toy_pos", "toy_tatoeba"],
        "seeds": [1, 2],
        "hyperparameters": {"intermediate": {"learning_rate": 1e-4, "epochs": 2},
                            "target": {"learning_rate": 3e-5, "batch_size": 16}},
    }
    data.update(copy.deepcopy(fields))
    return data


def plan_of(data: dict):
    return build_plan(parse_spec(data))


def key(job) -> tuple:
    return (job.stage, job.intermediate, job.target, job.seed)


def ids(plan) -> dict[tuple, str]:
    return {key(j): j.id for j in plan.jobs}


def changed(a, b) -> set[tuple]:
    """Keys (present in both plans) whose id differs."""
    ia, ib = ids(a), ids(b)
    assert set(ia) == set(ib)
    return {k for k in ia if ia[k] != ib[k]}


def _entry_tasks(entry) -> tuple[str, ...]:
    return () if entry == "none" else tuple(sorted([entry] if isinstance(entry, str) else entry))


# --------------------------------------------------------------------------- counts and reuse

def test_reuse_counts_three_intermediates_four_targets_two_seeds(four_targets):
    seeds = [1, 2]
    plan = plan_of(make_spec(targets=four_targets, seeds=seeds))
    non_baseline = [e for e in INTERMEDIATES if e != "none"]
    trained = [t for t in four_targets if task_info(t).trainable]
    evaluated = [t for t in four_targets if not task_info(t).trainable]
    assert len(non_baseline) == 3 and len(four_targets) == 4 and evaluated == ["toy_tatoeba"]

    counts = plan.counts()
    assert counts["intermediate"] == len(non_baseline) * len(seeds) == 6
    assert counts["target"] == len(INTERMEDIATES) * len(trained) * len(seeds)
    assert counts["eval"] == len(INTERMEDIATES) * len(evaluated) * len(seeds)
    assert counts["target"] + counts["eval"] == 4 * 4 * 2
    assert len(plan.jobs) == sum(counts.values())

    reuse = plan.reuse()
    # without reuse every (intermediate, target, seed) triple would train its own intermediate model
    per_pair = len(non_baseline) * len(four_targets) * len(seeds)
    non_baseline_downstream = [j for j in plan.jobs if j.stage != "intermediate" and j.intermediate]
    assert reuse["without_reuse"] == per_pair == len(non_baseline_downstream) == 24
    assert reuse["intermediate_trainings"] == 6
    assert reuse["saved"] == per_pair - 6


@pytest.mark.parametrize("entries, targets, seeds", [
    (["none"], ["toy_xnli"], [1]),
    (["toy_chunk"], ["toy_tatoeba"], [3]),
    (["none", "toy_xnli", "toy_pos", ["toy_xnli", "toy_pos"], ["toy_chunk", "toy_paraphrase", "toy_pos"]],
     ["toy_pos", "toy_xnli", "toy_tatoeba"], [0, 1, 2, 3, 4]),
    (["toy_paraphrase", "none"], ["toy_tatoeba", "toy_xnli"], [7, 5]),
])
def test_counts_follow_the_grid(entries, targets, seeds):
    plan = plan_of(make_spec(intermediate=entries, targets=targets, seeds=seeds))
    n_inter = sum(1 for e in entries if e != "none")
    n_eval = sum(1 for t in targets if not task_info(t).trainable)
    assert plan.counts() == {
        "intermediate": n_inter * len(seeds),
        "target": len(entries) * (len(targets) - n_eval) * len(seeds),
        "eval": len(entries) * n_eval * len(seeds),
    }
    assert plan.reuse()["without_reuse"] == n_inter * len(targets) * len(seeds)
    assert plan.reuse()["intermediate_trainings"] == n_inter * len(seeds)
    # every (entry, target, seed) cell appears exactly once
    cells = sorted((j.intermediate, j.target, j.seed) for j in plan.jobs if j.stage != "intermediate")
    expected = sorted((_entry_tasks(e), t, s) for e, t, s in itertools.product(entries, targets, seeds))
    assert cells == expected


# --------------------------------------------------------------------------- the DAG

def test_dependencies(four_targets):
    plan = plan_of(make_spec(targets=four_targets, seeds=[1, 2, 3]))
    inter = {(j.intermediate, j.seed): j for j in plan.stage("intermediate")}
    assert len(inter) == len(plan.stage("intermediate"))  # one per (task set, seed)
    for j in plan.stage("intermediate"):
        assert j.depends_on == () and j.target is None and j.intermediate
    position = {j.id: i for i, j in enumerate(plan.jobs)}
    for j in plan.jobs:
        if j.stage == "intermediate":
            continue
        if j.intermediate:
            parent = inter[(j.intermediate, j.seed)]
            assert j.depends_on == (parent.id,)
            assert position[parent.id] < position[j.id]     # parents are listed first
            assert j in plan.dependents(parent.id)
        else:
            assert j.depends_on == ()
    # each intermediate job feeds every target of its seed exactly once
    for parent in inter.values():
        assert sorted(d.target for d in plan.dependents(parent.id)) == sorted(four_targets)
        assert {d.seed for d in plan.dependents(parent.id)} == {parent.seed}


def test_eval_stage_exactly_for_retrieval_and_without_hyperparameters():
    plan = plan_of(make_spec())
    for j in plan.jobs:
        if j.stage == "intermediate":
            continue
        assert (j.stage == "eval") == (j.target == "toy_tatoeba"), j.label
        if j.stage == "eval":
            assert j.hyperparameters == {}
        else:
            assert j.hyperparameters["learning_rate"] == 3e-5
            assert j.hyperparameters["batch_size"] == 16
    for j in plan.stage("intermediate"):
        assert j.hyperparameters["learning_rate"] == 1e-4 and j.hyperparameters["epochs"] == 2


def test_languages_carried_to_jobs():
    plan = plan_of(make_spec(targets=[{"task": "toy_xnli", "languages": ["xo", "en"]}, "toy_tatoeba"]))
    for j in plan.jobs:
        if j.target == "toy_xnli":
            assert j.languages == ("xo", "en")
        elif j.target == "toy_tatoeba":
            assert j.languages == task_info("toy_tatoeba").languages
        else:
            assert j.stage == "intermediate" and j.languages == ()


def test_task_options_attached_to_the_jobs_that_use_the_task():
    plan = plan_of(make_spec(tasks={"toy_chunk": {"train_examples": 100}, "toy_xnli": {"data_dir": "/d"}}))
    for j in plan.jobs:
        uses = set(j.tasks)
        expected = {}
        if "toy_chunk" in uses:
            expected["toy_chunk"] = {"train_examples": 100}
        if "toy_xnli" in uses:
            expected["toy_xnli"] = {"data_dir": "/d"}
        assert j.task_options == expected, j.label


# --------------------------------------------------------------------------- ids

def test_ids_unique_and_prefixed(four_targets):
    plan = plan_of(make_spec(targets=four_targets, seeds=[1, 2, 3, 4]))
    all_ids = [j.id for j in plan.jobs]
    assert len(set(all_ids)) == len(all_ids)
    assert set(plan.by_id) == set(all_ids)
    for j in plan.jobs:
        assert j.id.startswith(j.stage[0] + "-")


def test_ids_stable_across_builds():
    data = make_spec()
    first, second = plan_of(data), plan_of(copy.deepcopy(data))
    assert [j.id for j in first.jobs] == [j.id for j in second.jobs]
    assert build_plan(parse_spec(data)).to_dict() == first.to_dict()


def _reversed_keys(obj):
    if isinstance(obj, dict):
        return {k: _reversed_keys(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reversed_keys(v) for v in obj]
    return obj


def test_ids_independent_of_key_order_in_dict_and_yaml(tmp_path):
    data = make_spec(tasks={"toy_chunk": {"train_examples": 50, "data_dir": "/x"}},
                     search={"algorithm": "grid", "num_samples": 2, "mode": "max"},
                     hyperparameters={"intermediate": {"learning_rate": [1e-4, 2e-4], "epochs": 2,
                                                       "batch_size": 8},
                                      "target": {"max_length": 64, "learning_rate": 3e-5}})
    reordered = _reversed_keys(data)
    assert list(reordered) != list(data)
    assert ids(plan_of(data)) == ids(plan_of(reordered))

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(data, sort_keys=False))
    b.write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert a.read_text() != b.read_text()
    assert ids(build_plan(load_spec(a))) == ids(build_plan(load_spec(b))) == ids(plan_of(data))


def test_ids_independent_of_multi_task_order():
    a = plan_of(make_spec(intermediate=["none", ["toy_paraphrase", "toy_chunk", "toy_pos"]]))
    b = plan_of(make_spec(intermediate=["none", ["toy_pos", "toy_chunk", "toy_paraphrase"]]))
    assert ids(a) == ids(b)


def test_ids_independent_of_entry_and_target_order():
    a = plan_of(make_spec())
    b = plan_of(make_spec(intermediate=list(reversed(INTERMEDIATES)),
                          targets=["toy_tatoeba", "toy_pos", "toy_xnli"], seeds=[2, 1]))
    assert ids(a) == ids(b)


def test_adding_seeds_targets_or_entries_keeps_existing_ids():
    """Growing a study must not invalidate what already ran (resumption)."""
    small = plan_of(make_spec(intermediate=["none", "toy_chunk"], targets=["toy_xnli"], seeds=[1]))
    big = plan_of(make_spec(intermediate=["none", "toy_chunk", "toy_paraphrase"],
                            targets=["toy_xnli", "toy_pos", "toy_tatoeba"], seeds=[1, 2]))
    small_ids, big_ids = ids(small), ids(big)
    assert small_ids.items() <= big_ids.items()


def _all_differ(a, b):
    ia, ib = ids(a), ids(b)
    assert set(ia) == set(ib)
    assert not set(ia.values()) & set(ib.values())


def test_seed_changes_ids():
    a = plan_of(make_spec(seeds=[1]))
    b = plan_of(make_spec(seeds=[2]))
    # same jobs but for the seed: compare by everything except the seed
    strip = lambda p: {(j.stage, j.intermediate, j.target): j.id for j in p.jobs}
    sa, sb = strip(a), strip(b)
    assert set(sa) == set(sb)
    assert all(sa[k] != sb[k] for k in sa)


def test_model_changes_all_ids(tmp_path):
    (tmp_path / "model").mkdir()
    _all_differ(plan_of(make_spec()), plan_of(make_spec(model=str(tmp_path / "model"))))
    _all_differ(plan_of(make_spec()), plan_of(make_spec(model="xlm-roberta-base")))


def test_intermediate_hyperparameter_changes_intermediate_and_downstream_ids():
    base = make_spec()
    other = make_spec()
    other["hyperparameters"]["intermediate"]["learning_rate"] = 5e-5
    a, b = plan_of(base), plan_of(other)
    expected = {key(j) for j in a.jobs if j.intermediate}   # every job downstream of an intermediate
    assert changed(a, b) == expected
    assert all(not j.intermediate for j in a.jobs if key(j) not in expected)  # baselines untouched


def test_target_hyperparameter_leaves_intermediate_ids():
    """Intermediate checkpoints stay reusable when only the target phase changes."""
    base = make_spec()
    for name, value in [("learning_rate", 1e-5), ("epochs", 5), ("batch_size", [8, 16])]:
        other = make_spec()
        other["hyperparameters"]["target"][name] = value
        a, b = plan_of(base), plan_of(other)
        expected = {key(j) for j in a.jobs if j.stage == "target"}
        # intermediate jobs and eval jobs (which have no hyperparameters) keep their ids
        assert changed(a, b) == expected, name


def test_default_written_out_is_the_same_job():
    """Writing a default explicitly does not change what is computed, nor the id."""
    from sweep.spec import HP_DEFAULTS

    base = make_spec()
    explicit = make_spec()
    explicit["hyperparameters"]["target"]["warmup_ratio"] = HP_DEFAULTS["warmup_ratio"]
    assert ids(plan_of(base)) == ids(plan_of(explicit))


def test_task_option_changes_ids_of_jobs_using_the_task():
    a = plan_of(make_spec())
    b = plan_of(make_spec(tasks={"toy_chunk": {"train_examples": 100}}))
    # intermediate entries containing toy_chunk, and everything downstream of them
    expected = {key(j) for j in a.jobs if "toy_chunk" in j.intermediate}
    assert expected and changed(a, b) == expected
    # an option of a target task changes that target's jobs only
    c = plan_of(make_spec(tasks={"toy_xnli": {"train_examples": 100}}))
    assert changed(a, c) == {key(j) for j in a.jobs if j.target == "toy_xnli"}


def test_target_languages_change_only_that_targets_ids():
    a = plan_of(make_spec())
    b = plan_of(make_spec(targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}, "toy_pos", "toy_tatoeba"]))
    assert changed(a, b) == {key(j) for j in a.jobs if j.target == "toy_xnli"}
    c = plan_of(make_spec(targets=["toy_xnli", "toy_pos", {"task": "toy_tatoeba", "languages": ["xv"]}]))
    assert changed(a, c) == {key(j) for j in a.jobs if j.target == "toy_tatoeba"}


def test_listing_all_languages_equals_leaving_them_out():
    langs = list(task_info("toy_xnli").languages)
    a = plan_of(make_spec())
    b = plan_of(make_spec(targets=[{"task": "toy_xnli", "languages": langs}, "toy_pos", "toy_tatoeba"]))
    assert ids(a) == ids(b)


def test_search_settings_matter_only_where_something_is_searched():
    fixed = make_spec()
    searched = make_spec()
    searched["hyperparameters"]["target"]["learning_rate"] = [1e-5, 3e-5]
    for data in (fixed, searched):
        data["search"] = {"algorithm": "grid", "num_samples": 1}
    more = copy.deepcopy(searched)
    more["search"]["num_samples"] = 3
    # the target space has a grid: repeating it changes the target jobs only
    assert changed(plan_of(searched), plan_of(more)) == {key(j) for j in plan_of(searched).jobs
                                                         if j.stage == "target"}
    # nothing searched anywhere: num_samples is irrelevant to every id
    fixed_more = copy.deepcopy(fixed)
    fixed_more["search"]["num_samples"] = 3
    assert changed(plan_of(fixed), plan_of(fixed_more)) == set()


def test_irrelevant_fields_do_not_change_ids(tmp_path):
    a = plan_of(make_spec())
    b = plan_of(make_spec(description="other words", storage=str(tmp_path / "elsewhere"),
                          cache_dir=str(tmp_path / "cache"), resources={"cpu": 4, "gpu": 1},
                          mlflow={"experiment": "other"}, max_failures=5))
    assert ids(a) == ids(b)


# --------------------------------------------------------------------------- outputs

def test_to_dict_is_json_and_consistent():
    plan = plan_of(make_spec())
    out = json.loads(json.dumps(plan.to_dict()))
    assert out["study"] == "plan-test"
    assert [j["id"] for j in out["jobs"]] == [j.id for j in plan.jobs]
    for j in out["jobs"]:
        assert {"id", "stage", "depends_on", "seed", "intermediate", "target", "languages",
                "hyperparameters", "label"} <= set(j)
        assert all(d in plan.by_id for d in j["depends_on"])
    by_stage = {s: sum(1 for j in out["jobs"] if j["stage"] == s) for s in STAGE_ORDER}
    assert out["counts"] == by_stage
    assert out["reuse"]["without_reuse"] == sum(1 for j in out["jobs"]
                                                if j["stage"] != "intermediate" and j["intermediate"])


def test_format_plan_lists_every_job_and_the_counts():
    plan = plan_of(make_spec())
    text = format_plan(plan)
    for j in plan.jobs:
        assert j.id in text
    counts = plan.counts()
    n_inter = sum(1 for e in INTERMEDIATES if e != "none")
    assert f"{len(plan.jobs)} jobs" in text
    assert f"{counts['intermediate']} intermediate" in text and counts["intermediate"] == n_inter * 2
    assert f"{plan.reuse()['without_reuse']} if trained per" in text
    assert "none→toy_xnli s1" in text and "toy_chunk+toy_paraphrase→toy_tatoeba s2" in text


def test_job_labels():
    plan = plan_of(make_spec())
    labels = {j.label for j in plan.jobs}
    assert "toy_chunk s1" in labels
    assert "toy_chunk+toy_paraphrase s2" in labels
    assert "none→toy_pos s2" in labels
    assert len(labels) == len(plan.jobs)


def test_large_grid_from_registry():
    """All usable tasks in the registry: ids stay unique and the counts multiply out."""
    names = task_names()
    inter = [n for n in names if task_info(n).intermediate and task_info(n).trainable]
    targets = [n for n in names if task_info(n).target]
    pairs = [list(p) for p in itertools.combinations(inter, 2)]
    seeds = list(range(5))
    required = {n: {o: ("/data/" + n) for o in task_info(n).required_options}
                for n in names if task_info(n).required_options}
    plan = plan_of(make_spec(intermediate=["none", *inter, *pairs], targets=targets, seeds=seeds,
                             tasks=required))
    entries = 1 + len(inter) + len(pairs)
    assert plan.counts()["intermediate"] == (entries - 1) * len(seeds)
    assert plan.counts()["target"] + plan.counts()["eval"] == entries * len(targets) * len(seeds)
    assert len({j.id for j in plan.jobs}) == len(plan.jobs)


def test_training_size_factor_makes_separate_jobs_and_keeps_other_ids():
    base = plan_of(make_spec())
    sized = plan_of(make_spec(train_examples={"intermediate": [1000, None, 50]}))
    inter = sized.stage("intermediate")
    assert len(inter) == 3 * len(base.stage("intermediate"))
    assert {j.intermediate_examples for j in inter} == {50, 1000, None}
    small = next(j for j in inter if j.intermediate_examples == 50)
    assert all(opts["train_examples"] == 50 for opts in small.task_options.values())
    assert small.label.startswith(small.intermediate_name + "@50 ")
    # the full-size jobs are the very jobs of the study without the factor
    full = {j.id for j in inter if j.intermediate_examples is None}
    assert full == {j.id for j in base.stage("intermediate")}
    # every target starts from the intermediate job of its own size; baseline targets once
    for job in sized.jobs:
        if job.depends_on:
            assert sized.by_id[job.depends_on[0]].intermediate_examples == job.intermediate_examples
    baseline = [j for j in sized.jobs if not j.intermediate]
    assert len(baseline) == len([j for j in base.jobs if not j.intermediate])


def test_target_size_factor_and_precision_enter_identity_but_resources_do_not():
    base = plan_of(make_spec())
    sized = plan_of(make_spec(train_examples={"target": [100, 200]}))
    assert sized.counts()["target"] == 2 * base.counts()["target"]
    assert sized.counts()["eval"] == base.counts()["eval"]          # retrieval has no training set
    more_workers = plan_of(make_spec(resources={"cpu": 1, "workers": 4}))
    assert [j.id for j in more_workers.jobs] == [j.id for j in base.jobs]
    assert all(j.settings["workers"] == 4 for j in more_workers.jobs)
    zero3 = plan_of(make_spec(deepspeed={"stage": 3}, precision="fp32"))
    zero2 = plan_of(make_spec(deepspeed={"stage": 2}, precision="fp32"))
    bf16 = plan_of(make_spec(deepspeed={"stage": 2}, precision="bf16"))
    plain_bf16 = plan_of(make_spec(precision="bf16"))
    assert [j.id for j in zero3.jobs] == [j.id for j in zero2.jobs]   # memory layout only
    assert [j.id for j in bf16.jobs] != [j.id for j in zero2.jobs]
    assert zero3.stage("intermediate")[0].settings["deepspeed"]["stage"] == 3
    # one precision setting for both paths: the plain path's bf16 changes ids too, `auto` does not
    assert [j.id for j in plain_bf16.jobs if j.stage != "eval"] != [j.id for j in base.jobs if j.stage != "eval"]
    assert all(j.settings["precision"] == "bf16" for j in plain_bf16.jobs)


def test_per_task_hyperparameters_override_single_task_jobs_only():
    spec = make_spec(intermediate=["none", "toy_chunk", ["toy_chunk", "toy_paraphrase"]])
    spec["hyperparameters"]["tasks"] = {"toy_chunk": {"max_length": 96},
                                        "toy_xnli": {"epochs": 7, "learning_rate": [1e-5, 2e-5]}}
    plan = plan_of(spec)
    plain = plan_of(make_spec(intermediate=["none", "toy_chunk", ["toy_chunk", "toy_paraphrase"]]))
    single = next(j for j in plan.stage("intermediate") if j.intermediate == ("toy_chunk",))
    multi = next(j for j in plan.stage("intermediate") if len(j.intermediate) == 2)
    assert single.hyperparameters["max_length"] == 96
    assert multi.hyperparameters == next(j for j in plain.stage("intermediate") if len(j.intermediate) == 2).hyperparameters
    xnli = [j for j in plan.stage("target") if j.target == "toy_xnli"]
    assert all(j.hyperparameters["epochs"] == 7 and j.hyperparameters["learning_rate"] == {"grid": [1e-5, 2e-5]}
               for j in xnli)
    # a target without overrides, from the baseline, is the very job of the plain study
    baseline_pos = {j.id for j in plan.stage("target") if j.target == "toy_pos" and not j.intermediate}
    assert baseline_pos and baseline_pos <= {j.id for j in plain.jobs}


def test_precision_is_one_top_level_setting_checked_against_the_resources():
    from sweep.spec import SpecError

    with pytest.raises(SpecError) as err:
        parse_spec(make_spec(deepspeed={"stage": 2, "precision": "bf16"}))
    assert str(err.value).startswith("deepspeed.precision: moved: set `precision:` at the top level")
    with pytest.raises(SpecError) as err:
        parse_spec(make_spec(precision="fp16"))                       # resources.gpu defaults to 0
    assert str(err.value) == "precision: fp16 needs GPUs (resources.gpu is 0): use bf16 or fp32 on the CPU"
    gpu = plan_of(make_spec(precision="fp16", resources={"gpu": 1}, gradient_checkpointing=True))
    job = gpu.stage("target")[0]
    assert job.settings["precision"] == "fp16" and job.settings["gradient_checkpointing"] is True
    assert "deepspeed" not in job.settings


def test_a_multi_task_entry_encodes_each_task_at_its_own_length():
    multi = ("toy_chunk", "toy_paraphrase")
    spec = make_spec(hyperparameters={"intermediate": {"max_length": 64},
                                      "tasks": {"toy_paraphrase": {"max_length": 96}}})
    plan = plan_of(spec)
    by_tasks = {j.intermediate: j for j in plan.stage("intermediate") if j.seed == 1}
    assert by_tasks[multi].settings["task_max_length"] == {"toy_paraphrase": 96}
    assert by_tasks[("toy_paraphrase",)].hyperparameters["max_length"] == 96     # alone: its job space
    assert "task_max_length" not in by_tasks[("toy_chunk",)].settings
    base = {j.intermediate: j.id for j in plan_of(make_spec()).stage("intermediate") if j.seed == 1}
    assert by_tasks[multi].id != base[multi]                                     # it changes results
    from sweep.spec import SpecError

    with pytest.raises(SpecError, match=r"hyperparameters.tasks.toy_paraphrase.max_length: .*give one value"):
        plan_of(make_spec(hyperparameters={"intermediate": {"max_length": 64},
                                           "tasks": {"toy_paraphrase": {"max_length": [64, 96]}}}))
