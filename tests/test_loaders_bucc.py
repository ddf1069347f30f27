"""BUCC: the report says plainly when BUCC ran on the hub's gold pairs only (no data_dir)."""
from __future__ import annotations

from sweep.report import StudyReport, bucc_note, render_markdown


def _report(records):
    return StudyReport(study="s", rows=[], columns=[], cells={}, missing=[], failed=[], records=records)


def test_bucc_on_gold_pairs_only_is_said_in_the_report():
    report = _report([{"target": "bucc", "bucc_gold_pairs_only": True},
                      {"target": "bucc", "bucc_gold_pairs_only": True},
                      {"target": "xnli", "bucc_gold_pairs_only": False}])
    (note, _) = bucc_note(report)
    assert note.startswith("**BUCC ran on gold pairs only** (2 jobs)")
    assert "not comparable with XTREME's" in note and "tasks.bucc.data_dir" in note
    assert note in render_markdown(report)


def test_bucc_from_data_dir_has_no_note():
    assert bucc_note(_report([{"target": "bucc", "bucc_gold_pairs_only": False}])) == []
