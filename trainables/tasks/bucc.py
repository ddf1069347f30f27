"""BUCC 2018 (Zweigenbaum et al., 2018): mine parallel sentences from two comparable corpora.

Evaluation only, de fr ru zh against English. Sentences are embedded, candidate pairs are mined
with the ratio margin over k=4 nearest neighbours (forward and backward best, merged greedily by
score: XTREME's ``mine_bitext`` with ``retrieval max``), and pairs scoring at least a threshold
are kept; the threshold maximises F1 on ``dev`` and is applied to ``test``. Metrics: F1 (main),
precision, recall, the threshold.

As in XTREME, ``dev`` is BUCC's *sample* split and ``test`` its *training* split (the official
test gold is hidden). ``data_dir``: the upstream ``bucc2018/<xx>-en/<xx>-en.<split>.<xx>`` /
``.en`` (lines ``id<TAB>sentence``) and ``.gold`` (lines ``xx_id<TAB>en_id``) with ``<split>``
``sample`` / ``training`` (or XTREME's renamed ``dev`` / ``test``), also flat in ``data_dir``.
Hub: ``google/xtreme`` configs ``bucc18.<xx>`` splits validation / test
(``source_sentence``, ``target_sentence`` = gold pairs only, so hub data mines without
distractors).

``load("test", xx)`` returns the dev *and* test parts (column ``part``) because the test score
needs the dev threshold; ``load("dev", xx)`` returns the dev part only.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import Hub

if TYPE_CHECKING:
    import datasets

_UPSTREAM = {"dev": ("sample", "dev"), "test": ("training", "test")}


def bucc_dataset(rows: list[dict]) -> datasets.Dataset:
    import datasets

    columns = ("id", "text", "side", "part", "gold")
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns},
                                      features=datasets.Features({c: datasets.Value("string")
                                                                  for c in columns}))


@register
class Bucc(Task):
    info = TaskInfo(
        name="bucc", family="retrieval", languages=TASK_LANGUAGES["bucc"], main_metric="f1",
        source="BUCC 2018 shared task (Zweigenbaum et al., 2018)", hub_id="google/xtreme:bucc18.{lang}",
        trainable=False, intermediate=False, benchmark_slot="bucc", benchmark_metric="f1",
        description="parallel sentence mining from comparable corpora (margin scoring); no training data",
    )
    splits = tuple(_UPSTREAM)
    split_note = "evaluation only"
    hub = Hub("google/xtreme", "bucc18.{language}", {"dev": "validation", "test": "test"})

    def load(self, split: str, language: str) -> datasets.Dataset:
        """The test split holds the dev part too (its score needs the dev threshold)."""
        self.check_split(split, language)
        parts = ("dev", "test") if split == "test" else ("dev",)
        rows: list[dict] = []
        for part in parts:
            rows += self._files(part, language, split) if self.options.data_dir else self._hub(part, language)
        return bucc_dataset(rows)

    def _file(self, part: str, language: str, suffix: str, split: str) -> Path:
        root = self.data_path()
        names = [f"{language}-en.{stem}.{suffix}" for stem in _UPSTREAM[part]]
        places = [folder / name for name in names
                  for folder in (root / f"{language}-en", root / "bucc2018" / f"{language}-en", root)]
        return self.find_file(split, language, *places)

    def _read_ids(self, path: Path, part: str, language: str) -> list[tuple[str, str]]:
        out = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            ident, tab, text = line.partition("\t")
            if not tab:
                raise TaskDataError(f"task {self.name}: {part} split for language {language!r}: "
                                    f"{path}:{number} is not 'id<TAB>sentence'")
            out.append((ident.strip(), text.strip()))
        return out

    def _files(self, part: str, language: str, split: str) -> list[dict]:
        """One part's sentences; errors name the requested ``split`` (test needs the dev part too)."""
        xx = self._read_ids(self._file(part, language, language, split), split, language)
        en = self._read_ids(self._file(part, language, "en", split), split, language)
        gold = dict(self._read_ids(self._file(part, language, "gold", split), split, language))
        return ([{"id": i, "text": t, "side": "xx", "part": part, "gold": gold.get(i, "")} for i, t in xx]
                + [{"id": i, "text": t, "side": "en", "part": part, "gold": ""} for i, t in en])

    def _hub(self, part: str, language: str) -> list[dict]:
        data = self.hub_split(self.hub, part, language)
        rows = []
        for n, (src, tgt) in enumerate(zip(data["source_sentence"], data["target_sentence"])):
            rows.append({"id": f"{language}-{n}", "text": src, "side": "xx", "part": part, "gold": f"en-{n}"})
            rows.append({"id": f"en-{n}", "text": tgt, "side": "en", "part": part, "gold": ""})
        return rows
