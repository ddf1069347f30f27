"""Quora Question Pairs: are two questions duplicates (English intermediate task).

Hub: ``nyu-mll/glue`` config ``qqp``. ``data_dir``: GLUE TSV ``QQP/train.tsv`` and
``QQP/dev.tsv`` (columns id, qid1, qid2, question1, question2, is_duplicate). GLUE's test labels
are hidden, so ``test`` is the dev set too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import hub_pairs, pair_dataset, read_tsv
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import Hub, parse_errors, require_columns

if TYPE_CHECKING:
    import datasets

COLUMNS = ("question1", "question2", "is_duplicate")


@register
class Qqp(Task):
    info = TaskInfo(
        name="qqp", family="classification", languages=("en",), main_metric="accuracy",
        source="Quora Question Pairs, GLUE distribution (Wang et al., 2019)", hub_id="nyu-mll/glue:qqp",
        target=False, description="is question 2 a duplicate of question 1 (364k English training pairs)",
    )
    labels = ("not_duplicate", "duplicate")
    hub = Hub("nyu-mll/glue", "qqp", {"train": "train", "dev": "validation", "test": "validation"})

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        name = "train" if split == "train" else "dev"
        root = self.data_path()
        path = self.find_file(split, language, root / "QQP" / f"{name}.tsv", root / f"{name}.tsv")
        with parse_errors(self, split, language):
            rows = read_tsv(path)
        if rows:
            require_columns(self, rows[0], COLUMNS, path)
        return pair_dataset([(r["question1"], r["question2"], int(r["is_duplicate"]))
                             for r in rows if r["is_duplicate"] in ("0", "1")])

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return hub_pairs(data, "question1", "question2", "label", self.labels)
