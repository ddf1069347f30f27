"""Tatoeba (Artetxe & Schwenk, 2019) as in XTREME / XTREME-R: find each sentence's English translation.

Evaluation only (no training data): up to 1,000 sentence pairs per language, top-1 accuracy of
nearest-neighbour search in both directions (``accuracy`` = en -> xx: English queries against
the xx sentences, as XTREME's ``evaluate_retrieval.py`` searches; ``accuracy_xx_to_en``). The
task's languages are XTREME-R's 41; ``languages: xtreme`` selects XTREME's 36.

Data: ``data_dir`` with LASER's ``tatoeba.<xxx>-eng.<xxx>`` / ``tatoeba.<xxx>-eng.eng`` (ISO
639-3 codes as in ``TATOEBA_CODES``; also found under ``data_dir/v1``), or hub ``google/xtreme``
config ``tatoeba.<xxx>`` split validation (``source_sentence`` = xx, ``target_sentence`` = English,
as its dataset card), which exists for XTREME's 36 languages only: XTREME-R's additions az lt pl
ro uk are a one-line error without ``data_dir`` (LASER's Tatoeba v1 test set has them). There is
one set per language, so ``dev`` and ``test`` are the same sentences.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import first_existing, read_parallel
from trainables.languages import TASK_LANGUAGES, TATOEBA_CODES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

#: languages with a ``google/xtreme`` ``tatoeba.<xxx>`` config (XTREME's 36, the dataset card's configs)
HUB_LANGUAGES = frozenset(TASK_LANGUAGES["tatoeba"])


@register
class Tatoeba(Task):
    info = TaskInfo(
        name="tatoeba", family="retrieval", languages=TASK_LANGUAGES["tatoeba_xtreme_r"],
        main_metric="accuracy", source="Tatoeba test sets distributed with LASER (Artetxe & Schwenk, 2019)",
        hub_id="google/xtreme:tatoeba.{lang3}", trainable=False, intermediate=False,
        language_sets=(("xtreme", TASK_LANGUAGES["tatoeba"]),
                       ("xtreme_r", TASK_LANGUAGES["tatoeba_xtreme_r"])),
        description="parallel sentence retrieval against English; no training data",
    )

    def load(self, split: str, language: str) -> datasets.Dataset:
        if split not in ("dev", "test"):
            raise TaskDataError(f"task {self.name}: no {split!r} split (evaluation only)")
        if language not in TATOEBA_CODES:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                f"no Tatoeba code known for it")
        code = TATOEBA_CODES[language]
        if self.options.data_dir:
            root = self.data_path()
            names = (f"tatoeba.{code}-eng.{code}", f"tatoeba.{code}-eng.eng")
            source, target = (self.require_file(first_existing(root / n, root / "v1" / n), split, language)
                              for n in names)
            try:
                return read_parallel(source, target)
            except ValueError as exc:
                raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: {exc}") from None
        if language not in HUB_LANGUAGES:
            raise TaskDataError(f"task {self.name}: language {language!r} has no google/xtreme tatoeba "
                                f"config; set tasks.{self.name}.data_dir to a folder with LASER's "
                                f"tatoeba.{code}-eng.{code} and tatoeba.{code}-eng.eng")
        data = self.hub_dataset("google/xtreme", f"tatoeba.{code}", "validation", language)
        import datasets as ds

        return ds.Dataset.from_dict({"source": list(data["source_sentence"]),
                                     "target": list(data["target_sentence"])})
