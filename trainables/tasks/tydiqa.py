"""TyDiQA-GoldP: extractive QA given the gold passage, 9 typologically diverse languages.

Training uses the English part of the GoldP train set; as in XTREME the GoldP dev set is the
test set (per language), and its English part also serves as dev for model selection.
Files mix languages: each question id starts with the language's English name (``arabic-...``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.loading import Hub
from trainables.tasks.squad_format import QATask, mark_language

if TYPE_CHECKING:
    import datasets

TYDI_NAMES: dict[str, str] = {
    "en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}


@register
class TyDiQA(QATask):
    info = TaskInfo(
        name="tydiqa", family="qa", languages=TASK_LANGUAGES["tydiqa"], main_metric="f1",
        source="TyDiQA-GoldP v1.1 (Clark et al., 2020)", hub_id="google/xtreme:tydiqa",
        description="typologically diverse extractive QA on the gold passage; English training data",
        intermediate=False, benchmark_slot="tydiqa", benchmark_metric="em_f1",
    )
    split_languages = {"train": ("en",)}
    hub = Hub("google/xtreme", "tydiqa", {"train": "train", "dev": "validation", "test": "validation"})

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        """train: ``tydiqa-goldp-v1.1-train.json`` (English); dev/test: ``tydiqa-goldp-v1.1-dev.json``."""
        name = "train" if split == "train" else "dev"
        return self.read_json(f"tydiqa-goldp-v1.1-{name}.json", split, language,
                              id_prefix=TYDI_NAMES[language] + "-")

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        """The hub files mix languages: a question id starts with its language's English name."""
        prefix = TYDI_NAMES[language] + "-"
        data = super().from_hub(data, split, language)
        data = data.filter(lambda ids: [i.startswith(prefix) for i in ids], input_columns="id",
                           batched=True)
        return mark_language(data, language)
