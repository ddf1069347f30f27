"""The family interface and the feature cache shared by all families."""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task

_TOKENIZER_HASHES: dict[int, str] = {}
_FEATURE_CACHE: dict[str, Path | None] = {"dir": None}


def set_feature_cache(directory: str | Path | None) -> None:
    """Where tokenised features are kept between trials and runs (``<cache_dir>/features``).

    ``datasets`` caches maps of file-backed datasets by itself, but not of in-memory ones
    (CoNLL-U, Tatoeba and other readers build those); with a feature cache every split is
    tokenised once per study, whatever its source.
    """
    _FEATURE_CACHE["dir"] = Path(directory).expanduser() if directory else None


def tokenizer_fingerprint(tokenizer) -> str:
    """A content hash of the tokenizer, so cached features change when the vocabulary does."""
    key = id(tokenizer)
    if key not in _TOKENIZER_HASHES:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        content = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(),
                                                                            sort_keys=True)
        _TOKENIZER_HASHES[key] = hashlib.sha256(content.encode()).hexdigest()[:16]
    return _TOKENIZER_HASHES[key]


def cached_map(data: datasets.Dataset, fn: Callable, *, tokenizer, family: str,
               **settings: Any) -> datasets.Dataset:
    """``Dataset.map`` whose fingerprint covers data, tokenizer, family and settings.

    For datasets backed by files (loaded with ``datasets``) the result is written to the
    ``datasets`` cache, so a sweep tokenises each split once however many trials use it.
    """
    ident = json.dumps({"data": data._fingerprint, "tok": tokenizer_fingerprint(tokenizer),
                        "family": family, "v": 1, **settings}, sort_keys=True)
    fingerprint = hashlib.sha256(ident.encode()).hexdigest()[:32]
    cache_file = None
    if _FEATURE_CACHE["dir"] is not None:
        _FEATURE_CACHE["dir"].mkdir(parents=True, exist_ok=True)
        cache_file = str(_FEATURE_CACHE["dir"] / f"{family}-{fingerprint}.arrow")
    return data.map(fn, batched=True, remove_columns=data.column_names, new_fingerprint=fingerprint,
                    cache_file_name=cache_file, load_from_cache_file=True,
                    desc=f"tokenise ({family})")


def example_lengths(features) -> np.ndarray | None:
    """Token count of every example (from the Arrow column, without decoding rows).

    None when examples are not one sequence each (multiple choice stores several).
    """
    if "input_ids" not in getattr(features, "column_names", ()):
        return None
    column = features.data.column("input_ids")
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        return None
    if pa.types.is_list(column.type.value_type) or pa.types.is_large_list(column.type.value_type):
        return None
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if features._indices is not None:  # a select()/shuffle() view: map through its indices
        lengths = lengths[features._indices.column(0).to_numpy()]
    return lengths


class PadToLongest:
    """Dynamic right padding of tokenised rows into int64 tensors, as Hugging Face's
    ``DataCollatorWithPadding`` / ``DataCollatorForTokenClassification`` pad XLM-R inputs, in
    numpy (their per-row ``tokenizer.pad`` took most of a batch's collation time).

    List-valued keys are padded to the batch's longest row with ``pad_values[key]`` (default:
    the tokenizer's pad id for ``input_ids``, else 0); scalar keys become a 1-d tensor.
    """

    def __init__(self, tokenizer, pad_values: dict[str, int] | None = None) -> None:
        self.pad_values = {"input_ids": tokenizer.pad_token_id, **(pad_values or {})}

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        out = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            first = values[0]
            if not (isinstance(first, (list, tuple, np.ndarray)) or (isinstance(first, torch.Tensor) and first.dim())):
                out[key] = torch.tensor(values)
                continue
            padded = np.full((len(values), max(len(v) for v in values)), self.pad_values.get(key, 0), dtype=np.int64)
            for i, v in enumerate(values):
                padded[i, :len(v)] = v
            out[key] = torch.from_numpy(padded)
        return out


def longest_first(features) -> np.ndarray | None:
    """Row order for evaluation batches, longest first: batches of similar lengths pad little
    (and the largest comes first, so a batch too big for the GPU fails at once). None when
    examples are not one sequence each."""
    lengths = example_lengths(features)
    return None if lengths is None else np.argsort(-lengths, kind="stable")


def in_order(values: list, order: np.ndarray | None) -> list:
    """``values`` computed on rows in ``order``, put back in the rows' own order."""
    if order is None:
        return list(values)
    out: list = [None] * len(values)
    for position, row in enumerate(order):
        out[int(row)] = values[position]
    return out


class Family(ABC):
    """One kind of task: sentence(-pair) classification, token tagging, retrieval, ..."""

    name: str
    #: False for families evaluated without training (retrieval)
    trainable: bool = True

    @abstractmethod
    def featurize(self, task: Task, data: datasets.Dataset, tokenizer, max_length: int
                  ) -> datasets.Dataset:
        """Raw examples -> model inputs (and labels)."""

    def collator(self, tokenizer) -> Callable:
        raise NotImplementedError

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        raise NotImplementedError

    def forward(self, model, head: nn.Module, batch: dict):
        """Logits for a collated batch (a tensor, or a tuple of tensors for QA start/end).

        Families whose inputs are not one sequence per example (multiple choice) reshape here.
        Everything goes through ``model.encode`` so embedding perturbations (adversarial
        training, ``MultiTaskModel.perturb_embeddings``) reach every family.
        """
        return head(model.encode(batch))

    def loss(self, logits, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    @abstractmethod
    def evaluate(self, task: Task, model, data: datasets.Dataset, tokenizer, *,
                 batch_size: int, max_length: int) -> dict[str, float]:
        """Metrics of ``model`` on one split in one language (raw examples in, numbers out)."""
