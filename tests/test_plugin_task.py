"""A new target task is one file (issue 12): ``tests/fixtures/plugin_task/plugin_ner.py``, put
on the task package's path (what a file in ``trainables/tasks`` is), is planned by ``sweep plan``,
loads its examples and joins its benchmark slot, with no other file edited."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURE = Path(__file__).parent / "fixtures" / "plugin_task"
# a fresh interpreter: the fixture folder joins trainables.tasks' path, then the console entry
PLAN = ("import json, sys\n"
        "import trainables.tasks\n"
        "trainables.tasks.__path__.append(sys.argv[1])\n"
        "from sweep.cli import main\n"
        "code = main(sys.argv[2:])\n"
        "from trainables.benchmarks import benchmark_slots\n"
        "print(json.dumps({'panx_slot': benchmark_slots()['XTREME'][3], 'torch': 'torch' in sys.modules}))\n"
        "sys.exit(code)\n")


def test_the_task_file_is_short():
    assert len((FIXTURE / "plugin_ner.py").read_text().splitlines()) <= 60


def test_sweep_plan_runs_a_study_on_the_plugin_task(tmp_path):
    data = tmp_path / "ner"
    data.mkdir()
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "plugin", "model": "tiny", "intermediate": ["none", "toy_chunk"],
        "targets": [{"task": "plugin_ner", "languages": ["en", "xs"]}], "seeds": [1],
        "tasks": {"plugin_ner": {"data_dir": str(data)}},
        "storage": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-c", PLAN, str(FIXTURE), "plan", "--json", str(spec)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    *plan_lines, last_line = result.stdout.splitlines()
    jobs, last = json.loads("\n".join(plan_lines))["jobs"], json.loads(last_line)
    targets = [job for job in jobs if job.get("target") == "plugin_ner"]
    assert len(targets) == 2 and {tuple(job["languages"]) for job in targets} == {("en", "xs")}
    assert last == {"panx_slot": ["panx", "plugin_ner", "wikiann"], "torch": False}


def test_the_plugin_task_loads_its_files(tmp_path, monkeypatch):
    import trainables.tasks as tasks
    from trainables.tasks.base import TaskOptions

    tasks.task_names()  # the built-in tasks register in the real registry first
    monkeypatch.setattr(tasks.TASKS, "classes", dict(tasks.TASKS.classes))
    monkeypatch.setattr(tasks.TASKS, "_loaded", False)
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(FIXTURE)])
    (tmp_path / "dev-xs.jsonl").write_text(json.dumps({"tokens": ["Ana", "ran"], "tags": ["B-PER", "O"]}) + "\n")
    task = tasks.build_task("plugin_ner", TaskOptions(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")))
    data = task.load("dev", "xs")
    assert data["tokens"] == [["Ana", "ran"]] and data["tags"] == [[1, 0]]
