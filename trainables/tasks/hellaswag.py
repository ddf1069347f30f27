"""HellaSwag (Zellers et al., 2019): pick the plausible ending of a situation, 4 choices.

An English intermediate task. ``dev`` is the official validation split (test labels are hidden).
Hub ``Rowan/hellaswag`` (``ctx``, ``endings``, ``label``), or ``data_dir`` with the upstream
``hellaswag_train.jsonl`` / ``hellaswag_val.jsonl`` (same fields, ``label`` an int).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import read_json_lines
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

_FILES = {"train": "hellaswag_train.jsonl", "dev": "hellaswag_val.jsonl"}
_HUB_SPLITS = {"train": "train", "dev": "validation"}


def english_split(task: Task, split: str, language: str) -> None:
    """English intermediate tasks have train and dev (the official validation split) only."""
    if language != "en":
        raise TaskDataError(f"task {task.name}: {split} split for language {language!r}: "
                            f"the task is English only")
    if split not in _HUB_SPLITS:
        raise TaskDataError(f"task {task.name}: no {split!r} split (test labels are hidden; "
                            f"'dev' is the official validation split)")


def column_check(task: Task, data, needed: tuple[str, ...], where: str) -> None:
    missing = [c for c in needed if c not in data.column_names]
    if missing:
        raise TaskDataError(f"task {task.name}: {where} lacks fields {missing}")


@register
class HellaSwag(Task):
    info = TaskInfo(
        name="hellaswag", family="multiple_choice", languages=("en",), main_metric="accuracy",
        source="HellaSwag (Zellers et al., 2019)", hub_id="Rowan/hellaswag", target=False,
        description="commonsense sentence completion, 4 endings (English intermediate task)",
    )

    def load(self, split: str, language: str) -> datasets.Dataset:
        english_split(self, split, language)
        if self.options.data_dir:
            path = self.require_file(self.data_path(_FILES[split]), split, language)
            data, where = read_json_lines(path), str(path)
        else:
            data = self.hub_dataset("Rowan/hellaswag", None, _HUB_SPLITS[split], language)
            where = f"hub Rowan/hellaswag {split}"
        column_check(self, data, ("ctx", "endings", "label"), where)
        rows = [r for r in data if str(r["label"]).strip() != ""]
        from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

        return choice_dataset([r["ctx"] for r in rows], [""] * len(rows), [r["endings"] for r in rows],
                              [int(r["label"]) for r in rows])
