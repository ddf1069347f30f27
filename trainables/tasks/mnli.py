"""MultiNLI: English 3-way entailment, the X-STILTs intermediate task (and XNLI's training data).

Hub: ``nyu-mll/glue`` config ``mnli`` (dev = ``validation_matched``, test = the mismatched dev
set, since GLUE's test labels are hidden). ``data_dir``: the GLUE TSV files ``MNLI/train.tsv``,
``MNLI/dev_matched.tsv``, ``MNLI/dev_mismatched.tsv`` (``data_dir`` may also be the MNLI folder
itself, or hold the original ``multinli_1.0/multinli_1.0_*.txt`` files, which share the columns).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.nli_format import MNLI_HUB, MNLI_SOURCE, NLI_LABELS, mnli_files, nli_hub_pairs

if TYPE_CHECKING:
    import datasets


@register
class Mnli(Task):
    info = TaskInfo(
        name="mnli", family="classification", languages=("en",), main_metric="accuracy",
        source=MNLI_SOURCE, hub_id="nyu-mll/glue:mnli", target=False,
        description="English 3-way entailment over 10 genres (393k training pairs); dev = matched, "
                    "test = mismatched dev",
    )
    labels = NLI_LABELS
    hub = MNLI_HUB

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        return mnli_files(self, split, language)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return nli_hub_pairs(data)
