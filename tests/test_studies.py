"""The ready-made studies in search_spaces/: each validates and plans, and says what it promises.

Planning needs no data, model or network, so these run in-process in well under a second each.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from sweep.cli import main
from sweep.plan import build_plan
from sweep.spec import load_spec
from trainables.languages import TASK_LANGUAGES

STUDIES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_study_validates_and_plans(path, capsys):
    spec = load_spec(path)
    plan = build_plan(spec)
    assert plan.jobs and len({j.id for j in plan.jobs}) == len(plan.jobs)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(plan.jobs)} jobs" in out


def _plan(name: str):
    spec = load_spec(Path(__file__).resolve().parents[1] / "search_spaces" / f"{name}.yaml")
    return spec, build_plan(spec)


def test_paper_study_is_the_x_stilts_design():
    spec, plan = _plan("paper")
    assert spec.model == "xlm-roberta-large" and spec.seeds == (1, 2, 3)
    singles = [e for e in spec.intermediate if len(e) == 1]
    assert {t for (t,) in singles} == {"anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag",
                                       "cosmosqa", "commonsenseqa", "ccg"}
    assert () in spec.intermediate and max(len(e) for e in spec.intermediate) == 9
    targets = {t.task: t.languages for t in spec.targets}
    assert set(targets) == {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc", "tatoeba"}
    assert targets["udpos"] == TASK_LANGUAGES["udpos"] and targets["panx"] == TASK_LANGUAGES["panx"]
    assert targets["tatoeba"] == TASK_LANGUAGES["tatoeba"] and len(targets["xquad"]) == 11
    xquad = next(j for j in plan.stage("target") if j.target == "xquad")
    assert xquad.hyperparameters["max_length"] == 384 and xquad.hyperparameters["learning_rate"] == 1e-5
    assert {j.stage for j in plan.jobs if j.target in ("bucc", "tatoeba")} == {"eval"}


def test_size_study_has_one_checkpoint_per_size():
    spec, plan = _plan("size")
    sizes = {j.intermediate_examples for j in plan.stage("intermediate")}
    assert sizes == {1000, 5000, 10000, 50000, None}
    assert len(plan.stage("intermediate")) == 3 * 5 * len(spec.seeds)


def test_low_resource_study_selects_by_resource_class():
    from sweep.languages import language_info

    spec, _ = _plan("xtreme_r_low_resource")
    panx = next(t for t in spec.targets if t.task == "panx")
    assert panx.languages and all(language_info(l).resource_class <= 2 for l in panx.languages)
    assert set(panx.languages) < set(TASK_LANGUAGES["panx_xtreme_r"])


@pytest.mark.parametrize("name", ["syntactic_vs_semantic", "syntactic_vs_semantic_xxl"])
def test_large_model_studies_group_tasks_and_use_zero3(name):
    spec, plan = _plan(name)
    assert spec.deepspeed is not None and spec.deepspeed.stage == 3
    assert spec.resources.workers > 1
    groups = {j.group for j in plan.jobs if j.intermediate}
    assert groups == {"syntactic", "semantic"}
    assert all(j.settings["deepspeed"]["stage"] == 3 for j in plan.stage("intermediate"))


def test_robustness_study_perturbs_every_way_against_direct_fine_tuning():
    from trainables.perturb import perturbation_names

    spec, plan = _plan("robustness_xnli")
    assert () in spec.intermediate and {t.task for t in spec.targets} == {"xnli"}
    assert {p["name"] for p in spec.evaluation.perturbations} == set(perturbation_names())
    assert len(spec.seeds) >= 3                                 # the comparison is paired over seeds
    targets = plan.stage("target")
    assert all(len(j.settings["perturbations"]) == len(spec.evaluation.perturbations) for j in targets)
    assert not any("perturbations" in j.settings for j in plan.stage("intermediate"))


def test_adversarial_study_compares_methods_as_factors():
    spec, plan = _plan("adversarial_intermediate")
    assert spec.factors == ("adversarial",)
    methods = {c["method"] for c in spec.adversarial.values()}
    assert methods == {"freelb", "smart", "r3f"}
    inter = plan.stage("intermediate")
    per_task = {}
    for job in inter:
        per_task.setdefault((job.intermediate, job.seed), set()).add(
            job.factors["intermediate"]["adversarial"])
    expected = {"none", *spec.adversarial}
    assert per_task and all(v == expected for v in per_task.values())  # each method its own checkpoint
    assert all(job.hyperparameters.get("adversarial") in (None, "none") for job in plan.stage("target"))
    assert {t.task for t in spec.targets} >= {"xcopa", "mewslix", "lareqa", "tatoeba"}   # XTREME-R
