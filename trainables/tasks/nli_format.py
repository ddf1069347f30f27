"""NLI data several tasks share: the label set, the GLUE/XNLI TSV reader and MNLI itself (the
``mnli`` task, XNLI's English training data and part of ANLI+)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_pairs, pair_dataset, read_tsv
from trainables.tasks.loading import Hub, parse_errors, require_columns

if TYPE_CHECKING:
    import datasets

    from trainables.tasks.base import Task

NLI_LABELS = ("entailment", "neutral", "contradiction")
MNLI_SOURCE = "MultiNLI 1.0 (Williams et al., 2018), GLUE distribution"
#: GLUE's test labels are hidden: dev = matched, test = mismatched dev set
MNLI_HUB = Hub("nyu-mll/glue", "mnli", {"train": "train", "dev": "validation_matched",
                                        "test": "validation_mismatched"})
_MNLI_FILES = {"train": ("train.tsv", "multinli_1.0_train.txt"),
               "dev": ("dev_matched.tsv", "multinli_1.0_dev_matched.txt"),
               "test": ("dev_mismatched.tsv", "multinli_1.0_dev_mismatched.txt")}


def read_nli_tsv(task: Task, path: Path, split: str, language: str, premise: str = "sentence1",
                 hypothesis: str = "sentence2", label: str = "gold_label",
                 keep=lambda row: True, rows: list[dict] | None = None) -> datasets.Dataset:
    """An NLI TSV (GLUE MNLI, XNLI) as the classification schema; rows without a gold label
    (``-``) are dropped, a missing column is a one-line error naming the file. ``rows``: the
    file already parsed (XNLI's files hold every language)."""
    task.require_file(path, split, language)
    if rows is None:
        with parse_errors(task, split, language):
            rows = read_tsv(path)
    if rows:
        require_columns(task, rows[0], (premise, hypothesis, label), path)
    index = {name: i for i, name in enumerate(NLI_LABELS)}
    index["contradictory"] = index["contradiction"]  # XNLI-MT's spelling
    return pair_dataset([(r[premise], r[hypothesis], index[r[label]]) for r in rows
                         if r[label] in index and keep(r)])


def mnli_files(task: Task, split: str, language: str) -> datasets.Dataset:
    """MNLI's ``split`` from ``data_dir`` (GLUE's ``MNLI/*.tsv`` or the original release)."""
    root = task.data_path()
    tsv, original = _MNLI_FILES[split]
    path = first_existing(root / "MNLI" / tsv, root / tsv, root / "multinli_1.0" / original)
    return read_nli_tsv(task, path, split, language)


def nli_hub_pairs(data: datasets.Dataset) -> datasets.Dataset:
    """MNLI (or any premise/hypothesis/label Hub NLI set) as the classification schema."""
    return hub_pairs(data, "premise", "hypothesis", "label", NLI_LABELS)


def mnli_split(task: Task, split: str, language: str) -> datasets.Dataset:
    """MNLI's ``split`` for a task that uses it besides its own data (XNLI training, ANLI+)."""
    if task.options.data_dir:
        return mnli_files(task, split, language)
    return nli_hub_pairs(task.hub_split(MNLI_HUB, split, language))
