"""The task abstraction: what a task is (metadata) and how its raw examples are loaded.

A task only knows its data. How examples become features, which head sits on the encoder and
how predictions are scored belong to its *family* (``trainables.families``), so a new task is
one small file that declares its metadata, its splits and Hub source (``trainables.tasks.loading``)
and how to read its files; ``Task.load`` does the rest.
"""
from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Mapping

from trainables.contract import TaskOptions  # noqa: F401 - re-exported: tasks take their options
from trainables.families import family_names
from trainables.formats import first_existing

if TYPE_CHECKING:  # imported lazily: planning and validation never load data
    import datasets

    from trainables.tasks.loading import Hub


class TaskDataError(RuntimeError):
    """Raised when a task's data cannot be found or read; the message names task, split and path."""


_NO_SOURCE = "task {task}: no data_dir set and no hub loader for it"


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
    # The benchmark slot the task fills (``trainables.benchmarks``: every benchmark listing the
    # slot scores the task there), other task names counted in that slot, and the metric the
    # benchmarks average for it when their rules name one ("em_f1": (EM + F1) / 2).
    benchmark_slot: str = ""
    benchmark_aliases: tuple[str, ...] = ()
    benchmark_metric: str = ""

    def __post_init__(self) -> None:
        if self.family not in family_names():
            raise ValueError(f"task {self.name}: unknown family {self.family!r} "
                             f"(known: {', '.join(family_names())})")


class Task(ABC):
    """A dataset with a family. Subclasses set ``info``, declare their splits and Hub source, and
    read their ``data_dir`` files in ``read_files``; tasks whose loading is special override ``load``."""

    info: TaskInfo
    #: class names (classification) or tag names (tagging); None when derived from data
    labels: tuple[str, ...] | None = None
    #: the task's splits
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    #: splits that exist in fewer languages than ``info.languages`` (English-only training)
    split_languages: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: why a split is missing, added to the error (hidden test labels, ...)
    split_note: ClassVar[str] = ""
    #: where the splits are on the Hub (``trainables.tasks.loading.Hub``); None: files only
    hub: ClassVar[Hub | None] = None

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options or TaskOptions()

    def __init_subclass__(cls, **kwargs) -> None:
        """Every task's reading of local files goes through the raw cache (see
        ``trainables.raw_cache``): its own ``load``, else its ``read_files``."""
        super().__init_subclass__(**kwargs)
        own = "load" if "load" in cls.__dict__ else "read_files" if cls.load is Task.load else None
        method = cls.__dict__.get(own) if own else None
        if method is not None and not getattr(method, "__raw_cached__", False):
            from trainables.raw_cache import cached_load

            setattr(cls, own, cached_load(method))

    @property
    def name(self) -> str:
        return self.info.name

    def load(self, split: str, language: str) -> datasets.Dataset:
        """Raw examples of one split in one language, in the family's schema: from ``data_dir``
        when it is set, else from the Hub.

        Families' schemas: classification ``{text_a, text_b?, label:int}``; tagging
        ``{tokens: list[str], tags: list[int]}``; retrieval ``{source: str, target: str}``
        (line i of source translates line i of target).
        """
        self.check_split(split, language)
        if self.options.data_dir:
            return self.read_files(split, language)
        return self.read_hub(split, language)

    def check_split(self, split: str, language: str) -> None:
        """One error line for a split the task lacks, or lacks in ``language``."""
        note = f"; {self.split_note}" if self.split_note else ""
        if split not in self.splits:
            raise TaskDataError(f"task {self.name}: no {split!r} split for language {language!r} "
                                f"(splits: {', '.join(self.splits)}{note})")
        languages = self.split_languages.get(split, self.info.languages)
        if language not in languages:
            raise TaskDataError(f"task {self.name}: no {split!r} split for language {language!r} "
                                f"(languages: {', '.join(languages)}{note})")

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        """One split from the upstream files under ``data_dir`` (tasks with files override it)."""
        raise TaskDataError(f"task {self.name}: it reads no files from data_dir (unset it to use the hub)")

    def read_hub(self, split: str, language: str) -> datasets.Dataset:
        """One split from the task's ``hub`` declaration, through ``from_hub``."""
        hub = self.hub_source(language)
        if hub is None:
            raise TaskDataError(_NO_SOURCE.format(task=self.name))
        if not hub.has(language):
            raise TaskDataError(f"task {self.name}: language {language!r} has no {hub.path} {self.name} config; "
                                f"set tasks.{self.name}.data_dir to {self.files_hint(language)}")
        return self.from_hub(self.hub_split(hub, split, language), split, language)

    def hub_split(self, hub: Hub, split: str, language: str) -> datasets.Dataset:
        """Our ``split`` in ``language`` of a Hub declaration, as the Hub has it."""
        hub_split = hub.splits[split]
        return self.hub_dataset(hub.path, hub.config_for(language), hub_split, language,
                                **hub.load_kwargs(hub_split))

    def hub_source(self, language: str) -> Hub | None:
        """The Hub dataset holding ``language`` (the task's ``hub``; XQuAD's Romanian differs)."""
        return self.hub

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        """A Hub split in the family's schema (by default as it comes)."""
        return data

    def files_hint(self, language: str) -> str:
        """What a ``data_dir`` must hold for a language without a Hub config (for the error)."""
        return "a folder with the upstream files"

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
            raise TaskDataError(_NO_SOURCE.format(task=self.name))
        return Path(self.options.data_dir).expanduser().joinpath(*parts)

    def find_file(self, split: str, language: str, *candidates: Path) -> Path:
        """The first of the conventional locations that exists; error naming the first if none does."""
        return self.require_file(first_existing(*candidates), split, language)

    def require_file(self, path: Path, split: str, language: str) -> Path:
        if not path.is_file():
            raise TaskDataError(
                f"task {self.name}: {split} split for language {language!r} not found at {path}"
            )
        return path
