"""XCOPA (Ponti et al., 2020): causal commonsense reasoning, 2 choices, 11 languages.

Evaluation: each language's ``test`` (500) and ``dev`` (= the 100-example validation split), hub
``cambridgeltl/xcopa`` config ``<lang>``, or ``data_dir`` with the upstream files
``<lang>/test.<lang>.jsonl`` / ``<lang>/val.<lang>.jsonl`` (also found flat in ``data_dir`` or
under ``data_dir/data``). Each example becomes the premise as context and the question
"What was the CAUSE of this?" / "What happened as a result?" before each choice.

English training (XCOPA has none) is chosen by the task option ``english_train``:

* ``siqa`` (default, as XCOPA's authors): Social IQa, 3 choices (hub ``allenai/social_i_qa``);
* ``copa``: English COPA (hub ``aps/super_glue`` config ``copa``).

``aps/super_glue`` is Parquet on its main branch (config ``copa``: ``premise, choice1, choice2,
question, idx, label``). ``allenai/social_i_qa`` is still script-based on main
(``social_i_qa.py``), which ``datasets`` >= 4 no longer runs, so it is read from the Hub's own
Parquet conversion of the same data, the ``refs/convert/parquet`` revision
(``default/{train,validation}/0000.parquet``; the card's fields ``context, question,
answerA..answerC, label`` "1".."3"). ``cambridgeltl/xcopa`` is Parquet on main, one config per
language (splits validation, test).

With ``data_dir`` the English train/dev data are ``train.en.jsonl`` / ``val.en.jsonl``, in the
XCOPA/COPA format (premise, choice1, choice2, question, label) or the Social IQa format
(context, question, answerA..answerC, label 1-3).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import read_json_lines
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import PARQUET_REVISION, Hub, require_columns

if TYPE_CHECKING:
    import datasets

QUESTIONS = {"cause": "What was the CAUSE of this?", "effect": "What happened as a result?"}
ENGLISH_TRAIN = ("siqa", "copa")
_COPA_FIELDS = ("premise", "choice1", "choice2", "question", "label")
_SIQA_FIELDS = ("context", "question", "answerA", "answerB", "answerC", "label")
SIQA_HUB = Hub("allenai/social_i_qa", parquet_config="default")


def copa_dataset(task: Task, data, where: str) -> datasets.Dataset:
    """COPA-format rows (XCOPA, COPA) in the multiple-choice schema."""
    require_columns(task, data.column_names, _COPA_FIELDS, where)
    rows = [r for r in data if int(r["label"]) >= 0]  # super_glue test labels are -1
    unknown = sorted({r["question"] for r in rows} - set(QUESTIONS))
    if unknown:
        raise TaskDataError(f"task {task.name}: {where}: unknown question type(s) {unknown}")
    from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

    return choice_dataset([r["premise"] for r in rows], [QUESTIONS[r["question"]] for r in rows],
                          [[r["choice1"], r["choice2"]] for r in rows], [int(r["label"]) for r in rows])


def siqa_dataset(task: Task, data, where: str) -> datasets.Dataset:
    """Social IQa rows (labels 1..3) in the multiple-choice schema."""
    require_columns(task, data.column_names, _SIQA_FIELDS, where)
    from trainables.families.multiple_choice import choice_dataset  # torch: not in the driver

    return choice_dataset([r["context"] for r in data], [r["question"] for r in data],
                          [[r["answerA"], r["answerB"], r["answerC"]] for r in data],
                          [int(r["label"]) - 1 for r in data])


@register
class Xcopa(Task):
    info = TaskInfo(
        name="xcopa", family="multiple_choice", languages=TASK_LANGUAGES["xcopa"],
        main_metric="accuracy", source="XCOPA (Ponti et al., 2020); English training data SIQA or COPA",
        hub_id="cambridgeltl/xcopa:{lang}", intermediate=False, benchmark_slot="xcopa",
        description="causal commonsense reasoning (cause/effect), 2 choices; zero-shot from English",
    )
    #: used when the spec sets no ``tasks.xcopa.english_train``
    english_train = "siqa"

    def english_source(self) -> str:
        source = getattr(self.options, "english_train", None) or self.english_train
        if source not in ENGLISH_TRAIN:
            raise TaskDataError(f"task {self.name}: english_train {source!r} is not one of {ENGLISH_TRAIN}")
        return source

    def load(self, split: str, language: str) -> datasets.Dataset:
        if split not in ("train", "dev", "test"):
            raise TaskDataError(f"task {self.name}: unknown split {split!r}")
        if language == "en":
            if split == "test":
                raise TaskDataError(f"task {self.name}: no English test split (use dev)")
            return self._english(split)
        if language not in self.info.languages:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                f"not an XCOPA language {self.info.languages}")
        if split == "train":
            raise TaskDataError(f"task {self.name}: no train split for language {language!r} "
                                f"(XCOPA trains on English)")
        stem = "test" if split == "test" else "val"
        if self.options.data_dir:
            root, name = self.data_path(), f"{stem}.{language}.jsonl"
            path = self.find_file(split, language, root / language / name, root / name,
                                  root / "data" / language / name)
            return copa_dataset(self, read_json_lines(path), str(path))
        data = self.hub_dataset("cambridgeltl/xcopa", language, "test" if split == "test" else "validation",
                                language)
        return copa_dataset(self, data, f"hub cambridgeltl/xcopa {language}")

    def _english(self, split: str) -> datasets.Dataset:
        source = self.english_source()
        if self.options.data_dir:
            name = "train.en.jsonl" if split == "train" else "val.en.jsonl"
            path: Path = self.require_file(self.data_path(name), split, "en")
            data = read_json_lines(path)
            reader = siqa_dataset if "answerA" in data.column_names else copa_dataset
            return reader(self, data, str(path))
        hub_split = "train" if split == "train" else "validation"
        if source == "copa":
            data = self.hub_dataset("aps/super_glue", "copa", hub_split, "en")
            return copa_dataset(self, data, "hub aps/super_glue copa")
        data = self.hub_dataset(SIQA_HUB.path, None, hub_split, "en", **SIQA_HUB.load_kwargs(hub_split))
        return siqa_dataset(self, data, f"hub {SIQA_HUB.path} ({PARQUET_REVISION})")
