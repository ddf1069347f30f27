"""PAN-X (WikiANN): named entities (PER, ORG, LOC) in XTREME's 40 / XTREME-R's 48 languages.

Hub: ``unimelb-nlp/wikiann`` config ``<lang>`` (train / validation / test; XTREME's splits of
Rahimi et al., 2019). ``data_dir``: the upstream per-language files ``panx/<lang>/{train,dev,test}``
(or ``<lang>/...`` directly under ``data_dir``) with ``<lang>:<token><TAB><tag>`` lines and blank
lines between sentences. Main metric: seqeval entity F1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import first_existing, hub_tags, read_panx, tagged_dataset
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.mnli import check_split

if TYPE_CHECKING:
    import datasets

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


@register
class PanX(Task):
    info = TaskInfo(
        name="panx", family="tagging", languages=TASK_LANGUAGES["panx_xtreme_r"], main_metric="f1",
        source="WikiANN / PAN-X (Pan et al., 2017; splits of Rahimi et al., 2019)",
        hub_id="unimelb-nlp/wikiann:{lang}",
        description="named entity recognition (PER, ORG, LOC; IOB2), zero-shot from English",
        language_sets=(("xtreme", TASK_LANGUAGES["panx"]), ("xtreme_r", TASK_LANGUAGES["panx_xtreme_r"])),
    )
    labels = TAGS

    def load(self, split: str, language: str) -> datasets.Dataset:
        check_split(self, split, language, self.info.languages)
        if not self.options.data_dir:
            data = self.hub_dataset("unimelb-nlp/wikiann", language, _HUB_SPLITS[split], language)
            return hub_tags(data, "tokens", "ner_tags", self.labels)
        root = self.data_path()
        path = self.require_file(first_existing(root / "panx" / language / split, root / language / split),
                                 split, language)
        try:
            return tagged_dataset(read_panx(path), self.labels, source=path)
        except ValueError as exc:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: {exc}") from None
