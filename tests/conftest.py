"""Shared fixtures: a small toy benchmark and a small tiny model, built once per test session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEP = str(Path(sys.executable).parent / "sweep")
TOY_TASKS = ("toy_xnli", "toy_paraphrase", "toy_pos", "toy_chunk", "toy_tatoeba")


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    from trainables.toy import write_toy_xtreme

    return write_toy_xtreme(tmp_path_factory.mktemp("toy") / "toy_xtreme", seed=0, n_train=240,
                            n_dev=60, n_test=60, n_corpus=3000)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, toy_root) -> Path:
    """A small MLM-pretrained tiny model (a local directory, as a user's own model would be)."""
    from trainables.tiny_model import TinyModelSettings, ensure_tiny_model

    settings = TinyModelSettings(vocab_size=800, hidden_size=48, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=96, pretrain_steps=60,
                                 batch_size=32, seq_len=48)
    return ensure_tiny_model(tmp_path_factory.mktemp("models"), toy_root, settings)


def write_spec(path: Path, toy_root: Path, model: Path, **fields) -> Path:
    """A small study over the toy tasks whose data lives in ``toy_root``."""
    spec = {
        "name": "e2e",
        "model": str(model),
        "intermediate": ["none", "toy_chunk"],
        "targets": [{"task": "toy_xnli", "languages": ["en", "xs"]},
                    {"task": "toy_tatoeba", "languages": ["xs", "xo"]}],
        "seeds": [1],
        "hyperparameters": {
            "intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 48, "batch_size": 32},
            "target": {"learning_rate": 5e-4, "epochs": 2, "max_length": 48, "batch_size": 32},
        },
        "tasks": {t: {"data_dir": str(toy_root)} for t in TOY_TASKS},
        "storage": str(path.parent / "runs"),
        "cache_dir": str(path.parent / "cache"),
        "max_failures": 0,
    }
    spec.update(fields)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_sweep(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAY_DEDUP_LOGS": "0", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([SWEEP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
