"""PAN-X (WikiANN): named entities (PER, ORG, LOC) in XTREME's 40 / XTREME-R's 48 languages.

Hub: ``unimelb-nlp/wikiann`` config ``<lang>`` (train / validation / test; XTREME's splits of
Rahimi et al., 2019). ``data_dir``: the upstream per-language files ``panx/<lang>/{train,dev,test}``
(or ``<lang>/...`` directly under ``data_dir``) with ``<lang>:<token><TAB><tag>`` lines and blank
lines between sentences. Main metric: seqeval entity F1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import hub_tags, read_panx, tagged_dataset
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import Hub, parse_errors

if TYPE_CHECKING:
    import datasets

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


@register
class PanX(Task):
    info = TaskInfo(
        name="panx", family="tagging", languages=TASK_LANGUAGES["panx_xtreme_r"], main_metric="f1",
        source="WikiANN / PAN-X (Pan et al., 2017; splits of Rahimi et al., 2019)",
        hub_id="unimelb-nlp/wikiann:{lang}",
        description="named entity recognition (PER, ORG, LOC; IOB2), zero-shot from English",
        language_sets=(("xtreme", TASK_LANGUAGES["panx"]), ("xtreme_r", TASK_LANGUAGES["panx_xtreme_r"])),
        # a study's own WikiANN task fills PAN-X's slot too; the benchmarks score entity F1
        benchmark_slot="panx", benchmark_aliases=("wikiann",), benchmark_metric="f1",
    )
    labels = TAGS
    hub = Hub("unimelb-nlp/wikiann", "{language}")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        root = self.data_path()
        path = self.find_file(split, language, root / "panx" / language / split, root / language / split)
        with parse_errors(self, split, language):
            return tagged_dataset(read_panx(path), self.labels, source=path)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return hub_tags(data, "tokens", "ner_tags", self.labels)
