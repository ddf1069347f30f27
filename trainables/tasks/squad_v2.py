"""SQuAD v2.0: SQuAD v1.1 plus unanswerable questions (an English intermediate task)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.loading import Hub
from trainables.tasks.squad_format import SQUAD_V1_HUB, QATask

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
    hub = Hub("rajpurkar/squad_v2", splits=SQUAD_V1_HUB.splits)

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        """train -> train-v2.0.json; dev and test -> dev-v2.0.json (the test set is hidden)."""
        name = "train" if split == "train" else "dev"
        return self.read_json(f"{name}-v2.0.json", split, language)
