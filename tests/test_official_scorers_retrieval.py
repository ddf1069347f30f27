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

from trainables.families.retrieval import DualEncoder, Retrieval, pool_dataset
from trainables.metrics import retrieval as rm
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


# --- BUCC: utils_retrieve.py mine_bitext / read_sent2id / bucc_optimize / bucc_extract ---

def _rows(part: str, xx: list[tuple[str, str]], en: list[tuple[str, str]], gold: dict[str, str]):
    """BUCC rows from (id, text) lists of each side."""
    rows = [{"id": i, "text": t, "side": "xx", "part": part, "gold": gold.get(i, "")} for i, t in xx]
    return rows + [{"id": i, "text": t, "side": "en", "part": part, "gold": ""} for i, t in en]


def _basis(n: int = 16) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))[0].astype("float32")


def test_no_correct_dev_candidate_gives_threshold_zero():
    # bucc_optimize starts at threshold 0 and moves only after a correct candidate
    cands = [rm.Candidate("a", "x", 3.0), rm.Candidate("b", "y", 2.0)]
    assert rm.best_threshold(cands, {("a", "y"), ("b", "x")}) == 0.0
    assert rm.best_threshold([], {("a", "x")}) == 0.0
    # one hit as the second candidate: F1 = 2 * (1/2) * 1 / 1.5; the last one's own score
    assert rm.best_threshold(cands, {("b", "y")}) == 2.0


def test_bucc_dev_without_a_hit_keeps_every_test_candidate():
    from trainables.tasks.bucc import bucc_dataset

    b = _basis()
    vec = {"x0": b[0], "x1": b[1], "e0": b[0], "e1": b[1],                    # dev
           "tx0": b[2], "tx1": b[3] + 0.5 * b[4], "te0": b[2], "te1": b[4]}   # test
    rows = (_rows("dev", [("d0", "x0"), ("d1", "x1")], [("f0", "e0"), ("f1", "e1")],
                  {"d0": "f1", "d1": "f0"})                  # gold: the crossed pairs, never mined
            + _rows("test", [("t0", "tx0"), ("t1", "tx1")], [("u0", "te0"), ("u1", "te1")],
                    {"t0": "u0", "t1": "u1"}))
    result = Retrieval.evaluate_mining(bucc_dataset(rows), lambda texts: unit(*[vec[t] for t in texts]))
    # threshold 0: both test pairs are kept, the weak one too
    assert result["threshold"] == 0.0
    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 1.0, 1.0)


def test_bucc_repeated_sentences_are_mined_once_and_have_no_id():
    from trainables.tasks.bucc import bucc_dataset

    b = _basis()
    vec = {"a": b[0], "c": b[1], "ea": b[0], "ec": b[1], "dup": b[2], "edup": b[2], "z": b[3],
           "ez": b[3]}
    dev = _rows("dev", [("d0", "a"), ("d1", "c")], [("f0", "ea"), ("f1", "ec")],
                {"d0": "f0", "d1": "f1"})
    # test: "dup" occurs twice on the xx side (t1, t2): read_sent2id gives it no id, so its
    # pair is never predicted although (t1, u1) is gold -> P 1, R 1/2
    test = _rows("test", [("t0", "z"), ("t1", "dup"), ("t2", "dup")], [("u0", "ez"), ("u1", "edup")],
                 {"t0": "u0", "t1": "u1"})
    seen: list[list[str]] = []

    def embed(texts):
        seen.append(list(texts))
        return unit(*[vec[t] for t in texts])

    result = Retrieval.evaluate_mining(bucc_dataset(dev + test), embed)
    assert ["z", "dup"] in seen                               # text_load_unify: unique sentences
    assert (result["precision"], result["recall"]) == (1.0, 0.5)
    assert result["f1"] == pytest.approx(2 / 3)


def test_mining_keeps_positive_scores_only_and_ties_by_numpy_argsort():
    b = _basis()
    # x0 and x1 are the same vector: both propose e0 with the same margin; mine_bitext ranks
    # the forward/backward list with np.argsort(-scores) (on 4 scores an insertion sort, so
    # the earlier entry: x0's proposal) and takes x0-e0. e1 is orthogonal to everything: its
    # proposal scores 0 and is not written (scores[i] > threshold = 0)
    src = unit(b[0], b[0])
    tgt = unit(b[0], b[1])
    mined = rm.mine(src, tgt, k=2)
    assert [(c.source, c.target) for c in mined] == [(0, 0)]


# --- mAP@20: utils_lareqa.mean_avg_prec_at_k, utils_mewslix.evaluate ---

def test_lareqa_ties_rank_the_later_candidate_first():
    # candidates 0 and 1 are identical: scores.argsort() on 3 values is [2, 0, 1] (numpy's
    # insertion sort for small arrays keeps equal values in order), reversed [1, 0, 2], so the
    # relevant candidate 0 is at rank 2: AP = 1/2 (the stable ranker would give 1)
    candidates = unit([1, 0], [1, 0], [0, 1])
    query = unit([1, 0])
    assert rm.ranked(query, candidates, 20, "lareqa").tolist() == [[1, 0, 2]]
    assert rm.mean_average_precision_at_k(query, candidates, [[0]], 20, "lareqa") == 0.5
    assert rm.mean_average_precision_at_k(query, candidates, [[0]], 20, "stable") == 1.0


class _FixedDualEncoder(DualEncoder):
    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, model, texts, tokenizer, **_):
        return np.stack([self.table[t] for t in texts]).astype("float32")


def test_mewslix_query_whose_gold_is_not_a_candidate_scores_zero():
    # utils_mewslix.evaluate iterates over the gold examples: a gold entity absent from the
    # candidates never appears in the top 20, so its reciprocal rank is 0, and it counts
    table = {"q-found": unit([1, 0])[0], "q-lost": unit([0, 1])[0],
             "entity A": unit([1, 0.1])[0], "entity B": unit([0.1, 1])[0]}
    pool = pool_dataset(["q-found", "q-lost"], ["entity A", "entity B"], [[0], []])
    task = build_task("mewslix")
    assert task.ranking == "mewslix"
    result = _FixedDualEncoder(table).evaluate(task, None, pool, None, batch_size=4, max_length=8)
    assert result == {"map_at_20": 0.5, "n": 2.0}
