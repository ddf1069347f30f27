"""PAWS-X: adversarial paraphrase identification in 7 languages, trained on English PAWS.

Hub: ``google-research-datasets/paws-x`` config ``<lang>`` (train / validation / test; non-English
train sets are machine translated). ``data_dir``: the upstream ``x-final`` layout,
``<lang>/dev_2k.tsv``, ``<lang>/test_2k.tsv``, ``en/train.tsv`` and ``<lang>/translated_train.tsv``
(columns id, sentence1, sentence2, label), in ``data_dir`` or ``data_dir/x-final``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import hub_pairs, pair_dataset, read_tsv
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import Hub, parse_errors, require_columns

if TYPE_CHECKING:
    import datasets

LABELS = ("not_paraphrase", "paraphrase")
_FILES = {"dev": "dev_2k.tsv", "test": "test_2k.tsv"}


@register
class PawsX(Task):
    info = TaskInfo(
        name="pawsx", family="classification", languages=TASK_LANGUAGES["pawsx"], main_metric="accuracy",
        source="PAWS-X (Yang et al., 2019)", hub_id="google-research-datasets/paws-x:{lang}",
        description="is sentence 2 a paraphrase of sentence 1 (high word overlap pairs); 7 languages",
        benchmark_slot="pawsx",
    )
    labels = LABELS
    hub = Hub("google-research-datasets/paws-x", "{language}")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        name = _FILES.get(split) or ("train.tsv" if language == "en" else "translated_train.tsv")
        root = self.data_path()
        path = self.find_file(split, language, root / language / name, root / "x-final" / language / name)
        with parse_errors(self, split, language):
            rows = read_tsv(path)
        if rows:
            require_columns(self, rows[0], ("sentence1", "sentence2", "label"), path)
        # the machine-translated training sets have some empty sentences and missing labels
        return pair_dataset([(r["sentence1"], r["sentence2"], int(r["label"])) for r in rows
                             if r["label"] in ("0", "1") and r["sentence1"] and r["sentence2"]])

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return hub_pairs(data, "sentence1", "sentence2", "label", self.labels,
                         aliases={"0": LABELS[0], "1": LABELS[1]})
