"""XNLI: 3-way entailment in 15 languages; trained on English MNLI, as XTREME does.

* train (en) = MNLI train (hub ``nyu-mll/glue`` or ``data_dir/MNLI/train.tsv``); other languages'
  train = XNLI's machine-translated MNLI (hub ``facebook/xnli`` split train, or
  ``XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv``), used by ``translated_train`` studies;
* dev / test = ``facebook/xnli`` config ``<lang>`` splits validation / test, or the upstream
  ``xnli.dev.tsv`` / ``xnli.test.tsv`` (all languages in one file, column ``language``), found in
  ``data_dir`` or ``data_dir/XNLI-1.0``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_pairs, read_tsv
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.mnli import NLI_LABELS, check_split, mnli_split, read_nli_tsv

if TYPE_CHECKING:
    import datasets

_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


@lru_cache(maxsize=4)
def _rows(path: Path, mtime: float) -> list[dict[str, str]]:
    """One parse of a multi-language XNLI file, shared by all its languages (keyed by mtime)."""
    return read_tsv(path)


@register
class Xnli(Task):
    info = TaskInfo(
        name="xnli", family="classification", languages=TASK_LANGUAGES["xnli"], main_metric="accuracy",
        source="XNLI 1.0 (Conneau et al., 2018); English training data MultiNLI",
        hub_id="facebook/xnli:{lang}", description="3-way entailment, professionally translated "
        "dev/test sets in 15 languages; zero-shot from English MNLI",
    )
    labels = NLI_LABELS

    def load(self, split: str, language: str) -> datasets.Dataset:
        check_split(self, split, language, self.info.languages)
        if split == "train" and language == "en":
            return mnli_split(self, "train", language)
        if not self.options.data_dir:
            data = self.hub_dataset("facebook/xnli", language, _HUB_SPLITS[split], language)
            return hub_pairs(data, "premise", "hypothesis", "label", self.labels)
        root = self.data_path()
        if split == "train":
            name = f"multinli.train.{language}.tsv"
            path = first_existing(root / "XNLI-MT-1.0" / "multinli" / name, root / name)
            return read_nli_tsv(self, path, split, language, "premise", "hypo", "label")
        name = f"xnli.{split}.tsv"
        path = self.require_file(first_existing(root / name, root / "XNLI-1.0" / name), split, language)
        try:
            rows = _rows(path, path.stat().st_mtime)
        except ValueError as exc:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: {exc}") from None
        if rows and "language" not in rows[0]:
            raise TaskDataError(f"task {self.name}: {path} lacks the column 'language'")
        data = read_nli_tsv(self, path, split, language, rows=rows,
                            keep=lambda row: row["language"] == language)
        if not len(data):
            raise TaskDataError(f"task {self.name}: {split} split has no rows for language "
                                f"{language!r} in {path}")
        return data
