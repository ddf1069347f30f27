"""Quora Question Pairs: are two questions duplicates (English intermediate task).

Hub: ``nyu-mll/glue`` config ``qqp``. ``data_dir``: GLUE TSV ``QQP/train.tsv`` and
``QQP/dev.tsv`` (columns id, qid1, qid2, question1, question2, is_duplicate). GLUE's test labels
are hidden, so ``test`` is the dev set too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_pairs, pair_dataset, read_tsv
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.mnli import check_split

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

    def load(self, split: str, language: str) -> datasets.Dataset:
        check_split(self, split, language)
        name = "train" if split == "train" else "dev"
        if self.options.data_dir:
            root = self.data_path()
            path = self.require_file(first_existing(root / "QQP" / f"{name}.tsv", root / f"{name}.tsv"),
                                     split, language)
            try:
                rows = read_tsv(path)
            except ValueError as exc:
                raise TaskDataError(f"task {self.name}: {split} split: {exc}") from None
            if rows and not set(COLUMNS) <= set(rows[0]):
                raise TaskDataError(f"task {self.name}: {path} lacks columns "
                                    f"{sorted(set(COLUMNS) - set(rows[0]))}")
            return pair_dataset([(r["question1"], r["question2"], int(r["is_duplicate"]))
                                 for r in rows if r["is_duplicate"] in ("0", "1")])
        data = self.hub_dataset("nyu-mll/glue", "qqp", "train" if split == "train" else "validation",
                                language)
        return hub_pairs(data, "question1", "question2", "label", self.labels)
