"""HellaSwag (Zellers et al., 2019): pick the plausible ending of a situation, 4 choices.

An English intermediate task. ``dev`` is the official validation split (test labels are hidden).
Hub ``Rowan/hellaswag`` (``ctx``, ``endings``, ``label``), or ``data_dir`` with the upstream
``hellaswag_train.jsonl`` / ``hellaswag_val.jsonl`` (same fields, ``label`` an int).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import read_json_lines
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import HIDDEN_TEST, Hub, require_columns

if TYPE_CHECKING:
    import datasets

_FILES = {"train": "hellaswag_train.jsonl", "dev": "hellaswag_val.jsonl"}


@register
class HellaSwag(Task):
    info = TaskInfo(
        name="hellaswag", family="multiple_choice", languages=("en",), main_metric="accuracy",
        source="HellaSwag (Zellers et al., 2019)", hub_id="Rowan/hellaswag", target=False,
        description="commonsense sentence completion, 4 endings (English intermediate task)",
    )
    splits, split_note = HIDDEN_TEST
    hub = Hub("Rowan/hellaswag")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        path = self.require_file(self.data_path(_FILES[split]), split, language)
        return self.choices(read_json_lines(path), str(path))

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return self.choices(data, f"hub Rowan/hellaswag {split}")

    def choices(self, data, where: str) -> datasets.Dataset:
        require_columns(self, data.column_names, ("ctx", "endings", "label"), where)
        rows = [r for r in data if str(r["label"]).strip() != ""]
        from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

        return choice_dataset([r["ctx"] for r in rows], [""] * len(rows), [r["endings"] for r in rows],
                              [int(r["label"]) for r in rows])
