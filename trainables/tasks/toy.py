"""The toy XTREME: synthetic tasks in an English-like language and derived languages.

They make the demo and the tests run offline with numbers that mean something: the tiny model
is pretrained on the same synthetic languages, so zero-shot transfer is possible but imperfect.
Files are generated on first use (``trainables.toy.write_toy_xtreme``) unless ``data_dir`` is set.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

from trainables.formats import read_conllu, read_json_lines, read_parallel
from trainables.tasks import register
from trainables.tasks.base import Task, TaskInfo
from trainables.toy import TOY_LANGUAGES, write_toy_xtreme
from trainables.toy.world import MNLI_SIZE_FACTOR

SOURCE = "synthetic (trainables.toy)"
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
CHUNKS = ("O", "B-NP", "I-NP", "B-VP", "I-VP", "B-PP", "I-PP", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP")


class ToyTask(Task):
    """Shared location logic: ``data_dir`` if given, else the generated toy benchmark."""

    folder: str

    def root(self) -> Path:
        if self.options.data_dir:
            return Path(self.options.data_dir).expanduser()
        root = Path(self.options.cache_dir).expanduser() / "toy_xtreme"
        return write_toy_xtreme(root)

    def prepare(self) -> None:
        self.root()

    def file(self, split: str, language: str, suffix: str) -> Path:
        path = self.root() / self.folder / f"{split}-{language}.{suffix}"
        return self.require_file(path, split, language)


def _label_index(labels: tuple[str, ...], name: str):
    index = {label: i for i, label in enumerate(labels)}

    def convert(value):
        return index[value] if isinstance(value, str) else int(value)

    return convert


@register
class ToyXnli(ToyTask):
    info = TaskInfo(
        name="toy_xnli", family="classification", languages=TOY_LANGUAGES, main_metric="accuracy",
        source=SOURCE, description="3-way entailment between two sentences (XNLI-like)",
    )
    labels = ("entailment", "neutral", "contradiction")
    folder = "toy_xnli"

    def load(self, split: str, language: str) -> datasets.Dataset:
        data = read_json_lines(self.file(split, language, "jsonl"))
        convert = _label_index(self.labels, "label")
        return data.map(lambda ex: {"text_a": ex["premise"], "text_b": ex["hypothesis"],
                                    "label": convert(ex["label"])},
                        remove_columns=data.column_names)


@register
class ToyMnli(ToyXnli):
    info = TaskInfo(
        name="toy_mnli", family="classification", languages=("en",), main_metric="accuracy",
        source=SOURCE, description=f"3-way entailment, {MNLI_SIZE_FACTOR}x toy_xnli's training pairs (MNLI-like), English only",
        target=False,
    )
    folder = "toy_mnli"


@register
class ToyParaphrase(ToyTask):
    info = TaskInfo(
        name="toy_paraphrase", family="classification", languages=("en",), main_metric="accuracy",
        source=SOURCE, description="is sentence 2 a paraphrase of sentence 1 (PAWS/QQP-like), English only",
        target=False,
    )
    labels = ("different", "paraphrase")
    folder = "toy_paraphrase"

    def load(self, split: str, language: str) -> datasets.Dataset:
        data = read_json_lines(self.file(split, language, "jsonl"))
        return data.map(lambda ex: {"text_a": ex["sentence1"], "text_b": ex["sentence2"],
                                    "label": int(ex["label"])},
                        remove_columns=data.column_names)


@register
class ToyPos(ToyTask):
    info = TaskInfo(
        name="toy_pos", family="tagging", languages=TOY_LANGUAGES, main_metric="accuracy",
        source=SOURCE, description="UPOS tagging from CoNLL-U files (UD-POS-like)",
    )
    labels = UPOS
    folder = "toy_pos"

    def load(self, split: str, language: str) -> datasets.Dataset:
        import datasets

        rows = read_conllu(self.file(split, language, "conllu"))
        index = {t: i for i, t in enumerate(self.labels)}
        return datasets.Dataset.from_list(
            [{"tokens": r["tokens"], "tags": [index[t] for t in r["tags"]]} for r in rows])


@register
class ToyChunk(ToyTask):
    info = TaskInfo(
        name="toy_chunk", family="tagging", languages=("en",), main_metric="f1",
        source=SOURCE, description="BIO phrase chunking (a syntactic intermediate task), English only",
        target=False,
    )
    labels = CHUNKS
    folder = "toy_chunk"

    def load(self, split: str, language: str) -> datasets.Dataset:
        data = read_json_lines(self.file(split, language, "jsonl"))
        index = {t: i for i, t in enumerate(self.labels)}
        return data.map(lambda ex: {"tokens": ex["tokens"], "tags": [index[t] for t in ex["tags"]]},
                        remove_columns=data.column_names)


@register
class ToyTatoeba(ToyTask):
    info = TaskInfo(
        name="toy_tatoeba", family="retrieval", languages=tuple(l for l in TOY_LANGUAGES if l != "en"),
        main_metric="accuracy", source=SOURCE,
        description="parallel sentence retrieval against English (Tatoeba-like); no training data",
        trainable=False, intermediate=False,
    )
    folder = "toy_tatoeba"

    def load(self, split: str, language: str) -> datasets.Dataset:
        base = self.root() / self.folder / f"tatoeba.{language}-en"
        source = self.require_file(base.with_name(base.name + f".{language}"), split, language)
        target = self.require_file(base.with_name(base.name + ".en"), split, language)
        return read_parallel(source, target)
