"""Paper-style reports from studies written by the engine's Tracker: benchmark averages,
per-language tables, size rows, grouping, several studies, figures and the HTML page.

Expected numbers are worked out by hand from tests/fixtures/xstilts_study_store.py.
"""
from __future__ import annotations

import base64
import json
import re
import struct
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from fixtures import xstilts_study_store as fx
from sweep import report as rp
from sweep.languages import typological_distance

EXP = "reports"
XT_COLUMNS = ["bucc", "mlqa", "panx", "pawsx", "tatoeba", "tydiqa", "udpos", "xnli", "xquad",
              "average", "XTREME", "XTREME-R (7/10 tasks)"]
STD2 = 0.02 / np.sqrt(2)  # sample std of two seeds .02 apart
# tests with figures load lang2vec's URIEL data (~20 s, once) for the distance scatter
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    main = f"sqlite:///{root}/main.db"
    other = f"sqlite:///{root}/other.db"
    fx.write_xtreme_study(main, EXP, root / "artifacts")
    fx.write_sizes_study(main, EXP, root / "artifacts")
    fx.write_xtreme_study(other, EXP, root / "artifacts-other", study="xt-large", shift=0.05,
                          tasks=("xnli",))
    return {"main": main, "other": other, "root": root}


@pytest.fixture(scope="module")
def xt(stores, tmp_path_factory):
    return rp.generate_report(stores["main"], EXP, "xt", tmp_path_factory.mktemp("xt"),
                              figures=False)


@pytest.fixture(scope="module")
def sizes(stores, tmp_path_factory):
    return rp.generate_report(stores["main"], EXP, "sizes", tmp_path_factory.mktemp("sizes"),
                              figures=False)


@pytest.fixture(scope="module")
def xt_figs(stores, tmp_path_factory):
    return rp.generate_report(stores["main"], EXP, "xt", tmp_path_factory.mktemp("xt_figs"))


@pytest.fixture(scope="module")
def sizes_figs(stores, tmp_path_factory):
    return rp.generate_report(stores["main"], EXP, "sizes",
                              tmp_path_factory.mktemp("sizes_figs"))


# --------------------------------------------------------------------------- benchmark averages


def test_xt_columns_and_rows(xt):
    report, _ = xt
    assert report.rows == ["none", "mnli"]
    assert report.columns == XT_COLUMNS
    assert report.missing == [] and report.failed == []


# Benchmark columns average each task over the benchmark's own languages. The store's jobs ran
# en de sw ja (offsets from the job average +.10 0 -.05 -.05); each list keeps:
#   xnli en de sw (+.05/3) | pawsx, udpos (both lists) en de ja (+.05/3) | panx all (0) |
#   xquad (XTREME: no ro; XTREME-R: with ro), mlqa en de (+.05) | tydiqa en sw (+.025) |
#   bucc de (0) | tatoeba de sw ja (-.10/3)
XTREME_OFFSET = 3 * 0.05 / 3 + 0.05 + 0.05 + 0.025 - 0.10 / 3
XTREME_R_OFFSET = 2 * 0.05 / 3 + 0.05 + 0.05 + 0.025 - 0.10 / 3
# mnli's xnli gains per language (en .02 de .01 sw .02 ja .07) over en de sw: .05 / 3
XNLI_GAIN = 0.05 / 3


def test_xtreme_average_uses_em_f1_for_qa(xt):
    report, _ = xt
    # seed 1 of none, per XTREME task (QA by em_f1 = f1 - .10):
    # xnli .80 pawsx .90 udpos .70 panx .60 xquad .65 mlqa .55 tydiqa .45 bucc .50 tatoeba .40
    # = 5.55, plus the language-list offsets, / 9; seed 2 is .02 higher
    seed1 = (5.55 + XTREME_OFFSET) / 9
    cell = report.cells["none", "XTREME"]
    assert (cell.n_tasks, cell.of_tasks, cell.partial, cell.n_seeds) == (9, 9, False, 2)
    assert cell.mean == pytest.approx(seed1 + 0.01, abs=1e-12)
    assert cell.std == pytest.approx(STD2, abs=1e-12)
    # every task lacks most of its languages (the store has 4): all are marked incomplete
    assert cell.incomplete == tuple(sorted(fx.BASE))
    # mnli gains xnli .05/3, then .01 .02 .04 .06 .05 .03 -.01 .06 over 9 tasks
    gain = XNLI_GAIN + 0.26
    mnli = report.cells["mnli", "XTREME"]
    assert mnli.mean == pytest.approx(seed1 + 0.01 + gain / 9, abs=1e-12)
    assert mnli.delta == pytest.approx(gain / 9, abs=1e-12)
    # the plain average uses the main metric (F1 for QA) over every language the jobs ran
    assert report.cells["none", "average"].mean == pytest.approx(5.85 / 9 + 0.01, abs=1e-12)


def test_xtreme_r_partial(xt):
    report, paths = xt
    cell = report.cells["none", "XTREME-R (7/10 tasks)"]
    # xnli .80 udpos .70 panx .60 xquad .65 mlqa .55 tydiqa .45 tatoeba .40 = 4.15, + offsets
    assert (cell.n_tasks, cell.of_tasks, cell.partial) == (7, 10, True)
    assert cell.mean == pytest.approx((4.15 + XTREME_R_OFFSET) / 7 + 0.01, abs=1e-12)
    gain = XNLI_GAIN + 0.02 + 0.04 + 0.06 + 0.05 + 0.03 + 0.06
    assert report.cells["mnli", "XTREME-R (7/10 tasks)"].delta == \
        pytest.approx(gain / 7, abs=1e-12)
    md = paths["md"].read_text(encoding="utf-8")
    assert "XTREME-R (7/10 tasks)" in md and "(EM+F1)/2" in md
    assert "† marks a cell where a task lacks some of them" in md


# --------------------------------------------------------------------------- per-language


def test_language_table(xt):
    report, paths = xt
    table = report.language_tables["xnli"]
    assert table.metric == "accuracy" and table.columns == ["none", "mnli"]
    assert table.languages == ["en", "de", "ja", "sw"]
    assert table.sizes == {"en": 100, "de": 200, "ja": 400, "sw": 300}
    en, sw = table.cells["en", "none"], table.cells["sw", "mnli"]
    assert (en.mean, en.std, en.n_seeds) == (pytest.approx(0.91), pytest.approx(STD2), 2)
    assert sw.mean == pytest.approx(0.76 + 0.02) and sw.delta == pytest.approx(0.02)
    assert table.cells["ja", "mnli"].delta == pytest.approx(0.07)
    assert table.cells["de", "mnli"].delta == pytest.approx(0.01)
    md = paths["md"].read_text(encoding="utf-8")
    section = md.split("### xnli (accuracy)")[1].split("###")[0]
    assert "| language | n | none | mnli |" in section
    assert "| sw | 300 | 76.0 ± 1.4 | 78.0 ± 1.4 (+2.0) |" in section
    rows = paths["languages_csv"].read_text(encoding="utf-8").splitlines()
    assert rows[0] == "target,language,n,intermediate,mean,std,n_seeds,delta"
    assert len(rows) == 1 + 9 * 4 * 2  # targets x languages x intermediates


# --------------------------------------------------------------------------- sizes, partial


def test_sizes_rows_missing_failed(sizes):
    report, paths = sizes
    assert report.rows == ["none", "mnli@100", "mnli@1000"]
    assert report.columns == ["pawsx", "xnli", "average", "XTREME (2/9 tasks)",
                              "XTREME-R (1/10 tasks)"]
    c = report.cells
    assert (c["mnli@1000", "xnli"].mean, c["mnli@1000", "xnli"].delta) == \
        (pytest.approx(0.76), pytest.approx(0.05))
    # seed 2 failed: one seed, std 0 by convention, Δ against the baseline's two-seed mean
    assert (c["mnli@100", "xnli"].n_seeds, c["mnli@100", "xnli"].std) == (1, 0.0)
    assert c["mnli@100", "xnli"].delta == pytest.approx(0.71 - 0.71, abs=1e-12)
    assert report.missing == [("none", "pawsx"), ("mnli@100", "pawsx"), ("mnli@1000", "pawsx")]
    assert c["none", "average"].mean is None and c["none", "XTREME (2/9 tasks)"].mean is None
    # XTREME-R's xnli list holds en de sw of the jobs' languages: .71 + (.10 + 0 - .05) / 3
    assert c["none", "XTREME-R (1/10 tasks)"].mean == pytest.approx(0.71 + 0.05 / 3)
    errors = {(f["intermediate"], f["train_examples"], f["target"], f["seed"]): f["error"]
              for f in report.failed}
    assert errors == {("mnli", 100, "xnli", 2): "RuntimeError: CUDA out of memory",
                      ("mnli", 1000, "pawsx", 1): "TaskDataError: pawsx test de not found"}


def test_group_by_size_param(stores):
    scores, failed = rp.collect_scores(mlflow.MlflowClient(stores["main"]), EXP, "sizes",
                                       group_by="train_examples")
    report = rp.build_report(scores, "sizes", failed, group_by="train_examples")
    assert report.rows == ["none", "train_examples=100 / mnli@100",
                           "train_examples=1000 / mnli@1000"]
    assert report.cells["train_examples=1000 / mnli@1000", "xnli"].delta == pytest.approx(0.05)
    assert "grouped by `train_examples`" in rp.render_markdown(report)


def test_group_by_tag_keeps_baseline(stores):
    scores, failed = rp.collect_scores(mlflow.MlflowClient(stores["main"]), EXP, "xt",
                                       group_by="group")
    report = rp.build_report(scores, "xt", failed, group_by="group")
    assert report.rows == ["group=baseline / none", "group=semantic / mnli"]
    assert report.baselines["group=semantic / mnli"] == "group=baseline / none"
    assert report.cells["group=semantic / mnli", "xnli"].delta == pytest.approx(0.03)


def test_compare_two_studies(stores, tmp_path):
    other = rp.StudySource(stores["other"], EXP, "xt-large")
    report, paths = rp.generate_report(stores["main"], EXP, "xt", tmp_path, compare=[other],
                                       figures=False, target_order=["xnli"])
    assert report.rows == ["xt / none", "xt / mnli", "xt-large / none", "xt-large / mnli"]
    assert report.columns[:2] == ["xnli", "bucc"]
    assert report.cells["xt-large / none", "bucc"].mean is None  # xt-large has xnli only
    assert ("xt-large / mnli", "bucc") in report.missing
    c = report.cells
    assert c["xt-large / none", "xnli"].mean == pytest.approx(0.86)
    assert c["xt-large / mnli", "xnli"].delta == pytest.approx(0.03)  # vs its own baseline
    assert c["xt / mnli", "xnli"].delta == pytest.approx(0.03)
    md = paths["md"].read_text(encoding="utf-8")
    assert md.startswith("# X-STILTs results: xt vs xt-large")
    assert "| xt-large / mnli |" in md


def test_compare_needs_distinct_labels(stores, tmp_path):
    same = rp.StudySource(stores["main"], EXP, "xt")
    with pytest.raises(ValueError, match="'xt'"):
        rp.generate_report(stores["main"], EXP, "xt", tmp_path, compare=[same], figures=False)


# --------------------------------------------------------------------------- figures


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@SLOW
def test_figures_written(xt_figs, sizes_figs):
    _, paths = xt_figs
    names = {k for k in paths if k.startswith("fig_")}
    assert {"fig_delta_heatmap", "fig_language_delta_xnli", "fig_distance_xnli"} <= names
    assert not any(k.startswith("fig_learning_curve") for k in names)  # one size only
    # flat per-language gains (every target but xnli) give no defined ρ: no scatter
    assert not any(k.startswith("fig_distance_") and k != "fig_distance_xnli" for k in names)
    _, size_paths = sizes_figs
    assert "fig_learning_curve_xnli" in size_paths
    for path in [*(paths[k] for k in names), size_paths["fig_learning_curve_xnli"]]:
        width, height = _png_size(path)
        assert 250 <= width <= 4000 and 200 <= height <= 4000, path
        assert path.stat().st_size > 5000, path
        with Image.open(path) as image:
            image.verify()


@SLOW
def test_scatter_spearman_matches_scipy(xt_figs):
    _, paths = xt_figs
    # Δ ×100 of mnli over none on xnli, by hand: de +1, sw +2, ja +7 (en is left out)
    deltas = {"de": 1.0, "sw": 2.0, "ja": 7.0}
    xs = [typological_distance(lang) for lang in deltas]
    expected = spearmanr(xs, list(deltas.values()))
    stats = json.loads(paths["figures_json"].read_text(encoding="utf-8"))["fig_distance_xnli"]
    assert stats["n"] == 3 and abs(stats["spearman_rho"]) < 0.99  # not a trivial ±1
    assert stats["spearman_rho"] == pytest.approx(float(expected.statistic), abs=1e-12)
    assert stats["p_value"] == pytest.approx(float(expected.pvalue), abs=1e-12)
    slope, intercept = np.polyfit(xs, list(deltas.values()), 1)
    assert (stats["slope"], stats["intercept"]) == (pytest.approx(slope), pytest.approx(intercept))
    text = f"Spearman ρ = {expected.statistic:.3f} (p = {expected.pvalue:.3g}), n = 3"
    assert stats["text"] == text
    with Image.open(paths["fig_distance_xnli"]) as image:  # the text drawn on the plot
        assert image.text["Description"] == text


# --------------------------------------------------------------------------- HTML, artifacts


@SLOW
def test_html_page(xt_figs, sizes):
    report, paths = xt_figs
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing external
    main = page.split('<table class="main">')[1].split("</table>")[0]
    for col in XT_COLUMNS:
        assert f"<th>{col}</th>" in main
    assert "<td>none</td>" in main and "<td>mnli</td>" in main
    assert page.count('<table class="languages"') == len(report.language_tables) == 9
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    figures = [k for k in paths if k.startswith("fig_")]
    assert len(images) == len(figures)
    assert base64.b64decode(images[0]) == paths[figures[0]].read_bytes()
    size_page = sizes[1]["html"].read_text(encoding="utf-8")
    assert "mnli@100 → pawsx" in size_page and "CUDA out of memory" in size_page
    assert "TaskDataError: pawsx test de not found" in size_page


@SLOW
def test_everything_logged_to_parent_run(xt_figs, stores):
    _, paths = xt_figs
    client = mlflow.MlflowClient(stores["main"])
    exp = client.get_experiment_by_name(EXP)
    (parent,) = client.search_runs([exp.experiment_id],
                                   "tags.`xstilts.kind` = 'study' and tags.`xstilts.study` = 'xt'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {f"report/{p.name}" for p in paths.values()}
    assert {"report/report.html", "report/fig_delta_heatmap.png"} <= logged


def test_figure_failure_does_not_lose_report(xt, tmp_path, caplog):
    from sweep.report import figures

    report, _ = xt

    def broken(lang: str) -> float:
        raise RuntimeError("typology store unavailable")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = figures.write_figures(report, tmp_path, distance=broken)
    assert "fig_delta_heatmap" in paths and "fig_distance_xnli" not in paths
    assert "could not draw figure fig_distance_xnli" in caplog.text


@SLOW
def test_scatter_takes_the_feature_set_and_metric(xt, tmp_path):
    from sweep.report import figures

    report, _ = xt
    paths = figures.write_figures(report, tmp_path, feature_set="syntax_wals", metric="euclidean")
    stats = json.loads(paths["figures_json"].read_text(encoding="utf-8"))["fig_distance_xnli"]
    assert (stats["feature_set"], stats["metric"]) == ("syntax_wals", "euclidean")
    for point in stats["points"]:
        assert point["distance"] == pytest.approx(
            typological_distance(point["language"], "en", "syntax_wals", "euclidean"))
    assert {p["language"] for p in stats["points"]} == {"de", "sw", "ja"}


def test_report_rejects_an_unknown_feature_set(capsys):
    from sweep.cli import main

    demo = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"
    assert main(["report", str(demo), "--distance-features", "syntax_knnn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--distance-features: 'syntax_knnn'" in err[0] and "syntax_knn" in err[0]
