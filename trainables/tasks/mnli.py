"""MultiNLI: English 3-way entailment, the X-STILTs intermediate task (and XNLI's training data).

Hub: ``nyu-mll/glue`` config ``mnli`` (dev = ``validation_matched``, test = the mismatched dev
set, since GLUE's test labels are hidden). ``data_dir``: the GLUE TSV files ``MNLI/train.tsv``,
``MNLI/dev_matched.tsv``, ``MNLI/dev_mismatched.tsv`` (``data_dir`` may also be the MNLI folder
itself, or hold the original ``multinli_1.0/multinli_1.0_*.txt`` files, which share the columns).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_pairs, pair_dataset, read_tsv
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

NLI_LABELS = ("entailment", "neutral", "contradiction")
MNLI_SOURCE = "MultiNLI 1.0 (Williams et al., 2018), GLUE distribution"

_HUB_SPLITS = {"train": "train", "dev": "validation_matched", "test": "validation_mismatched"}
_FILES = {"train": ("train.tsv", "multinli_1.0_train.txt"),
          "dev": ("dev_matched.tsv", "multinli_1.0_dev_matched.txt"),
          "test": ("dev_mismatched.tsv", "multinli_1.0_dev_mismatched.txt")}


def check_split(task: Task, split: str, language: str, languages: tuple[str, ...] = ("en",)) -> None:
    if split not in ("train", "dev", "test"):
        raise TaskDataError(f"task {task.name}: unknown split {split!r} (train, dev or test)")
    if language not in languages:
        raise TaskDataError(f"task {task.name}: no {split} data for language {language!r} "
                            f"(it has: {' '.join(languages)})")


def read_nli_tsv(task: Task, path: Path, split: str, language: str, premise: str = "sentence1",
                 hypothesis: str = "sentence2", label: str = "gold_label",
                 keep=lambda row: True, rows: list[dict] | None = None) -> datasets.Dataset:
    """An NLI TSV (GLUE MNLI, XNLI) as the classification schema; rows without a gold label
    (``-``) are dropped, a missing column is a one-line error naming the file. ``rows``: the
    file already parsed (XNLI's files hold every language)."""
    task.require_file(path, split, language)
    if rows is None:
        try:
            rows = read_tsv(path)
        except ValueError as exc:
            raise TaskDataError(f"task {task.name}: {split} split for language {language!r}: {exc}") from None
    if rows and not {premise, hypothesis, label} <= set(rows[0]):
        raise TaskDataError(f"task {task.name}: {path} lacks columns "
                            f"{sorted({premise, hypothesis, label} - set(rows[0]))}")
    index = {name: i for i, name in enumerate(NLI_LABELS)}
    index["contradictory"] = index["contradiction"]  # XNLI-MT's spelling
    return pair_dataset([(r[premise], r[hypothesis], index[r[label]]) for r in rows
                         if r[label] in index and keep(r)])


def mnli_split(task: Task, split: str, language: str) -> datasets.Dataset:
    """MNLI's ``split`` for any NLI task that uses it (``mnli``, ``xnli`` training, ``anli_plus``)."""
    if task.options.data_dir:
        root = task.data_path()
        tsv, original = _FILES[split]
        path = first_existing(root / "MNLI" / tsv, root / tsv, root / "multinli_1.0" / original)
        return read_nli_tsv(task, path, split, language)
    data = task.hub_dataset("nyu-mll/glue", "mnli", _HUB_SPLITS[split], language)
    return hub_pairs(data, "premise", "hypothesis", "label", NLI_LABELS)


@register
class Mnli(Task):
    info = TaskInfo(
        name="mnli", family="classification", languages=("en",), main_metric="accuracy",
        source=MNLI_SOURCE, hub_id="nyu-mll/glue:mnli", target=False,
        description="English 3-way entailment over 10 genres (393k training pairs); dev = matched, "
                    "test = mismatched dev",
    )
    labels = NLI_LABELS

    def load(self, split: str, language: str) -> datasets.Dataset:
        check_split(self, split, language)
        return mnli_split(self, split, language)
