"""``mlm``: continued masked-LM on (target-language) text, mixed into intermediate training.

Use it inside a multi-task intermediate entry, e.g. ``intermediate: [[mnli, mlm]]`` with
``tasks: {mlm: {corpus: ..., corpus_languages: [de, sw]}}``. The corpus is a local folder of
``<lang>.txt`` files (one sentence or paragraph a line), one text file, or a hub dataset id
(``id`` or ``id:config``) with a ``text`` column. ``corpus_languages`` picks files of a folder,
or fills ``{language}`` in a hub id (``cc100:{language}``); a single file or a hub id without
``{language}`` is one corpus, read once. The last 1% of lines (at most 1,000) per language is
held out as dev; the MLM dev score does not take part in model selection.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

LANGUAGE = "{language}"
DEV_SHARE = 0.01
DEV_MAX = 1000


@register
class MaskedLMCorpus(Task):
    info = TaskInfo(
        name="mlm", family="mlm", languages=("en",), main_metric="accuracy",
        source="any text corpus (a folder of <lang>.txt files, a text file or a hub dataset)",
        description="continued masked-LM mixed into intermediate training; set tasks.mlm.corpus",
        target=False, selection=False, required_options=("corpus",),
    )

    def _lines(self, language: str) -> list[str]:
        corpus = self.options.corpus
        if not corpus:
            raise TaskDataError("task mlm: no corpus set (tasks.mlm.corpus: a folder, file or hub id)")
        path = Path(corpus).expanduser()
        if path.is_dir():
            file = self.require_file(path / f"{language}.txt", "train", language)
            return _read_lines(file)
        if path.is_file():
            return _read_lines(path)
        if corpus.startswith(("/", "./", "../", "~")):
            raise TaskDataError(f"task mlm: corpus not found at {path}")
        hub_id, _, config = corpus.replace(LANGUAGE, language).partition(":")
        data = self.hub_dataset(hub_id, config or None, "train", language)
        if "text" not in data.column_names:
            raise TaskDataError(f"task mlm: hub dataset {corpus} has no 'text' column "
                                f"(columns: {data.column_names})")
        return [t for t in data["text"] if t and t.strip()]

    def _languages(self) -> tuple[str, ...]:
        """The languages read one by one; ``("all",)`` for a corpus that is one file or dataset
        (listing languages then would read the same text once per language)."""
        corpus = self.options.corpus or ""
        path = Path(corpus).expanduser()
        per_language = path.is_dir() or (LANGUAGE in corpus and not path.is_file())
        if not per_language:
            if self.options.corpus_languages:
                log.warning("task mlm: corpus %s is one corpus; corpus_languages %s are ignored",
                            corpus, list(self.options.corpus_languages))
            return ("all",)
        if self.options.corpus_languages:
            return tuple(self.options.corpus_languages)
        if path.is_dir():
            return tuple(sorted(p.stem for p in path.glob("*.txt")))
        raise TaskDataError(f"task mlm: corpus {corpus} has {LANGUAGE} in it: "
                            "set tasks.mlm.corpus_languages")

    def load(self, split: str, language: str) -> datasets.Dataset:
        import datasets

        texts: list[str] = []
        for lang in self._languages():
            lines = self._lines(lang)
            held = min(DEV_MAX, max(1, int(len(lines) * DEV_SHARE)))
            texts += lines[-held:] if split == "dev" else lines[:-held]
        if not texts:
            raise TaskDataError(f"task mlm: the corpus {self.options.corpus} has no {split} text")
        return datasets.Dataset.from_dict({"text": texts})


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
