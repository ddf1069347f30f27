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
from trainables.tasks.squad_v1 import QATask, check_split, mark_language

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
        intermediate=False,
    )

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train: ``tydiqa-goldp-v1.1-train.json`` (English); dev/test: ``tydiqa-goldp-v1.1-dev.json``."""
        check_split(self, split, language, languages=self.info.languages)
        if split == "train" and language != "en":
            check_split(self, split, language, languages=("en",))
        prefix = TYDI_NAMES[language] + "-"
        name = "train" if split == "train" else "dev"
        if self.options.data_dir:
            return self.read_json(f"tydiqa-goldp-v1.1-{name}.json", split, language, id_prefix=prefix)
        data = self.from_hub("google/xtreme", "tydiqa", split, language,
                             "train" if split == "train" else "validation")
        data = data.filter(lambda ids: [i.startswith(prefix) for i in ids], input_columns="id",
                           batched=True)
        return mark_language(data, language)
