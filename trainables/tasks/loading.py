"""What a task declares about where its data is, and the small readers' helpers tasks share.

A task names its Hub dataset as data (``Hub``: id, config per language, our split -> the Hub's
split); ``Task.load`` checks the split and reads the Hub or the task's ``data_dir`` files. The
helpers here are shared by several task files, so no task imports another one.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

from trainables.tasks.base import TaskDataError

if TYPE_CHECKING:
    from trainables.tasks.base import Task

#: our split -> the Hub's split, as most datasets name them
STANDARD_SPLITS: Mapping[str, str] = {"train": "train", "dev": "validation", "test": "test"}
#: the Hub's own Parquet conversion of a dataset that is still script-based on its main branch
#: (``datasets`` >= 4 runs no loading scripts): one folder per config, ``<config>/<split>/``
PARQUET_REVISION = "refs/convert/parquet"
#: ``(splits, split_note)`` of a task whose test labels are hidden (English intermediate tasks)
HIDDEN_TEST = (("train", "dev"), "test labels are hidden; 'dev' is the official validation split")


@dataclass(frozen=True)
class Hub:
    """A dataset on the Hugging Face Hub, read with ``datasets.load_dataset(path, config, split)``.

    ``config`` is one name for all languages, a template with ``{language}``, a mapping
    language -> config (a language missing from it has no Hub config), or None.
    ``parquet_config`` reads a script-based dataset from its Parquet conversion instead
    (``PARQUET_REVISION``, the files of that config folder).
    """

    path: str
    config: str | Mapping[str, str] | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: dict(STANDARD_SPLITS))
    parquet_config: str | None = None

    def load_kwargs(self, hub_split: str) -> dict:
        """What ``load_dataset`` needs beyond id, config and split."""
        if self.parquet_config is None:
            return {}
        return {"revision": PARQUET_REVISION,
                "data_files": {hub_split: f"{self.parquet_config}/{hub_split}/*.parquet"}}

    def has(self, language: str) -> bool:
        return not isinstance(self.config, Mapping) or language in self.config

    def config_for(self, language: str) -> str | None:
        if isinstance(self.config, Mapping):
            return self.config[language]
        return None if self.config is None else self.config.format(language=language)


@contextmanager
def parse_errors(task: Task, split: str, language: str) -> Iterator[None]:
    """A reader's ``ValueError`` (bad line, unknown tag) as one ``TaskDataError`` naming the split."""
    try:
        yield
    except ValueError as exc:
        raise TaskDataError(f"task {task.name}: {split} split for language {language!r}: {exc}") from None


def require_columns(task: Task, present: Iterable[str], needed: Iterable[str], where: object) -> None:
    """A one-line error naming the fields a table or dataset lacks."""
    missing = [c for c in needed if c not in set(present)]
    if missing:
        raise TaskDataError(f"task {task.name}: {where} lacks fields {missing}")
