"""ANLI+ : SNLI + MNLI + ANLI rounds 1-3 as one English NLI task (the X-STILTs "ANLI+" task).

* train = SNLI train (unlabelled ``-1`` / ``-`` rows dropped) + MNLI train + ANLI train R1-R3;
* dev = MNLI matched dev + ANLI dev R1-R3 (SNLI dev is left out: it is near-saturated and would
  dilute model selection towards the easy set);
* test = ANLI test R1-R3.

Hub: ``stanfordnlp/snli``, ``nyu-mll/glue`` (mnli), ``facebook/anli`` (``train_r1`` ...).
``data_dir`` holds the upstream files: ``snli_1.0/snli_1.0_{train,dev,test}.jsonl`` (fields
sentence1, sentence2, gold_label), ``MNLI/*.tsv`` (GLUE), ``anli_v1.0/R{1,2,3}/{train,dev,test}.jsonl``
(fields context or premise, hypothesis, label e/n/c); ``SNLI/``, ``ANLI/`` or no folder also work.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import pair_dataset
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import STANDARD_SPLITS
from trainables.tasks.nli_format import MNLI_SOURCE, NLI_LABELS, mnli_split, nli_hub_pairs

if TYPE_CHECKING:
    import datasets

ROUNDS = ("r1", "r2", "r3")
_LABELS = {"e": 0, "n": 1, "c": 2, **{name: i for i, name in enumerate(NLI_LABELS)}}


@register
class AnliPlus(Task):
    info = TaskInfo(
        name="anli_plus", family="classification", languages=("en",), main_metric="accuracy",
        source=f"SNLI 1.0 (Bowman et al., 2015) + {MNLI_SOURCE} + ANLI v1.0 (Nie et al., 2020)",
        hub_id="stanfordnlp/snli + nyu-mll/glue:mnli + facebook/anli", target=False,
        description="English NLI on SNLI + MNLI + adversarial ANLI R1-R3 together; dev = MNLI matched "
                    "+ ANLI dev, test = ANLI test",
    )
    labels = NLI_LABELS

    def load(self, split: str, language: str) -> datasets.Dataset:
        import datasets

        self.check_split(split, language)
        parts = [self.snli(split, language)] if split == "train" else []
        if split in ("train", "dev"):
            parts.append(mnli_split(self, split, language))
        parts += [self.anli(split, r, language) for r in ROUNDS]
        return datasets.concatenate_datasets(parts)

    def snli(self, split: str, language: str) -> datasets.Dataset:
        if not self.options.data_dir:
            data = self.hub_dataset("stanfordnlp/snli", None, STANDARD_SPLITS[split], language)
            return nli_hub_pairs(data)
        root, name = self.data_path(), f"snli_1.0_{split}.jsonl"
        path = self.find_file(split, language, root / "snli_1.0" / name, root / "SNLI" / name, root / name)
        return self._jsonl(path, split, language, ("sentence1",), "sentence2", "gold_label")

    def anli(self, split: str, round_: str, language: str) -> datasets.Dataset:
        if not self.options.data_dir:
            return nli_hub_pairs(self.hub_dataset("facebook/anli", None, f"{split}_{round_}", language))
        root, folder = self.data_path(), round_.upper()
        path = self.find_file(split, language, root / "anli_v1.0" / folder / f"{split}.jsonl",
                              root / "ANLI" / folder / f"{split}.jsonl", root / folder / f"{split}.jsonl")
        return self._jsonl(path, split, language, ("context", "premise"), "hypothesis", "label")

    def _jsonl(self, path: Path, split: str, language: str, premise: tuple[str, ...],
               hypothesis: str, label: str) -> datasets.Dataset:
        """SNLI / ANLI JSON lines as the classification schema (unlabelled rows dropped)."""
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text_a = next(record[k] for k in premise if k in record)
                    text_b, gold = record[hypothesis], record[label]
                except (ValueError, KeyError, StopIteration):
                    raise TaskDataError(f"task {self.name}: {path}:{number}: expected JSON with fields "
                                        f"{'/'.join(premise)}, {hypothesis}, {label}") from None
                if gold in _LABELS:
                    rows.append((text_a, text_b, _LABELS[gold]))
        return pair_dataset(rows)
