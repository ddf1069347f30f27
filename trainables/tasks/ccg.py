"""CCG supertagging on CCGbank (English, a syntactic intermediate task in X-STILTs).

CCGbank is licensed (LDC2005T13), so there is no hub loader: ``data_dir`` must hold the
preprocessed splits, either jiant's ``ccg.{train,dev,test}`` (``words<TAB>tags`` lines, made by
jiant's ``scripts/ccg``) or C&C-style ``word|POS|TAG`` lines (``wsj02-21.stagged``,
``wsj00.stagged``, ``wsj23.stagged``, or ``{train,dev,test}.stagged``).

Tag vocabulary: supertags seen fewer than ``MIN_TAG_COUNT`` times in the training file become
``UNK`` (with 10 this keeps the ~425 categories of sections 02-21 that supertaggers are usually
scored on); a ``tags_to_id.json`` beside the files (jiant's vocabulary) is used as given instead.
The head is built from ``labels`` before any split is loaded, so ``labels`` is a property that
reads the training file on first use; the result is cached per file (path, size, mtime) for the
process, so every trial in a worker reads it once and dev/test use the same ids.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.formats import read_ccg, tagged_dataset
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import parse_errors

if TYPE_CHECKING:
    import datasets

MIN_TAG_COUNT = 10
UNK = "UNK"
_STAGGED = {"train": "wsj02-21", "dev": "wsj00", "test": "wsj23"}
_VOCABULARIES: dict[tuple, tuple[str, ...]] = {}


def tag_vocabulary(sentences: list[dict], min_count: int = MIN_TAG_COUNT) -> tuple[str, ...]:
    """Tags seen at least ``min_count`` times, most frequent first (ties by name), then ``UNK``."""
    counts = Counter(tag for sentence in sentences for tag in sentence["tags"])
    kept = sorted((t for t, c in counts.items() if c >= min_count and t != UNK),
                  key=lambda t: (-counts[t], t))
    return (*kept, UNK)


@register
class Ccg(Task):
    info = TaskInfo(
        name="ccg", family="tagging", languages=("en",), main_metric="accuracy",
        source="CCGbank 1.1 (Hockenmaier and Steedman, 2007), LDC2005T13 (licensed)",
        target=False, required_options=("data_dir",),
        description="CCG supertagging of WSJ sentences (rare supertags merged into UNK)",
    )

    @property
    def labels(self) -> tuple[str, ...]:  # type: ignore[override]
        path = self.file("train")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime, MIN_TAG_COUNT)
        if key not in _VOCABULARIES:
            given = path.parent / "tags_to_id.json"
            if given.is_file():
                ids = json.loads(given.read_text(encoding="utf-8"))
                tags = tuple(sorted(ids, key=lambda t: int(ids[t])))
                _VOCABULARIES[key] = tags if UNK in tags else (*tags, UNK)
            else:
                _VOCABULARIES[key] = tag_vocabulary(self._read(path, "train"))
        return _VOCABULARIES[key]

    def file(self, split: str) -> Path:
        if not self.options.data_dir:
            raise TaskDataError(f"task {self.name}: CCGbank is licensed (LDC2005T13), so there is no "
                                f"hub loader: set tasks.{self.name}.data_dir to a folder with ccg.train, "
                                f"ccg.dev, ccg.test (jiant's preprocessing) or *.stagged files")
        root = self.data_path()
        return self.find_file(split, "en", root / f"ccg.{split}", root / "CCG" / f"ccg.{split}",
                              root / f"{_STAGGED[split]}.stagged", root / f"{split}.stagged")

    def _read(self, path: Path, split: str) -> list[dict]:
        with parse_errors(self, split, "en"):
            return read_ccg(path)

    def load(self, split: str, language: str) -> datasets.Dataset:
        """Files only (licensed data): a missing ``data_dir`` is CCGbank's own error."""
        self.check_split(split, language)
        path = self.file(split)
        return tagged_dataset(self._read(path, split), self.labels, unknown=UNK, source=path)
