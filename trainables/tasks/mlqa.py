"""MLQA: extractive QA in 7 languages (same-language context and question), scored with MLQA's
per-language answer normalisation. Training data is SQuAD v1.1 English, as in XTREME."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.metrics.qa import Normalizer, mlqa_normalizer, squad_tokens
from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.loading import Hub
from trainables.tasks.squad_format import QATask

if TYPE_CHECKING:
    import datasets


@register
class MLQA(QATask):
    info = TaskInfo(
        name="mlqa", family="qa", languages=TASK_LANGUAGES["mlqa"], main_metric="f1",
        source="MLQA (Lewis et al., 2020); trained on SQuAD v1.1 (Rajpurkar et al., 2016)",
        hub_id="google/xtreme:MLQA.{lang}.{lang}",
        description="cross-lingual extractive QA (context and question in the same language)",
        intermediate=False, benchmark_slot="mlqa", benchmark_metric="em_f1",
    )
    split_languages = {"train": ("en",)}
    hub = Hub("google/xtreme", "MLQA.{language}.{language}", {"dev": "validation", "test": "test"})

    def normalizer(self, language: str | None) -> Normalizer:
        return mlqa_normalizer(language) if language else squad_tokens

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train: SQuAD v1.1 English; dev/test: MLQA's (hub or files)."""
        if split == "train":
            self.check_split(split, language)
            return self.english_squad(split, language)
        return super().load(split, language)

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        """MLQA ``{dev,test}/{split}-context-<l>-question-<l>.json``."""
        return self.read_json(f"{split}/{split}-context-{language}-question-{language}.json",
                              split, language)
