"""XQuAD: 1,190 SQuAD v1.1 dev questions professionally translated into 11 languages.

Zero-shot transfer: train on SQuAD v1.1 English, select on SQuAD v1.1 dev, test per language.
Hub: ``google/xtreme`` configs ``XQuAD.<lang>`` (split validation) for XTREME's 11 languages;
Romanian, added to XQuAD later, has no ``google/xtreme`` config and comes from ``google/xquad``
config ``xquad.ro`` (split validation; ``id, context, question, answers``, as its dataset card).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.loading import Hub
from trainables.tasks.squad_format import QATask

if TYPE_CHECKING:
    import datasets

_TEST_SPLIT = {"test": "validation"}
#: XQuAD languages without a ``google/xtreme`` config, read from ``google/xquad`` instead
HUB_XQUAD_ONLY = frozenset({"ro"})
_XQUAD_HUB = Hub("google/xquad", "xquad.{language}", _TEST_SPLIT)


@register
class XQuAD(QATask):
    info = TaskInfo(
        name="xquad", family="qa", languages=TASK_LANGUAGES["xquad"], main_metric="f1",
        source="XQuAD (Artetxe et al., 2020); trained on SQuAD v1.1 (Rajpurkar et al., 2016)",
        hub_id="google/xtreme:XQuAD.{lang} (ro: google/xquad:xquad.ro)",
        description="cross-lingual extractive QA; English SQuAD v1.1 training data",
        intermediate=False, benchmark_slot="xquad", benchmark_metric="em_f1",
        # google-research/xtreme evaluate.py: XTREME scores 11 languages (Romanian was added to
        # XQuAD later), XTREME-R all 12 (XTREME_R_TASK2LANGS["xquad"] ends with ro)
        language_sets=(("xtreme", tuple(l for l in TASK_LANGUAGES["xquad"] if l != "ro")),
                       ("xtreme_r", TASK_LANGUAGES["xquad"])),
    )
    split_languages = {"train": ("en",), "dev": ("en",)}
    hub = Hub("google/xtreme", "XQuAD.{language}", _TEST_SPLIT)

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train/dev: SQuAD v1.1 (``train-v1.1.json``/``dev-v1.1.json``); test: ``xquad.<lang>.json``."""
        if split != "test":
            self.check_split(split, language)
            return self.english_squad(split, language)
        return super().load(split, language)

    def hub_source(self, language: str) -> Hub:
        return _XQUAD_HUB if language in HUB_XQUAD_ONLY else self.hub

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        return self.read_json(f"xquad.{language}.json", split, language)
