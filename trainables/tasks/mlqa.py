"""MLQA: extractive QA in 7 languages (same-language context and question), scored with MLQA's
per-language answer normalisation. Training data is SQuAD v1.1 English, as in XTREME."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.metrics.qa import Normalizer, mlqa_normalizer, squad_tokens
from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.squad_v1 import QATask, check_split

if TYPE_CHECKING:
    import datasets


@register
class MLQA(QATask):
    info = TaskInfo(
        name="mlqa", family="qa", languages=TASK_LANGUAGES["mlqa"], main_metric="f1",
        source="MLQA (Lewis et al., 2020); trained on SQuAD v1.1 (Rajpurkar et al., 2016)",
        hub_id="google/xtreme:MLQA.{lang}.{lang}",
        description="cross-lingual extractive QA (context and question in the same language)",
        intermediate=False,
    )

    def normalizer(self, language: str | None) -> Normalizer:
        return mlqa_normalizer(language) if language else squad_tokens

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train: SQuAD v1.1 English; dev/test: MLQA ``{dev,test}/{split}-context-<l>-question-<l>.json``."""
        check_split(self, split, language, languages=self.info.languages)
        if split == "train":
            return self.english_squad(split, language)
        folder = "dev" if split == "dev" else "test"
        if self.options.data_dir:
            return self.read_json(f"{folder}/{folder}-context-{language}-question-{language}.json",
                                  split, language)
        return self.from_hub("google/xtreme", f"MLQA.{language}.{language}", split, language,
                             "validation" if split == "dev" else "test")
