"""Cosmos QA (Huang et al., 2019): reading comprehension needing commonsense, 4 answers.

An English intermediate task; ``dev`` is the official validation split. Hub
``allenai/cosmos_qa`` (``context``, ``question``, ``answer0``..``answer3``, ``label``), or
``data_dir`` with the upstream ``train.csv`` / ``valid.csv`` (same columns) or ``train.jsonl`` /
``valid.jsonl``.
"""
from __future__ import annotations

import csv
from typing import TYPE_CHECKING

from trainables.formats import first_existing
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.hellaswag import english_split

if TYPE_CHECKING:
    import datasets

_STEMS = {"train": "train", "dev": "valid"}
_HUB_SPLITS = {"train": "train", "dev": "validation"}
_FIELDS = ("context", "question", "answer0", "answer1", "answer2", "answer3", "label")


@register
class CosmosQA(Task):
    info = TaskInfo(
        name="cosmosqa", family="multiple_choice", languages=("en",), main_metric="accuracy",
        source="Cosmos QA (Huang et al., 2019)", hub_id="allenai/cosmos_qa", target=False,
        description="commonsense reading comprehension, 4 answers (English intermediate task)",
    )

    def load(self, split: str, language: str) -> datasets.Dataset:
        english_split(self, split, language)
        if self.options.data_dir:
            stem = _STEMS[split]
            path = self.require_file(first_existing(self.data_path(f"{stem}.csv"),
                                                    self.data_path(f"{stem}.jsonl")), split, language)
            if path.suffix == ".csv":
                with open(path, encoding="utf-8", newline="") as handle:
                    rows = list(csv.DictReader(handle))
            else:
                import json

                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                        if line.strip()]
            where = str(path)
        else:
            rows = list(self.hub_dataset("allenai/cosmos_qa", None, _HUB_SPLITS[split], language))
            where = f"hub allenai/cosmos_qa {split}"
        if rows and any(f not in rows[0] for f in _FIELDS):
            raise TaskDataError(f"task {self.name}: {where} lacks fields "
                                f"{[f for f in _FIELDS if f not in rows[0]]}")
        from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

        return choice_dataset([r["context"] for r in rows], [r["question"] for r in rows],
                              [[r[f"answer{i}"] for i in range(4)] for r in rows],
                              [int(r["label"]) for r in rows])
