"""Tests for `sweep report` against a synthetic MLflow store written in the engine's schema.

Expected numbers are worked out by hand from the chosen scores (see the comments by each
study), not produced by the code under test.
"""
from __future__ import annotations

import csv
import time

import mlflow
import pytest
from mlflow.entities import Metric

from sweep import report as rp

EXPERIMENT = "xstilts-test"
LANGS = ("en", "de", "sw")
MAIN_METRIC = {"xnli": "accuracy", "xquad": "f1"}
MULTI = "mnli+squad_v1"

# Study "full": 3 intermediates x 2 targets x 3 seeds.
#   xnli  none .70 .72 .74 -> 72.0 ± 2.0 | squad_v1 .69 .70 .71 -> 70.0 ± 1.0 (-2.0)
#         mnli+squad_v1 .75 .78 .81 -> 78.0 ± 3.0 (+6.0)   <- best
#   xquad none .60 .60 .60 -> 60.0 ± 0.0 | squad_v1 .70 .72 .74 -> 72.0 ± 2.0 (+12.0)  <- best
#         mnli+squad_v1 .66 .68 .70 -> 68.0 ± 2.0 (+8.0)
#   average per seed: none .65 .66 .67 -> 66.0 ± 1.0
#         squad_v1 .695 .71 .725 -> 71.0 ± 1.5 (+5.0)
#         mnli+squad_v1 .705 .73 .755 -> 73.0 ± 2.5 (+7.0)
FULL = {
    ("none", "xnli"): (0.70, 0.72, 0.74),
    ("none", "xquad"): (0.60, 0.60, 0.60),
    ("squad_v1", "xnli"): (0.69, 0.70, 0.71),
    ("squad_v1", "xquad"): (0.70, 0.72, 0.74),
    (MULTI, "xnli"): (0.75, 0.78, 0.81),
    (MULTI, "xquad"): (0.66, 0.68, 0.70),
}
FULL_EXPECTED = {  # (row, column): (mean, std, delta) on the 0-1 scale
    ("none", "xnli"): (0.72, 0.02, None),
    ("squad_v1", "xnli"): (0.70, 0.01, -0.02),
    (MULTI, "xnli"): (0.78, 0.03, 0.06),
    ("none", "xquad"): (0.60, 0.0, None),
    ("squad_v1", "xquad"): (0.72, 0.02, 0.12),
    (MULTI, "xquad"): (0.68, 0.02, 0.08),
    ("none", "average"): (0.66, 0.01, None),
    ("squad_v1", "average"): (0.71, 0.015, 0.05),
    (MULTI, "average"): (0.73, 0.025, 0.07),
}
# Benchmark columns: xnli and xquad are 2 of XTREME's 9 and XTREME-R's 10 tasks -> partial.
# xquad is scored (EM+F1)/2; this store logs no em_f1, so it is (exact_match + f1)/2 with
# exact_match = f1 - .30, i.e. score - .15:  xquad .60 -> .45 etc. Per seed (xnli + that)/2:
#   none .575 .585 .595 -> 58.5 ± 1.0 | squad_v1 .62 .635 .65 -> 63.5 ± 1.5 (+5.0)
#   mnli+squad_v1 .63 .655 .68 -> 65.5 ± 2.5 (+7.0)
BENCH_COLUMNS = ["XTREME (2/9 tasks)", "XTREME-R (2/10 tasks)"]
BENCH_EXPECTED = {
    (row, col): value for col in BENCH_COLUMNS for row, value in (
        ("none", (0.585, 0.01, None)), ("squad_v1", (0.635, 0.015, 0.05)),
        (MULTI, (0.655, 0.025, 0.07)))
}


class Store:
    """Writes parent/job/trial runs the way the engine's tracking module does."""

    def __init__(self, uri: str, artifact_dir):
        self.uri = uri
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.exp_id = self.client.create_experiment(EXPERIMENT,
                                                    artifact_location=artifact_dir.as_uri())
        self.clock = int(time.time() * 1000)

    def _tick(self) -> int:
        self.clock += 1000  # distinct, increasing start times: "newest attempt" is well defined
        return self.clock

    def parent(self, study: str) -> str:
        run = self.client.create_run(self.exp_id, run_name=study, start_time=self._tick(),
                                     tags={"xstilts.kind": "study", "xstilts.study": study})
        return run.info.run_id

    def job(self, parent: str, study: str, stage: str, intermediate: str, target: str,
            seed: int, score: float | None = None, status: str = "finished",
            error: str | None = None, job_id: str | None = None, kind: str = "job") -> str:
        main = MAIN_METRIC.get(target, "accuracy")
        tags = {
            "mlflow.parentRunId": parent, "xstilts.kind": kind, "xstilts.study": study,
            "xstilts.job_id": job_id or f"{stage}-{intermediate}-{target}-{seed}",
            "xstilts.stage": stage, "xstilts.intermediate": intermediate,
            "xstilts.target": target, "xstilts.seed": str(seed),
            "xstilts.main_metric": main, "xstilts.status": status,
        }
        if error:
            tags["xstilts.error"] = error
        run_id = self.client.create_run(self.exp_id, start_time=self._tick(),
                                        tags=tags).info.run_id
        metrics = {"dev/score": 0.5}
        if score is not None:
            metrics[f"{target}/{main}/avg"] = score
            for off, lang in zip((-0.01, 0.0, 0.01), LANGS):  # languages average to `score`
                metrics[f"{target}/{main}/{lang}"] = score + off
                metrics[f"{target}/n/{lang}"] = 1000
            # a non-main metric with a different value: reading it would change every mean
            metrics[f"{target}/exact_match/avg"] = score - 0.3
        self.client.log_batch(run_id, metrics=[Metric(k, v, self.clock, 0)
                                               for k, v in metrics.items()])
        if status != "running":
            self.client.set_terminated(run_id, "FAILED" if status == "failed" else "FINISHED")
        return run_id


def _write_full(store: Store) -> str:
    parent = store.parent("full")
    # written in an order unlike the expected row order, so order cannot come from insertion
    for (inter, target), values in sorted(FULL.items(), key=lambda kv: kv[0][0], reverse=True):
        for seed, score in enumerate(values, start=1):
            if inter != "none" and target == "xnli":
                store.job(parent, "full", "intermediate", inter, "", seed)
            job = store.job(parent, "full", "target", inter, target, seed, score)
            for _ in range(2):  # HPO trials nested under the job, with absurd scores
                store.job(job, "full", "target", inter, target, seed, 0.01, kind="trial",
                          job_id=f"target-{inter}-{target}-{seed}")
    return parent


def _write_partial(store: Store) -> str:
    """Study "partial" (seeds 1, 2):
    none/xnli .70 .74; none/xquad seed 1 .60, seed 2 still running;
    mnli/xnli .75, then .77 on a retry after a failed first attempt of the same job;
    mnli/xquad both seeds failed; squad_v1's intermediate job failed (no downstream jobs)."""
    parent = store.parent("partial")
    store.job(parent, "partial", "target", "none", "xnli", 1, 0.70)
    store.job(parent, "partial", "target", "none", "xnli", 2, 0.74)
    store.job(parent, "partial", "target", "none", "xquad", 1, 0.60)
    store.job(parent, "partial", "target", "none", "xquad", 2, status="running")
    for seed in (1, 2):
        store.job(parent, "partial", "intermediate", "mnli", "", seed)
    store.job(parent, "partial", "target", "mnli", "xnli", 1, 0.75)
    store.job(parent, "partial", "target", "mnli", "xnli", 2, status="failed",
              error="RuntimeError: preempted")
    store.job(parent, "partial", "target", "mnli", "xnli", 2, 0.77)  # retry, same job id
    store.job(parent, "partial", "target", "mnli", "xquad", 1, status="failed",
              error="CUDA out of memory")
    store.job(parent, "partial", "target", "mnli", "xquad", 2, status="failed",
              error="NaN loss")
    store.job(parent, "partial", "intermediate", "squad_v1", "", 1, status="failed",
              error="TaskDataError: squad_v1 train not found")
    return parent


def _write_other(store: Store) -> str:
    """Another study in the same experiment, with scores and tasks that would show if mixed."""
    parent = store.parent("other")
    for seed in (1, 2, 3):
        store.job(parent, "other", "target", "none", "xnli", seed, 0.99)
        store.job(parent, "other", "target", "copa", "xnli", seed, 0.99)
    store.job(parent, "other", "target", "copa", "xquad", 1, status="failed", error="boom")
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    s = Store(f"sqlite:///{root}/mlflow.db", root / "artifacts")
    s.parents = {"other": _write_other(s), "full": _write_full(s),
                 "partial": _write_partial(s)}
    return s


@pytest.fixture(scope="module")
def full(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("full_report")
    # figures need lang2vec (~20 s to import): tests/test_report_html.py covers them
    report, paths = rp.generate_report(store.uri, EXPERIMENT, "full", out, figures=False)
    return report, paths


@pytest.fixture(scope="module")
def partial(store):
    scores, failed = rp.collect_scores(store.client, EXPERIMENT, "partial")
    return rp.build_report(scores, "partial", failed)


def _first_table(markdown: str) -> list[str]:
    """The lines of the first Markdown table (the main results table)."""
    lines: list[str] = []
    for ln in markdown.splitlines():
        if ln.startswith("|"):
            lines.append(ln)
        elif lines:
            break
    return lines


def _table(markdown: str) -> dict[str, list[str]]:
    """First Markdown table -> {first cell: other cells}; key "" holds the header."""
    lines = _first_table(markdown)
    header, body = lines[0], lines[2:]
    split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    table = {split(ln)[0]: split(ln)[1:] for ln in body}
    table[""] = split(header)[1:]
    return table


# --------------------------------------------------------------------------- full study


def test_full_rows_columns_and_order(full):
    report, _ = full
    assert report.rows == ["none", "squad_v1", MULTI]  # baseline first, multi-task set last
    assert report.columns == ["xnli", "xquad", "average", *BENCH_COLUMNS]
    assert report.missing == [] and report.failed == []


@pytest.mark.parametrize("key", sorted(FULL_EXPECTED))
def test_full_cells(full, key):
    report, _ = full
    mean, std, delta = FULL_EXPECTED[key]
    cell = report.cells[key]
    assert cell.n_seeds == 3
    assert cell.mean == pytest.approx(mean, abs=1e-9)
    assert cell.std == pytest.approx(std, abs=1e-9)  # sample std (ddof=1), not population
    if delta is None:
        assert cell.delta is None
    else:
        assert cell.delta == pytest.approx(delta, abs=1e-9)


@pytest.mark.parametrize("key", sorted(BENCH_EXPECTED))
def test_full_benchmark_cells(full, key):
    report, _ = full
    mean, std, delta = BENCH_EXPECTED[key]
    cell = report.cells[key]
    assert (cell.n_tasks, cell.of_tasks, cell.partial) == \
        (2, 9 if key[1].startswith("XTREME ") else 10, True)
    assert cell.mean == pytest.approx(mean, abs=1e-9)
    assert cell.std == pytest.approx(std, abs=1e-9)
    assert cell.delta == (None if delta is None else pytest.approx(delta, abs=1e-9))


def test_full_markdown(full):
    report, paths = full
    md = paths["md"].read_text(encoding="utf-8")
    assert md == rp.render_markdown(report)
    table = _table(md)
    assert table[""] == ["xnli", "xquad", "average", *BENCH_COLUMNS]
    assert list(table)[:-1] == ["none", "squad_v1", MULTI]
    # this store logs no per-language scores, so the benchmark cells fall back to the runs'
    # averages and are marked incomplete (†): which languages they cover is unknown
    assert table["none"] == ["72.0 ± 2.0", "60.0 ± 0.0", "66.0 ± 1.0", *["58.5† ± 1.0"] * 2]
    assert table["squad_v1"] == ["70.0 ± 1.0 (-2.0)", "**72.0** ± 2.0 (+12.0)",
                                 "71.0 ± 1.5 (+5.0)", *["63.5† ± 1.5 (+5.0)"] * 2]
    assert table[MULTI] == ["**78.0** ± 3.0 (+6.0)", "68.0 ± 2.0 (+8.0)",
                            "**73.0** ± 2.5 (+7.0)", *["**65.5**† ± 2.5 (+7.0)"] * 2]
    table_text = "\n".join(_first_table(md))
    assert table_text.count("**") == 2 * 5  # exactly one bold value per column
    assert "mean ± std over 3 seeds of the average over languages" in md
    assert "Δ vs baseline" in md
    assert md.startswith("# ") and "full" in md.splitlines()[0]


def test_full_csv(full):
    _, paths = full
    with paths["csv"].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["intermediate", "target", "mean", "std", "n_seeds", "delta",
                             "n_tasks"]
    got = {(r["intermediate"], r["target"]): r for r in rows}
    expected = {**FULL_EXPECTED, **BENCH_EXPECTED}
    assert set(got) == set(expected) and len(rows) == len(expected)
    assert {got[k]["n_tasks"] for k in BENCH_EXPECTED} == {"2/9", "2/10"}
    assert {got[k]["n_tasks"] for k in FULL_EXPECTED} == {""}
    for key, (mean, std, delta) in expected.items():
        row = got[key]
        assert float(row["mean"]) == pytest.approx(mean, abs=1e-9)  # raw scale, not x100
        assert float(row["std"]) == pytest.approx(std, abs=1e-9)
        assert int(row["n_seeds"]) == 3
        assert (row["delta"] == "") if delta is None else \
            float(row["delta"]) == pytest.approx(delta, abs=1e-9)


def test_full_artifacts_on_parent_run(full, store, tmp_path):
    _, paths = full
    client = store.client
    logged = {a.path for a in client.list_artifacts(store.parents["full"], "report")}
    assert logged == {"report/report.md", "report/report.csv", "report/report_languages.csv",
                      "report/report_resource_classes.csv",  # en/de/sw: classes 5 and 2
                      "report/report_paper.csv",  # xnli, xquad have published numbers
                      "report/report.html"} == {f"report/{p.name}" for p in paths.values()}
    for study in ("other", "partial"):
        assert client.list_artifacts(store.parents[study]) == []
    client.download_artifacts(store.parents["full"], "report", str(tmp_path))
    for path in paths.values():
        assert (tmp_path / "report" / path.name).read_text(encoding="utf-8") == \
            path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- isolation


def test_other_study_and_trials_not_mixed_in(store):
    scores, failed = rp.collect_scores(store.client, EXPERIMENT, "full")
    assert len(scores) == 18  # 3 intermediates x 2 targets x 3 seeds; no trial, no other study
    assert {s["score"] for s in scores} <= {v for vs in FULL.values() for v in vs}
    assert failed == []
    other, other_failed = rp.collect_scores(store.client, EXPERIMENT, "other")
    assert {(s["intermediate"], s["score"]) for s in other} == {("none", 0.99), ("copa", 0.99)}
    assert [f["error"] for f in other_failed] == ["boom"]


def test_collect_paginates(store, monkeypatch):
    calls = []
    search = store.client.search_runs

    def counting(*args, **kwargs):
        calls.append(kwargs.get("page_token"))
        return search(*args, **kwargs)

    monkeypatch.setattr(store.client, "search_runs", counting)
    small, small_failed = rp.collect_scores(store.client, EXPERIMENT, "full", page_size=4)
    n_small = len(calls)
    monkeypatch.undo()
    big, big_failed = rp.collect_scores(store.client, EXPERIMENT, "full")
    assert n_small >= 6  # 18 target + 6 intermediate job runs in pages of 4
    key = lambda s: (s["intermediate"], s["target"], s["seed"])  # noqa: E731
    assert sorted(map(key, small)) == sorted(map(key, big)) and len(small) == 18
    assert small_failed == big_failed == []


def test_unknown_experiment_or_parent(store):
    with pytest.raises(LookupError):
        rp.collect_scores(store.client, "no-such-experiment", "full")
    with pytest.raises(LookupError):
        rp.log_report(store.client, EXPERIMENT, "no-such-study", {})


# --------------------------------------------------------------------------- partial study


def test_partial_missing_and_failed(partial):
    assert partial.rows == ["none", "mnli", "squad_v1"]  # squad_v1 only has a failed job
    assert partial.missing == [("mnli", "xquad"), ("squad_v1", "xnli"), ("squad_v1", "xquad")]
    failed = {(f["intermediate"], f["target"], f["seed"]): f for f in partial.failed}
    # the preempted first attempt of mnli/xnli seed 2 was retried successfully: not listed
    assert set(failed) == {("mnli", "xquad", 1), ("mnli", "xquad", 2), ("squad_v1", "", 1)}
    assert failed[("mnli", "xquad", 1)]["error"] == "CUDA out of memory"
    assert failed[("squad_v1", "", 1)]["stage"] == "intermediate"


def test_partial_cells(partial):
    c = partial.cells
    assert (c["mnli", "xnli"].mean, c["mnli", "xnli"].n_seeds) == (pytest.approx(0.76), 2)
    assert c["mnli", "xnli"].delta == pytest.approx(0.76 - 0.72)
    # one seed (the other is still running): std 0 by convention
    assert (c["none", "xquad"].mean, c["none", "xquad"].std, c["none", "xquad"].n_seeds) == \
        (pytest.approx(0.60), 0.0, 1)
    # average only over seeds with every target: none has both only for seed 1 -> (.70+.60)/2
    assert (c["none", "average"].mean, c["none", "average"].n_seeds) == (pytest.approx(0.65), 1)
    assert c["none", "average"].std == 0.0
    for key in [("mnli", "xquad"), ("mnli", "average"), ("squad_v1", "xnli")]:
        assert (c[key].mean, c[key].std, c[key].n_seeds, c[key].delta) == (None, None, 0, None)


def test_partial_markdown(partial):
    md = rp.render_markdown(partial)
    table = _table(md)
    assert table["mnli"][1:] == ["–"] * 4  # xquad, average and both benchmark averages
    assert table["squad_v1"] == ["–"] * 5
    # the column's only value is its best; fewer seeds than the study's 2 are marked
    assert table["none"][1] == "**60.0** ± 0.0 (n=1)"
    missing = md.split("Missing cells")[1].split("Failed jobs")[0]
    for inter, target in partial.missing:
        assert f"{inter} → {target}" in missing
    failed = md.split("Failed jobs")[1]
    for error in ("CUDA out of memory", "NaN loss", "TaskDataError: squad_v1 train not found"):
        assert error in failed
    assert "preempted" not in md


# --------------------------------------------------------------------------- pure math


def _scores(table: dict) -> list[dict]:
    return [{"intermediate": i, "target": t, "seed": s, "score": v}
            for (i, t), vals in table.items() for s, v in enumerate(vals)]


def test_no_baseline_means_no_delta():
    rep = rp.build_report(_scores({("mnli", "xnli"): (0.5, 0.7), ("a+b", "xnli"): (0.4,)}), "s")
    assert rep.rows == ["mnli", "a+b"]
    assert all(c.delta is None for c in rep.cells.values())
    assert rep.cells["mnli", "xnli"].std == pytest.approx(0.1414213562, abs=1e-9)  # ddof=1
    md = rp.render_markdown(rep)
    assert "(+" not in md and "(-" not in md and "no baseline" in md


def test_explicit_orders_and_default_order():
    data = {(i, t): (0.5,) for i in ("none", "b+c", "a+b+c", "zeta", "alpha")
            for t in ("t2", "t1")}
    assert rp.build_report(_scores(data), "s").rows == ["none", "alpha", "zeta", "b+c", "a+b+c"]
    rep = rp.build_report(_scores(data), "s", intermediate_order=["zeta", "none", "ghost"],
                          target_order=["t2"])
    # listed first in the given order (a listed row without data stays, empty); rest appended
    assert rep.rows == ["zeta", "none", "ghost", "alpha", "b+c", "a+b+c"]
    assert rep.columns == ["t2", "t1", "average"]
    assert ("ghost", "t1") in rep.missing


def test_delta_sign_and_rounding():
    rep = rp.build_report(_scores({("none", "x"): (0.5,), ("m", "x"): (0.4996,),
                                   ("n", "x"): (0.5123,)}), "s")
    table = _table(rp.render_markdown(rep))
    assert table["m"][0] == "50.0 ± 0.0 (+0.0)"  # -0.04 points rounds to 0: no "-0.0"
    assert table["n"][0] == "**51.2** ± 0.0 (+1.2)"
