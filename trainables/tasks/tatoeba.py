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

from trainables.formats import read_parallel
from trainables.languages import TASK_LANGUAGES, TATOEBA_CODES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.tasks.loading import Hub, parse_errors

if TYPE_CHECKING:
    import datasets

#: languages with a ``google/xtreme`` ``tatoeba.<xxx>`` config (XTREME's 36, the dataset card's configs)
HUB_LANGUAGES = frozenset(TASK_LANGUAGES["tatoeba"])
#: one set per language: dev and test are the same sentences
_SAME_SET = {"dev": "validation", "test": "validation"}


@register
class Tatoeba(Task):
    info = TaskInfo(
        name="tatoeba", family="retrieval", languages=TASK_LANGUAGES["tatoeba_xtreme_r"],
        main_metric="accuracy", source="Tatoeba test sets distributed with LASER (Artetxe & Schwenk, 2019)",
        hub_id="google/xtreme:tatoeba.{lang3}", trainable=False, intermediate=False,
        language_sets=(("xtreme", TASK_LANGUAGES["tatoeba"]),
                       ("xtreme_r", TASK_LANGUAGES["tatoeba_xtreme_r"])),
        description="parallel sentence retrieval against English; no training data",
        benchmark_slot="tatoeba",
    )
    splits = tuple(_SAME_SET)
    #: any language with a Tatoeba code reads from files
    split_languages = dict.fromkeys(_SAME_SET, tuple(TATOEBA_CODES))
    hub = Hub("google/xtreme", {lang: f"tatoeba.{TATOEBA_CODES[lang]}" for lang in sorted(HUB_LANGUAGES)},
              _SAME_SET)

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        code, root = TATOEBA_CODES[language], self.data_path()
        source, target = (self.find_file(split, language, root / n, root / "v1" / n)
                          for n in (f"tatoeba.{code}-eng.{code}", f"tatoeba.{code}-eng.eng"))
        with parse_errors(self, split, language):
            return read_parallel(source, target)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        import datasets

        return datasets.Dataset.from_dict({"source": list(data["source_sentence"]),
                                           "target": list(data["target_sentence"])})

    def files_hint(self, language: str) -> str:
        code = TATOEBA_CODES[language]
        return f"a folder with LASER's tatoeba.{code}-eng.{code} and tatoeba.{code}-eng.eng"
