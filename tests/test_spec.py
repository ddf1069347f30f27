"""Tests for the study spec (``sweep.spec``): every bad input is a one-line ``SpecError`` naming the
field path; valid specs come back typed, canonical and with defaults filled.

Fast and offline: nothing here touches Ray, MLflow, a model or task data. The CLI's handling of
bad specs (exit code 2, one line on stderr) is tested in ``test_cli_plan.py``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sweep.spec import (
    HP_DEFAULTS, HP_RULES, NONE_TASK, OPTIONAL_HPS, PHASES, Distribution, Fixed, Grid, SpecError, Target,
    load_spec, parse_spec,
)
from trainables.tasks import task_info, task_names

REPO = Path(__file__).resolve().parents[1]
SOURCE = "study.yaml"

# A valid spec over the toy tasks; each bad case below changes one thing in it.
BASE: dict = {
    "name": "spec-test",
    "intermediate": ["none", "toy_chunk", ["toy_paraphrase", "toy_chunk"]],
    "targets": ["toy_xnli", {"task": "toy_pos", "languages": ["en", "xs"]}, "toy_tatoeba"],
    "seeds": [1, 2],
    "hyperparameters": {"intermediate": {"learning_rate": 1e-4}, "target": {"batch_size": 16}},
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Relative paths (``model: ./does-not-exist``) resolve inside an empty directory."""
    monkeypatch.chdir(tmp_path)


def spec_with(**changes) -> dict:
    """BASE with top-level fields replaced; a value of ``DELETE`` removes the field."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def with_hp(phase: str, **values) -> dict:
    data = copy.deepcopy(BASE)
    data["hyperparameters"] = {phase: values}
    return data


def with_hp_optuna(phase: str, **values) -> dict:
    data = with_hp(phase, **values)
    data["search"] = {"algorithm": "optuna", "num_samples": 4}
    return data


DELETE = object()


def _merged(**top) -> dict:
    data = copy.deepcopy(BASE)
    data.update(top)
    return data


@dataclass(frozen=True)
class Bad:
    id: str
    data: dict
    field: str
    phrase: str           # a key phrase of the message (case-insensitive)
    absent: str | None = None  # a phrase the message must NOT contain


BAD = [
    # ---- unknown keys, with "did you mean"
    Bad("top-level typo", _merged(nmae="x"), "nmae", "did you mean 'name'"),
    Bad("top-level seed for seeds", _merged(seed=[1]), "seed", "did you mean 'seeds'"),
    Bad("top-level unrelated", _merged(colour="blue"), "colour", "unknown field", absent="did you mean"),
    Bad("search nested", spec_with(search={"algoritm": "optuna"}), "search.algoritm",
        "did you mean 'algorithm'"),
    Bad("resources nested", spec_with(resources={"gpus": 1}), "resources.gpus", "did you mean 'gpu'"),
    Bad("mlflow nested", spec_with(mlflow={"experiment_name": "x"}), "mlflow.experiment_name",
        "did you mean 'experiment'"),
    Bad("tasks.<name> nested", spec_with(tasks={"toy_chunk": {"train_example": 100}}),
        "tasks.toy_chunk.train_example", "did you mean 'train_examples'"),
    Bad("targets[i] mapping", spec_with(targets=["toy_xnli", {"task": "toy_pos", "langs": ["en"]}]),
        "targets[1].langs", "did you mean 'languages'"),
    Bad("distribution key", with_hp_optuna("target", learning_rate={
        "distribution": "uniform", "low": 1e-5, "hi": 1e-4}), "hyperparameters.target.learning_rate.hi",
        "did you mean 'high'"),
    # ---- wrong types
    Bad("seeds as digit strings", spec_with(seeds=["1", "2"]), "seeds[0]", "valid integer"),
    Bad("seeds as words", spec_with(seeds=["one"]), "seeds[0]", "valid integer"),
    Bad("seeds as bools", spec_with(seeds=[True]), "seeds[0]", "valid integer"),
    Bad("seeds as a string", spec_with(seeds="1 2"), "seeds", "valid list"),
    Bad("targets as a string", spec_with(targets="toy_xnli"), "targets", "valid list"),
    Bad("intermediate as a string", spec_with(intermediate="toy_chunk"), "intermediate", "valid list"),
    Bad("bool field as a string", spec_with(mlflow={"log_checkpoints": "maybe"}),
        "mlflow.log_checkpoints", "valid boolean"),
    Bad("bool field as 'yes' string", spec_with(mlflow={"log_checkpoints": "yes"}),
        "mlflow.log_checkpoints", "valid boolean"),
    Bad("bool field as an int", spec_with(mlflow={"log_checkpoints": 1}), "mlflow.log_checkpoints",
        "valid boolean"),
    Bad("number field as a string", spec_with(resources={"cpu": "2"}), "resources.cpu", "valid number"),
    Bad("name as a number", spec_with(name=123), "name", "valid string"),
    Bad("target mapping without task", spec_with(targets=[{"languages": ["en"]}]), "targets[0].task",
        "required"),
    Bad("target languages as an unknown set name", spec_with(targets=[{"task": "toy_xnli", "languages": "en"}]),
        "targets[0].languages", "not a language set of task 'toy_xnli'"),
    Bad("target language set misspelt", spec_with(targets=[{"task": "toy_xnli", "languages": "al"}]),
        "targets[0].languages", "did you mean 'all'"),
    Bad("target language as a number", spec_with(targets=[{"task": "toy_xnli", "languages": ["en", 7]}]),
        "targets[0].languages[1]", "valid string"),
    Bad("multi-task entry of numbers", spec_with(intermediate=["none", [1, 2]]), "intermediate[1][0]",
        "valid string"),
    Bad("hyperparameter phase null", spec_with(hyperparameters={"target": None}),
        "hyperparameters.target", "dictionary"),
    Bad("search algorithm", spec_with(search={"algorithm": "random"}), "search.algorithm", "optuna"),
    Bad("num_samples as a word", spec_with(search={"num_samples": "many"}), "search.num_samples",
        "valid integer"),
    # ---- unknown task names
    Bad("unknown intermediate", spec_with(intermediate=["none", "toy_chunck"]), "intermediate[1]",
        "did you mean 'toy_chunk'"),
    Bad("unknown intermediate far off", spec_with(intermediate=["zzz_no_such_task"]), "intermediate[0]",
        "unknown task 'zzz_no_such_task'", absent="did you mean"),
    Bad("none misspelt", spec_with(intermediate=["none", "nnoe"]), "intermediate[1]",
        "did you mean 'none'"),
    Bad("unknown target (name form)", spec_with(targets=["toy_xnil"]), "targets[0]",
        "did you mean 'toy_xnli'"),
    Bad("unknown target (mapping form)", spec_with(targets=["toy_xnli", {"task": "toy_poss"}]),
        "targets[1].task", "did you mean 'toy_pos'"),
    Bad("unknown task in multi-task entry", spec_with(intermediate=[["toy_chunk", "toy_paraphrse"]]),
        "intermediate[0][1]", "did you mean 'toy_paraphrase'"),
    Bad("unknown task in tasks block", spec_with(tasks={"toy_chnk": {"train_examples": 10}}),
        "tasks.toy_chnk", "did you mean 'toy_chunk'"),
    # ---- tasks in the wrong role
    Bad("retrieval task as intermediate", spec_with(intermediate=["none", "toy_tatoeba"]),
        "intermediate[1]", "cannot be an intermediate task"),
    Bad("retrieval task inside multi-task", spec_with(intermediate=[["toy_tatoeba", "toy_chunk"]]),
        "intermediate[0][0]", "cannot be an intermediate task"),
    Bad("intermediate-only task as target", spec_with(targets=["toy_xnli", "toy_chunk"]), "targets[1]",
        "cannot be a target task"),
    Bad("intermediate-only task as target (mapping)", spec_with(targets=[{"task": "toy_paraphrase"}]),
        "targets[0].task", "cannot be a target task"),
    Bad("none inside multi-task", spec_with(intermediate=[["toy_chunk", "none"]]), "intermediate[0][1]",
        "cannot be part of a multi-task entry"),
    Bad("one-task multi-task list", spec_with(intermediate=["none", ["toy_chunk"]]), "intermediate[1]",
        "at least two tasks"),
    Bad("empty multi-task list", spec_with(intermediate=[[]]), "intermediate[0]", "at least two tasks"),
    # ---- repeats
    Bad("repeated task in multi-task entry", spec_with(intermediate=[["toy_chunk", "toy_chunk"]]),
        "intermediate[0]", "repeated task"),
    Bad("repeated intermediate", spec_with(intermediate=["none", "toy_chunk", "toy_chunk"]),
        "intermediate[2]", "repeated intermediate entry"),
    Bad("repeated baseline", spec_with(intermediate=["none", "toy_chunk", "none"]), "intermediate[2]",
        "repeated intermediate entry"),
    Bad("repeated multi-task in other order",
        spec_with(intermediate=[["toy_chunk", "toy_paraphrase"], ["toy_paraphrase", "toy_chunk"]]),
        "intermediate[1]", "repeated intermediate entry"),
    Bad("repeated target", spec_with(targets=["toy_xnli", "toy_pos", {"task": "toy_xnli", "languages": ["en"]}]),
        "targets[2]", "listed twice"),
    Bad("repeated seeds", spec_with(seeds=[1, 2, 1]), "seeds", "repeated seeds"),
    Bad("repeated languages", spec_with(targets=[{"task": "toy_xnli", "languages": ["en", "xs", "en"]}]),
        "targets[0].languages", "repeated language"),
    # ---- languages
    Bad("unknown language, close", spec_with(targets=["toy_pos", {"task": "toy_xnli", "languages": ["en", "xss"]}]),
        "targets[1].languages[1]", "did you mean 'xs'"),
    Bad("unknown language, far", spec_with(targets=[{"task": "toy_xnli", "languages": ["sw"]}]),
        "targets[0].languages[0]", "not a language of task 'toy_xnli'", absent="did you mean"),
    Bad("English for an English-less retrieval task", spec_with(targets=[{"task": "toy_tatoeba", "languages": ["en"]}]),
        "targets[0].languages[0]", "not a language of task 'toy_tatoeba'"),
    Bad("empty languages", spec_with(targets=[{"task": "toy_xnli", "languages": []}]), "targets[0].languages",
        "at least one language"),
    # ---- empty lists
    Bad("empty intermediate", spec_with(intermediate=[]), "intermediate", "at least one entry"),
    Bad("empty targets", spec_with(targets=[]), "targets", "at least one target"),
    Bad("empty seeds", spec_with(seeds=[]), "seeds", "at least one seed"),
    # ---- hyperparameters
    Bad("empty grid", with_hp("target", learning_rate=[]), "hyperparameters.target.learning_rate", "empty grid"),
    Bad("negative learning rate", with_hp("target", learning_rate=-1e-5), "hyperparameters.target.learning_rate",
        "must be > 0"),
    Bad("zero learning rate", with_hp("intermediate", learning_rate=0), "hyperparameters.intermediate.learning_rate",
        "must be > 0"),
    Bad("learning rate above 1", with_hp("target", learning_rate=1.5), "hyperparameters.target.learning_rate",
        "must be <= 1"),
    Bad("learning rate as a non-numeric string", with_hp("target", learning_rate="fast"),
        "hyperparameters.target.learning_rate", "must be a number"),
    Bad("learning rate NaN", with_hp("target", learning_rate=float("nan")), "hyperparameters.target.learning_rate",
        "finite"),
    Bad("bad value inside a grid", with_hp("target", learning_rate=[1e-5, 2.0]),
        "hyperparameters.target.learning_rate[1]", "must be <= 1"),
    Bad("repeated grid values", with_hp("target", batch_size=[16, 32, 16]), "hyperparameters.target.batch_size",
        "repeated values"),
    Bad("non-integer batch size", with_hp("target", batch_size=16.5), "hyperparameters.target.batch_size",
        "must be an integer"),
    Bad("batch size as a bool", with_hp("target", batch_size=True), "hyperparameters.target.batch_size",
        "must be a number"),
    Bad("zero epochs", with_hp("intermediate", epochs=0), "hyperparameters.intermediate.epochs", "must be >= 1"),
    Bad("warmup_ratio = 1", with_hp("target", warmup_ratio=1), "hyperparameters.target.warmup_ratio",
        "must be < 1"),
    Bad("max_length < 8", with_hp("target", max_length=4), "hyperparameters.target.max_length", "must be >= 8"),
    Bad("unknown hyperparameter", with_hp("target", learning_rte=1e-5), "hyperparameters.target.learning_rte",
        "did you mean 'learning_rate'"),
    Bad("unknown phase", spec_with(hyperparameters={"targt": {"learning_rate": 1e-5}}), "hyperparameters.targt",
        "did you mean 'target'"),
    Bad("distribution without optuna", with_hp("target", learning_rate={
        "distribution": "loguniform", "low": 1e-5, "high": 1e-3}), "hyperparameters.target.learning_rate",
        "algorithm: optuna"),
    Bad("bad distribution kind", with_hp_optuna("target", learning_rate={
        "distribution": "loguniorm", "low": 1e-5, "high": 1e-3}),
        "hyperparameters.target.learning_rate.distribution", "did you mean 'loguniform'"),
    Bad("distribution kind missing", with_hp_optuna("target", learning_rate={"low": 1e-5, "high": 1e-3}),
        "hyperparameters.target.learning_rate.distribution", "must be one of"),
    Bad("low == high", with_hp_optuna("target", learning_rate={
        "distribution": "uniform", "low": 1e-4, "high": 1e-4}), "hyperparameters.target.learning_rate",
        "must be below high"),
    Bad("low > high", with_hp_optuna("intermediate", epochs={"distribution": "randint", "low": 5, "high": 2}),
        "hyperparameters.intermediate.epochs", "must be below high"),
    Bad("bound missing", with_hp_optuna("target", learning_rate={"distribution": "uniform", "low": 1e-5}),
        "hyperparameters.target.learning_rate.high", "needs 'high'"),
    Bad("bound out of range", with_hp_optuna("target", learning_rate={
        "distribution": "uniform", "low": 0, "high": 1e-3}), "hyperparameters.target.learning_rate.low",
        "must be > 0"),
    Bad("choice without values", with_hp_optuna("target", batch_size={"distribution": "choice"}),
        "hyperparameters.target.batch_size.values", "non-empty list"),
    Bad("choice with a bad value", with_hp_optuna("target", batch_size={"distribution": "choice", "values": [8, 0]}),
        "hyperparameters.target.batch_size.values[1]", "must be >= 1"),
    Bad("randint for a float", with_hp_optuna("target", learning_rate={
        "distribution": "randint", "low": 0.1, "high": 0.5}),
        "hyperparameters.target.learning_rate.distribution", "integer hyperparameters"),
    Bad("uniform for an integer", with_hp_optuna("target", batch_size={
        "distribution": "uniform", "low": 8, "high": 64}),
        "hyperparameters.target.batch_size.distribution", "integer hyperparameters"),
    Bad("loguniform from zero", with_hp_optuna("target", weight_decay={
        "distribution": "loguniform", "low": 0, "high": 0.1}),
        "hyperparameters.target.weight_decay.low", "loguniform needs low > 0"),
    # ---- name, required fields, seeds, resources, model
    Bad("name with spaces", spec_with(name="my study"), "name", "letters, digits"),
    Bad("name empty", spec_with(name=""), "name", "letters, digits"),
    Bad("missing name", spec_with(name=DELETE), "name", "required field is missing"),
    Bad("missing targets", spec_with(targets=DELETE), "targets", "required field is missing"),
    Bad("negative seed", spec_with(seeds=[1, -3]), "seeds[1]", "must be >= 0"),
    Bad("resources.cpu = 0", spec_with(resources={"cpu": 0}), "resources.cpu", "greater than 0"),
    Bad("resources.gpu < 0", spec_with(resources={"gpu": -1}), "resources.gpu", "greater than or equal to 0"),
    Bad("max_failures < 0", spec_with(max_failures=-1), "max_failures", "greater than or equal to 0"),
    Bad("train_examples = 0", spec_with(tasks={"toy_chunk": {"train_examples": 0}}),
        "tasks.toy_chunk.train_examples", "greater than or equal to 1"),
    Bad("missing local model dir", spec_with(model="./does-not-exist"), "model",
        "local model directory not found"),
    Bad("blank model", spec_with(model="  "), "model", "must name a hub id"),
    # ---- task options for multi-task mixing and masked-LM
    Bad("probability for only part of a multi-task entry",
        spec_with(tasks={"toy_paraphrase": {"probability": 0.7}}),
        "tasks.toy_chunk.probability", "give one for every task of the entry or none"),
    Bad("probability above 1", spec_with(tasks={"toy_chunk": {"probability": 1.5}}),
        "tasks.toy_chunk.probability", "less than or equal to 1"),
    Bad("examples_cap = 0", spec_with(tasks={"toy_chunk": {"examples_cap": 0}}),
        "tasks.toy_chunk.examples_cap", "greater than or equal to 1"),
    Bad("mlm without a corpus", spec_with(intermediate=["none", ["toy_chunk", "mlm"]]),
        "tasks.mlm.corpus", "task 'mlm' needs this option"),
    Bad("unknown pooling", spec_with(tasks={"toy_tatoeba": {"pooling": "max"}}),
        "tasks.toy_tatoeba.pooling", "'mean' or 'cls'"),
    # ---- study factors, deepspeed, resources
    Bad("size factor for an unknown phase", spec_with(train_examples={"intermediat": [100]}),
        "train_examples.intermediat", "did you mean 'intermediate'"),
    Bad("size factor of zero", spec_with(train_examples={"intermediate": [100, 0]}),
        "train_examples.intermediate[1]", "must be >= 1 or null"),
    Bad("size factor repeated", spec_with(train_examples={"target": [100, 100]}),
        "train_examples.target", "repeated size"),
    Bad("deepspeed stage 4", spec_with(deepspeed={"stage": 4}), "deepspeed.stage", "less than or equal to 3"),
    Bad("parameter offload below stage 3", spec_with(deepspeed={"stage": 2, "offload_param": "cpu"}),
        "deepspeed.offload_param", "needs stage 3"),
    Bad("deepspeed unknown key", spec_with(deepspeed={"stge": 2}), "deepspeed.stge", "did you mean 'stage'"),
    Bad("deepspeed config file missing", spec_with(deepspeed={"config_file": "nope.json"}),
        "deepspeed.config_file", "file not found"),
    Bad("per-task hyperparameters for an unknown task",
        spec_with(hyperparameters={"tasks": {"toy_xnl": {"epochs": 2}}}),
        "hyperparameters.tasks.toy_xnl", "did you mean 'toy_xnli'"),
    Bad("per-task hyperparameter out of range",
        spec_with(hyperparameters={"tasks": {"toy_xnli": {"max_length": 4}}}),
        "hyperparameters.tasks.toy_xnli.max_length", "must be >= 8"),
    Bad("group naming an entry the study lacks", spec_with(groups={"syntactic": ["toy_chunk", "toy_pos"]}),
        "groups.syntactic[1]", "not an intermediate entry of this study"),
    Bad("entry in two groups", spec_with(groups={"a": ["toy_chunk"], "b": ["toy_chunk"]}),
        "groups.b[0]", "already in group 'a'"),
    Bad("language criterion misspelt",
        spec_with(targets=[{"task": "toy_xnli", "languages": {"resource_clas": "<=2"}}]),
        "targets[0].languages", "did you mean 'resource_class'"),
    Bad("language selection from an unknown set",
        spec_with(targets=[{"task": "toy_xnli", "languages": {"from": "xtreme", "xlmr": True}}]),
        "targets[0].languages.from", "not a language set of task 'toy_xnli'"),
    Bad("selection by attributes of languages without metadata",
        spec_with(targets=[{"task": "toy_xnli", "languages": {"xlmr": True}}]),
        "targets[0].languages", "cannot select languages of task 'toy_xnli' by attributes"),
    Bad("zero workers", spec_with(resources={"workers": 0}), "resources.workers", "greater than or equal to 1"),
]


def test_enough_distinct_bad_cases():
    assert len({b.id for b in BAD}) == len(BAD) >= 30
    assert len({b.field for b in BAD}) >= 30


@pytest.mark.parametrize("case", BAD, ids=[b.id for b in BAD])
def test_bad_spec_names_field(case: Bad):
    with pytest.raises(SpecError) as info:
        parse_spec(copy.deepcopy(case.data), source=SOURCE)
    err = info.value
    message = str(err)
    assert err.field == case.field, message
    assert case.phrase.lower() in message.lower(), message
    if case.absent:
        assert case.absent.lower() not in message.lower(), message
    # one line: "<source>: <field path>: <problem>"
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: {case.field}: "), message
    assert err.source == SOURCE


def test_bad_spec_without_source_starts_with_field():
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(seeds=[1, -3]))
    assert str(info.value).startswith("seeds[1]: ")
    assert info.value.source is None


def test_field_path_with_odd_characters_keeps_message():
    """The source is added after the fact: the problem text must survive a ': ' in the path."""
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(tasks={"a: b": {}}), source=SOURCE)
    assert info.value.field == "tasks.a: b"
    assert str(info.value) == f"{SOURCE}: tasks.a: b: unknown task"


def test_bad_cases_are_bad_only_because_of_their_change():
    """The base every case starts from is itself valid."""
    spec = parse_spec(copy.deepcopy(BASE), source=SOURCE)
    assert spec.name == BASE["name"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", sorted(HP_RULES))
def test_every_hyperparameter_rejects_a_string(phase, name):
    with pytest.raises(SpecError) as info:
        parse_spec(with_hp(phase, **{name: "lots"}))
    assert info.value.field == f"hyperparameters.{phase}.{name}"


# --------------------------------------------------------------------------- YAML files

def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntargets: [toy_xnli\nseeds: [1]\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line " in message
    assert "\n" not in message


def test_invalid_yaml_line_number_points_at_the_problem(tmp_path):
    lines = ["name: broken", "targets: [toy_xnli]", "seeds: [1]", "resources:", "  cpu: 1",
             "\tgpu: 0"]  # a tab may not start indentation in YAML: line 6
    path = tmp_path / "tab.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"line {len(lines)}:" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "study.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "not found" in str(info.value)
    assert str(path) in str(info.value)


def test_directory_is_not_a_spec_file(tmp_path):
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)


@pytest.mark.parametrize("text", ["- name: x\n- targets: [toy_xnli]\n", "just a string\n", "", "42\n"],
                         ids=["list", "string", "empty", "number"])
def test_top_level_not_a_mapping(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "mapping" in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_file_errors_name_the_file_and_field(tmp_path):
    data = spec_with(targets=["toy_xnli", {"task": "toy_pos", "languages": ["en", "xq"]}])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "targets[1].languages[1]"
    assert str(info.value).startswith(f"{path}: targets[1].languages[1]: ")


def test_yaml_exponent_without_dot_is_read_as_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads ``2e-5`` as a string; the spec takes it as the number meant."""
    path = tmp_path / "study.yaml"
    path.write_text("name: s\ntargets: [toy_xnli]\nhyperparameters:\n  target:\n"
                    "    learning_rate: 2e-5\n    weight_decay: [1e-2, 0]\n")
    hps = load_spec(path).hyperparameters["target"]
    assert hps["learning_rate"] == Fixed(2e-5)
    assert hps["weight_decay"] == Grid((0.0, 0.01))
    path.write_text(path.read_text().replace("2e-5", "-2e-5"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "hyperparameters.target.learning_rate"


def test_grid_order_does_not_change_the_spec(tmp_path):
    a = parse_spec({"name": "s", "targets": ["toy_xnli"],
                    "hyperparameters": {"target": {"learning_rate": [3e-5, 1e-5]}}})
    b = parse_spec({"name": "s", "targets": ["toy_xnli"],
                    "hyperparameters": {"target": {"learning_rate": [1e-5, 3e-5]}}})
    assert a.hyperparameters == b.hyperparameters


# --------------------------------------------------------------------------- valid specs

def test_minimal_spec_gets_defaults():
    spec = parse_spec({"name": "minimal", "targets": ["toy_xnli"]})
    assert spec.intermediate == ((),)              # just the baseline
    assert spec.seeds == (1,)
    assert spec.model == "tiny"
    assert spec.targets == (Target("toy_xnli", task_info("toy_xnli").languages),)
    assert set(spec.hyperparameters) == set(PHASES)
    for phase in PHASES:
        space = spec.hyperparameters[phase]
        assert set(space) == set(HP_RULES) - set(OPTIONAL_HPS)   # those stay out unless given
        for name, hp in space.items():
            assert hp == Fixed(HP_DEFAULTS[name])
            # the defaults themselves obey the rules
            assert hp.value is None or HP_RULES[name].check(hp.value) is None, name
    assert spec.resources.cpu > 0 and spec.resources.gpu == 0
    assert spec.search.algorithm == "grid" and spec.search.num_samples == 1
    assert spec.search.mode in ("max", "min")
    assert spec.mlflow.log_checkpoints is False  # off: the checkpoint's location is a tag
    assert spec.tasks == {}
    assert spec.experiment == "minimal"
    assert spec.source is None


def test_given_values_override_only_themselves():
    spec = parse_spec(with_hp("target", learning_rate=5e-5, max_steps=None))
    target, inter = spec.hyperparameters["target"], spec.hyperparameters["intermediate"]
    assert target["learning_rate"] == Fixed(5e-5)
    assert target["max_steps"] == Fixed(None)
    assert inter["learning_rate"] == Fixed(HP_DEFAULTS["learning_rate"])
    for name in set(HP_RULES) - {"learning_rate", "max_steps", *OPTIONAL_HPS}:
        assert target[name] == inter[name] == Fixed(HP_DEFAULTS[name])


def test_integer_values_are_ints_and_float_values_floats():
    spec = parse_spec(with_hp("target", batch_size=16.0, learning_rate=1, epochs=[1, 2.0]))
    space = spec.hyperparameters["target"]
    assert space["batch_size"] == Fixed(16) and type(space["batch_size"].value) is int
    assert type(space["learning_rate"].value) is float
    assert all(type(v) is int for v in space["epochs"].values)


def test_both_target_forms():
    spec = parse_spec(spec_with(targets=["toy_xnli", {"task": "toy_pos", "languages": ["xv", "en"]},
                                         {"task": "toy_tatoeba"}]))
    assert spec.targets == (
        Target("toy_xnli", task_info("toy_xnli").languages),
        Target("toy_pos", ("xv", "en")),               # order as given
        Target("toy_tatoeba", task_info("toy_tatoeba").languages),
    )


def test_language_set_names_select_a_tasks_languages():
    spec = parse_spec(spec_with(targets=[{"task": "toy_xnli", "languages": "all"}]))
    assert spec.targets == (Target("toy_xnli", task_info("toy_xnli").languages),)


def test_groups_tag_intermediate_entries():
    spec = parse_spec(spec_with(groups={"syntactic": ["toy_chunk"], "semantic": [["toy_chunk", "toy_paraphrase"]],
                                        "baseline": ["none"]}))
    assert spec.groups == {("toy_chunk",): "syntactic", ("toy_chunk", "toy_paraphrase"): "semantic",
                           (): "baseline"}


def test_language_selection_by_attributes():
    from sweep.languages import language_info

    spec = parse_spec(spec_with(targets=[{"task": "xnli", "languages": {"resource_class": "<=3"}}]))
    chosen = spec.targets[0].languages
    assert chosen and all(language_info(l).resource_class <= 3 for l in chosen)
    assert set(chosen) < set(task_info("xnli").languages) and "en" not in chosen


def test_mixing_options_accepted():
    spec = parse_spec(spec_with(
        intermediate=[["toy_chunk", "mlm"]],
        tasks={"toy_chunk": {"probability": 0.8, "examples_cap": 100},
               "mlm": {"probability": 0.2, "corpus": "/data/cc100", "corpus_languages": ["sw", "de"]}}))
    assert spec.tasks["mlm"].corpus_languages == ["sw", "de"]
    assert spec.tasks["toy_chunk"].examples_cap == 100


def test_grid_values_parsed():
    spec = parse_spec(with_hp("target", learning_rate=[1e-5, 3e-5, 1e-4], batch_size=[16, 32]))
    space = spec.hyperparameters["target"]
    assert space["learning_rate"] == Grid((1e-5, 3e-5, 1e-4))
    assert space["batch_size"] == Grid((16, 32))
    assert spec.hyperparameters["intermediate"]["learning_rate"] == Fixed(HP_DEFAULTS["learning_rate"])


def test_single_value_grid_is_still_a_grid():
    spec = parse_spec(with_hp("target", epochs=[3]))
    assert spec.hyperparameters["target"]["epochs"] == Grid((3,))


def test_distributions_accepted_with_optuna():
    spec = parse_spec(with_hp_optuna(
        "target",
        learning_rate={"distribution": "loguniform", "low": 1e-5, "high": 1e-3},
        warmup_ratio={"distribution": "uniform", "low": 0.0, "high": 0.2},
        epochs={"distribution": "randint", "low": 1, "high": 4},
        batch_size={"distribution": "choice", "values": [16, 32, 64]},
        weight_decay=[0.0, 0.01],                       # a grid may sit beside distributions
    ))
    assert spec.search.algorithm == "optuna" and spec.search.num_samples == 4
    space = spec.hyperparameters["target"]
    assert space["learning_rate"] == Distribution("loguniform", low=1e-5, high=1e-3)
    assert space["warmup_ratio"] == Distribution("uniform", low=0.0, high=0.2)
    assert space["epochs"] == Distribution("randint", low=1, high=4)
    assert space["batch_size"] == Distribution("choice", values=(16, 32, 64))
    assert space["weight_decay"] == Grid((0.0, 0.01))


def test_multi_task_entries_canonical():
    a = parse_spec(spec_with(intermediate=["none", ["toy_paraphrase", "toy_chunk"], "toy_xnli"]))
    b = parse_spec(spec_with(intermediate=["none", ["toy_chunk", "toy_paraphrase"], "toy_xnli"]))
    assert a.intermediate == b.intermediate
    assert a.intermediate == ((), tuple(sorted(["toy_paraphrase", "toy_chunk"])), ("toy_xnli",))
    assert NONE_TASK not in [t for entry in a.intermediate for t in entry]


def test_three_task_entry_canonical():
    orders = [["toy_pos", "toy_chunk", "toy_paraphrase"], ["toy_paraphrase", "toy_pos", "toy_chunk"]]
    specs = [parse_spec(spec_with(intermediate=[o])) for o in orders]
    assert specs[0].intermediate == specs[1].intermediate == (("toy_chunk", "toy_paraphrase", "toy_pos"),)


def test_key_order_does_not_matter():
    def reverse(obj):
        if isinstance(obj, dict):
            return {k: reverse(obj[k]) for k in reversed(list(obj))}
        if isinstance(obj, list):
            return [reverse(v) for v in obj]
        return obj

    data = spec_with(search={"algorithm": "grid", "num_samples": 2, "metric": "dev/score"},
                     tasks={"toy_chunk": {"train_examples": 50}, "toy_xnli": {"data_dir": "/tmp/x"}},
                     hyperparameters={"target": {"learning_rate": [1e-5, 2e-5], "epochs": 2},
                                      "intermediate": {"batch_size": 8}})
    assert parse_spec(data) == parse_spec(reverse(data))


def test_intermediate_capable_targets_may_be_both():
    """Target tasks with English training data can be intermediate tasks too (e.g. XNLI→POS)."""
    both = [n for n in task_names() if n.startswith("toy_") and task_info(n).intermediate
            and task_info(n).trainable and task_info(n).target]
    assert both, "the toy registry should have a task usable in both roles"
    spec = parse_spec(spec_with(intermediate=["none", *both], targets=both))
    assert [e for e in spec.intermediate if e] == [(n,) for n in both]


def test_task_options_and_other_blocks():
    spec = parse_spec(spec_with(
        tasks={"toy_chunk": {"train_examples": 100, "data_dir": "/data/chunk"}},
        resources={"cpu": 2, "gpu": 0.5}, mlflow={"experiment": "exp", "log_checkpoints": False},
        search={"algorithm": "grid", "scheduler": "asha", "grace_period": 2, "max_concurrent": 3},
        max_failures=0, description="d"))
    assert spec.tasks["toy_chunk"].train_examples == 100
    assert spec.tasks["toy_chunk"].data_dir == "/data/chunk"
    assert spec.resources.cpu == 2.0 and spec.resources.gpu == 0.5
    assert spec.experiment == "exp" and spec.mlflow.log_checkpoints is False
    assert spec.search.scheduler == "asha" and spec.search.max_concurrent == 3
    assert spec.max_failures == 0 and spec.description == "d"


def test_existing_local_model_dir_accepted(tmp_path):
    (tmp_path / "my-model").mkdir()
    # resolved at validation: a trial runs in its own working directory, maybe on another node
    assert parse_spec(spec_with(model="./my-model")).model == str(Path("my-model").resolve())
    assert parse_spec(spec_with(model=str(tmp_path / "my-model"))).model == str(tmp_path / "my-model")
    # a hub id is not checked locally
    assert parse_spec(spec_with(model="xlm-roberta-large")).model == "xlm-roberta-large"


def test_large_seed_and_zero_seed_allowed():
    assert parse_spec(spec_with(seeds=[0, 2**40])).seeds == (0, 2**40)


def test_demo_spec_is_valid():
    path = REPO / "search_spaces" / "demo.yaml"
    spec = load_spec(path)
    raw = yaml.safe_load(path.read_text())
    assert spec.name == raw["name"]
    assert spec.source == str(path)
    assert len(spec.intermediate) == len(raw["intermediate"])
    assert [t.task for t in spec.targets] == [t if isinstance(t, str) else t["task"] for t in raw["targets"]]
    assert spec.seeds == tuple(raw["seeds"])


# ---- evaluation perturbations: lexicon files, labels

def test_lexicon_without_language_must_exist_and_with_language_may_be_missing(tmp_path):
    def spec(*perturbations):
        return spec_with(evaluation={"perturbations": list(perturbations)})

    for name, extra in (("code_switch", {}), ("attack", {"typos": 0})):
        with pytest.raises(SpecError) as info:
            parse_spec(spec({"name": "char_noise"}, {"name": name, "lexicon": "muse/en-de.txt", **extra}),
                       source=SOURCE)
        assert info.value.field == "evaluation.perturbations[1].lexicon"
        assert str(info.value) == f"{SOURCE}: evaluation.perturbations[1].lexicon: file not found: muse/en-de.txt"
    # a per-language path is checked per language when the trial runs (missing ones are skipped)
    parse_spec(spec({"name": "code_switch", "lexicon": "muse/en-{language}.txt"}))
    (tmp_path / "en-de.txt").write_text("dog Hund\n")
    parse_spec(spec({"name": "code_switch", "lexicon": str(tmp_path / "en-de.txt")}))
    parse_spec(spec({"name": "attack"}))  # no lexicon at all: typos only


def test_perturbations_differing_only_in_ops_or_lexicon_are_distinct(tmp_path):
    for lexicon in ("en-de.txt", "en-fr.txt"):
        (tmp_path / lexicon).write_text("dog Hund\n")
    spec = parse_spec(spec_with(evaluation={"perturbations": [
        {"name": "char_noise", "rate": 0.1, "ops": ["swap"]},
        {"name": "char_noise", "rate": 0.1, "ops": ["drop", "insert"]},
        {"name": "code_switch", "lexicon": str(tmp_path / "en-de.txt")},
        {"name": "code_switch", "lexicon": str(tmp_path / "en-fr.txt")}]}))
    assert len(spec.evaluation.perturbations) == 4
    with pytest.raises(SpecError, match=r"perturbations\[1\]: repeated perturbation: same as \[0\]"):
        parse_spec(spec_with(evaluation={"perturbations": [
            {"name": "char_noise", "ops": ["swap", "drop"]}, {"name": "char_noise", "ops": ["swap", "drop"]}]}))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "en-de.txt").write_text("dog Hund\n")
    with pytest.raises(SpecError, match=r"perturbations\[1\]: its metrics would be named like those of "
                                        r"\[0\] \('code_switch-lexiconen-de.*give the files different names"):
        parse_spec(spec_with(evaluation={"perturbations": [
            {"name": "code_switch", "lexicon": str(tmp_path / "a" / "en-de.txt")},
            {"name": "code_switch", "lexicon": str(tmp_path / "b" / "en-de.txt")}]}))


def test_unknown_adversarial_configuration_lists_each_name_once():
    data = with_hp("intermediate", adversarial="frelb")
    data["adversarial"] = {"smart3": {"method": "smart", "ascent_steps": 3}}
    with pytest.raises(SpecError) as info:
        parse_spec(data, source=SOURCE)
    message = str(info.value)
    assert info.value.field == "hyperparameters.intermediate.adversarial", message
    assert "did you mean 'freelb'" in message
    known = message.split("known: ")[1].split(", ")
    assert known[0] == "none" and len(known) == len(set(known))
    assert {"none", "fgm", "pgd", "freelb", "smart", "r3f", "smart3"} == set(known)


def test_language_lexicon_found_for_no_target_language_is_warned_about(tmp_path, caplog):
    import logging

    template = str(tmp_path / "en-{language}.txt")
    spec = spec_with(evaluation={"perturbations": [{"name": "code_switch", "lexicon": template}]})
    with caplog.at_level(logging.WARNING, logger="sweep.spec"):
        parse_spec(spec)
    warned = [r.getMessage() for r in caplog.records if "no file for any target language" in r.getMessage()]
    assert len(warned) == 1 and "evaluation.perturbations[0].lexicon" in warned[0]
    languages = {lang for t in parse_spec(spec).targets for lang in t.languages}
    (tmp_path / f"en-{sorted(languages)[-1]}.txt").write_text("dog Hund\n")   # one language has one
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sweep.spec"):
        parse_spec(spec)
    assert not [r for r in caplog.records if "no file for any target language" in r.getMessage()]
