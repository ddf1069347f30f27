"""Readers for upstream file formats (CoNLL-U, Tatoeba pairs) into HF ``datasets``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets


def read_conllu(path: Path, column: int = 3) -> list[dict]:
    """Sentences of a CoNLL-U file as ``{tokens, tags}`` (tag from ``column``, 3 = UPOS).

    Multiword-token ranges (``3-4``) and empty nodes (``5.1``) are skipped, as the UD
    guidelines require for word-level annotation.
    """
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise ValueError(f"{path}: not CoNLL-U (expected 10 columns): {line[:80]!r}")
            if "-" in cols[0] or "." in cols[0]:
                continue
            tokens.append(cols[1])
            tags.append(cols[column])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def read_parallel(source: Path, target: Path) -> datasets.Dataset:
    """Two line-aligned files (Tatoeba / BUCC style) as ``{source, target}`` pairs."""
    src = source.read_text(encoding="utf-8").splitlines()
    tgt = target.read_text(encoding="utf-8").splitlines()
    if len(src) != len(tgt):
        raise ValueError(f"{source} has {len(src)} lines but {target} has {len(tgt)}")
    import datasets

    return datasets.Dataset.from_dict({"source": src, "target": tgt})


def read_json_lines(path: Path) -> datasets.Dataset:
    """JSON lines through the ``datasets`` json builder (cached, fingerprinted by file)."""
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train")


def read_tsv(path: Path) -> list[dict[str, str]]:
    """A tab-separated file with a header row (GLUE, XNLI, PAWS-X) as one dict per row.

    Quotes are literal text in these files (``csv.QUOTE_NONE``), and rows with the wrong number
    of fields — a handful in GLUE's QQP and PAWS-X's machine-translated training sets — are
    skipped with a warning rather than shifting columns.
    """
    import csv
    import logging
    import sys

    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (expected a header row)")
        rows, skipped = [], 0
        for fields in reader:
            if len(fields) != len(header):
                skipped += bool(fields)
                continue
            rows.append(dict(zip(header, fields)))
    if skipped:
        logging.getLogger(__name__).warning("%s: skipped %d malformed rows", path, skipped)
    return rows


def read_panx(path: Path) -> list[dict]:
    """PAN-X / WikiANN as distributed for XTREME: ``<lang>:<token>\\t<tag>`` lines, blank lines
    between sentences; the ``<lang>:`` prefix is removed."""
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.rsplit(None, 1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: not PAN-X (expected 'lang:token<TAB>tag'): {line[:80]!r}")
            token, tag = parts
            prefix, colon, rest = token.partition(":")
            tokens.append(rest if colon and prefix and rest else token)
            tags.append(tag.strip())
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def read_ccg(path: Path) -> list[dict]:
    """CCG supertags, one sentence a line, in either common preprocessed form:

    * jiant's ``ccg.{train,dev,test}``: ``words separated by spaces<TAB>tags separated by spaces``;
    * C&C ``.stagged`` / AUTO-derived tokens: ``word|POS|SUPERTAG`` separated by spaces.
    """
    sentences: list[dict] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "\t" in line:
                text, _, tag_text = line.partition("\t")
                tokens, tags = text.split(), tag_text.split()
            else:
                triples = [item.rsplit("|", 2) for item in line.split()]
                if any(len(t) != 3 for t in triples):
                    raise ValueError(f"{path}:{number}: not CCG (expected 'words<TAB>tags' or "
                                     f"'word|POS|TAG' tokens): {line[:80]!r}")
                tokens, tags = [t[0] for t in triples], [t[2] for t in triples]
            if len(tokens) != len(tags):
                raise ValueError(f"{path}:{number}: {len(tokens)} words but {len(tags)} tags")
            sentences.append({"tokens": tokens, "tags": tags})
    return sentences


# --- family schemas: raw rows in, the family's columns out (``Task.load`` documents them) ---

def _pair_features():
    import datasets

    return datasets.Features({"text_a": datasets.Value("string"), "text_b": datasets.Value("string"),
                              "label": datasets.Value("int64")})


def _tag_features():
    import datasets

    return datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                              "tags": datasets.List(datasets.Value("int64"))})


def pair_dataset(rows: list[tuple[str, str, int]]) -> datasets.Dataset:
    """``(text_a, text_b, label)`` triples as the classification schema (same features always,
    so splits from different sources concatenate)."""
    import datasets

    return datasets.Dataset.from_dict(
        {"text_a": [r[0] for r in rows], "text_b": [r[1] for r in rows], "label": [r[2] for r in rows]},
        features=_pair_features())


def label_converter(data: datasets.Dataset, column: str, labels: tuple[str, ...],
                    aliases: dict[str, str] | None = None):
    """Raw label value -> our label id; hub ``ClassLabel`` columns are mapped by *name*, so a
    hub dataset that orders its classes differently still gets the right ids. Unknown or
    missing labels (SNLI's -1) give -1, which callers drop; plain integers are ids already."""
    index = {name: i for i, name in enumerate(labels)}
    for alias, name in (aliases or {}).items():
        index[alias] = index[name]
    feature = data.features[column]
    names = getattr(feature, "names", None)
    if names is not None:
        by_id = [index.get(n, -1) for n in names]
        return lambda value: by_id[value] if 0 <= value < len(by_id) else -1

    def convert(value) -> int:
        if isinstance(value, str):
            return index.get(value.strip(), -1)
        value = int(value)
        return value if 0 <= value < len(labels) else -1

    return convert


def hub_pairs(data: datasets.Dataset, text_a: str, text_b: str, label: str,
              labels: tuple[str, ...], aliases: dict[str, str] | None = None) -> datasets.Dataset:
    """A hub sentence-pair dataset in the classification schema, unlabelled rows dropped."""
    convert = label_converter(data, label, labels, aliases)
    out = data.map(lambda b: {"text_a": b[text_a], "text_b": b[text_b],
                              "label": [convert(v) for v in b[label]]},
                   batched=True, remove_columns=data.column_names, features=_pair_features())
    return out.filter(lambda b: [v >= 0 for v in b["label"]], batched=True)


def hub_tags(data: datasets.Dataset, tokens: str, tags: str, labels: tuple[str, ...]) -> datasets.Dataset:
    """A hub tagging dataset (``Sequence(ClassLabel)`` tags) in the tagging schema, by tag name."""
    names = data.features[tags].feature.names
    index = {name: i for i, name in enumerate(labels)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"hub tags {unknown} are not among the task's tags {list(labels)}")
    by_id = [index[n] for n in names]
    return data.map(lambda b: {"tokens": b[tokens], "tags": [[by_id[t] for t in row] for row in b[tags]]},
                    batched=True, remove_columns=data.column_names, features=_tag_features())


def tagged_dataset(sentences: list[dict], labels: tuple[str, ...], unknown: str | None = None,
                   source: Path | str = "") -> datasets.Dataset:
    """``{tokens, tags: list[str]}`` sentences as the tagging schema; a tag outside ``labels``
    becomes ``unknown`` if given, else is an error naming the tag (and ``source``, the file)."""
    import datasets

    index = {name: i for i, name in enumerate(labels)}
    fallback = index[unknown] if unknown is not None else None
    ids = []
    for number, sentence in enumerate(sentences, 1):
        row = []
        for tag in sentence["tags"]:
            value = index.get(tag, fallback)
            if value is None:
                raise ValueError(f"{source}: sentence {number}: unknown tag {tag!r}")
            row.append(value)
        ids.append(row)
    return datasets.Dataset.from_dict({"tokens": [s["tokens"] for s in sentences], "tags": ids},
                                      features=_tag_features())


def first_existing(*candidates: Path) -> Path:
    """The first of several conventional locations that exists (else the first, for the error)."""
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]
