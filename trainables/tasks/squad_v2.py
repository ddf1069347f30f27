"""SQuAD v2.0: SQuAD v1.1 plus unanswerable questions (an English intermediate task)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.squad_v1 import QATask, check_split

if TYPE_CHECKING:
    import datasets


@register
class SquadV2(QATask):
    info = TaskInfo(
        name="squad_v2", family="qa", languages=("en",), main_metric="f1",
        source="SQuAD v2.0 (Rajpurkar et al., 2018)", hub_id="rajpurkar/squad_v2",
        description="English extractive QA with unanswerable questions (an intermediate task)",
        target=False,
    )
    unanswerable = True

    def load(self, split: str, language: str) -> datasets.Dataset:
        """train -> train-v2.0.json; dev and test -> dev-v2.0.json (the test set is hidden)."""
        check_split(self, split, language)
        name = "train" if split == "train" else "dev"
        if self.options.data_dir:
            return self.read_json(f"{name}-v2.0.json", split, language)
        return self.from_hub("rajpurkar/squad_v2", None, split, language,
                             "train" if split == "train" else "validation")
