"""The task abstraction: what a task is (metadata) and how its raw examples are loaded.

A task only knows its data. How examples become features, which head sits on the encoder and
how predictions are scored belong to its *family* (``trainables.families``), so a new task is
one small file that declares its metadata and a loader.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.contract import TaskOptions  # noqa: F401 - re-exported: tasks take their options

if TYPE_CHECKING:  # imported lazily: planning and validation never load data
    import datasets


class TaskDataError(RuntimeError):
    """Raised when a task's data cannot be found or read; the message names task, split and path."""


@dataclass(frozen=True)
class TaskInfo:
    """Static facts about a task, readable without loading any data (used by the planner)."""

    name: str
    family: str
    languages: tuple[str, ...]
    main_metric: str
    source: str
    description: str = ""
    train_language: str = "en"
    # False for retrieval-only targets (no English training data): they become evaluation jobs.
    trainable: bool = True
    # Whether the task can serve as an (English) intermediate task.
    intermediate: bool = True
    # Whether the task can serve as a target task (evaluated per language).
    target: bool = True
    # Named language subsets a spec can select by name (``languages: xtreme``), e.g. the XTREME
    # and XTREME-R lists of a task that both benchmarks use with different languages.
    language_sets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Where the data comes from on the hub (``google/xtreme:PAN-X.{lang}``), for docs and errors.
    hub_id: str = ""
    # Whether the task's dev score takes part in model selection (False for masked-LM mixing).
    selection: bool = True
    # Task options a spec must set to use the task (``data_dir`` for licensed data, ...).
    required_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # the families package lists its families without importing them (torch-free)
        from trainables.families import family_names

        if self.family not in family_names():
            raise ValueError(f"task {self.name}: unknown family {self.family!r} "
                             f"(known: {', '.join(family_names())})")


class Task(ABC):
    """A dataset with a family. Subclasses set ``info`` and implement ``load``."""

    info: TaskInfo
    #: class names (classification) or tag names (tagging); None when derived from data
    labels: tuple[str, ...] | None = None

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options or TaskOptions()

    def __init_subclass__(cls, **kwargs) -> None:
        """Every task's ``load`` goes through the raw cache (see ``trainables.raw_cache``)."""
        super().__init_subclass__(**kwargs)
        load = cls.__dict__.get("load")
        if load is not None and not getattr(load, "__abstractmethod__", False) \
                and not getattr(load, "__raw_cached__", False):
            from trainables.raw_cache import cached_load

            cls.load = cached_load(load)

    @property
    def name(self) -> str:
        return self.info.name

    @abstractmethod
    def load(self, split: str, language: str) -> datasets.Dataset:
        """Raw examples of one split in one language, in the family's schema.

        Families' schemas: classification ``{text_a, text_b?, label:int}``; tagging
        ``{tokens: list[str], tags: list[int]}``; retrieval ``{source: str, target: str}``
        (line i of source translates line i of target).
        """

    def hub_dataset(self, path: str, name: str | None, split: str, language: str,
                    **kwargs) -> datasets.Dataset:
        """``datasets.load_dataset`` by hub id; any failure becomes one ``TaskDataError`` line.

        Offline machines (``HF_DATASETS_OFFLINE=1``) and air-gapped clusters set ``data_dir``
        instead; the message says so.
        """
        import datasets

        try:
            return datasets.load_dataset(path, name, split=split, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every hub failure is reported the same way
            what = f"{path}" + (f" config {name}" if name else "") + f" split {split}"
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise TaskDataError(
                f"task {self.name}: could not load the {split!r} split for language {language!r} "
                f"from the hub ({what}): {first}; set tasks.{self.name}.data_dir to read local files"
            ) from None

    def prepare(self) -> None:
        """Driver-side, once per study before trials start: fetch or generate data (default: nothing)."""

    def load_train(self) -> datasets.Dataset:
        """English training split, optionally subsampled to ``train_examples`` (seeded, stable),
        plus any translated training data (``translated_train``) appended after subsampling."""
        data = self.load("train", self.info.train_language)
        cap = self.options.train_examples
        if cap is not None and cap < len(data):
            data = data.shuffle(seed=0).select(range(cap))
        if self.options.translated_train:
            import datasets

            extra = [self.load_translated(source) for source in self.options.translated_train]
            data = datasets.concatenate_datasets([data.flatten_indices(), *extra])
        return data

    def load_translated(self, source: str) -> datasets.Dataset:
        """Translated training data in the task's raw schema: a language code of the task (its
        own machine-translated training split, e.g. XNLI-MT or PAWS-X ``translated_train.tsv``,
        read like any split: from ``data_dir`` or the hub), a local JSON-lines file, or a hub
        dataset (``id`` or ``id:config``, split ``train``). Columns must match the English split."""
        path = Path(source).expanduser()
        if source in self.info.languages and source != self.info.train_language and not path.exists():
            return self.load("train", source)
        if path.suffix not in (".json", ".jsonl") and path.is_file():
            raise TaskDataError(f"task {self.name}: translated_train {source}: give a language code "
                                f"of the task ({' '.join(self.info.languages)}), a JSON-lines file "
                                "or a hub id")
        if path.suffix in (".json", ".jsonl") or path.exists():
            from trainables.formats import read_json_lines

            data = read_json_lines(self.require_file(path, "translated_train", "*"))
        else:
            hub_id, _, config = source.partition(":")
            data = self.hub_dataset(hub_id, config or None, "train", "*")
        english = self.load("train", self.info.train_language)
        missing = set(english.column_names) - set(data.column_names)
        if missing:
            raise TaskDataError(f"task {self.name}: translated_train {source} lacks columns "
                                f"{sorted(missing)} of the task's schema {english.column_names}")
        return data.select_columns(english.column_names).cast(english.features)

    def data_path(self, *parts: str) -> Path:
        """A path under the spec's ``data_dir`` for this task; error if no data_dir is set."""
        if not self.options.data_dir:
            raise TaskDataError(f"task {self.name}: no data_dir set and no hub loader for it")
        return Path(self.options.data_dir).expanduser().joinpath(*parts)

    def require_file(self, path: Path, split: str, language: str) -> Path:
        if not path.is_file():
            raise TaskDataError(
                f"task {self.name}: {split} split for language {language!r} not found at {path}"
            )
        return path
