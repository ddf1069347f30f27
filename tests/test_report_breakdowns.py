"""Δ by group and Δ by resource class (sweep.breakdowns), from score records whose Δs are
chosen so every aggregate can be worked out by hand (see the comments by each data set).
"""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pytest

from fixtures import xstilts_study_store as fx
from sweep.report import breakdowns as bd
from sweep import report as rp
from sweep.report.html_report import render_html
from sweep.languages import language_info

SQ2 = 2 ** 0.5  # sample std of two values a, b is |a - b| / sqrt(2)
APPROX = {"abs": 1e-12}
GROUP_BY = "xstilts.group"

# --------------------------------------------------------------------------- group data
# Baseline `none`: xnli .70 / .72, pawsx .80 / .82 (seeds 1 / 2). Every other row is the
# baseline plus a fixed Δ in both seeds, so its Δ is exactly that number.
BASE = {"xnli": (0.70, 0.72), "pawsx": (0.80, 0.82)}
GROUP_DELTAS = {
    ("udpos", "syntactic"): {"xnli": 0.01, "pawsx": 0.03},
    ("ccg", "syntactic"): {"xnli": 0.03, "pawsx": -0.01},
    ("mnli", "semantic"): {"xnli": 0.05, "pawsx": 0.02},
    ("qqp", "semantic"): {"xnli": 0.07},                    # no pawsx run: that cell is missing
    ("hellaswag", None): {"xnli": 0.50, "pawsx": 0.50},     # in no group: must not count
}
XTREME, XTREME_R = "XTREME (2/9 tasks)", "XTREME-R (1/10 tasks)"
# By hand, (mean, std, n) over each group's rows of the row's Δ:
#   syntactic xnli (.01, .03) -> .02 ± .02/√2 | pawsx (.03, -.01) -> .01 ± .04/√2
#             average: udpos (.01+.03)/2 = .02, ccg (.03-.01)/2 = .01 -> .015 ± .01/√2
#   semantic  xnli (.05, .07) -> .06 ± .02/√2 | pawsx (.02,) -> .02, no std, n=1
#             average: mnli .035 (qqp has no average: it lacks pawsx) -> .035, n=1
#   XTREME (xnli, pawsx; both scored by the main metric) = average; XTREME-R (xnli only) = xnli
GROUP_EXPECTED = {
    ("syntactic", "xnli"): (0.02, 0.01 * SQ2, 2),
    ("syntactic", "pawsx"): (0.01, 0.02 * SQ2, 2),
    ("syntactic", "average"): (0.015, 0.005 * SQ2, 2),
    ("syntactic", XTREME): (0.015, 0.005 * SQ2, 2),
    ("syntactic", XTREME_R): (0.02, 0.01 * SQ2, 2),
    ("semantic", "xnli"): (0.06, 0.01 * SQ2, 2),
    ("semantic", "pawsx"): (0.02, None, 1),
    ("semantic", "average"): (0.035, None, 1),
    ("semantic", XTREME): (0.035, None, 1),
    ("semantic", XTREME_R): (0.06, 0.01 * SQ2, 2),
}

# --------------------------------------------------------------------------- language data
# xnli per language; Joshi class: en 5, de 5, sw 2, yo 2, qu 1, xx (not a language) unknown.
# Seed 2 = seed 1 + .02 everywhere, so a row's per-language Δ is exactly the number below.
LANG_BASE = {"en": 0.90, "de": 0.80, "sw": 0.60, "yo": 0.50, "qu": 0.40, "xx": 0.30}
CLASS_OF = {"en": 5, "de": 5, "sw": 2, "yo": 2, "qu": 1}
LANG_DELTAS = {
    "mnli": {"en": 0.01, "de": 0.03, "sw": 0.04, "yo": 0.08, "qu": -0.02, "xx": 0.05},
    "squad_v1": {"en": 0.02, "sw": -0.01, "yo": 0.03},  # de, qu, xx not evaluated
}
CLASSES = ["1", "2", "5", "unknown"]
CLASS_LANGS = {"1": ["qu"], "2": ["sw", "yo"], "5": ["en", "de"], "unknown": ["xx"]}
# By hand, (mean, std, n) over each class's languages of the per-language Δ:
#   mnli     1: (-.02,) | 2: (.04, .08) -> .06 ± .04/√2 | 5: (.01, .03) -> .02 ± .02/√2
#            unknown: (.05,)
#   squad_v1 1: none | 2: (-.01, .03) -> .01 ± .04/√2 | 5: (.02,) n=1 of 2 | unknown: none
CLASS_EXPECTED = {
    ("mnli", "1"): (-0.02, None, 1),
    ("mnli", "2"): (0.06, 0.02 * SQ2, 2),
    ("mnli", "5"): (0.02, 0.01 * SQ2, 2),
    ("mnli", "unknown"): (0.05, None, 1),
    ("squad_v1", "1"): (None, None, 0),
    ("squad_v1", "2"): (0.01, 0.02 * SQ2, 2),
    ("squad_v1", "5"): (0.02, None, 1),
    ("squad_v1", "unknown"): (None, None, 0),
}


def _record(inter: str, target: str, seed: int, score: float, group: str | None = None,
            languages: dict[str, float] | None = None) -> dict:
    return {"intermediate": inter, "target": target, "seed": seed, "score": score,
            "bench_scores": {b: {"score": score, "missing": []}
                             for b, langs in rp.BENCHMARK_LANGUAGES.items() if target in langs},
            "group": group, "languages": languages or {},
            "metric": f"{target}/accuracy/avg"}


def group_records() -> list[dict]:
    recs = [_record("none", t, s, v) for t, vals in BASE.items() for s, v in enumerate(vals, 1)]
    for (inter, group), deltas in GROUP_DELTAS.items():
        for target, delta in deltas.items():
            recs += [_record(inter, target, s, v + delta, group)
                     for s, v in enumerate(BASE[target], 1)]
    return recs


def language_records() -> list[dict]:
    """xnli with per-language scores for none, mnli, squad_v1; pawsx without (no table)."""
    recs = []
    for seed in (1, 2):
        shift = 0.02 * (seed - 1)
        for inter, deltas in {"none": dict.fromkeys(LANG_BASE, 0.0), **LANG_DELTAS}.items():
            langs = {lang: LANG_BASE[lang] + shift + d for lang, d in deltas.items()}
            recs.append(_record(inter, "xnli", seed, sum(langs.values()) / len(langs),
                                languages=langs))
            recs.append(_record(inter, "pawsx", seed, 0.8 + shift))
    return recs


@pytest.fixture(scope="module")
def grouped() -> rp.StudyReport:
    return rp.build_report(group_records(), "s", group_by=GROUP_BY)


@pytest.fixture(scope="module")
def by_lang() -> rp.StudyReport:
    return rp.build_report(language_records(), "s")


def _check(spread: bd.Spread, expected: tuple) -> None:
    mean, std, n = expected
    assert spread.n == n
    assert (spread.mean is None) if mean is None else spread.mean == pytest.approx(mean, **APPROX)
    assert (spread.std is None) if std is None else spread.std == pytest.approx(std, **APPROX)


def _section(markdown: str, title: str) -> list[str]:
    """The lines of one ``## title`` section."""
    part = markdown.split(f"## {title}\n", 1)[1]
    return part.split("\n## ", 1)[0].splitlines()


def _md_row(lines: list[str], first: str) -> list[str]:
    (line,) = [ln for ln in lines if ln.startswith(f"| {first} |")]
    return [c.strip() for c in line.strip("|").split("|")][1:]


# --------------------------------------------------------------------------- Δ by group


def test_group_table_numbers(grouped):
    table = bd.group_table(grouped)
    assert table.groups == ["semantic", "syntactic"]  # the baseline is not a group
    assert table.members == {
        "semantic": ["xstilts.group=semantic / mnli", "xstilts.group=semantic / qqp"],
        "syntactic": ["xstilts.group=syntactic / ccg", "xstilts.group=syntactic / udpos"]}
    assert table.columns == ["pawsx", "xnli", "average", XTREME, XTREME_R]
    assert set(table.cells) == set(GROUP_EXPECTED)
    for key, expected in GROUP_EXPECTED.items():
        _check(table.cells[key], expected)


def test_group_table_reuses_report_deltas(grouped):
    """Each group cell is the plain mean of the main table's Δs of its rows."""
    table = bd.group_table(grouped)
    for (group, col), spread in table.cells.items():
        deltas = [grouped.cells[(r, col)].delta for r in table.members[group]]
        deltas = [d for d in deltas if d is not None]
        assert spread.mean == pytest.approx(sum(deltas) / len(deltas), **APPROX)


def test_group_markdown(grouped):
    md = rp.render_markdown(grouped)
    lines = _section(md, "Δ by group")
    assert "| group | rows | pawsx | xnli | average | XTREME (2/9 tasks) | " \
           "XTREME-R (1/10 tasks) |" in lines
    assert _md_row(lines, "syntactic") == ["2", "+1.0 ± 2.8", "+2.0 ± 1.4", "+1.5 ± 0.7",
                                           "+1.5 ± 0.7", "+2.0 ± 1.4"]
    assert _md_row(lines, "semantic") == ["2", "+2.0 (n=1)", "+6.0 ± 1.4", "+3.5 (n=1)",
                                          "+3.5 (n=1)", "+6.0 ± 1.4"]
    assert md.index("## Δ by group") < md.index("## Missing cells")
    assert "## Δ by resource class" not in md  # no per-language scores


def test_group_csv(grouped, tmp_path):
    paths = rp.write_report(grouped, tmp_path)
    assert paths["groups_csv"] == tmp_path / bd.GROUPS_CSV and "resource_classes_csv" not in paths
    with paths["groups_csv"].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["group", "n_rows", "rows", "column", "n", "mean_delta", "std_delta"]
    got = {(r["group"], r["column"]): r for r in rows}
    assert set(got) == set(GROUP_EXPECTED) and len(rows) == len(GROUP_EXPECTED)
    for key, (mean, std, n) in GROUP_EXPECTED.items():
        row = got[key]
        assert int(row["n"]) == n and int(row["n_rows"]) == 2
        assert float(row["mean_delta"]) == pytest.approx(mean, **APPROX)  # raw, not x100
        assert row["std_delta"] == "" if std is None else \
            float(row["std_delta"]) == pytest.approx(std, **APPROX)
    assert got["semantic", "xnli"]["rows"] == \
        "xstilts.group=semantic / mnli; xstilts.group=semantic / qqp"


def test_no_group_table_without_groups(tmp_path):
    ungrouped = rp.build_report(group_records(), "s")  # no group_by: rows carry no group
    assert bd.group_table(ungrouped) is None
    untagged = rp.build_report([{**r, "group": None} for r in group_records()], "s",
                               group_by=GROUP_BY)
    assert bd.group_table(untagged) is None
    no_base = rp.build_report([r for r in group_records() if r["intermediate"] != "none"], "s",
                              group_by=GROUP_BY)
    assert bd.group_table(no_base) is None  # no baseline: no Δ to aggregate
    for report in (ungrouped, untagged, no_base):
        assert "Δ by group" not in rp.render_markdown(report)
        assert "Δ by group" not in render_html(report)
    paths = rp.write_report(ungrouped, tmp_path)
    assert "groups_csv" not in paths and not (tmp_path / bd.GROUPS_CSV).exists()


def test_groups_of_two_studies_stay_apart():
    recs = [{**r, "study": study} for study in ("a", "b") for r in group_records()]
    table = bd.group_table(rp.build_report(recs, "a", group_by=GROUP_BY, studies=["a", "b"]))
    assert table.groups == ["a / semantic", "a / syntactic", "b / semantic", "b / syntactic"]
    _check(table.cells["b / syntactic", "xnli"], GROUP_EXPECTED["syntactic", "xnli"])


# --------------------------------------------------------------------------- Δ by class


def test_language_metadata_as_assumed():
    assert {lang: language_info(lang).resource_class for lang in CLASS_OF} == CLASS_OF
    with pytest.raises(KeyError):
        language_info("xx")


def test_class_table_numbers(by_lang):
    tables = bd.class_tables(by_lang)
    assert list(tables) == ["xnli"]  # pawsx has no per-language scores
    table = tables["xnli"]
    assert table.rows == ["mnli", "squad_v1"]  # the baseline is not a row
    assert table.classes == CLASSES and table.languages == CLASS_LANGS
    assert set(table.cells) == set(CLASS_EXPECTED)
    for key, expected in CLASS_EXPECTED.items():
        _check(table.cells[key], expected)


def test_class_markdown(by_lang):
    md = rp.render_markdown(by_lang)
    lines = _section(md, "Δ by resource class")
    assert "### xnli (accuracy)" in lines
    assert "| intermediate | class 1 (1 lang) | class 2 (2 langs) | class 5 (2 langs) | " \
           "unknown (1 lang) |" in lines
    assert _md_row(lines, "mnli") == ["-2.0", "+6.0 ± 2.8", "+2.0 ± 1.4", "+5.0"]
    assert _md_row(lines, "squad_v1") == ["–", "+1.0 ± 2.8", "+2.0 (n=1)", "–"]
    assert md.index("## Per-language scores") < md.index("## Δ by resource class") \
        < md.index("## Missing cells")
    assert "## Δ by group" not in md


def test_class_csv(by_lang, tmp_path):
    paths = rp.write_report(by_lang, tmp_path)
    assert paths["resource_classes_csv"] == tmp_path / bd.CLASSES_CSV
    assert "groups_csv" not in paths
    with paths["resource_classes_csv"].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["target", "intermediate", "resource_class", "n_languages",
                             "languages", "n", "mean_delta", "std_delta"]
    got = {(r["intermediate"], r["resource_class"]): r for r in rows}
    assert {r["target"] for r in rows} == {"xnli"} and set(got) == set(CLASS_EXPECTED)
    for (row, cls), (mean, std, n) in CLASS_EXPECTED.items():
        r = got[row, cls]
        assert int(r["n"]) == n and int(r["n_languages"]) == len(CLASS_LANGS[cls])
        assert r["languages"] == " ".join(CLASS_LANGS[cls])
        assert r["mean_delta"] == "" if mean is None else \
            float(r["mean_delta"]) == pytest.approx(mean, **APPROX)
        assert r["std_delta"] == "" if std is None else \
            float(r["std_delta"]) == pytest.approx(std, **APPROX)


def test_no_class_table_without_languages_or_baseline(tmp_path):
    plain = rp.build_report(group_records(), "s")
    no_base = rp.build_report([r for r in language_records() if r["intermediate"] != "none"],
                              "s")
    for report in (plain, no_base):
        assert bd.class_tables(report) == {}
        assert "Δ by resource class" not in rp.render_markdown(report)
        assert "Δ by resource class" not in render_html(report)
    paths = rp.write_report(no_base, tmp_path)
    assert "resource_classes_csv" not in paths and not (tmp_path / bd.CLASSES_CSV).exists()


def test_html_sections(grouped, by_lang):
    page = render_html(grouped)
    assert page.count('<table class="groups">') == 1 and "resource-classes" not in page
    table = page.split('<table class="groups">')[1].split("</table>")[0]
    assert "<td>syntactic</td><td>2</td>" in table and "+1.5 ± 0.7" in table
    page = render_html(by_lang)
    assert page.count('<table class="resource-classes"') == 1 and 'class="groups"' not in page
    assert "<th>class 2 (2 langs)</th>" in page and "+6.0 ± 2.8" in page


# --------------------------------------------------------------------------- through MLflow


def test_generate_report_logs_breakdowns(tmp_path):
    """The fixture study (engine's Tracker, group tag `semantic` on mnli jobs): one group of one
    row, whose Δs are the fixture's gains; xnli's per-language gains en .02, de .01, ja .07
    (class 5) and sw .02 (class 2)."""
    uri = f"sqlite:///{tmp_path}/store.db"
    fx.write_xtreme_study(uri, "breakdowns", tmp_path / "artifacts", tasks=("xnli", "udpos"))
    report, paths = rp.generate_report(uri, "breakdowns", "xt", tmp_path / "out",
                                       group_by="group", figures=False)
    groups = bd.group_table(report)
    assert groups.groups == ["semantic"]  # the `baseline`-tagged none row is not a group
    _check(groups.cells["semantic", "xnli"], (fx.GAIN["xnli"], None, 1))
    _check(groups.cells["semantic", "udpos"], (fx.GAIN["udpos"], None, 1))
    xnli = bd.class_tables(report)["xnli"]
    assert xnli.classes == ["2", "5"] and xnli.languages == {"2": ["sw"],
                                                             "5": ["en", "de", "ja"]}
    row = "group=semantic / mnli"
    gains = (0.02, 0.01, 0.07)
    mean = sum(gains) / 3
    std = (sum((g - mean) ** 2 for g in gains) / 2) ** 0.5  # sample std, ddof=1
    _check(xnli.cells[row, "5"], (mean, std, 3))
    _check(xnli.cells[row, "2"], (0.02, None, 1))
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("breakdowns")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'study'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {f"report/{bd.GROUPS_CSV}", f"report/{bd.CLASSES_CSV}"} <= logged
    assert logged == {f"report/{Path(p).name}" for p in paths.values()}
    page = paths["html"].read_text(encoding="utf-8")
    assert '<table class="groups">' in page and '<table class="resource-classes"' in page
