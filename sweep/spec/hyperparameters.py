"""The ``hyperparameters:`` block: each value a fixed value, a grid or a distribution, checked
against the contract's hyperparameter table (``trainables.contract.HYPERPARAMETERS``)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from sweep.spec.errors import SpecError, did_you_mean
from trainables.contract import ADVERSARIAL, HYPERPARAMETERS, HPRule
from trainables.tasks import task_names

PHASES = ("intermediate", "target")
PER_TASK = "tasks"  # hyperparameters.tasks.<task>: overrides for jobs that train that task alone

#: per name: type and range, the value a job gets when its spec leaves it out, and the
#: hyperparameters without one (out of a job's space, and id, unless a spec gives them)
HP_RULES: dict[str, HPRule] = {name: hp.rule for name, hp in HYPERPARAMETERS.items()}
HP_DEFAULTS: dict[str, Any] = {name: hp.default for name, hp in HYPERPARAMETERS.items() if not hp.optional}
OPTIONAL_HPS: tuple[str, ...] = tuple(name for name, hp in HYPERPARAMETERS.items() if hp.optional)


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Grid:
    values: tuple


@dataclass(frozen=True)
class Distribution:
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple | None = None


HyperParameter = Union[Fixed, Grid, Distribution]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _yaml_number(value: Any) -> Any:
    """PyYAML reads ``2e-5`` (no dot) as a string; researchers write learning rates that way."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_hyperparameter(name: str, raw: Any, path: str) -> HyperParameter:
    """scalar -> Fixed, list -> Grid (searched over), {distribution: ...} -> Distribution."""
    rule = HP_RULES[name]
    raw = [_yaml_number(v) for v in raw] if isinstance(raw, list) else _yaml_number(raw)
    if isinstance(raw, dict):
        raw = {k: (_yaml_number(v) if k in ("low", "high") else
                   [_yaml_number(x) for x in v] if k == "values" and isinstance(v, list) else v)
               for k, v in raw.items()}
    if isinstance(raw, list):
        if not raw:
            raise SpecError(path, "empty grid: give at least one value")
        for i, v in enumerate(raw):
            _check_value(rule, v, f"{path}[{i}]")
        if len(set(raw)) != len(raw):
            raise SpecError(path, f"grid has repeated values: {raw}")
        # sorted: the grid's order does not change what is searched, nor the job's id
        return Grid(tuple(sorted(_coerce(rule, v) for v in raw)))
    if isinstance(raw, dict):
        return _parse_distribution(rule, raw, path)
    if raw is None and HYPERPARAMETERS[name].accepts_null:
        return Fixed(None)
    _check_value(rule, raw, path)
    return Fixed(_coerce(rule, raw))


def _check_value(rule: HPRule, value: Any, path: str) -> None:
    problem = rule.check(value)
    if problem:
        raise SpecError(path, problem)


def _coerce(rule: HPRule, value: Any) -> Any:
    return int(value) if rule.kind is int else float(value)


def _parse_distribution(rule: HPRule, raw: dict, path: str) -> Distribution:
    allowed = {"distribution", "low", "high", "values"}
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", f"unknown field{did_you_mean(key, sorted(allowed))}")
    kind = raw.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise SpecError(f"{path}.distribution",
                        f"must be one of {', '.join(DISTRIBUTIONS)}, got {kind!r}"
                        + did_you_mean(str(kind), DISTRIBUTIONS))
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}.values", "choice needs a non-empty list of values")
        for i, v in enumerate(values):
            _check_value(rule, v, f"{path}.values[{i}]")
        return Distribution(kind, values=tuple(_coerce(rule, v) for v in values))
    for bound in ("low", "high"):
        if bound not in raw:
            raise SpecError(f"{path}.{bound}", f"{kind} needs '{bound}'")
        _check_value(rule, raw[bound], f"{path}.{bound}")
    low, high = raw["low"], raw["high"]
    if low >= high:
        raise SpecError(path, f"low ({low}) must be below high ({high})")
    if kind == "randint" and rule.kind is not int:
        raise SpecError(f"{path}.distribution", "randint is for integer hyperparameters")
    if kind != "randint" and rule.kind is int:
        raise SpecError(f"{path}.distribution", f"{kind} samples floats; use randint or choice "
                                                "for integer hyperparameters")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{path}.low", f"loguniform needs low > 0, got {low!r}")
    return Distribution(kind, low=_coerce(rule, low), high=_coerce(rule, high))


# --------------------------------------------------------------------------- adversarial

def _adversarial_names(configs: dict[str, dict]) -> list[str]:
    from trainables.adversarial import method_names  # only for specs that use adversarial training

    return [*method_names(), *configs]  # method_names() starts with "none"


def parse_adversarial(value: Any, path: str, configs: dict[str, dict]) -> HyperParameter:
    """``adversarial: freelb`` / ``[none, freelb, smart3]`` / ``{distribution: choice, values: [...]}``."""
    names = _adversarial_names(configs)

    def check(name: Any, where: str) -> str:
        if not isinstance(name, str) or name not in names:
            raise SpecError(where, f"unknown adversarial configuration {name!r}"
                                   + did_you_mean(str(name), names) + f"; known: {', '.join(names)}")
        return name

    if isinstance(value, list):
        if not value:
            raise SpecError(path, "empty grid: give at least one value")
        if len(set(map(str, value))) != len(value):
            raise SpecError(path, f"grid has repeated values: {value}")
        return Grid(tuple(sorted(check(v, f"{path}[{i}]") for i, v in enumerate(value))))
    if isinstance(value, dict):
        if value.get("distribution") != "choice" or not isinstance(value.get("values"), list):
            raise SpecError(path, "adversarial takes a name, a list of names, or "
                                  "{distribution: choice, values: [...]}")
        return Distribution("choice", values=tuple(check(v, f"{path}.values[{i}]")
                                                  for i, v in enumerate(value["values"])))
    return Fixed(check(value, path))


# --------------------------------------------------------------------------- per phase, per task

def _parse_named(given: dict, base: str, search_algorithm: str, adversarial: dict[str, dict]
                 ) -> dict[str, HyperParameter]:
    """The values one phase (or one task) gives, by name."""
    parsed: dict[str, HyperParameter] = {}
    for name, value in given.items():
        path = f"{base}.{name}"
        if name == ADVERSARIAL:
            parsed[name] = parse_adversarial(value, path, adversarial)
        elif name in HP_RULES:
            parsed[name] = parse_hyperparameter(name, value, path)
        else:
            raise SpecError(path, "unknown hyperparameter" + did_you_mean(name, sorted([*HP_RULES, ADVERSARIAL])))
        if isinstance(parsed[name], Distribution) and search_algorithm == "grid":
            raise SpecError(path, "a distribution needs 'search: {algorithm: optuna}' "
                                  "(grid search takes a list of values)")
    return parsed


def check_task_hyperparameters(raw: Any, search_algorithm: str, adversarial: dict[str, dict]
                               ) -> dict[str, dict[str, HyperParameter]]:
    """``hyperparameters.tasks: {xquad: {max_length: 384, epochs: 2}}``: values for one task.

    They override the phase's values in every job that trains that task on its own (a target,
    or a single-task intermediate entry); multi-task entries keep the phase's values.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"hyperparameters.{PER_TASK}", "must map task names to hyperparameters")
    names = task_names()
    out: dict[str, dict[str, HyperParameter]] = {}
    for task, given in raw.items():
        base = f"hyperparameters.{PER_TASK}.{task}"
        if task not in names:
            raise SpecError(base, "unknown task" + did_you_mean(str(task), names))
        if not isinstance(given, dict) or not given:
            raise SpecError(base, "must be a non-empty mapping of hyperparameter: value")
        out[task] = _parse_named(given, base, search_algorithm, adversarial)
    return out


def check_hyperparameters(raw: dict[str, dict[str, Any]], search_algorithm: str,
                          adversarial: dict[str, dict] | None = None,
                          ) -> dict[str, dict[str, HyperParameter]]:
    """Each phase's space: the values given, and the table's defaults for the rest."""
    out: dict[str, dict[str, HyperParameter]] = {}
    for phase in raw:
        if phase not in PHASES and phase != PER_TASK:
            raise SpecError(f"hyperparameters.{phase}", "unknown phase"
                            + did_you_mean(phase, (*PHASES, PER_TASK)) + f"; phases: {', '.join(PHASES)} "
                            f"(and '{PER_TASK}' for per-task overrides)")
    for phase in PHASES:
        given = raw.get(phase) or {}
        if not isinstance(given, dict):
            raise SpecError(f"hyperparameters.{phase}", "must be a mapping of hyperparameter: value")
        parsed = _parse_named(given, f"hyperparameters.{phase}", search_algorithm, adversarial or {})
        for name, default in HP_DEFAULTS.items():
            parsed.setdefault(name, Fixed(default))
        out[phase] = parsed
    return out


def check_factors(raw: list[str], hps: dict, task_hps: dict) -> tuple[str, ...]:
    known = sorted([*HP_RULES, ADVERSARIAL])
    for i, name in enumerate(raw):
        if name not in known:
            raise SpecError(f"factors[{i}]", "unknown hyperparameter" + did_you_mean(name, known))
        spaces = [*hps.values(), *task_hps.values()]
        if not any(isinstance(space.get(name), Grid) for space in spaces):
            raise SpecError(f"factors[{i}]", f"'{name}' is not a list of values in any phase: "
                                             "a factor compares the values of a grid")
    if len(set(raw)) != len(raw):
        raise SpecError("factors", f"repeated factor: {raw}")
    return tuple(raw)
