"""The real task library end to end: a study over registry tasks (mnli, xnli, udpos, xquad,
xcopa, tatoeba) reading upstream-format files, through the CLI, Ray Tune and MLflow."""
from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import run_sweep, write_spec
from tests.fixtures.upstream import write_upstream

pytestmark = pytest.mark.slow

TARGETS = {"xnli": ("nli", ["en", "de"], "accuracy"), "udpos": ("ud", ["en", "de"], "f1"),
           "xquad": ("qa", ["en", "de"], "f1"), "xcopa": ("xcopa", ["it", "tr"], "accuracy"),
           "tatoeba": ("tatoeba", ["de", "vi"], "accuracy")}


def test_study_over_real_tasks_logs_per_language_metrics(tmp_path, toy_root, small_model):
    data = write_upstream(toy_root, tmp_path / "upstream", n_train=160, n_qa=60, n_test=24)
    tasks = {name: {"data_dir": str(data / folder)} for name, (folder, _, _) in TARGETS.items()}
    tasks["mnli"] = {"data_dir": str(data / "nli"), "train_examples": 160}
    tasks["xcopa"]["english_train"] = "copa"
    tasks["udpos"]["train_examples"] = 160
    spec = write_spec(
        tmp_path / "study.yaml", toy_root, small_model, intermediate=["none", "mnli"],
        targets=[{"task": name, "languages": langs} for name, (_, langs, _) in TARGETS.items()],
        hyperparameters={"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 64},
                         "target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 64}},
        tasks=tasks)
    proc = run_sweep("run", str(spec), cwd=tmp_path, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "11 jobs finished" in proc.stdout, out

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags.get("xstilts.kind") == "job"}
    for start in ("none", "mnli"):
        for name, (_, langs, metric) in TARGETS.items():
            run = runs[f"{start}→{name} s1"]
            assert run.info.status == "FINISHED"
            for lang in langs:
                value = run.data.metrics[f"{name}/{metric}/{lang}"]
                assert 0.0 <= value <= 1.0, (name, lang, value)
                assert run.data.metrics[f"{name}/n/{lang}"] > 0
            assert run.data.metrics[f"{name}/{metric}/avg"] == pytest.approx(
                sum(run.data.metrics[f"{name}/{metric}/{l}"] for l in langs) / len(langs))
    assert {"xquad/exact_match/de", "xquad/em_f1/de"} <= set(runs["mnli→xquad s1"].data.metrics)
    assert "udpos/accuracy/de" in runs["none→udpos s1"].data.metrics
    assert runs["mnli→tatoeba s1"].data.tags["xstilts.stage"] == "eval"

    study = tmp_path / "runs" / "e2e"
    report = (study / "report.md").read_text()
    assert "| none |" in report and "| mnli |" in report
    assert all(name in report for name in TARGETS)
    plan = json.loads((study / "plan.json").read_text())
    assert len(plan["jobs"]) == 11
    assert (study / "report.html").is_file() and "HTML report with figures" in proc.stdout
