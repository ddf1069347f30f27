"""``bench/toy_design.py``, the design check of the toy world on other data seeds, runs end to end
(``--smoke``: cut-down world and model) and prints one line per target and row, Δ vs ``none``."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "toy_design.py"
LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\d+\.\d) ± (\d+\.\d)(?: \(([+-]\d+\.\d)\))?\s+\[(.*)\]$")


def _module():
    spec = importlib.util.spec_from_file_location("toy_design", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_parse_to_numbers_and_words():
    assert _module().parse_values("epochs=3,learning_rate=2e-3,contrast_pooling=mean") == \
        {"epochs": 3, "learning_rate": 0.002, "contrast_pooling": "mean"}


def test_a_single_task_job_takes_its_task_values_as_the_sweep_does():
    link = _module().job_hyperparameters
    phase, per_task = {"epochs": 2, "learning_rate": 1e-3}, {"toy_mnli": {"epochs": 1}}
    assert link(phase, per_task, {}, ("toy_mnli",)) == {"epochs": 1, "learning_rate": 1e-3}
    assert link(phase, per_task, {}, ("toy_mnli", "toy_chunk")) == phase  # multi-task: the phase's
    assert link(phase, per_task, {"epochs": 3}, ("toy_mnli",))["epochs"] == 3  # the command line's win
    assert link(phase, per_task, {}, ("toy_chunk",)) == phase


def test_smoke_run_prints_every_target_and_row(tmp_path):
    rows = ["none", "toy_chunk", "toy_paraphrase&mlm", "toy_paraphrase+toy_chunk"]
    targets = ["toy_xnli", "toy_tatoeba"]
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--seeds", "1,2", "--rows", ",".join(rows),
                          "--targets", ",".join(targets), "--data-seed", "3", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "intermediate toy_paraphrase+toy_chunk seed 2" in run.stdout
    parsed = [m.groups() for m in map(LINE.match, run.stdout.splitlines()) if m]
    assert [(t, r) for t, r, *_ in parsed] == [(t, r) for t in targets for r in rows]
    baseline = {t: float(mean) for t, r, mean, *_ in parsed if r == "none"}
    for target, row, mean, std, delta, languages in parsed:
        assert 0 <= float(mean) <= 100 and float(std) >= 0
        assert (delta is None) == (row == "none")
        if delta is not None:  # rounded to one decimal each: within 0.1
            assert abs(float(delta) - (float(mean) - baseline[target])) <= 0.11
        expected = ["xs", "xo", "xv"] if target == "toy_tatoeba" else ["en", "xs", "xo", "xv"]
        assert languages.split()[::2] == expected
    # the chain's second link started from the first link's model, the multi-task job from the tiny model
    (chain,) = (tmp_path / "runs").glob("tiny-xlmr-*/intermediate/*/toy_paraphrase+toy_chunk-seed1")
    started = json.loads((chain / "result.json").read_text())["config"]
    assert started["init_from"] == str(chain.parent / "toy_paraphrase-seed1" / "model")
    assert started["tasks"] == ["toy_chunk"]
    (mixed,) = (tmp_path / "runs").glob("tiny-xlmr-*/intermediate/*/toy_paraphrase&mlm-seed1")
    mixed_config = json.loads((mixed / "result.json").read_text())["config"]
    assert mixed_config["init_from"] is None and mixed_config["tasks"] == ["toy_paraphrase", "mlm"]
    # another data seed in the same folder: its own model and trials, none reused from the first
    first = set((tmp_path / "runs").rglob("result.json"))
    again = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--seeds", "1", "--rows", "none",
                            "--targets", "toy_xnli", "--data-seed", "4", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 2
    assert len(set((tmp_path / "runs").rglob("result.json")) - first) == 1
    # other intermediate hyperparameters: the intermediate job and its targets run again, the
    # baseline (which does not start from it) is reused
    second = set((tmp_path / "runs").rglob("result.json"))
    other = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--seeds", "1", "--rows", "none,toy_chunk",
                            "--targets", "toy_xnli", "--data-seed", "3", "--intermediate", "learning_rate=2e-3",
                            "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert other.returncode == 0, other.stderr[-2000:]
    new = set((tmp_path / "runs").rglob("result.json")) - second
    assert sorted(p.parent.name for p in new) == ["toy_chunk-seed1", "toy_chunk-toy_xnli-seed1"]
