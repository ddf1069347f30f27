"""The SQuAD format every QA task yields, and the loading QA tasks share.

Every QA task yields the Hugging Face SQuAD schema
``{id, context, question, answers: {text: [...], answer_start: [...]}}`` (empty lists: the
question has no answer in the context, SQuAD v2), so the ``qa`` family, perturbations and
readers share one format whether the data comes from the hub or from upstream JSON files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.metrics.qa import Normalizer, squad_tokens
from trainables.tasks.base import Task, TaskDataError
from trainables.tasks.loading import Hub

if TYPE_CHECKING:
    import datasets

QA_COLUMNS = ("id", "context", "question", "answers")
# Marks a loaded split with its language (``DatasetInfo.description``) so that evaluation can
# pick a language-specific answer normaliser (MLQA) from the data alone.
LANGUAGE_MARK = "xstilts-qa-language="


def qa_features() -> datasets.Features:
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"), "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {"text": datasets.List(datasets.Value("string")),
                    "answer_start": datasets.List(datasets.Value("int32"))},
    })


def mark_language(data: datasets.Dataset, language: str) -> datasets.Dataset:
    """Record the split's language in its info (kept by ``save_to_disk``, ``select``, ``map``)."""
    data.info.description = f"{LANGUAGE_MARK}{language}"
    return data


def marked_language(data: datasets.Dataset) -> str | None:
    text = getattr(data.info, "description", None) or ""
    return text[len(LANGUAGE_MARK):] if text.startswith(LANGUAGE_MARK) else None


def read_squad_rows(path: Path, where: str, id_prefix: str | None = None) -> list[dict]:
    """Rows of an upstream SQuAD-format JSON file (``data -> paragraphs -> qas``).

    ``is_impossible`` questions (v2) get empty answer lists; ``id_prefix`` keeps only questions
    whose id starts with it (TyDiQA-GoldP ids start with the language name). ``where`` names
    task and split in error messages.
    """
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaskDataError(f"{where}: {path} is not SQuAD-format JSON with a 'data' list "
                            f"({type(exc).__name__}: {str(exc)[:120]})") from None
    rows = []
    try:
        for article in articles:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    qid = str(qa["id"])
                    if id_prefix is not None and not qid.startswith(id_prefix):
                        continue
                    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                    rows.append({
                        "id": qid, "context": context, "question": qa["question"],
                        "answers": {"text": [a["text"] for a in answers],
                                    "answer_start": [int(a["answer_start"]) for a in answers]},
                    })
    except (KeyError, TypeError, ValueError) as exc:
        raise TaskDataError(f"{where}: {path}: missing or malformed field {exc}") from None
    return rows


def rows_dataset(rows: list[dict]) -> datasets.Dataset:
    import datasets

    return datasets.Dataset.from_list(rows, features=qa_features())


def hub_qa(data: datasets.Dataset) -> datasets.Dataset:
    """A hub dataset in the SQuAD schema (``title`` and other extra columns dropped)."""
    extra = [c for c in data.column_names if c not in QA_COLUMNS]
    return data.remove_columns(extra).cast(qa_features())


#: SQuAD v1.1: the training and dev data of the cross-lingual QA tasks (its test set is hidden)
SQUAD_V1_HUB = Hub("rajpurkar/squad", splits={"train": "train", "dev": "validation", "test": "validation"})


class QATask(Task):
    """A SQuAD-format task: upstream JSON files under ``data_dir``, or the hub, marked with the
    split's language."""

    #: SQuAD v2: questions may be unanswerable, so evaluation may predict "no answer"
    unanswerable: bool = False

    def normalizer(self, language: str | None) -> Normalizer:
        """How answers are normalised before EM/F1 (SQuAD's by default, per language for MLQA)."""
        return squad_tokens

    def read_json(self, filename: str, split: str, language: str,
                  id_prefix: str | None = None) -> datasets.Dataset:
        path = self.require_file(self.data_path(filename), split, language)
        rows = read_squad_rows(path, f"task {self.name} {split} split ({language})", id_prefix)
        return mark_language(rows_dataset(rows), language)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return mark_language(hub_qa(data), language)

    def english_squad(self, split: str, language: str) -> datasets.Dataset:
        """SQuAD v1.1 English train or dev (the training data of XQuAD and MLQA)."""
        if self.options.data_dir:
            return self.read_json(f"{split}-v1.1.json", split, language)
        return self.from_hub(self.hub_split(SQUAD_V1_HUB, split, language), split, language)
