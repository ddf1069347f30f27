"""Retrieval metrics: top-1 accuracy (Tatoeba), mAP@k (LAReQA, Mewsli-X), margin mining (BUCC).

Embeddings are L2-normalised float32 arrays, so inner products are cosines.

Ties follow each official scorer. Tatoeba top-1 is ``numpy.argmax`` (first maximum, as faiss's
flat search keeps the lowest index). mAP@k rankings come from a *ranker*: ``"lareqa"`` is
``utils_lareqa.mean_avg_prec_at_k`` (``scores.argsort()[::-1]``: numpy's default sort, reversed,
so equal scores come out highest index first), ``"mewslix"`` is the faiss ``IndexFlatIP`` search of
``evaluate_retrieval.py`` (task ``mewslix``), ``"stable"`` (other tasks) a stable sort, lowest
index first. BUCC follows ``utils_retrieve.py`` (see ``mine`` and ``best_threshold``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import faiss
import numpy as np

BLOCK = 1024  # query rows scored at once: bounds memory at BLOCK x len(keys) floats


def _rank_stable(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _rank_lareqa(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(scores, axis=1)[:, ::-1][:, :k]


RANKERS = {"stable": _rank_stable, "lareqa": _rank_lareqa}


def ranked(queries: np.ndarray, keys: np.ndarray, k: int, ranker: str = "stable") -> np.ndarray:
    """Indices of each query's ``k`` best keys by inner product, ties as ``ranker`` breaks them."""
    k = min(k, len(keys))
    if ranker == "mewslix":
        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(np.ascontiguousarray(keys, dtype=np.float32))
        return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]
    if ranker not in RANKERS:
        raise ValueError(f"unknown ranker {ranker!r}: one of {', '.join([*RANKERS, 'mewslix'])}")
    out = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), BLOCK):
        out[start:start + BLOCK] = RANKERS[ranker](queries[start:start + BLOCK] @ keys.T, k)
    return out


def top1_accuracy(queries: np.ndarray, keys: np.ndarray) -> float:
    """Share of queries whose nearest key is the aligned one (row i <-> row i)."""
    if len(queries) == 0:
        return float("nan")
    hits = 0
    for start in range(0, len(queries), BLOCK):
        scores = queries[start:start + BLOCK] @ keys.T
        best = scores.argmax(axis=1)  # first maximum: lowest index among ties
        hits += int((best == np.arange(start, start + len(best))).sum())
    return hits / len(queries)


def average_precision_at_k(ranking: Sequence[int], relevant: Sequence[int], k: int = 20) -> float:
    """AP@k = sum over ranks r <= k of P@r * rel(r), divided by min(k, #relevant)
    (``utils_lareqa.average_precision_at_k``; with one relevant candidate it is the reciprocal
    rank of ``utils_mewslix.mean_reciprocal_rank``). No relevant candidate: 0, as a Mewsli-X
    query whose gold entity is not among the candidates."""
    wanted = set(int(r) for r in relevant)
    if not wanted:
        return 0.0
    hits, total = 0, 0.0
    for rank, candidate in enumerate(list(ranking)[:k], start=1):
        if int(candidate) in wanted:
            hits += 1
            total += hits / rank
    return total / min(k, len(wanted))


def mean_average_precision_at_k(queries: np.ndarray, candidates: np.ndarray,
                                relevant: Sequence[Sequence[int]], k: int = 20,
                                ranker: str = "stable") -> float:
    """mAP@k over queries (embeddings) against a candidate pool; ``relevant[i]`` = ids of query i."""
    if len(queries) == 0:
        return float("nan")
    order = ranked(queries, candidates, k, ranker)
    return float(np.mean([average_precision_at_k(order[i], relevant[i], k) for i in range(len(queries))]))


# --- BUCC: margin-based bitext mining (Artetxe & Schwenk, 2019), as XTREME's mine_bitext ---

def knn_mean(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine of each row of ``x`` to its ``k`` nearest rows of ``y`` (faiss, exact)."""
    k = min(k, len(y))
    index = faiss.IndexFlatIP(y.shape[1])
    index.add(np.ascontiguousarray(y, dtype=np.float32))
    sims, _ = index.search(np.ascontiguousarray(x, dtype=np.float32), k)
    return sims.mean(axis=1)


def ratio_margin(cos: np.ndarray | float, mean_x: np.ndarray | float, mean_y: np.ndarray | float):
    """score(x, y) = cos(x, y) / (mean_x / 2 + mean_y / 2), the k-NN means of x and of y.

    A zero denominator (x and y orthogonal to all their neighbours) scores 0.
    """
    cos, den = np.asarray(cos, dtype=np.float64), (np.asarray(mean_x) + np.asarray(mean_y)) / 2
    den = np.broadcast_to(den, np.broadcast(cos, den).shape)
    return np.divide(cos, den, out=np.zeros(den.shape), where=den != 0)


@dataclass(frozen=True)
class Candidate:
    source: int
    target: int
    score: float


def _best(x: np.ndarray, y: np.ndarray, x_mean: np.ndarray, y_mean: np.ndarray, k: int):
    """Each row of ``x``'s best partner in ``y`` by margin among its ``k`` nearest neighbours,
    and that margin. Equal margins: the earlier neighbour in faiss's order (``argmax``), as
    ``score_candidates`` + ``argmax`` in ``mine_bitext``."""
    index = faiss.IndexFlatIP(y.shape[1])
    index.add(y)
    sims, ids = index.search(x, min(k, len(y)))
    margins = ratio_margin(sims, x_mean[:, None], y_mean[ids])
    pick = margins.argmax(axis=1)
    rows = np.arange(len(x))
    return ids[rows, pick], margins[rows, pick]


def mine(src: np.ndarray, tgt: np.ndarray, k: int = 4, mode: str = "max") -> list[Candidate]:
    """Candidate pairs with their ratio-margin scores, in the order ``mine_bitext`` writes them.

    XTREME's ``third_party/utils_retrieve.py`` ``mine_bitext`` (``mode="mine"``): each source
    sentence proposes its best target by margin (forward) and each target its best source
    (backward), among its ``k`` nearest neighbours. ``mode="max"`` (``retrieval max``, XTREME's
    setting): forward then backward proposals ranked by ``np.argsort(-scores)`` (numpy's default
    sort, so ties fall as they do there), taken greedily so that each sentence is in at most one
    pair, and kept when the score is > 0. ``"intersect"``: the forward proposals whose target
    proposes the same source back, in source order. Callers pass *unique* sentences (see
    ``unique_sentences``).
    """
    if mode not in ("max", "intersect"):
        raise ValueError(f"unknown mining mode {mode!r}: use 'max' or 'intersect'")
    if len(src) == 0 or len(tgt) == 0:
        return []
    src = np.ascontiguousarray(src, dtype=np.float32)
    tgt = np.ascontiguousarray(tgt, dtype=np.float32)
    src_mean, tgt_mean = knn_mean(src, tgt, k), knn_mean(tgt, src, k)
    fwd_ids, fwd_scores = _best(src, tgt, src_mean, tgt_mean, k)
    bwd_ids, bwd_scores = _best(tgt, src, tgt_mean, src_mean, k)
    if mode == "intersect":
        return [Candidate(i, int(j), float(fwd_scores[i])) for i, j in enumerate(fwd_ids)
                if bwd_ids[j] == i]
    sources = np.concatenate([np.arange(len(src)), bwd_ids])
    targets = np.concatenate([fwd_ids, np.arange(len(tgt))])
    scores = np.concatenate([fwd_scores, bwd_scores])
    used_src, used_tgt, out = set(), set(), []
    for n in np.argsort(-scores):
        i, j = int(sources[n]), int(targets[n])
        if i in used_src or j in used_tgt:
            continue
        used_src.add(i)
        used_tgt.add(j)
        if scores[n] > 0:
            out.append(Candidate(i, j, float(scores[n])))
    return out


def unique_sentences(texts: Sequence[str]) -> list[str]:
    """Each distinct sentence once, first occurrence first (``text_load_unify``)."""
    return list(dict.fromkeys(texts))


def sentence_ids(texts: Sequence[str], ids: Sequence[str]) -> dict[str, str]:
    """Sentence -> id, for sentences that occur once: ``read_sent2id`` drops every sentence
    that occurs more than once, so pairs with it are never predicted (its gold pairs stay)."""
    counts = Counter(texts)
    return {t: i for t, i in zip(texts, ids) if counts[t] == 1}


def mined_pairs(candidates: list[Candidate], src_texts: Sequence[str], tgt_texts: Sequence[str],
                src_ids: dict[str, str], tgt_ids: dict[str, str]) -> list[Candidate]:
    """Candidates over unique sentences -> candidates over sentence ids, in order, keeping the
    highest score of a repeated pair (``read_candidate2score``)."""
    scores: dict[tuple[str, str], float] = {}
    for c in candidates:
        src, tgt = src_texts[c.source], tgt_texts[c.target]
        if src in src_ids and tgt in tgt_ids:
            key = (src_ids[src], tgt_ids[tgt])
            scores[key] = max(c.score, scores.get(key, c.score))
    return [Candidate(i, j, s) for (i, j), s in scores.items()]


def prf(predicted: set[tuple], gold: set[tuple]) -> dict[str, float]:
    """Precision, recall and F1 of predicted pairs against gold pairs (all 0 without a hit, as
    ``bucc_f1`` in XTREME's ``evaluate.py``)."""
    correct = len(predicted & gold)
    if not correct:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    p, r = correct / len(predicted), correct / len(gold)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r)}


def best_threshold(candidates: list[Candidate], gold: set[tuple]) -> float:
    """The score threshold of ``bucc_optimize``: candidates sorted by descending score (a stable
    sort, so ties keep the mining order); after each, if it gives a hit and beats the best F1 so
    far, the threshold is the midpoint between its score and the next one's (the official code
    reads past the end there; the last candidate's own score is used). No correct candidate: 0.
    """
    ordered = sorted(candidates, key=lambda c: -c.score)
    threshold, best_f1, correct = 0.0, 0.0, 0
    for i, cand in enumerate(ordered):
        correct += (cand.source, cand.target) in gold
        if not correct:
            continue
        p, r = correct / (i + 1), correct / len(gold)
        f1 = 2 * p * r / (p + r)
        if f1 > best_f1:
            best_f1 = f1
            threshold = ((cand.score + ordered[i + 1].score) / 2 if i + 1 < len(ordered)
                         else cand.score)
    return threshold


def select(candidates: list[Candidate], threshold: float) -> set[tuple]:
    """Pairs scoring at least ``threshold`` (``bucc_extract``)."""
    return {(c.source, c.target) for c in candidates if c.score >= threshold}
