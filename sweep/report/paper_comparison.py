"""The report's "Paper comparison" section: per target, the study's baseline (``none``) row and
its best intermediate row beside the published XLM-R Large and X-STILTs test scores.

The published numbers are data, ``sweep/data/paper_reference.json``, each with its source
(paper, table, version). The file also says how they aggregate (``aggregation``): each task's
metric averaged over a benchmark's language list (XTREME's). The study's value is computed the
same way, per seed, from the runs' per-language scores over that benchmark's list
(:data:`~sweep.report.benchmarks.BENCHMARK_LANGUAGES` and
:func:`~sweep.report.benchmarks.list_average`, as the report's benchmark columns), then mean ±
std over seeds; a value over fewer languages than the list is marked ``†`` and its missing
languages are listed. The published X-STILTs score of a
target is compared with the study's best intermediate row (the row, at full intermediate data,
with the highest such mean), the XLM-R Large score with the baseline. Columns with a target
training size (``xnli@500``) are not compared (the paper trained on full data), nor rows with an
intermediate size. A target without a published number says so.
"""
from __future__ import annotations

import csv
import functools
import html
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sweep.report.benchmarks import BENCHMARK_LANGUAGES, BENCHMARKS, list_average
from sweep.report.formatting import csv_value, md_escape, pct, signed_pct
from sweep.report.html_formatting import inline_markdown
from sweep.report.metrics import scored_metric
from sweep.report.model import (BASELINE, INCOMPLETE_MARK, MISSING_MARK, SIZE_SEP, RowInfo,
                                StudyReport, mean_std)

log = logging.getLogger(__name__)

REFERENCE_FILE = "paper_reference.json"
PAPER_CSV = "report_paper.csv"
TITLE = "Paper comparison"
#: the study rows compared, in the order of the reference's ``models`` roles
ROLES = ("baseline", "best_intermediate")
ROLE_HEADERS = {"baseline": f"baseline (`{BASELINE}`)", "best_intermediate": "best intermediate"}
NO_NUMBER = "no published number"


@dataclass(frozen=True)
class Source:
    key: str
    paper: str
    table: str
    version: str


@dataclass(frozen=True)
class Published:
    """One task's published scores (as published, ×100), keyed by model name."""

    task: str
    metric: str
    source: Source
    scores: tuple[tuple[str, float], ...]

    def score(self, model: str) -> float:
        return dict(self.scores)[model]


@dataclass(frozen=True)
class Reference:
    """The reference file: ``models`` maps each of :data:`ROLES` to a published model."""

    models: tuple[tuple[str, str], ...]
    benchmark: str
    split: str
    aggregation: str
    entries: tuple[tuple[str, Published], ...]

    def model(self, role: str) -> str:
        return dict(self.models)[role]

    def lookup(self, target: str) -> Published | None:
        """The target's published scores, also under a benchmark alias (``wikiann`` -> PAN-X)."""
        entries = dict(self.entries)
        if target in entries:
            return entries[target]
        for names in BENCHMARKS.get(self.benchmark, ()):
            if target in names:
                return next((entries[n] for n in names if n in entries), None)
        return None


def _require(mapping: Any, key: str, where: str, path: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{path}: {where} has no {key!r}")
    return mapping[key]


def parse_reference(data: dict, path: str = REFERENCE_FILE) -> Reference:
    """Validate and read the reference data; a malformed entry is an error naming it."""
    models = _require(data, "models", "the file", path)
    for role in ROLES:
        _require(models, role, "models", path)
    agg = _require(data, "aggregation", "the file", path)
    bench = _require(agg, "benchmark", "aggregation", path)
    if bench not in BENCHMARK_LANGUAGES:
        raise ValueError(f"{path}: aggregation.benchmark {bench!r} is not one of "
                         f"{', '.join(BENCHMARK_LANGUAGES)}")
    raw_sources = _require(data, "sources", "the file", path)
    sources = {key: Source(key, *(_require(src, f, f"sources.{key}", path)
                                  for f in ("paper", "table", "version")))
               for key, src in raw_sources.items()}
    entries = []
    for task, entry in _require(data, "scores", "the file", path).items():
        where = f"scores.{task}"
        if task not in BENCHMARK_LANGUAGES[bench]:
            raise ValueError(f"{path}: {where}: {task!r} is not a {bench} task")
        key = _require(entry, "source", where, path)
        if key not in sources:
            raise ValueError(f"{path}: {where}.source {key!r} is not in sources")
        scores = []
        for role in ROLES:
            value = _require(entry, models[role], where, path)
            if not isinstance(value, (int, float)):
                raise ValueError(f"{path}: {where}.{models[role]} is not a number: {value!r}")
            scores.append((models[role], float(value)))
        entries.append((task, Published(task, _require(entry, "metric", where, path),
                                        sources[key], tuple(scores))))
    return Reference(tuple((r, models[r]) for r in ROLES), bench,
                     _require(agg, "split", "aggregation", path),
                     _require(agg, "text", "aggregation", path), tuple(entries))


@functools.cache
def load_reference(path: str | None = None) -> Reference:
    """The reference file (default: the packaged ``sweep/data/paper_reference.json``)."""
    if path is None:
        text = resources.files("sweep").joinpath("data", REFERENCE_FILE).read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_reference(json.loads(text), path or f"sweep/data/{REFERENCE_FILE}")


# --------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class StudyValue:
    """A study row's value for one target: mean ± std over seeds (raw, 0–1) and the languages
    of the benchmark list that some seed lacks."""

    row: str
    mean: float
    std: float
    n_seeds: int
    missing: tuple[str, ...]


@dataclass(frozen=True)
class TargetComparison:
    """One target of one study. ``languages`` is the benchmark's list for the target (None
    when the benchmark has no such task: the value is then the main table's, over the
    languages the jobs ran); ``metric`` is what the study scored."""

    study: str
    target: str
    metric: str
    languages: tuple[str, ...] | None
    published: Published | None
    values: tuple[tuple[str, StudyValue | None], ...]

    def value(self, role: str) -> StudyValue | None:
        return dict(self.values)[role]

    @property
    def comparable(self) -> bool:
        return self.published is not None and self.published.metric == self.metric


@dataclass(frozen=True)
class PaperComparison:
    reference: Reference
    targets: tuple[TargetComparison, ...]
    n_seeds: int
    multi_study: bool


def _per_seed(report: StudyReport, target: str, langs: tuple[str, ...] | None
              ) -> dict[str, dict[Any, dict]]:
    """Row label -> seed -> ``{"score", "missing"}`` for the target's full-size runs."""
    labels = {info: label for label, info in report.row_info.items()}
    out: dict[str, dict[Any, dict]] = {}
    for rec in report.records:
        if rec["target"] != target or rec.get("target_examples") is not None:
            continue
        label = labels.get(RowInfo(rec["study"], rec.get("group"), rec["intermediate"],
                                   rec.get("train_examples")))
        if label is None:
            continue
        value = (list_average(rec.get("languages") or {}, langs, rec["score"]) if langs
                 else {"score": float(rec["score"]), "missing": []})
        out.setdefault(label, {})[rec["seed"]] = value
    return out


def _value(row: str, seeds: dict[Any, dict], langs: tuple[str, ...] | None) -> StudyValue:
    mean, std = mean_std([v["score"] for v in seeds.values()])
    lacking = {lang for v in seeds.values() for lang in v["missing"]}
    return StudyValue(row, mean, std, len(seeds),
                      tuple(lang for lang in langs or () if lang in lacking))


def _compare_target(report: StudyReport, study: str, target: str,
                    reference: Reference) -> TargetComparison:
    langs = BENCHMARK_LANGUAGES[reference.benchmark].get(target)
    per_row = _per_seed(report, target, langs)
    values = {label: _value(label, seeds, langs) for label, seeds in per_row.items()}
    rows = [r for r in report.rows if report.row_info[r].study == study
            and report.row_info[r].train_examples is None and r in values]
    bases = [r for r in rows if report.row_info[r].intermediate == BASELINE]
    base = next((r for r in bases if report.row_info[r].group is None), None) or (
        bases[0] if bases else None)
    others = [values[r] for r in rows if report.row_info[r].intermediate != BASELINE]
    best = max(others, key=lambda v: v.mean, default=None)
    metric = scored_metric(r for r in report.records if r["target"] == target)
    published = reference.lookup(target)
    if published is not None and published.metric != metric:
        log.warning("paper comparison: %s scored by %s here, published by %s; not compared",
                    target, metric or "an unknown metric", published.metric)
    return TargetComparison(study, target, metric, langs, published,
                            (("baseline", values.get(base) if base else None),
                             ("best_intermediate", best)))


def build_comparison(report: StudyReport, reference: Reference | None = None
                     ) -> PaperComparison | None:
    """The comparison for every full-size target column of every study; None without any."""
    reference = reference or load_reference()
    targets = [c for c in report.target_columns if SIZE_SEP not in c]
    if not targets:
        return None
    studies = report.studies or [report.study]
    rows = tuple(_compare_target(report, s, t, reference) for s in studies for t in targets)
    log.info("paper comparison: %d of %d targets have published numbers",
             sum(r.published is not None for r in rows), len(rows))
    return PaperComparison(reference, rows, report.n_seeds, len(studies) > 1)


# --------------------------------------------------------------------------- rendering


def note(reference: Reference) -> str:
    """What the section shows and how each number is computed (Markdown)."""
    base, best = (reference.model(r) for r in ROLES)
    return (f"Published {reference.split} scores of {base} and {best} beside this study's "
            f"baseline (`{BASELINE}`) and its best intermediate row (the row at full "
            f"intermediate data with the highest mean here). Each published score is "
            f"{reference.aggregation}; the study's value is computed the same way: per seed, "
            f"the mean of the per-language scores over {reference.benchmark}'s list, then "
            f"mean ± std over seeds (×100), with study − published in parentheses. "
            f"{INCOMPLETE_MARK} marks a study value over fewer languages than the published "
            f"one (listed below the table). Columns with a target training size are not "
            f"compared.")


def _languages_text(t: TargetComparison, benchmark: str) -> str:
    where = (f"{len(t.languages)} {benchmark} languages" if t.languages is not None
             else "languages the jobs ran")
    return f"{t.metric or 'main metric'}, {where}"


def _value_text(v: StudyValue | None, published: float | None, n_total: int,
                with_row: bool) -> str:
    if v is None:
        return MISSING_MARK
    text = f"{pct(v.mean)}{INCOMPLETE_MARK if v.missing else ''} ± {pct(v.std)}"
    if published is not None:
        text += f" ({signed_pct(v.mean - published / 100)})"
    if v.n_seeds < n_total:
        text += f" (n={v.n_seeds})"
    return f"{v.row}: {text}" if with_row else text


def _published(t: TargetComparison, model: str) -> float | None:
    return t.published.score(model) if t.comparable else None


def _row_cells(t: TargetComparison, comp: PaperComparison) -> list[str]:
    """[target, metric, baseline, XLM-R, best, X-STILTs, source] as plain text."""
    ref = comp.reference
    cells = [f"{t.study}: {t.target}" if comp.multi_study else t.target,
             _languages_text(t, ref.benchmark)]
    for role in ROLES:
        model = ref.model(role)
        cells.append(_value_text(t.value(role), _published(t, model), comp.n_seeds,
                                 role == "best_intermediate"))
        cells.append(NO_NUMBER if t.published is None else f"{t.published.score(model):.1f}")
    cells.append(t.published.source.key if t.published else MISSING_MARK)
    return cells


def _headers(ref: Reference) -> list[str]:
    heads = ["target", "metric, languages"]
    for role in ROLES:
        heads += [ROLE_HEADERS[role], f"{ref.model(role)} (published)"]
    return heads + ["source"]


def _gap_text(missing: tuple[str, ...], langs: tuple[str, ...], benchmark: str) -> str:
    """How many of the list's languages a value has, naming the shorter of the two lists."""
    n, have = len(langs), [lang for lang in langs if lang not in missing]
    if not have:
        return ("no per-language scores; the value is the jobs' own average over the languages "
                "they ran")
    named = (f"lacks {' '.join(missing)}" if len(missing) <= len(have)
             else f"has only {' '.join(have)}")
    return f"{len(have)} of {benchmark}'s {n} languages ({named})"


def footnotes(comp: PaperComparison) -> list[str]:
    """One line per incomplete study value and per target whose metric differs (Markdown)."""
    lines = []
    for t in comp.targets:
        name = f"{t.study}: {t.target}" if comp.multi_study else t.target
        rows_by_gap: dict[tuple[str, ...], list[str]] = {}
        for role in ROLES:
            v = t.value(role)
            if v is not None and v.missing:
                rows_by_gap.setdefault(v.missing, []).append(f"`{v.row}`")
        for missing, rows in rows_by_gap.items():
            lines.append(f"{INCOMPLETE_MARK} {name}, {', '.join(rows)}: "
                         f"{_gap_text(missing, t.languages or (), comp.reference.benchmark)}.")
        if t.published is not None and not t.comparable:
            lines.append(f"{name}: this study scores {t.metric or 'an unknown metric'}, the "
                         f"published number is {t.published.metric}; no difference is shown.")
    return lines


def source_lines(comp: PaperComparison) -> list[str]:
    used = {t.published.source.key: t.published.source for t in comp.targets if t.published}
    return [f"`{s.key}`: {s.paper}; table: {s.table}; version: {s.version}."
            for s in used.values()]


def _no_reference_text(comp: PaperComparison) -> str:
    have = ", ".join(dict(comp.reference.entries))
    return (f"No published numbers for this study's targets "
            f"({', '.join(dict.fromkeys(t.target for t in comp.targets))}): "
            f"`sweep/data/{REFERENCE_FILE}` has {have}.")


def paper_lines(report: StudyReport) -> list[str]:
    """The Markdown section, or nothing when the study has no full-size target column."""
    comp = build_comparison(report)
    if comp is None:
        return []
    lines = [f"## {TITLE}", ""]
    if not any(t.published for t in comp.targets):
        return lines + [_no_reference_text(comp), ""]
    lines += ["| " + " | ".join(_headers(comp.reference)) + " |",
              "|---|---|" + "---:|" * 4 + "---|"]
    lines += ["| " + " | ".join(map(md_escape, _row_cells(t, comp))) + " |"
              for t in comp.targets]
    lines += ["", note(comp.reference), ""]
    lines += [f"- {line}" for line in footnotes(comp)]
    lines += ["", "Sources:", *[f"- {line}" for line in source_lines(comp)], ""]
    return lines


def paper_html(report: StudyReport) -> str:
    """The HTML section, or an empty string when it does not apply."""
    comp = build_comparison(report)
    if comp is None:
        return ""
    parts = [f"<h2>{TITLE}</h2>"]
    if not any(t.published for t in comp.targets):
        return parts[0] + f'<p class="note">{inline_markdown(_no_reference_text(comp))}</p>'
    head = "".join(f"<th>{inline_markdown(h)}</th>" for h in _headers(comp.reference))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(t, comp))
                   + "</tr>" for t in comp.targets)
    parts.append(f'<table class="paper"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                 "</table>")
    parts.append(f'<p class="note">{inline_markdown(note(comp.reference))}</p>')
    items = [*footnotes(comp), *(f"Source {line}" for line in source_lines(comp))]
    parts.append('<ul class="paper-notes">'
                 + "".join(f"<li>{inline_markdown(i)}</li>" for i in items) + "</ul>")
    return "".join(parts)


# --------------------------------------------------------------------------- CSV

CSV_HEADER = ["study", "target", "metric", "benchmark", "n_languages", "role", "row", "mean",
              "std", "n_seeds", "missing_languages", "published_model", "published", "delta",
              "published_metric", "source", "source_paper", "source_table", "source_version"]


def write_paper_csv(comp: PaperComparison, path: Path) -> Path:
    """One row per (study, target, role); study values and published scores raw (0–1, the
    published ones divided by 100), ``delta`` = mean − published where the metrics agree."""
    ref = comp.reference
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for t in comp.targets:
            pub = t.published
            for role in ROLES:
                v, model = t.value(role), ref.model(role)
                score = None if pub is None else pub.score(model) / 100
                delta = (v.mean - score if v is not None and score is not None
                         and t.comparable else None)
                writer.writerow([
                    t.study, t.target, t.metric, ref.benchmark if t.languages else "",
                    csv_value(len(t.languages) if t.languages else None), role,
                    v.row if v else "", csv_value(v.mean if v else None),
                    csv_value(v.std if v else None),
                    v.n_seeds if v else 0, " ".join(v.missing) if v else "", model,
                    csv_value(score), csv_value(delta), pub.metric if pub else "",
                    pub.source.key if pub else "", pub.source.paper if pub else "",
                    pub.source.table if pub else "", pub.source.version if pub else ""])
    return Path(path)


def write_paper(report: StudyReport, out_dir: Path) -> dict[str, Path]:
    """``report_paper.csv`` when the section applies, keyed ``paper_csv``."""
    comp = build_comparison(report)
    if comp is None:
        return {}
    return {"paper_csv": write_paper_csv(comp, Path(out_dir) / PAPER_CSV)}
