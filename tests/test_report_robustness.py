"""Robustness tables of `sweep report` from a synthetic MLflow store with known perturbed scores.

Study "robust": target xnli, rows none (direct fine-tuning) and mnli, seeds 1-3, languages en
and de, two perturbations. Expected numbers are worked out by hand below.
"""
from __future__ import annotations

import csv
import math
import time

import mlflow
import pytest
from mlflow.entities import Metric
from scipy import stats

from sweep import report as rp
from sweep.report.metrics import perturbed_scores
from sweep.report.robustness import build_robustness

EXPERIMENT = "robust-test"
CHAR, ORDER = "char_noise-rate0.1", "word_order-window3"
CLEAN = {"none": (0.70, 0.72, 0.74), "mnli": (0.75, 0.78, 0.81)}
# average drop over languages per seed; en drops 1 point less, de 1 point more
DROP = {("none", CHAR): (0.10, 0.12, 0.14), ("mnli", CHAR): (0.05, 0.08, 0.08),
        ("none", ORDER): (0.02, 0.02, 0.02), ("mnli", ORDER): (0.01, 0.03, 0.02)}
# char_noise, paired mnli − none: -.05 -.04 -.06 -> mean -5.0, std 1.0, less drop in 3/3 seeds
# word_order: -.01 +.01 .00 -> mean 0.0, std 1.0, less drop in 1/3 seeds
# perturbed = clean − drop: none/char .60 .60 .60 -> 60.0 ± 0.0; mnli/char .70 .70 .73 -> 71.0 ± 1.7


def _job(client, exp_id, parent, clock, inter, seed, perturbed=True):
    tags = {"mlflow.parentRunId": parent, "xstilts.kind": "job", "xstilts.study": "robust",
            "xstilts.job_id": f"t-{inter}-{seed}", "xstilts.stage": "target",
            "xstilts.intermediate": inter, "xstilts.target": "xnli", "xstilts.seed": str(seed),
            "xstilts.main_metric": "accuracy", "xstilts.status": "finished"}
    run_id = client.create_run(exp_id, start_time=clock, tags=tags).info.run_id
    clean = CLEAN[inter][seed - 1]
    metrics = {"xnli/accuracy/avg": clean, "xnli/accuracy/en": clean + 0.02,
               "xnli/accuracy/de": clean - 0.02, "xnli/n/en": 50, "xnli/n/de": 50}
    for label in (CHAR, ORDER) if perturbed else ():
        drop = DROP[(inter, label)][seed - 1]
        metrics[f"xnli.{label}/accuracy/avg"] = clean - drop
        metrics[f"xnli.{label}/drop/avg"] = drop
        for lang, off, lang_clean in (("en", -0.01, clean + 0.02), ("de", 0.01, clean - 0.02)):
            metrics[f"xnli.{label}/drop/{lang}"] = drop + off
            metrics[f"xnli.{label}/accuracy/{lang}"] = lang_clean - drop - off
    client.log_batch(run_id, metrics=[Metric(k, v, clock, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, "FINISHED")


@pytest.fixture(scope="module")
def robust(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    uri = f"sqlite:///{root}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    clock = int(time.time() * 1000)
    parent = client.create_run(exp_id, run_name="robust", start_time=clock,
                               tags={"xstilts.kind": "study", "xstilts.study": "robust"}).info.run_id
    for i, (inter, seed) in enumerate((i, s) for i in CLEAN for s in (1, 2, 3)):
        _job(client, exp_id, parent, clock + 1000 * (i + 1), inter, seed)
    report, paths = rp.generate_report(uri, EXPERIMENT, "robust", root / "out", figures=False)
    return report, paths


def test_perturbed_scores_parses_labels_with_dots_and_ignores_other_metrics():
    metrics = {"xnli.casing-rate0.2/accuracy/avg": 0.5, "xnli.casing-rate0.2/accuracy/de": 0.4,
               "xnli.casing-rate0.2/drop/de": 0.1, "xnli.casing-rate0.2/drop/avg": 0.2,
               "xnli/accuracy/de": 0.5, "xnli.casing-rate0.2/n/de": 9,
               "xnlix.other/accuracy/avg": 0.9, "pawsx.casing/accuracy/avg": 0.1}
    assert perturbed_scores(metrics, "xnli", "accuracy") == {"casing-rate0.2": {
        "score": 0.5, "drop": 0.2, "languages": {"de": 0.4}, "drops": {"de": 0.1}}}


def test_clean_perturbed_and_drop_cells(robust):
    report, _ = robust
    table = build_robustness(report)["xnli"]
    assert table.perturbations == [CHAR, ORDER] and table.rows == ["none", "mnli"]
    assert table.clean["mnli"].mean == pytest.approx(0.78)
    assert table.perturbed[("none", CHAR)].mean == pytest.approx(0.60)
    assert table.perturbed[("none", CHAR)].std == pytest.approx(0.0, abs=1e-12)
    assert table.perturbed[("mnli", CHAR)].mean == pytest.approx(0.71)
    assert table.perturbed[("mnli", CHAR)].std == pytest.approx(math.sqrt(0.0003))
    assert table.drop[("none", CHAR)].mean == pytest.approx(0.12)
    assert table.drop[("none", CHAR)].std == pytest.approx(0.02)
    assert table.drop[("mnli", ORDER)].mean == pytest.approx(0.02)


def test_paired_drop_against_the_baseline(robust):
    report, _ = robust
    table = build_robustness(report)["xnli"]
    assert set(table.paired) == {("mnli", CHAR), ("mnli", ORDER)}   # the baseline is not paired
    char = table.paired[("mnli", CHAR)]
    assert (char.n, char.fewer) == (3, 3)
    assert char.mean == pytest.approx(-0.05) and char.std == pytest.approx(0.01)
    t = -0.05 / (0.01 / math.sqrt(3))                               # paired t by hand, df = 2
    assert char.p_value == pytest.approx(2 * stats.t.sf(abs(t), df=2), rel=1e-6)
    order = table.paired[("mnli", ORDER)]
    assert order.mean == pytest.approx(0.0, abs=1e-12) and order.fewer == 1
    assert order.std == pytest.approx(0.01)


def test_per_language_drops_with_delta(robust):
    report, _ = robust
    table = build_robustness(report)["xnli"]
    assert table.languages == ["en", "de"]
    en = table.language_drop[(CHAR, "en", "mnli")]
    assert en.mean == pytest.approx(0.07 - 0.01)                    # (.05 + .08 + .08)/3 - .01
    assert en.delta == pytest.approx(-0.05)
    assert table.language_drop[(CHAR, "de", "none")].delta is None


def test_markdown_csv_and_html(robust):
    _, paths = robust
    md = paths["md"].read_text()
    assert "## Robustness under perturbations" in md
    assert "| mnli | 78.0 ± 3.0 | 71.0 ± 1.7 | 7.0 ± 1.7 | 76.0 ± 2.6 | 2.0 ± 1.0 |" in md
    assert "| mnli | -5.0 ± 1.0, less drop in 3/3 seeds, p=0.0" in md
    rows = list(csv.DictReader(paths["robustness_csv"].open()))
    avg = {(r["perturbation"], r["intermediate"]): r for r in rows if r["language"] == "avg"}
    assert float(avg[(CHAR, "mnli")]["delta_drop_vs_baseline"]) == pytest.approx(-0.05)
    assert avg[(CHAR, "none")]["delta_drop_vs_baseline"] == ""
    assert {r["language"] for r in rows} == {"avg", "en", "de"}
    html = paths["html"].read_text()
    assert 'class="robustness"' in html and "Δdrop vs baseline" in html


def test_no_perturbations_no_section(tmp_path):
    scores = [{"intermediate": "none", "target": "xnli", "seed": 1, "score": 0.7, "study": "s",
               "metric": "xnli/accuracy/avg", "languages": {"de": 0.7}, "perturbed": {}}]
    report = rp.build_report(scores, "s")
    assert build_robustness(report) == {}
    assert "Robustness" not in rp.render_markdown(report)
    assert "robustness_csv" not in rp.write_report(report, tmp_path)


def test_html_colours_a_smaller_drop_as_an_improvement(robust):
    _, paths = robust
    html = paths["html"].read_text()
    languages = html[html.index("Drop per language under"):]
    assert '<span class="delta-pos">(-5.0)</span>' in languages         # mnli drops 5 points less
    assert '<span class="delta-neg">(-5.0)</span>' not in languages
    main = html[:html.index("Per-language scores")]
    assert '<span class="delta-pos">(+6.0)</span>' in main               # higher scores stay green
