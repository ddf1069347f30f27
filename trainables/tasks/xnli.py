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

from trainables.formats import first_existing, read_tsv
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import Hub, parse_errors
from trainables.tasks.nli_format import NLI_LABELS, nli_hub_pairs, mnli_split, read_nli_tsv

if TYPE_CHECKING:
    import datasets


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
        benchmark_slot="xnli",
    )
    labels = NLI_LABELS
    hub = Hub("facebook/xnli", "{language}")

    def load(self, split: str, language: str) -> datasets.Dataset:
        """English training data is MNLI's; everything else XNLI's (hub or files)."""
        if split == "train" and language == "en":
            return mnli_split(self, "train", language)
        return super().load(split, language)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return nli_hub_pairs(data)

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        root = self.data_path()
        if split == "train":
            name = f"multinli.train.{language}.tsv"
            path = first_existing(root / "XNLI-MT-1.0" / "multinli" / name, root / name)
            return read_nli_tsv(self, path, split, language, "premise", "hypo", "label")
        name = f"xnli.{split}.tsv"
        path = self.find_file(split, language, root / name, root / "XNLI-1.0" / name)
        with parse_errors(self, split, language):
            rows = _rows(path, path.stat().st_mtime)
        if rows and "language" not in rows[0]:
            raise TaskDataError(f"task {self.name}: {path} lacks the column 'language'")
        data = read_nli_tsv(self, path, split, language, rows=rows,
                            keep=lambda row: row["language"] == language)
        if not len(data):
            raise TaskDataError(f"task {self.name}: {split} split has no rows for language "
                                f"{language!r} in {path}")
        return data
