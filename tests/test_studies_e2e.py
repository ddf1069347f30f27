"""The robustness and adversarial-intermediate studies of search_spaces/, run end to end through
the CLI, Ray Tune and MLflow on the toy world and a small local model.

Each test keeps the shipped study's design (its perturbations, its adversarial configurations
and factors) and swaps what needs a GPU or the hub for toy equivalents: the model, the task
names, the sizes. A change to the shipped study is picked up here.
"""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import TOY_TASKS, run_sweep

pytestmark = pytest.mark.slow

STUDIES = Path(__file__).resolve().parents[1] / "search_spaces"
HP = {"learning_rate": 5e-4, "epochs": 1, "max_length": 32, "batch_size": 32}


def write_toy_muse(folder: Path) -> str:
    """MUSE-style ``en xx`` dictionaries of the toy languages; the path template for specs."""
    from trainables.toy.lexicon import LEXICON

    folder.mkdir(parents=True, exist_ok=True)
    english = LEXICON.forms["en"]
    for lang in ("xs", "xo"):
        forms = LEXICON.forms[lang]
        lines = sorted({f"{english[k]} {forms[k]}" for k in english if k in forms})
        (folder / f"en-{lang}.txt").write_text("\n".join(lines) + "\n")
    return str(folder / "en-{language}.txt")


def toy_version(name: str, tmp_path: Path, toy_root: Path, model: Path) -> dict:
    """The shipped study ``name`` with toy tasks, the small model and small sizes."""
    spec = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    hp = spec["hyperparameters"]
    spec.update({
        "name": f"toy-{name}".replace("_", "-"), "model": str(model),
        "intermediate": ["none", "toy_paraphrase"],
        "targets": [{"task": "toy_xnli", "languages": ["en", "xs"]}],
        "seeds": spec["seeds"][:2],
        "tasks": {t: {"data_dir": str(toy_root)} for t in TOY_TASKS},
        "storage": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
        "resources": {"cpu": 1, "gpu": 0}, "max_failures": 0,
    })
    spec["hyperparameters"] = {phase: {**HP, **{k: v for k, v in hp[phase].items()
                                                 if k == "adversarial"}}
                               for phase in ("intermediate", "target")}
    return spec


def job_runs(tmp_path: Path, experiment: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("xstilts.kind") == "job"]


def test_robustness_study_end_to_end(tmp_path, toy_root, small_model):
    spec = toy_version("robustness_xnli", tmp_path, toy_root, small_model)
    muse = write_toy_muse(tmp_path / "muse")
    shipped = [p["name"] for p in spec["evaluation"]["perturbations"]]
    for p in spec["evaluation"]["perturbations"]:
        if "lexicon" in p:
            p["lexicon"] = muse
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run_sweep("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    targets = [r for r in job_runs(tmp_path, spec["name"]) if r.data.tags["xstilts.stage"] == "target"]
    assert len(targets) == 4                                   # (none, toy_paraphrase) x 2 seeds
    metrics = targets[0].data.metrics
    labels = {k.split("/")[0].split(".", 1)[1] for k in metrics if k.startswith("toy_xnli.")}
    assert {label.split("-")[0] for label in labels} == set(shipped)   # every perturbation ran
    for label in labels:
        assert f"toy_xnli.{label}/drop/xs" in metrics
        clean, perturbed = metrics["toy_xnli/accuracy/xs"], metrics[f"toy_xnli.{label}/accuracy/xs"]
        assert metrics[f"toy_xnli.{label}/drop/xs"] == pytest.approx(clean - perturbed)
    # no en-en dictionary: code switching of English is skipped, the other languages scored
    switch = next(label for label in labels if label.startswith("code_switch"))
    assert f"toy_xnli.{switch}/accuracy/en" not in metrics

    report_dir = tmp_path / "runs" / spec["name"]
    md = (report_dir / "report.md").read_text()
    assert "## Robustness under perturbations" in md and "Δdrop vs baseline" in md
    rows = list(csv.DictReader((report_dir / "report_robustness.csv").open()))
    paired = [r for r in rows if r["intermediate"] == "toy_paraphrase" and r["language"] == "avg"]
    assert len(paired) == len(labels) and all(r["paired_n"] == "2" for r in paired)


def test_adversarial_intermediate_study_end_to_end(tmp_path, toy_root, small_model):
    spec = toy_version("adversarial_intermediate", tmp_path, toy_root, small_model)
    spec["seeds"] = spec["seeds"][:1]
    methods = spec["hyperparameters"]["intermediate"]["adversarial"]
    assert len(methods) == 4 and spec["factors"] == ["adversarial"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run_sweep("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = job_runs(tmp_path, spec["name"])
    inter = [r for r in runs if r.data.tags["xstilts.stage"] == "intermediate"]
    recorded = {r.data.params.get("factors.intermediate.adversarial") for r in inter}
    assert recorded == set(methods)                            # one intermediate job per method
    configured = {r.data.params.get("factors.intermediate.adversarial"): r.data.params for r in inter}
    assert any(v == "freelb" for k, v in configured["freelb_k3"].items() if k.endswith("method"))
    targets = [r for r in runs if r.data.tags["xstilts.stage"] == "target"]
    assert len(targets) == 1 + len(methods)                    # the baseline + one per method

    md = (tmp_path / "runs" / spec["name"] / "report.md").read_text()
    for method in methods:
        assert f"factors.intermediate.adversarial={method} / toy_paraphrase" in md
