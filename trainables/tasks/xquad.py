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
from trainables.tasks.squad_v1 import QATask, check_split

if TYPE_CHECKING:
    import datasets

#: XQuAD languages without a ``google/xtreme`` config, read from ``google/xquad`` instead
HUB_XQUAD_ONLY = frozenset({"ro"})


@register
class XQuAD(QATask):
    info = TaskInfo(
        name="xquad", family="qa", languages=TASK_LANGUAGES["xquad"], main_metric="f1",
        source="XQuAD (Artetxe et al., 2020); trained on SQuAD v1.1 (Rajpurkar et al., 2016)",
        hub_id="google/xtreme:XQuAD.{lang} (ro: google/xquad:xquad.ro)",
        description="cross-lingual extractive QA; English SQuAD v1.1 training data",
        intermediate=False,
        # google-research/xtreme evaluate.py: XTREME scores 11 languages (Romanian was added to
        # XQuAD later), XTREME-R all 12 (XTREME_R_TASK2LANGS["xquad"] ends with ro)
        language_sets=(("xtreme", tuple(l for l in TASK_LANGUAGES["xquad"] if l != "ro")),
                       ("xtreme_r", TASK_LANGUAGES["xquad"])),
    )

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train/dev: SQuAD v1.1 (``train-v1.1.json``/``dev-v1.1.json``); test: ``xquad.<lang>.json``."""
        check_split(self, split, language, languages=self.info.languages)
        if split != "test":
            return self.english_squad(split, language)
        if self.options.data_dir:
            return self.read_json(f"xquad.{language}.json", split, language)
        if language in HUB_XQUAD_ONLY:
            return self.from_hub("google/xquad", f"xquad.{language}", split, language, "validation")
        return self.from_hub("google/xtreme", f"XQuAD.{language}", split, language, "validation")
