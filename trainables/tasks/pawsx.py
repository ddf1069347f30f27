"""PAWS-X: adversarial paraphrase identification in 7 languages, trained on English PAWS.

Hub: ``google-research-datasets/paws-x`` config ``<lang>`` (train / validation / test; non-English
train sets are machine translated). ``data_dir``: the upstream ``x-final`` layout,
``<lang>/dev_2k.tsv``, ``<lang>/test_2k.tsv``, ``en/train.tsv`` and ``<lang>/translated_train.tsv``
(columns id, sentence1, sentence2, label), in ``data_dir`` or ``data_dir/x-final``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_pairs, pair_dataset, read_tsv
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.mnli import check_split

if TYPE_CHECKING:
    import datasets

LABELS = ("not_paraphrase", "paraphrase")
_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_FILES = {"dev": "dev_2k.tsv", "test": "test_2k.tsv"}


@register
class PawsX(Task):
    info = TaskInfo(
        name="pawsx", family="classification", languages=TASK_LANGUAGES["pawsx"], main_metric="accuracy",
        source="PAWS-X (Yang et al., 2019)", hub_id="google-research-datasets/paws-x:{lang}",
        description="is sentence 2 a paraphrase of sentence 1 (high word overlap pairs); 7 languages",
    )
    labels = LABELS

    def load(self, split: str, language: str) -> datasets.Dataset:
        check_split(self, split, language, self.info.languages)
        if not self.options.data_dir:
            data = self.hub_dataset("google-research-datasets/paws-x", language, _HUB_SPLITS[split],
                                    language)
            return hub_pairs(data, "sentence1", "sentence2", "label", self.labels,
                             aliases={"0": LABELS[0], "1": LABELS[1]})
        name = _FILES.get(split) or ("train.tsv" if language == "en" else "translated_train.tsv")
        root = self.data_path()
        path = self.require_file(first_existing(root / language / name, root / "x-final" / language / name),
                                 split, language)
        try:
            rows = read_tsv(path)
        except ValueError as exc:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: {exc}") from None
        if rows and not {"sentence1", "sentence2", "label"} <= set(rows[0]):
            raise TaskDataError(f"task {self.name}: {path} lacks columns sentence1, sentence2, label")
        # the machine-translated training sets have some empty sentences and missing labels
        return pair_dataset([(r["sentence1"], r["sentence2"], int(r["label"])) for r in rows
                             if r["label"] in ("0", "1") and r["sentence1"] and r["sentence2"]])
