"""Report figures (PNG): Δ heatmap, per-language Δ bars, learning curves over intermediate data
size, and per-language Δ against typological distance from English.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so drawing needs no display and leaves no global state behind (the report runs
inside the sweep driver). The scatter's statistics go into the PNG's ``Description`` text chunk
and ``figures.json`` as well as onto the plot, so what the plot says can be checked.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweep.report.model import AVERAGE, BASELINE, LanguageTable, StudyReport

#: named as before the report became a package: logging settings that filter on it still apply
log = logging.getLogger("sweep.figures")

DPI = 110
STATS_FILE = "figures.json"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, description: str | None = None) -> Path:
    metadata = {"Software": "xstilts"}
    if description:
        metadata["Description"] = description
    fig.savefig(path, format="png", metadata=metadata)
    return path


# --------------------------------------------------------------------------- Δ heatmap


def delta_heatmap(report: StudyReport, path: Path) -> Path | None:
    """Δ vs baseline (points ×100) for every non-baseline row × target (and average)."""
    columns = report.target_columns + [AVERAGE]
    rows = [r for r in report.rows if report.baselines.get(r)]
    values = np.array([[report.cells[(r, c)].delta if report.cells[(r, c)].delta is not None
                        else np.nan for c in columns] for r in rows], float) * 100
    if not rows or np.isnan(values).all():
        return None
    fig = _new_figure(max(4.0, 1.3 + 1.0 * len(columns)), max(2.6, 1.4 + 0.45 * len(rows)))
    ax = fig.add_subplot()
    bound = max(float(np.nanmax(np.abs(values))), 0.1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-bound, vmax=bound,
                      aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            text = "–" if np.isnan(values[i, j]) else f"{values[i, j]:+.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="Δ vs baseline (points)")
    ax.set_title(f"{report.study}: Δ vs baseline")
    return _save(fig, path)


# --------------------------------------------------------------------------- per-language Δ


def _language_deltas(table: LanguageTable, baselines: dict[str, str | None]
                     ) -> dict[str, dict[str, float]]:
    """Row label -> {language: Δ (0–1 scale)} for rows with a baseline."""
    out: dict[str, dict[str, float]] = {}
    for col in table.columns:
        if not baselines.get(col):
            continue
        deltas = {lang: table.cells[(lang, col)].delta for lang in table.languages
                  if table.cells[(lang, col)].delta is not None}
        if deltas:
            out[col] = deltas
    return out


def language_delta_bars(table: LanguageTable, baselines: dict[str, str | None],
                        path: Path) -> Path | None:
    """Grouped bars: per language, one bar per intermediate, height Δ vs baseline."""
    deltas = _language_deltas(table, baselines)
    if not deltas:
        return None
    langs = table.languages
    fig = _new_figure(max(4.0, 0.55 * len(langs) * max(1, len(deltas)) ** 0.5 + 2), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / len(deltas)
    x = np.arange(len(langs))
    for k, (row, values) in enumerate(deltas.items()):
        heights = [values.get(lang, np.nan) * 100 for lang in langs]
        ax.bar(x + (k - (len(deltas) - 1) / 2) * width, heights, width, label=row)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, langs)
    ax.set_ylabel("Δ vs baseline (points)")
    ax.set_title(f"{table.target}: per-language Δ ({table.metric})")
    ax.legend(fontsize=7)
    return _save(fig, path)


# --------------------------------------------------------------------------- learning curve


def learning_curve(report: StudyReport, column: str, path: Path) -> Path | None:
    """Target score against the intermediate's ``train_examples``, one line per intermediate
    (and group/study), baselines as dashed lines. Only with two or more sizes."""
    series: dict[tuple, list[tuple[int, float, float]]] = {}
    for row, info in report.row_info.items():
        cell = report.cells.get((row, column))
        if info.train_examples is None or cell is None or cell.mean is None:
            continue
        key = (info.study, info.group, info.intermediate)
        series.setdefault(key, []).append((info.train_examples, cell.mean, cell.std or 0.0))
    sizes = {size for points in series.values() for size, _, _ in points}
    if len(sizes) < 2:
        return None
    fig = _new_figure(5.0, 3.4)
    ax = fig.add_subplot()
    multi = len(report.studies) > 1
    for (study, group, inter), points in sorted(series.items(), key=str):
        points.sort()
        xs, ys, es = (np.array(v, float) for v in zip(*points))
        label = " / ".join(str(p) for p in ((study if multi else None), group, inter) if p)
        ax.errorbar(xs, ys * 100, yerr=es * 100, marker="o", capsize=3, label=label)
    for row, info in report.row_info.items():
        cell = report.cells.get((row, column))
        if info.intermediate == BASELINE and cell is not None and cell.mean is not None:
            ax.axhline(cell.mean * 100, linestyle="--", color="grey", linewidth=1)
            ax.annotate(row, (min(sizes), cell.mean * 100), fontsize=7, color="grey",
                        va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("intermediate training examples")
    ax.set_ylabel(f"{column} score (×100)")
    ax.set_title(f"{column}: score vs intermediate data size")
    ax.legend(fontsize=7)
    return _save(fig, path)


# --------------------------------------------------------------------------- distance scatter


class KnownDistances:
    """``distance`` with its answers remembered, and one log line per language it has none for
    (not one per cell: every row and target asks again for the same language)."""

    def __init__(self, distance: Callable[[str], float]) -> None:
        self.distance = distance
        self.known: dict[str, float] = {}
        self.missing: set[str] = set()

    def __call__(self, lang: str) -> float | None:
        if lang in self.missing:
            return None
        if lang not in self.known:
            try:
                self.known[lang] = float(self.distance(lang))
            except (KeyError, ValueError) as exc:
                self.missing.add(lang)
                log.info("no typological distance for %s (%s); left out of the scatter", lang, exc)
                return None
        return self.known[lang]


def distance_points(table: LanguageTable, baselines: dict[str, str | None],
                    distance: Callable[[str], float]) -> list[tuple[str, str, float, float]]:
    """(row, language, distance from English, Δ ×100) for every transfer language (not en)
    that has a Δ and a known distance."""
    if not isinstance(distance, KnownDistances):
        distance = KnownDistances(distance)
    points = []
    for row, deltas in _language_deltas(table, baselines).items():
        for lang, delta in deltas.items():
            if lang == "en":
                continue
            d = distance(lang)
            if d is None:
                continue
            # rounded so that equal gains tie exactly in Spearman's ranks despite float noise
            points.append((row, lang, float(d), round(float(delta) * 100, 6)))
    return points


def spearman_text(rho: float, p: float, n: int) -> str:
    return f"Spearman ρ = {rho:.3f} (p = {p:.3g}), n = {n}"


def distance_scatter(table: LanguageTable, baselines: dict[str, str | None], path: Path,
                     distance: Callable[[str], float] | None = None,
                     feature_set: str = "syntax_knn", metric: str = "cosine") -> tuple[Path, dict] | None:
    """Per-language Δ against typological distance from English, with the least-squares line
    and Spearman's ρ (scipy) over all points; needs three points, not all with the same
    distance or the same Δ."""
    points = distance_points(table, baselines, english_distance(distance, feature_set, metric))
    xs = np.array([p[2] for p in points], float)
    ys = np.array([p[3] for p in points], float)
    if len(points) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None  # ρ is undefined for constant data
    from scipy.stats import spearmanr  # imported late: slow, and only needed here

    result = spearmanr(xs, ys)
    rho, pvalue = float(result.statistic), float(result.pvalue)
    slope, intercept = np.polyfit(xs, ys, 1)
    text = spearman_text(rho, pvalue, len(points))
    fig = _new_figure(5.0, 3.6)
    ax = fig.add_subplot()
    for row in dict.fromkeys(p[0] for p in points):
        sel = [p for p in points if p[0] == row]
        ax.scatter([p[2] for p in sel], [p[3] for p in sel], label=row, s=22)
        for _, lang, x, y in sel:
            ax.annotate(lang, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    grid = np.linspace(xs.min(), xs.max(), 50)
    ax.plot(grid, slope * grid + intercept, color="black", linewidth=1,
            label=f"least squares: {slope:+.2f}·d {intercept:+.2f}")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_xlabel(f"typological distance from English ({feature_set}, {metric})")
    ax.set_ylabel("Δ vs baseline (points)")
    ax.set_title(f"{table.target}: transfer gain vs distance")
    ax.legend(fontsize=7, loc="lower left")
    stats = {"target": table.target, "feature_set": feature_set, "metric": metric, "spearman_rho": rho,
             "p_value": pvalue, "n": len(points), "slope": float(slope),
             "intercept": float(intercept), "text": text,
             "points": [{"row": r, "language": lang, "distance": x, "delta": y}
                        for r, lang, x, y in points]}
    return _save(fig, path, text), stats


def english_distance(distance: Callable[[str], float] | None, feature_set: str,
                     metric: str) -> KnownDistances:
    """``distance`` (default: lang2vec's typological distance from English), remembered."""
    if isinstance(distance, KnownDistances):
        return distance
    if distance is None:
        from sweep.languages import typological_distance

        def distance(lang: str) -> float:
            return typological_distance(lang, "en", feature_set, metric)
    return KnownDistances(distance)


# --------------------------------------------------------------------------- all figures


def write_figures(report: StudyReport, out_dir: Path,
                  distance: Callable[[str], float] | None = None, *,
                  feature_set: str = "syntax_knn", metric: str = "cosine") -> dict[str, Path]:
    """Draw every figure the report's data allows into ``out_dir``; returns name -> path
    (``figures_json`` holds the scatter statistics). A figure that fails is logged, skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    stats: dict[str, Any] = {}
    distance = english_distance(distance, feature_set, metric)  # shared: one log line per language

    def attempt(name: str, draw: Callable[[Path], Any]) -> None:
        path = out_dir / f"{name}.png"
        try:
            result = draw(path)
        except Exception:  # a figure is never worth losing the report over
            log.exception("could not draw figure %s", name)
            return
        if isinstance(result, tuple):
            result, stats[name] = result
        if result is not None:
            paths[name] = result

    attempt("fig_delta_heatmap", lambda p: delta_heatmap(report, p))
    for column, table in report.language_tables.items():
        slug = _slug(column)
        attempt(f"fig_language_delta_{slug}",
                lambda p, t=table: language_delta_bars(t, report.baselines, p))
        attempt(f"fig_distance_{slug}",
                lambda p, t=table: distance_scatter(t, report.baselines, p, distance,
                                                    feature_set, metric))
    for column in report.target_columns + [AVERAGE]:
        attempt(f"fig_learning_curve_{_slug(column)}",
                lambda p, c=column: learning_curve(report, c, p))
    if stats:
        stats_path = out_dir / STATS_FILE
        stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
        paths["figures_json"] = stats_path
    log.info("wrote %d figures to %s", len([p for p in paths if p.startswith("fig_")]), out_dir)
    return paths
