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
