"""The report's data model: what a results table holds, and the names and labels of its rows
and columns. The bottom layer of :mod:`sweep.report`: every other module reads these, and this
module imports none of them."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

BASELINE = "none"
AVERAGE = "average"
MISSING_MARK = "–"
MULTI_SEP = "+"
SIZE_SEP = "@"
GROUP_SEP = " / "
#: marks a benchmark cell whose tasks miss some of the benchmark's languages
INCOMPLETE_MARK = "†"


@dataclass
class Cell:
    """One table cell. Scores are raw (0–1); ``delta`` is None for the baseline row itself,
    when there is no baseline, or when either side has no finished run."""

    mean: float | None
    std: float | None
    n_seeds: int
    delta: float | None
    #: benchmark columns only: how many of the benchmark's tasks the value averages
    n_tasks: int | None = None
    of_tasks: int | None = None
    #: benchmark columns only: tasks scored without some of the benchmark's languages
    incomplete: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return self.of_tasks is not None and self.n_tasks != self.of_tasks


@dataclass(frozen=True)
class RowInfo:
    """What a row label stands for: the study, the ``group_by`` value, the intermediate task
    (set) and its training-set size."""

    study: str
    group: str | None
    intermediate: str
    train_examples: int | None = None


@dataclass(frozen=True)
class StudySource:
    """Where one study of a comparison lives; ``label`` prefixes its rows (default: study)."""

    tracking_uri: str
    experiment: str
    study: str
    label: str | None = None


@dataclass
class LanguageTable:
    """Per-language scores of one target: cells keyed by (language, row label), each mean ± std
    over seeds with Δ vs the row's baseline; ``sizes`` is the test-set size per language."""

    target: str
    metric: str
    languages: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    sizes: dict[str, int | None]


@dataclass
class StudyReport:
    """A study's results table: ``cells`` is keyed by (row label, column). ``columns`` are the
    targets, ``average`` and any benchmark columns (listed again in ``benchmark_columns``)."""

    study: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    missing: list[tuple[str, str]]
    failed: list[dict]
    row_info: dict[str, RowInfo] = field(default_factory=dict)
    baselines: dict[str, str | None] = field(default_factory=dict)
    benchmark_columns: list[str] = field(default_factory=list)
    language_tables: dict[str, LanguageTable] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    group_by: str | None = None
    studies: list[str] = field(default_factory=list)

    @property
    def target_columns(self) -> list[str]:
        return [c for c in self.columns if c != AVERAGE and c not in self.benchmark_columns]

    @property
    def has_baseline(self) -> bool:
        return any(b is not None for b in self.baselines.values()) or any(
            info.intermediate == BASELINE for info in self.row_info.values())

    @property
    def n_seeds(self) -> int:
        """The most seeds any cell has: the N quoted in the legend."""
        return max((c.n_seeds for c in self.cells.values()), default=0)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) over seeds; with a single seed the std is reported as 0.0
    (there is no spread to estimate), with none both are None."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def with_size(name: str, size: int | None) -> str:
    """A row or column label at a training-set size (``mnli@1000``); the name alone at full size."""
    return name if size is None else f"{name}{SIZE_SEP}{size}"


def row_label(info: RowInfo, multi_study: bool, group_by: str | None) -> str:
    """The label a row is shown under: study (when several), ``group_by=value``, intermediate."""
    parts = [info.study] if multi_study else []
    if group_by and info.group is not None:
        parts.append(f"{group_by}={info.group}")
    return GROUP_SEP.join(parts + [with_size(info.intermediate, info.train_examples)])


def failed_where(record: dict) -> str:
    """Where a failed job sits, for the failed-jobs lists: ``mnli → xnli`` (``mnli`` alone for
    an intermediate job)."""
    return record["intermediate"] + (f" → {record['target']}" if record.get("target") else "")
