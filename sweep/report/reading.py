"""What a study's table shows, in one sentence (the last line ``sweep run`` prints).

The sentence names the largest change that intermediate training made against the baseline and
says whether it stands out from seed noise: more than twice the larger seed std of the two
cells compared (the row's and the baseline's).
"""
from __future__ import annotations

from dataclasses import dataclass

from sweep.report.model import AVERAGE, StudyReport

#: an effect counts as more than seed noise above this many seed stds
NOISE_STDS = 2.0


@dataclass(frozen=True)
class Effect:
    row: str
    target: str
    delta: float  # 0-1 scale
    std: float  # the larger seed std of the row's and the baseline's cell (0-1 scale)

    @property
    def beyond_noise(self) -> bool:
        return abs(self.delta) > NOISE_STDS * self.std


def effects(report: StudyReport) -> list[Effect]:
    """Every (intermediate row, target) cell with a Δ against its baseline, largest |Δ| first."""
    out = []
    for row in report.rows:
        base = report.baselines.get(row)
        if not base:
            continue
        for target in report.target_columns:
            cell, ref = report.cells.get((row, target)), report.cells.get((base, target))
            if cell is None or ref is None or cell.delta is None:
                continue
            out.append(Effect(row, target, cell.delta, max(cell.std or 0.0, ref.std or 0.0)))
    return sorted(out, key=lambda e: -abs(e.delta))


def what_the_table_shows(report: StudyReport) -> str:
    """One sentence for a reader of the table."""
    targets = [c for c in report.target_columns if c != AVERAGE]
    n = report.n_seeds
    head = (f"The table shows each target's ({', '.join(targets)}) zero-shot score averaged over "
            f"its test languages, mean ± std over {n} seed{'s' if n != 1 else ''}, per "
            f"intermediate training row")
    found = effects(report)
    if not found:
        return head + "."
    top = found[0]
    verdict = ("more than twice the seed std, so not seed noise" if top.beyond_noise
               else "within twice the seed std, so not distinguishable from seed noise")
    return (f"{head}; the largest change is {top.row} on {top.target}, {top.delta * 100:+.1f} "
            f"points vs the baseline (seed std {top.std * 100:.1f}), {verdict}.")
