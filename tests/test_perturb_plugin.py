"""A model-aware evaluation perturbation is a plug-in like any other: registered from outside
the engine (here, this file), it gets ``prepare`` with the model under evaluation before its
split is perturbed, and a trial's evaluation reports it with no engine edits."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from trainables.perturb import PERTURBATIONS, perturb_dataset, register
from trainables.perturb.base import Perturbation
from trainables.records import perturbation_label
from trainables.trial import run_trial

HP = dict(learning_rate=1e-3, batch_size=16, eval_batch_size=32, epochs=1, max_length=40,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


@dataclass(frozen=True)
class EchoSettings:
    suffix: str = ""


class Echo(Perturbation):
    """Keeps each example as the model saw it (plus an optional suffix), and records what
    ``prepare`` was given and how many examples it perturbed."""

    name = "echo_model"
    Settings = EchoSettings
    families = ("classification",)
    cacheable = False
    prepared: list[dict] = []
    applied: list[str] = []

    def prepare(self, model, task, tokenizer, *, max_length, batch_size):
        self.prepared.append({"model": model, "task": task.name, "tokenizer": tokenizer, "training": model.training,
                              "max_length": max_length, "batch_size": batch_size, "language": self.language})
        self.model = model

    def apply(self, example, family, rng, index):
        if not hasattr(self, "model"):
            raise ValueError("model: prepare first")
        self.applied.append(self.language)
        return {"text_a": example["text_a"] + self.settings.suffix}


@pytest.fixture
def echo(monkeypatch):
    """``Echo`` registered for one test; the registry's classes are restored after it."""
    PERTURBATIONS.load_all()
    monkeypatch.setattr(PERTURBATIONS, "classes", dict(PERTURBATIONS.classes))
    monkeypatch.setattr(Echo, "prepared", [])
    monkeypatch.setattr(Echo, "applied", [])
    register(Echo)
    return Echo


def test_a_perturbation_that_needs_a_model_is_refused_until_prepared(echo):
    import datasets

    data = datasets.Dataset.from_dict({"text_a": ["a cat", "a dog"], "label": [0, 1]})
    with pytest.raises(ValueError, match="^model: prepare first"):
        perturb_dataset(data, "classification", {"name": "echo_model"}, seed=0, language="en")


def test_a_model_aware_perturbation_registered_outside_the_engine_is_prepared_and_evaluated(
        tmp_path, toy_root, small_model, echo):
    config = {"name": "echo_model"}
    result = run_trial({"trial_id": "t", "job_id": "j", "stage": "eval", "model": str(small_model),
                        "tasks": ["toy_xnli"], "languages": ["en", "xs"], "seed": 7, "hparams": HP,
                        "task_options": {"toy_xnli": {"data_dir": str(toy_root)}},
                        "output_dir": str(tmp_path / "out"), "num_threads": 1,
                        "settings": {"perturbations": [config]}})
    # prepared once per evaluated language, with the one model being evaluated (in eval mode)
    assert [p["language"] for p in echo.prepared] == ["en", "xs"]
    model = echo.prepared[0]["model"]
    assert echo.prepared[1]["model"] is model and "toy_xnli" in model.heads
    assert all(p["task"] == "toy_xnli" and not p["training"] and callable(p["tokenizer"])
               for p in echo.prepared)
    assert {(p["max_length"], p["batch_size"]) for p in echo.prepared} == {(40, 32)}
    metrics = result["metrics"]
    label = f"toy_xnli.{perturbation_label(config)}"
    for lang in ("en", "xs"):
        assert echo.applied.count(lang) == metrics[f"toy_xnli/n/{lang}"] > 0  # every test example
        # the texts it returned are the ones the model saw: the same scores, no drop
        assert metrics[f"{label}/accuracy/{lang}"] == metrics[f"toy_xnli/accuracy/{lang}"]
        assert metrics[f"{label}/drop/{lang}"] == 0.0
    assert metrics[f"{label}/accuracy/avg"] == metrics["toy_xnli/accuracy/avg"]
