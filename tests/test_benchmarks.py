"""Benchmark membership comes from the tasks' declarations (``TaskInfo.benchmark_slot`` ...) and
the benchmarks' own definition (``trainables.benchmarks``); it equals the report's former
hard-coded ``BENCHMARKS`` / ``BENCHMARK_METRIC`` literals."""
from __future__ import annotations

import pytest

from trainables import tasks as tasks_registry
from trainables.benchmarks import benchmark_language_sets, benchmark_metrics, benchmark_slots
from trainables.tasks import task_names
from trainables.tasks.base import Task, TaskInfo

# sweep/report.py before issue 12, item 5
REPORT_BENCHMARKS = {
    "XTREME": (("xnli",), ("pawsx",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
               ("tydiqa",), ("bucc",), ("tatoeba",)),
    "XTREME-R": (("xnli",), ("xcopa",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
                 ("tydiqa",), ("mewslix",), ("lareqa",), ("tatoeba",)),
}
REPORT_QA_TASKS = ("xquad", "mlqa", "tydiqa")
REPORT_BENCHMARK_METRIC = {**{t: "em_f1" for t in REPORT_QA_TASKS}, "udpos": "f1", "panx": "f1",
                           "wikiann": "f1", "bucc": "f1"}
REPORT_BENCHMARK_SETS = {"XTREME": "xtreme", "XTREME-R": "xtreme_r"}


def test_declarations_give_the_reports_former_tables():
    assert benchmark_slots() == REPORT_BENCHMARKS
    assert benchmark_metrics() == REPORT_BENCHMARK_METRIC
    assert benchmark_language_sets() == REPORT_BENCHMARK_SETS


def _task(name: str, slot: str) -> type[Task]:
    class Declared(Task):
        info = TaskInfo(name=name, family="tagging", languages=("en",), main_metric="f1",
                        source="tests/test_benchmarks.py", benchmark_slot=slot, benchmark_metric="f1")
    return Declared


def test_a_new_task_joins_its_slot_after_the_slots_own_task(monkeypatch):
    task_names()  # load the registry before patching it
    monkeypatch.setitem(tasks_registry.TASKS.classes, "my_wikiann", _task("my_wikiann", "panx"))
    slots = benchmark_slots()
    assert slots["XTREME"][3] == slots["XTREME-R"][3] == ("panx", "my_wikiann", "wikiann")
    assert benchmark_metrics()["my_wikiann"] == "f1"


def test_a_slot_no_benchmark_has_is_an_error(monkeypatch):
    task_names()
    monkeypatch.setitem(tasks_registry.TASKS.classes, "typo", _task("typo", "pan-x"))
    with pytest.raises(ValueError, match=r"task typo: benchmark_slot 'pan-x' is no slot of XTREME, XTREME-R"):
        benchmark_slots()


def test_a_slot_no_task_fills_is_an_error(monkeypatch):
    task_names()
    monkeypatch.delitem(tasks_registry.TASKS.classes, "bucc")
    with pytest.raises(ValueError, match=r"benchmark XTREME: no task declares benchmark_slot \['bucc'\]"):
        benchmark_slots()
