"""The demo's first screen: one log line per language without a typological distance, the HTML
caption rendered (not raw Markdown), and the one sentence saying what the table shows."""
from __future__ import annotations

import logging
import warnings

import pytest

from fixtures import xstilts_study_store as fx
from sweep.report import figures, html_report, reading
from sweep import report as rp

EXP = "demo-report"


@pytest.fixture(scope="module")
def xt(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/main.db"
    fx.write_xtreme_study(uri, EXP, root / "artifacts")
    report, _ = rp.generate_report(uri, EXP, "xt", tmp_path_factory.mktemp("xt"), figures=False)
    return report


def test_missing_distance_logged_once_per_language(xt, tmp_path, caplog):
    asked = []

    def distance(lang: str) -> float:
        asked.append(lang)
        if lang == "sw":
            raise KeyError("sw has no URIEL entry here")
        return {"de": 0.2, "ja": 0.6}[lang]

    caplog.set_level(logging.INFO, logger="sweep.figures")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = figures.write_figures(xt, tmp_path, distance=distance)
    # nine targets each ask for sw: one line, and the distance function is asked once per language
    assert len(xt.language_tables) == 9
    lines = [r.getMessage() for r in caplog.records if "no typological distance" in r.getMessage()]
    assert lines == ["no typological distance for sw ('sw has no URIEL entry here'); left out of the scatter"]
    assert sorted(asked) == ["de", "ja", "sw"]
    assert "fig_distance_xnli" not in paths  # two points left (de, ja): too few for Spearman's ρ


def test_html_caption_is_rendered(xt):
    page = html_report.render_html(xt)
    note = page.split('<p class="note">', 1)[1].split("</p>", 1)[0]
    assert "<b>bold</b>" in note and "<code>none</code>" in note
    assert "**" not in note and "`" not in note


def test_inline_markdown_escapes_before_marking():
    assert html_report.inline_markdown("a <b> **x & y** `z`") == "a &lt;b&gt; <b>x &amp; y</b> <code>z</code>"


def test_what_the_table_shows(xt):
    sentence = reading.what_the_table_shows(xt)
    assert sentence.endswith(".") and ". " not in sentence
    # mnli adds .06 to tatoeba (and xquad) with seeds .02 apart: std .014, so beyond 2 std
    assert "mnli on tatoeba, +6.0 points vs the baseline (seed std 1.4)" in sentence
    assert "not seed noise" in sentence and "2 seeds" in sentence


def test_effect_within_noise_says_so():
    effect = reading.Effect("r", "t", delta=0.02, std=0.015)
    assert not effect.beyond_noise
    assert reading.Effect("r", "t", delta=-0.04, std=0.015).beyond_noise
