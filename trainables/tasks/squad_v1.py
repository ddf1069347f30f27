"""SQuAD v1.1: English extractive QA, an X-STILTs intermediate task."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.tasks import register
from trainables.tasks.base import TaskInfo
from trainables.tasks.squad_format import SQUAD_V1_HUB, QATask

if TYPE_CHECKING:
    import datasets


@register
class SquadV1(QATask):
    info = TaskInfo(
        name="squad_v1", family="qa", languages=("en",), main_metric="f1",
        source="SQuAD v1.1 (Rajpurkar et al., 2016)", hub_id="rajpurkar/squad",
        description="English extractive QA over Wikipedia paragraphs (an intermediate task)",
        target=False,
    )
    hub = SQUAD_V1_HUB

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        """train -> train-v1.1.json; dev and test -> dev-v1.1.json (SQuAD's test set is hidden)."""
        name = "train" if split == "train" else "dev"
        return self.read_json(f"{name}-v1.1.json", split, language)
