"""Benchmark columns from each benchmark's own language list (issue 13, item 7).

The lists are google-research/xtreme ``evaluate.py``'s ``XTREME_TASK2LANGS`` and
``XTREME_R_TASK2LANGS``: XTREME's XQuAD has 11 languages, XTREME-R's adds ro; XTREME-R's UD-POS
adds lt pl uk wo ro; its Tatoeba adds az lt pl uk ro. The per-task score is the mean over the
list (evaluate.py: ``sum(score[m].values()) / len(score[m])``; QA (avg EM + avg F1) / 2).
"""
from __future__ import annotations

import statistics

import pytest

from sweep import report as rp
from trainables.languages import TASK_LANGUAGES


def _metrics(target: str, metric: str, scores: dict[str, float]) -> dict[str, float]:
    out = {f"{target}/{metric}/{lang}": v for lang, v in scores.items()}
    out[f"{target}/{metric}/avg"] = statistics.fmean(scores.values())
    return out


def _record(target: str, seed: int, metrics: dict[str, float], main: str) -> dict:
    key = f"{target}/{main}/avg"
    return {"intermediate": "none", "target": target, "seed": seed, "score": metrics[key],
            "metric": key, "bench_scores": rp._benchmark_scores(metrics, target, key)}


XQUAD = TASK_LANGUAGES["xquad"]      # 12 languages, ro included


def test_the_lists_differ_where_the_benchmarks_do():
    assert set(rp.BENCHMARK_LANGUAGES["XTREME-R"]["xquad"]) - set(rp.BENCHMARK_LANGUAGES["XTREME"]["xquad"]) == {"ro"}
    assert len(rp.BENCHMARK_LANGUAGES["XTREME"]["xquad"]) == 11
    assert set(rp.BENCHMARK_LANGUAGES["XTREME-R"]["udpos"]) - set(rp.BENCHMARK_LANGUAGES["XTREME"]["udpos"]) == \
        {"lt", "pl", "uk", "wo", "ro"}
    assert set(rp.BENCHMARK_LANGUAGES["XTREME-R"]["tatoeba"]) - set(rp.BENCHMARK_LANGUAGES["XTREME"]["tatoeba"]) == \
        {"az", "lt", "pl", "uk", "ro"}
    assert "en" not in rp.BENCHMARK_LANGUAGES["XTREME"]["tatoeba"]


def test_xquad_columns_come_from_different_language_lists():
    # em_f1 .60 in every language but ro (.00): XTREME (no ro) .60, XTREME-R 11 * .60 / 12 = .55
    scores = {lang: 0.0 if lang == "ro" else 0.6 for lang in XQUAD}
    records = [_record("xquad", seed, _metrics("xquad", "em_f1", scores)
                       | _metrics("xquad", "f1", scores), "f1") for seed in (1, 2)]
    report = rp.build_report(records, "s")
    xtreme, xtreme_r = report.cells["none", "XTREME (1/9 tasks)"], report.cells["none", "XTREME-R (1/10 tasks)"]
    assert xtreme.mean == pytest.approx(0.6) and xtreme_r.mean == pytest.approx(0.55)
    assert xtreme.incomplete == xtreme_r.incomplete == ()
    # the run's own average is over the 12 languages it ran: the XTREME-R figure
    assert report.cells["none", "xquad"].mean == pytest.approx(0.55)


def test_qa_without_em_f1_averages_em_and_f1_per_language():
    em = {lang: 0.4 for lang in XQUAD}
    f1 = {lang: 0.8 for lang in XQUAD}
    metrics = _metrics("xquad", "exact_match", em) | _metrics("xquad", "f1", f1)
    scores = rp._benchmark_scores(metrics, "xquad", "xquad/f1/avg")
    assert scores["XTREME"] == {"score": pytest.approx(0.6), "missing": []}


def test_a_missing_language_marks_only_the_benchmark_that_needs_it():
    # a UD-POS run over XTREME's 33 languages: complete for XTREME, not for XTREME-R
    xtreme = TASK_LANGUAGES["udpos"]
    records = [_record("udpos", 1, _metrics("udpos", "f1", {lang: 0.7 for lang in xtreme}), "f1")]
    report = rp.build_report(records, "s")
    assert report.cells["none", "XTREME (1/9 tasks)"].incomplete == ()
    cell = report.cells["none", "XTREME-R (1/10 tasks)"]
    assert cell.incomplete == ("udpos",) and cell.mean == pytest.approx(0.7)
    assert set(records[0]["bench_scores"]["XTREME-R"]["missing"]) == {"lt", "pl", "uk", "wo", "ro"}
    table = rp.render_markdown(report)
    assert "| none | **70.0** ± 0.0 | **70.0** ± 0.0 | **70.0** ± 0.0 | **70.0**† ± 0.0 |" in table


def test_a_run_without_per_language_scores_is_incomplete():
    metrics = {"xnli/accuracy/avg": 0.8}
    scores = rp._benchmark_scores(metrics, "xnli", "xnli/accuracy/avg")
    assert scores["XTREME"]["score"] == 0.8
    assert scores["XTREME"]["missing"] == list(TASK_LANGUAGES["xnli"])
