"""Fail in seconds, not after training: before any trial starts the driver resolves every
(task, split, language) the plan needs; a relative or ``~`` model path is resolved at validation;
eval jobs take their task's ``max_length`` / ``eval_batch_size``."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import datasets
import pytest
import yaml

from sweep.cli import main
from sweep.plan import build_plan
from sweep.prepare import Need, prepare_study, study_needs
from sweep.run import grid_points
from sweep.spec import SpecError, load_spec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _spec(path: Path, **fields) -> Path:
    spec = {"name": "ff", "model": "tiny", "intermediate": ["none"], "seeds": [1],
            "storage": str(path.parent / "runs"), "cache_dir": str(path.parent / "cache"),
            "max_failures": 0, **fields}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _ud_folder(tmp_path: Path) -> Path:
    """English train/dev and German test from the real UD files (EWT dev stands in for train)."""
    if not (SHARED / "ud").is_dir():
        pytest.skip("../shared/data/ud not present")
    root = tmp_path / "ud"
    root.mkdir()
    shutil.copy(SHARED / "ud" / "en_ewt-ud-dev.conllu", root / "en_ewt-ud-train.conllu")
    shutil.copy(SHARED / "ud" / "en_ewt-ud-dev.conllu", root)
    shutil.copy(SHARED / "ud" / "de_gsd-ud-test.conllu", root)
    return root


def _nothing_started(tmp_path: Path) -> None:
    study = tmp_path / "runs" / "ff"
    assert not (study / "plan.json").exists() and not (study / "jobs").exists()
    assert not (study / "ray").exists()


def test_a_target_with_one_missing_language_fails_before_training(tmp_path, capsys):
    root = _ud_folder(tmp_path)
    spec = _spec(tmp_path / "study.yaml", targets=[{"task": "udpos", "languages": ["de", "fr"]}],
                 tasks={"udpos": {"data_dir": str(root)}})
    start = time.monotonic()
    assert main(["run", str(spec)]) == 2
    assert time.monotonic() - start < 60
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {spec}: targets[0]: task udpos: test split for language 'fr'"), err
    assert "fr_*-ud-test.conllu" in err
    _nothing_started(tmp_path)


def test_a_file_that_does_not_parse_is_one_line_naming_it(tmp_path, capsys):
    root = _ud_folder(tmp_path)
    (root / "de_gsd-ud-test.conllu").write_text("1\tonly-two-columns\n\n", encoding="utf-8")
    spec = _spec(tmp_path / "study.yaml", targets=[{"task": "udpos", "languages": ["de"]}],
                 tasks={"udpos": {"data_dir": str(root)}})
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "targets[0]" in err and "de_gsd-ud-test.conllu" in err, err
    _nothing_started(tmp_path)


def test_a_language_without_a_hub_source_fails_before_training(tmp_path, capsys):
    spec = _spec(tmp_path / "study.yaml", targets=[{"task": "tatoeba", "languages": ["de", "az"]}],
                 tasks={"tatoeba": {"data_dir": str(tmp_path / "missing")}})
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "targets[0]" in err and "'de'" in err, err
    spec = _spec(tmp_path / "study.yaml", targets=[{"task": "tatoeba", "languages": ["az"]}])
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'az' has no google/xtreme tatoeba config" in err and "tasks.tatoeba.data_dir" in err, err
    _nothing_started(tmp_path)


def test_study_needs_lists_what_the_trials_load(tmp_path):
    spec = load_spec(_spec(tmp_path / "study.yaml", intermediate=["none", ["mnli", "qqp"]],
                           targets=[{"task": "udpos", "languages": ["de", "ja"]},
                                    {"task": "tatoeba", "languages": ["az"]}]))
    needs = {(n.task, n.split, n.language): n.field for n in study_needs(spec)}
    assert needs == {
        ("mnli", "train", "en"): "intermediate[1]", ("mnli", "dev", "en"): "intermediate[1]",
        ("qqp", "train", "en"): "intermediate[1]", ("qqp", "dev", "en"): "intermediate[1]",
        ("udpos", "train", "en"): "targets[0]", ("udpos", "dev", "en"): "targets[0]",
        ("udpos", "test", "de"): "targets[0]", ("udpos", "test", "ja"): "targets[0]",
        ("tatoeba", "test", "az"): "targets[1]"}  # eval-only: no train or dev split
    assert all(isinstance(n, Need) for n in study_needs(spec))


def test_hub_datasets_are_loaded_once_by_the_driver(tmp_path, monkeypatch):
    calls: list[tuple] = []

    def fake(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({
            "id": ["q"], "title": ["t"], "context": ["Paris is big."], "question": ["What?"],
            "answers": [{"text": ["Paris"], "answer_start": [0]}]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    spec = load_spec(_spec(tmp_path / "study.yaml", model="xlm-roberta-base",
                           targets=[{"task": "xquad", "languages": ["de", "ro"]}]))
    prepare_study(spec)
    assert sorted(calls) == sorted([("rajpurkar/squad", None, "train"),
                                    ("rajpurkar/squad", None, "validation"),
                                    ("google/xtreme", "XQuAD.de", "validation"),
                                    ("google/xquad", "xquad.ro", "validation")])


def test_relative_and_home_model_paths_are_resolved_at_validation(tmp_path, monkeypatch):
    (tmp_path / "models" / "enc").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = load_spec(_spec(tmp_path / "study.yaml", model="./models/enc", targets=["toy_xnli"]))
    assert spec.model == str((tmp_path / "models" / "enc").resolve())
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = load_spec(_spec(tmp_path / "study.yaml", model="~/models/enc", targets=["toy_xnli"]))
    assert spec.model == str((tmp_path / "models" / "enc").resolve())
    spec = load_spec(_spec(tmp_path / "study.yaml", model="models/enc", targets=["toy_xnli"]))
    assert spec.model == str((tmp_path / "models" / "enc").resolve())  # an existing folder wins
    with pytest.raises(SpecError, match="model: local model directory not found: ./nope"):
        load_spec(_spec(tmp_path / "study.yaml", model="./nope", targets=["toy_xnli"]))


def test_eval_jobs_take_their_tasks_max_length(tmp_path):
    spec = load_spec(_spec(tmp_path / "study.yaml", targets=["toy_tatoeba", "toy_xnli"],
                           hyperparameters={"tasks": {"toy_tatoeba": {"max_length": 512,
                                                                      "eval_batch_size": 16,
                                                                      "epochs": 4}}}))
    (eval_job,) = [j for j in build_plan(spec).jobs if j.stage == "eval"]
    assert eval_job.hyperparameters == {"max_length": 512, "eval_batch_size": 16}
    assert grid_points(eval_job.hyperparameters) == [{"max_length": 512, "eval_batch_size": 16}]
    # without task values an eval job keeps its empty space, so its id does not change
    plain = load_spec(_spec(tmp_path / "study.yaml", targets=["toy_tatoeba"]))
    (job,) = build_plan(plain).jobs
    assert job.hyperparameters == {} and grid_points(job.hyperparameters) == [{}]
    searched = load_spec(_spec(tmp_path / "study.yaml", targets=["toy_tatoeba"],
                               hyperparameters={"tasks": {"toy_tatoeba": {"max_length": [128, 512]}}}))
    with pytest.raises(SpecError, match=r"hyperparameters.tasks.toy_tatoeba.max_length: .*evaluation-only"):
        build_plan(searched)


def test_paper_yaml_as_the_paper_ran_it():
    spec = load_spec(Path(__file__).resolve().parents[1] / "search_spaces" / "paper.yaml")
    hp = {t: {k: v.value for k, v in values.items()} for t, values in spec.task_hyperparameters.items()}
    assert {t: hp[t]["epochs"] for t in ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa")} == \
        {"xnli": 2, "pawsx": 5, "udpos": 10, "panx": 10, "xquad": 2, "mlqa": 2, "tydiqa": 2}
    assert all(hp[t]["batch_size"] * hp[t].get("grad_accumulation", 1) == 16 for t in ("xquad", "mlqa", "tydiqa"))
    assert hp["bucc"]["max_length"] == hp["tatoeba"]["max_length"] == 512
    evals = [j for j in build_plan(spec).jobs if j.stage == "eval"]
    assert evals and all(j.hyperparameters == {"max_length": 512} for j in evals)
