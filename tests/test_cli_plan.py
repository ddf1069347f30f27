"""The ``sweep`` console script on specs: ``validate`` / ``plan`` / ``run --dry-run`` on a bad spec
exit 2 with exactly one line on stderr naming the field, and create nothing; ``plan --json`` and
the text table agree.

Each console-script call starts a Python process (a few seconds of imports), so the subprocess
calls of this module run once, concurrently, in a module fixture, and the remaining cases call
``sweep.cli.main`` in-process (same code path, same exit code and stderr).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from trainables.tasks import task_info

SWEEP = str(Path(sys.executable).parent / "sweep")
TIMEOUT = 120


def good_spec(root: Path) -> dict:
    return {
        "name": "cli-plan",
        "intermediate": ["none", "toy_paraphrase", ["toy_chunk", "toy_paraphrase"]],
        "targets": ["toy_xnli", {"task": "toy_pos", "languages": ["en", "xs"]}, "toy_tatoeba"],
        "seeds": [1, 2, 3],
        "hyperparameters": {"target": {"learning_rate": [1e-5, 3e-5]}},
        "storage": str(root / "runs"),
        "cache_dir": str(root / "cache"),
    }


# (case id, command, change to the good spec, field path expected in the one stderr line)
BAD_CASES = [
    ("validate-language", ["validate"],
     {"targets": ["toy_xnli", {"task": "toy_pos", "languages": ["en", "xss"]}]}, "targets[1].languages[1]"),
    ("plan-unknown-key", ["plan"], {"seed": [1]}, "seed"),
    ("plan-json-hyperparameter", ["plan", "--json"],
     {"hyperparameters": {"target": {"learning_rate": 0}}}, "hyperparameters.target.learning_rate"),
    ("run-dry-run-intermediate", ["run", "--dry-run"],
     {"intermediate": ["none", "toy_tatoeba"]}, "intermediate[1]"),
]


# these run through the real console script; every case also runs in-process
SUBPROCESS_CASES = ("validate-language", "plan-unknown-key")


@dataclass
class Call:
    cwd: Path
    spec: Path
    result: subprocess.CompletedProcess


def _sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([SWEEP, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env)


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict[str, Call]:
    jobs: dict[str, tuple[list[str], Path, Path]] = {}
    for case_id, command, change, _ in BAD_CASES:
        if case_id not in SUBPROCESS_CASES:
            continue
        root = tmp_path_factory.mktemp(case_id)
        spec = root / "study.yaml"
        spec.write_text(yaml.safe_dump({**good_spec(root), **change}, sort_keys=False))
        jobs[case_id] = ([*command, spec.name], root, spec)

    root = tmp_path_factory.mktemp("good")
    spec = root / "study.yaml"
    spec.write_text(yaml.safe_dump(good_spec(root), sort_keys=False))
    jobs["plan-json"] = (["plan", "--json", str(spec)], root, spec)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(_sweep, args, cwd) for k, (args, cwd, _) in jobs.items()}
        return {k: Call(jobs[k][1], jobs[k][2], f.result()) for k, f in futures.items()}


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def _in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    from sweep.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(args)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _check_bad(call: Call, field: str) -> None:
    line = _one_error_line(call.result)
    assert f": {field}: " in line, line
    assert call.spec.name in line
    # nothing created: not the storage dir, not the cache, nothing else in the working directory
    assert not (call.cwd / "runs").exists()
    assert not (call.cwd / "cache").exists()
    assert sorted(p.name for p in call.cwd.iterdir()) == [call.spec.name]


@pytest.mark.parametrize("case_id, command, change, field",
                         [c for c in BAD_CASES if c[0] in SUBPROCESS_CASES], ids=list(SUBPROCESS_CASES))
def test_bad_spec_console_script(calls, case_id, command, change, field):
    _check_bad(calls[case_id], field)


@pytest.mark.parametrize("case_id, command, change, field", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_spec_in_process(tmp_path, monkeypatch, capsys, case_id, command, change, field):
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump({**good_spec(tmp_path), **change}, sort_keys=False))
    result = _in_process([*command, spec.name], tmp_path, monkeypatch, capsys)
    _check_bad(Call(tmp_path, spec, result), field)


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["run", "--dry-run"]])
def test_invalid_yaml_exits_2_naming_file_and_line(tmp_path, monkeypatch, capsys, command):
    spec = tmp_path / "study.yaml"
    spec.write_text(f"name: broken\nstorage: {tmp_path / 'runs'}\ntargets: [toy_xnli\nseeds: [1]\n")
    line = _one_error_line(_in_process([*command, spec.name], tmp_path, monkeypatch, capsys))
    assert spec.name in line and "line " in line and "YAML" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_missing_file_exits_2(tmp_path, monkeypatch, capsys):
    line = _one_error_line(_in_process(["plan", "nowhere.yaml"], tmp_path, monkeypatch, capsys))
    assert "nowhere.yaml" in line and "not found" in line
    assert list(tmp_path.iterdir()) == []


def _expected_counts(spec: dict) -> dict[str, int]:
    entries = spec["intermediate"]
    seeds = len(spec["seeds"])
    names = [t if isinstance(t, str) else t["task"] for t in spec["targets"]]
    n_eval = sum(1 for t in names if not task_info(t).trainable)
    n_inter = sum(1 for e in entries if e != "none")
    return {"intermediate": n_inter * seeds,
            "target": len(entries) * (len(names) - n_eval) * seeds,
            "eval": len(entries) * n_eval * seeds,
            "without_reuse": n_inter * len(names) * seeds}


def test_plan_json_shape_and_counts(calls):
    result = calls["plan-json"].result
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    jobs = out["jobs"]
    assert isinstance(jobs, list) and jobs
    for job in jobs:
        assert {"id", "stage", "depends_on"} <= set(job)
        assert job["stage"] in ("intermediate", "target", "eval")
    ids = [j["id"] for j in jobs]
    assert len(set(ids)) == len(ids)
    assert all(d in set(ids) for j in jobs for d in j["depends_on"])
    expected = _expected_counts(yaml.safe_load(calls["plan-json"].spec.read_text()))
    stages = {s: sum(1 for j in jobs if j["stage"] == s) for s in ("intermediate", "target", "eval")}
    assert stages == {k: expected[k] for k in stages}
    assert out["counts"] == stages
    assert out["reuse"]["without_reuse"] == expected["without_reuse"]
    assert out["reuse"]["intermediate_trainings"] == expected["intermediate"]
    # the languages given for toy_pos reach its jobs; eval jobs carry no hyperparameters
    for j in jobs:
        if j["target"] == "toy_pos":
            assert j["languages"] == ["en", "xs"]
        if j["stage"] == "eval":
            assert j["hyperparameters"] == {}
    # planning creates nothing either
    assert sorted(p.name for p in calls["plan-json"].cwd.iterdir()) == ["study.yaml"]


def test_plan_text_agrees_with_json(calls, monkeypatch, capsys):
    js = calls["plan-json"].result
    # the text table in-process (one console-script start less), on the same spec file
    text = _in_process(["plan", str(calls["plan-json"].spec)], calls["plan-json"].cwd, monkeypatch, capsys)
    assert text.returncode == 0, text.stderr
    jobs = json.loads(js.stdout)["jobs"]
    summary = re.search(r"(\d+) jobs — (\d+) intermediate, (\d+) target, (\d+) eval", text.stdout)
    reuse = re.search(r"intermediate trainings: (\d+) scheduled, (\d+) if trained per .* saves (\d+)",
                      text.stdout)
    assert summary and reuse, text.stdout
    total, n_inter, n_target, n_eval = map(int, summary.groups())
    scheduled, without, saved = map(int, reuse.groups())
    count = lambda s: sum(1 for j in jobs if j["stage"] == s)
    assert total == len(jobs)
    assert (n_inter, n_target, n_eval) == (count("intermediate"), count("target"), count("eval"))
    assert scheduled == n_inter
    assert without == sum(1 for j in jobs if j["stage"] != "intermediate" and j["intermediate"])
    assert saved == without - scheduled
    # the table lists the same ids as the JSON
    table_ids = set(re.findall(r"^([ite]-[0-9a-f]{12})\b", text.stdout, flags=re.M))
    assert table_ids == {j["id"] for j in jobs}
