"""Cosmos QA (Huang et al., 2019): reading comprehension needing commonsense, 4 answers.

An English intermediate task; ``dev`` is the official validation split. Hub
``allenai/cosmos_qa`` (``context``, ``question``, ``answer0``..``answer3``, ``label``): still
script-based on its main branch (``cosmos_qa.py``), which ``datasets`` >= 4 no longer runs, so it
is read from the Hub's Parquet conversion (``refs/convert/parquet``, ``default/<split>/``), as
XCOPA reads Social IQa; or
``data_dir`` with the upstream ``train.csv`` / ``valid.csv`` (same columns) or ``train.jsonl`` /
``valid.jsonl``.
"""
from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

from trainables.formats import first_existing
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import HIDDEN_TEST, Hub, require_columns

if TYPE_CHECKING:
    import datasets

_STEMS = {"train": "train", "dev": "valid"}
_FIELDS = ("context", "question", "answer0", "answer1", "answer2", "answer3", "label")


@register
class CosmosQA(Task):
    info = TaskInfo(
        name="cosmosqa", family="multiple_choice", languages=("en",), main_metric="accuracy",
        source="Cosmos QA (Huang et al., 2019)", hub_id="allenai/cosmos_qa", target=False,
        description="commonsense reading comprehension, 4 answers (English intermediate task)",
    )
    splits, split_note = HIDDEN_TEST
    hub = Hub("allenai/cosmos_qa", parquet_config="default")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        stem = _STEMS[split]
        path = self.find_file(split, language, self.data_path(f"{stem}.csv"), self.data_path(f"{stem}.jsonl"))
        if path.suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
        else:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        return self.choices(rows, str(path))

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return self.choices(list(data), f"hub allenai/cosmos_qa {split}")

    def choices(self, rows: list[dict], where: str) -> datasets.Dataset:
        if rows:
            require_columns(self, rows[0], _FIELDS, where)
        from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

        return choice_dataset([r["context"] for r in rows], [r["question"] for r in rows],
                              [[r[f"answer{i}"] for i in range(4)] for r in rows],
                              [int(r["label"]) for r in rows])
