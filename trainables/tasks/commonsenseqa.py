"""CommonsenseQA (Talmor et al., 2019): 5-way questions over ConceptNet concepts.

An English intermediate task; ``dev`` is the official validation split. Hub
``tau/commonsense_qa`` (``question``, ``choices: {label, text}``, ``answerKey``), or ``data_dir``
with the upstream ``train_rand_split.jsonl`` / ``dev_rand_split.jsonl``
(``question: {stem, choices: [{label, text}]}``, ``answerKey``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import read_json_lines
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import HIDDEN_TEST, Hub

if TYPE_CHECKING:
    import datasets

_FILES = {"train": "train_rand_split.jsonl", "dev": "dev_rand_split.jsonl"}


@register
class CommonsenseQA(Task):
    info = TaskInfo(
        name="commonsenseqa", family="multiple_choice", languages=("en",), main_metric="accuracy",
        source="CommonsenseQA (Talmor et al., 2019)", hub_id="tau/commonsense_qa", target=False,
        description="commonsense questions, 5 answers (English intermediate task)",
    )
    splits, split_note = HIDDEN_TEST
    hub = Hub("tau/commonsense_qa")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        path = self.require_file(self.data_path(_FILES[split]), split, language)
        return self.choices(read_json_lines(path), str(path))

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return self.choices(data, f"hub tau/commonsense_qa {split}")

    def choices(self, data, where: str) -> datasets.Dataset:
        stems, choices, labels = [], [], []
        for number, row in enumerate(data, 1):
            question = row.get("question")
            if isinstance(question, dict):             # upstream: question.stem / question.choices
                stem, options = question.get("stem"), question.get("choices") or []
                letters, texts = [o["label"] for o in options], [o["text"] for o in options]
            else:                                      # hub: question / choices.{label,text}
                stem = question
                letters, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
            key = (row.get("answerKey") or "").strip()
            if not key:
                continue                               # unlabelled (the hidden test split)
            if stem is None or key not in letters:
                raise TaskDataError(f"task {self.name}: {where} row {number}: answerKey {key!r} "
                                    f"not among choices {letters}")
            stems.append(stem)
            choices.append(texts)
            labels.append(letters.index(key))
        from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

        return choice_dataset(stems, [""] * len(stems), choices, labels)
