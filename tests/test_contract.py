"""The driver-trial contract (``trainables.contract``) is the one declaration its readers follow:
the README's hyperparameter table, the loop's ``TrainSettings``, the spec's ``tasks:`` block and
the settings a plan hands a trial all agree with it."""
from __future__ import annotations

import json
import re
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from pydantic import ValidationError

from sweep.plan import build_plan
from sweep.spec import TaskOptionsBlock, parse_spec
from trainables.contract import (
    ADVERSARIAL, HYPERPARAMETERS, HPRule, Tag, TaskOptions, TrialConfig, TrialSettings,
)

README = Path(__file__).resolve().parents[1] / "README.md"
_OPS = {">": ("low", False), "≥": ("low", True), "<": ("high", False), "≤": ("high", True)}


def _readme_rows() -> list[list[str]]:
    """The cells of the README's hyperparameter table (name, default, allowed values)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("**Hyperparameters:**", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert rows[0] == ["name", "default", "allowed values"]
    return rows[2:]


def _readme_rule(cell: str) -> HPRule:
    """``integer ≥ 8, ≤ 8192 (...)`` -> the rule it states; prose after ``(`` or ``:`` is ignored."""
    stated = re.split(r" \(|:", cell, maxsplit=1)[0]
    kind = int if stated.startswith("integer ") else float
    bounds: dict = {}
    for part in stated.removeprefix("integer ").split(", "):
        op, number = part.split(" ")
        side, inclusive = _OPS[op]
        bounds[side], bounds[f"{side}_inclusive"] = float(number), inclusive
    return HPRule(kind, **bounds)


def test_readme_table_lists_the_contract_hyperparameters_in_order():
    names = [row[0].strip("`") for row in _readme_rows()]
    assert names == [*HYPERPARAMETERS, ADVERSARIAL]


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_readme_states_each_hyperparameter_default_and_range(name):
    row = next(r for r in _readme_rows() if r[0] == f"`{name}`")
    hp = HYPERPARAMETERS[name]
    default = row[1].split(" ", 1)[0]
    assert (None if default == "none" else float(default)) == hp.default
    assert _readme_rule(row[2]) == hp.rule


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_train_settings_has_each_hyperparameter_with_its_type_and_default(name):
    from trainables.train import TrainSettings

    hp = HYPERPARAMETERS[name]
    field = {f.name: f for f in fields(TrainSettings)}[name]
    expected = hp.rule.kind if hp.default is not None else hp.rule.kind | None
    assert typing.get_type_hints(TrainSettings)[name] == expected
    # an optional hyperparameter may be absent from a trial's hyperparameters: the loop then runs
    # with the contract's default; every other one the plan always gives, so it has no default
    assert (field.default is not MISSING) == hp.optional
    if hp.optional:
        assert field.default == hp.default


def test_train_settings_holds_nothing_but_the_hyperparameters_seed_and_resume_interval():
    from trainables.train import TrainSettings

    assert {f.name for f in fields(TrainSettings)} == {*HYPERPARAMETERS, "seed", "checkpoint_every_steps"}


def test_task_options_block_has_every_option_a_spec_may_set():
    settable = [f.name for f in fields(TaskOptions) if f.metadata.get("in_spec", True)]
    assert list(TaskOptionsBlock.model_fields) == settable
    assert "cache_dir" not in settable  # the spec's top-level cache_dir


@pytest.mark.parametrize("option", [f.name for f in fields(TaskOptions) if f.metadata.get("rule")])
def test_task_options_block_enforces_the_contract_range(option):
    rule: HPRule = next(f for f in fields(TaskOptions) if f.name == option).metadata["rule"]
    inside = rule.low if rule.low_inclusive else (rule.low + (1 if rule.kind is int else 0.5))
    outside = rule.low - 1 if rule.low_inclusive else rule.low
    TaskOptionsBlock.model_validate({option: rule.kind(inside)})
    with pytest.raises(ValidationError):
        TaskOptionsBlock.model_validate({option: rule.kind(outside)})


@pytest.mark.parametrize("option", [f.name for f in fields(TaskOptions) if f.metadata.get("choices")])
def test_task_options_block_takes_exactly_the_contract_choices(option):
    choices = next(f for f in fields(TaskOptions) if f.name == option).metadata["choices"]
    for choice in choices:
        assert getattr(TaskOptionsBlock.model_validate({option: choice}), option) == choice
    with pytest.raises(ValidationError):
        TaskOptionsBlock.model_validate({option: "something-else"})


def test_trial_config_survives_the_plain_form_ray_tune_carries():
    config = TrialConfig(trial_id="t-1-g0", job_id="t-1", stage="target", model="tiny", tasks=("toy_xnli",),
                         seed=2, output_dir="/runs/t-1/g0", hparams={"learning_rate": 1e-3},
                         languages=("en", "xs"), settings=TrialSettings(workers=1, precision="auto"),
                         label="none→toy_xnli s2")
    plain = json.loads(json.dumps(config.to_dict()))
    assert plain == config.to_dict()  # JSON types only: what a resumed search reads back is equal
    assert TrialConfig.from_dict(plain) == config


def test_every_setting_a_plan_gives_a_trial_is_declared():
    spec = parse_spec({
        "name": "settings", "intermediate": ["none", "toy_chunk"], "targets": ["toy_xnli"],
        "resources": {"gpu": 1}, "deepspeed": {"stage": 2}, "precision": "bf16",
        "adversarial": {"fgm1": {"method": "fgm"}}, "hyperparameters": {"intermediate": {"adversarial": "fgm1"}},
        "evaluation": {"perturbations": [{"name": "char_noise", "rate": 0.1}]},
    })
    given = {key for job in build_plan(spec).jobs for key in job.settings}
    assert {"deepspeed", "adversarial", "perturbations", "workers"} <= given
    assert given <= set(typing.get_type_hints(TrialSettings))


def test_tag_names_are_distinct():
    names = [v for k, v in vars(Tag).items() if k.isupper()]
    assert len(names) == len(set(names))
