"""The report's "Paper comparison" section (sweep.paper_comparison), from MLflow-free score
records whose values are chosen so every number can be worked out by hand (see DATA)."""
from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from sweep.report import paper_comparison as pc
from sweep import report as rp
from sweep.report.html_report import render_html
from trainables.languages import TASK_LANGUAGES

APPROX = {"abs": 1e-12}
SQ2 = 2 ** 0.5

# Published XTREME test scores (XLM-R Large, X-STILTs), as ../shared/reference/README.md gives
# them from the google-research/multilingual-t5 README results table (QA columns F1).
PUBLISHED = {"xnli": (79.2, 80.4), "pawsx": (86.4, 87.7), "panx": (65.4, 64.7),
             "xquad": (76.6, 77.2), "mlqa": (71.6, 72.3), "tydiqa": (65.1, 76.0)}

# DATA, per seed (1, 2): every language of the run gets the same score unless noted.
#   xnli  none .78 / .80; mnli .81 / .81; squad_v1 .79 / .79; plus a language outside
#         XTREME's list ("xx", score 0) that must not count.
#   xquad the run has XTREME-R's 12 languages; ro (not in XTREME's 11) scores 0, so counting
#         it would give .70·11/12. none .70, but seed 1 lacks ar (-> †, "10 of 11, lacks ar");
#         mnli .75; squad_v1 .78 -> best squad_v1 78.0 (+0.8 vs 77.2); none 70.0† (−6.6)
#   udpos no published number (none .90 / .90, en only)
XNLI_ROWS = {"none": (0.78, 0.80), "mnli": (0.81, 0.81), "squad_v1": (0.79, 0.79)}
XQUAD_ROWS = {"none": 0.70, "mnli": 0.75, "squad_v1": 0.78}


def _record(inter: str, target: str, seed: int, langs: dict[str, float], metric: str,
            target_examples: int | None = None) -> dict:
    return {"intermediate": inter, "target": target, "seed": seed,
            "score": sum(langs.values()) / len(langs), "languages": langs,
            "bench_scores": {}, "metric": f"{target}/{metric}/avg",
            "target_examples": target_examples}


def records() -> list[dict]:
    recs = []
    for seed in (1, 2):
        for inter, vals in XNLI_ROWS.items():
            langs = {lang: vals[seed - 1] for lang in TASK_LANGUAGES["xnli"]}
            recs.append(_record(inter, "xnli", seed, {**langs, "xx": 0.0}, "accuracy"))
        for inter, value in XQUAD_ROWS.items():
            langs = {lang: value for lang in TASK_LANGUAGES["xquad"]} | {"ro": 0.0}
            if inter == "none" and seed == 1:
                del langs["ar"]
            recs.append(_record(inter, "xquad", seed, langs, "f1"))
        recs.append(_record("none", "udpos", seed, {"en": 0.90}, "f1"))
        recs.append(_record("mnli", "xnli", seed, {"en": 0.99}, "accuracy", target_examples=500))
    return recs


@pytest.fixture(scope="module")
def report() -> rp.StudyReport:
    return rp.build_report(records(), "s")


@pytest.fixture(scope="module")
def comparison(report) -> pc.PaperComparison:
    return pc.build_comparison(report)


def _section(markdown: str) -> list[str]:
    part = markdown.split(f"## {pc.TITLE}\n", 1)[1]
    return part.split("\n## ", 1)[0].splitlines()


def _md_row(lines: list[str], first: str) -> list[str]:
    (line,) = [ln for ln in lines if ln.startswith(f"| {first} |")]
    return [c.strip() for c in line.strip("|").split("|")][1:]


# --------------------------------------------------------------------------- reference data


def test_reference_file_holds_the_published_numbers_and_their_source():
    ref = pc.load_reference()
    assert ref.model("baseline") == "XLM-R Large" and ref.model("best_intermediate") == "X-STILTs"
    assert ref.benchmark == "XTREME" and ref.split == "test"
    got = {task: (p.score("XLM-R Large"), p.score("X-STILTs")) for task, p in ref.entries}
    assert got == PUBLISHED
    metrics = {task: p.metric for task, p in ref.entries}
    assert metrics == {"xnli": "accuracy", "pawsx": "accuracy", "panx": "f1", "xquad": "f1",
                       "mlqa": "f1", "tydiqa": "f1"}
    for _, p in ref.entries:
        assert "Phang et al. 2020" in p.source.paper
        assert "google-research/multilingual-t5 README" in p.source.table
        assert "1cf881700d57" in p.source.version and "319bb8015a21" in p.source.version


def _raw_reference() -> dict:
    text = resources.files("sweep").joinpath("data", pc.REFERENCE_FILE).read_text("utf-8")
    return json.loads(text)


def test_a_malformed_reference_is_an_error_naming_the_entry():
    data = _raw_reference()
    del data["scores"]["xnli"]["X-STILTs"]
    with pytest.raises(ValueError, match=r"scores\.xnli has no 'X-STILTs'"):
        pc.parse_reference(data)
    data = _raw_reference()
    data["scores"]["xnli"]["source"] = "nowhere"
    with pytest.raises(ValueError, match=r"scores\.xnli\.source 'nowhere' is not in sources"):
        pc.parse_reference(data)
    data = _raw_reference()
    data["scores"]["hellaswag"] = data["scores"]["xnli"]
    with pytest.raises(ValueError, match="'hellaswag' is not a XTREME task"):
        pc.parse_reference(data)


# --------------------------------------------------------------------------- the values


def test_values_average_the_xtreme_list_and_mark_missing_languages(comparison):
    by_target = {t.target: t for t in comparison.targets}
    assert list(by_target) == ["udpos", "xnli", "xquad"]  # xnli@500 is not compared
    xnli, xquad = by_target["xnli"], by_target["xquad"]
    assert xnli.languages == tuple(TASK_LANGUAGES["xnli"]) and len(xquad.languages) == 11
    base, best = xnli.value("baseline"), xnli.value("best_intermediate")
    assert (base.row, base.n_seeds, base.missing) == ("none", 2, ())
    assert base.mean == pytest.approx(0.79, **APPROX)
    assert base.std == pytest.approx(0.01 * SQ2, **APPROX)
    assert (best.row, best.missing) == ("mnli", ())
    assert best.mean == pytest.approx(0.81, **APPROX)
    base, best = xquad.value("baseline"), xquad.value("best_intermediate")
    assert base.mean == pytest.approx(0.70, **APPROX)  # ro's 0 is not in XTREME's list
    assert base.missing == ("ar",)
    assert (best.row, best.missing) == ("squad_v1", ())
    assert best.mean == pytest.approx(0.78, **APPROX)
    assert by_target["udpos"].published is None


# --------------------------------------------------------------------------- rendering


def test_markdown_section_shows_published_numbers_sources_and_marks(report):
    lines = _section(rp.render_markdown(report))
    assert lines[1].startswith("| target | metric, languages | baseline (`none`) | "
                               "XLM-R Large (published) | best intermediate | "
                               "X-STILTs (published) | source |")
    assert _md_row(lines, "xnli") == ["accuracy, 15 XTREME languages", "79.0 ± 1.4 (-0.2)",
                                      "79.2", "mnli: 81.0 ± 0.0 (+0.6)", "80.4", "mt5_readme"]
    assert _md_row(lines, "xquad") == ["f1, 11 XTREME languages", "70.0† ± 0.0 (-6.6)", "76.6",
                                       "squad_v1: 78.0 ± 0.0 (+0.8)", "77.2", "mt5_readme"]
    text = "\n".join(lines)
    assert "- † xquad, `none`: 10 of XTREME's 11 languages (lacks ar)." in text
    assert "averaged over XTREME's language list for the task" in text
    (source,) = [ln for ln in lines if ln.startswith("- `mt5_readme`: ")]
    assert "Phang et al. 2020" in source and "google-research/multilingual-t5" in source
    assert "xnli@500" not in text


def test_a_target_without_a_published_number_says_so(report):
    lines = _section(rp.render_markdown(report))
    cells = _md_row(lines, "udpos")
    assert cells[2] == cells[4] == pc.NO_NUMBER
    assert cells[1] == "90.0† ± 0.0"  # no difference against a number that does not exist
    assert cells[3] == rp.MISSING_MARK and cells[5] == rp.MISSING_MARK  # no intermediate row
    assert "- † udpos, `none`: 1 of XTREME's 33 languages (has only en)." in lines


def test_a_study_without_any_published_target_says_so():
    recs = [_record("none", "toy_xnli", s, {"en": 0.5}, "accuracy") for s in (1, 2)]
    lines = _section(rp.render_markdown(rp.build_report(recs, "toy")))
    assert lines[1].startswith("No published numbers for this study's targets (toy_xnli): "
                               "`sweep/data/paper_reference.json` has xnli, pawsx, panx")
    assert not any(ln.startswith("|") for ln in lines)


def test_wikiann_is_compared_with_pan_x():
    recs = [_record(inter, "wikiann", s, {"en": score}, "f1")
            for inter, score in (("none", 0.6), ("mnli", 0.65)) for s in (1, 2)]
    lines = _section(rp.render_markdown(rp.build_report(recs, "s")))
    assert _md_row(lines, "wikiann") == ["f1, 40 XTREME languages", "60.0† ± 0.0 (-5.4)", "65.4",
                                         "mnli: 65.0† ± 0.0 (+0.3)", "64.7", "mt5_readme"]
    # both rows lack the same languages: one line names both
    assert "- † wikiann, `none`, `mnli`: 1 of XTREME's 40 languages (has only en)." in lines


def test_a_different_metric_is_shown_without_a_difference():
    recs = [_record("none", "xnli", s, {lang: 0.5 for lang in TASK_LANGUAGES["xnli"]}, "f1")
            for s in (1, 2)]
    lines = _section(rp.render_markdown(rp.build_report(recs, "s")))
    assert _md_row(lines, "xnli")[:3] == ["f1, 15 XTREME languages", "50.0 ± 0.0", "79.2"]
    assert ("- xnli: this study scores f1, the published number is accuracy; no difference "
            "is shown.") in lines


def test_csv_has_one_row_per_target_and_role(report, tmp_path):
    paths = rp.write_report(report, tmp_path)
    with paths["paper_csv"].open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["target"], r["role"]) for r in rows] == [
        (t, role) for t in ("udpos", "xnli", "xquad") for role in pc.ROLES]
    (xq,) = [r for r in rows if r["target"] == "xquad" and r["role"] == "baseline"]
    assert (xq["row"], xq["missing_languages"], xq["published_model"]) == ("none", "ar",
                                                                          "XLM-R Large")
    assert float(xq["published"]) == pytest.approx(0.766, **APPROX)
    assert float(xq["delta"]) == pytest.approx(0.70 - 0.766, **APPROX)
    assert "Phang et al. 2020" in xq["source_paper"]
    (ud,) = [r for r in rows if r["target"] == "udpos" and r["role"] == "baseline"]
    assert ud["published"] == ud["delta"] == ud["source"] == ""


def test_html_section(report):
    page = render_html(report)
    section = page.split(f"<h2>{pc.TITLE}</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<th>baseline (<code>none</code>)</th>" in section
    assert ("<tr><td>xquad</td><td>f1, 11 XTREME languages</td><td>70.0† ± 0.0 (-6.6)</td>"
            "<td>76.6</td><td>squad_v1: 78.0 ± 0.0 (+0.8)</td><td>77.2</td>"
            "<td>mt5_readme</td></tr>") in section
    assert f"<td>{pc.NO_NUMBER}</td>" in section
    assert "Phang et al. 2020" in section and "10 of XTREME&#x27;s 11 languages" in section
