"""Retrieval scorers against the official XTREME / XTREME-R behaviour (issue 13, items 1, 4, 5).

Expected values are worked out by hand from the official code, cited per test:
google-research/xtreme ``third_party/evaluate_retrieval.py`` and ``third_party/utils_retrieve.py``
(Tatoeba, BUCC), ``third_party/utils_mewslix.py`` (Mewsli-X) and LAReQA's mAP in
``third_party/evaluate_retrieval.py`` (task ``lareqa``).
"""
from __future__ import annotations

import datasets
import numpy as np
import pytest

from trainables.families.retrieval import Retrieval
from trainables.tasks import build_task


def unit(*rows) -> np.ndarray:
    a = np.asarray(rows, dtype="float32")
    return a / np.linalg.norm(a, axis=1, keepdims=True)


class _FixedEmbeddings(Retrieval):
    """The retrieval family with a lookup table instead of a model (the scorer under test is
    everything after the embeddings)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, model, sentences, tokenizer, **_):
        return np.stack([self.table[s] for s in sentences]).astype("float32")


def test_tatoeba_accuracy_is_english_queries_against_the_xx_index():
    # similarity_search(x=xx, y=en) in utils_retrieve.py: idx.add(x); idx.search(y, 1), so each
    # English line looks for its xx line. Here en0 -> xx0 (hit), en1 -> xx0 (miss): 0.5; the
    # other direction finds both (xx0 -> en0, xx1 -> en1): 1.0.
    table = {"xx0": unit([1, 0])[0], "xx1": unit([0, 1])[0],
             "en0": unit([1, 0.1])[0], "en1": unit([1, 0.2])[0]}
    data = datasets.Dataset.from_dict({"source": ["xx0", "xx1"], "target": ["en0", "en1"]})
    task = build_task("tatoeba")
    result = _FixedEmbeddings(table).evaluate(task, None, data, None, batch_size=2, max_length=8)
    assert result == {"accuracy": 0.5, "accuracy_xx_to_en": 1.0, "n": 2.0}
