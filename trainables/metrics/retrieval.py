"""Retrieval metrics: top-1 accuracy (Tatoeba), mAP@k (LAReQA, Mewsli-X), margin mining (BUCC).

Embeddings are L2-normalised float32 arrays, so inner products are cosines.

Ties are broken deterministically toward the **lowest candidate index**: a ranking is a stable
sort by descending score, and top-1 is ``numpy.argmax`` (first maximum). For Tatoeba this means a
query whose aligned line ties with an earlier line counts as a miss (the conservative reading);
for mAP a relevant candidate tied with an earlier irrelevant one ranks after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import faiss
import numpy as np

BLOCK = 1024  # query rows scored at once: bounds memory at BLOCK x len(keys) floats


def ranked(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's ``k`` best keys by inner product, ties to the lowest index."""
    k = min(k, len(keys))
    out = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), BLOCK):
        scores = queries[start:start + BLOCK] @ keys.T
        out[start:start + BLOCK] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
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
    """AP@k = sum over ranks r <= k of P@r * rel(r), divided by min(k, #relevant).

    A query without relevant candidates scores 0 (callers normally drop such queries).
    """
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
                                relevant: Sequence[Sequence[int]], k: int = 20) -> float:
    """mAP@k over queries (embeddings) against a candidate pool; ``relevant[i]`` = ids of query i."""
    if len(queries) == 0:
        return float("nan")
    order = ranked(queries, candidates, k)
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


def mine(src: np.ndarray, tgt: np.ndarray, k: int = 4, mode: str = "max") -> list[Candidate]:
    """Candidate pairs with their ratio-margin scores, best first.

    Each source sentence proposes its best target by margin (forward) and each target its best
    source (backward). ``mode="max"`` (XTREME's ``retrieval max``): the union, taken greedily by
    descending score so that every sentence appears in at most one pair; ``"intersect"``: only
    pairs proposed in both directions. Only each sentence's ``k`` nearest neighbours are
    considered as partners, as in XTREME.
    """
    if mode not in ("max", "intersect"):
        raise ValueError(f"unknown mining mode {mode!r}: use 'max' or 'intersect'")
    if len(src) == 0 or len(tgt) == 0:
        return []
    src = np.ascontiguousarray(src, dtype=np.float32)
    tgt = np.ascontiguousarray(tgt, dtype=np.float32)
    src_mean, tgt_mean = knn_mean(src, tgt, k), knn_mean(tgt, src, k)

    def best(x, y, x_mean, y_mean):
        kk = min(k, len(y))
        index = faiss.IndexFlatIP(y.shape[1])
        index.add(y)
        sims, ids = index.search(x, kk)
        margins = ratio_margin(sims, x_mean[:, None], y_mean[ids])
        # ties: lowest candidate index (faiss order is not guaranteed for equal scores)
        pick = np.lexsort((ids, -margins), axis=1)[:, 0]
        rows = np.arange(len(x))
        return ids[rows, pick], margins[rows, pick]

    fwd_ids, fwd_scores = best(src, tgt, src_mean, tgt_mean)
    bwd_ids, bwd_scores = best(tgt, src, tgt_mean, src_mean)
    forward = {(i, int(j)): float(s) for i, (j, s) in enumerate(zip(fwd_ids, fwd_scores))}
    backward = {(int(i), j): float(s) for j, (i, s) in enumerate(zip(bwd_ids, bwd_scores))}
    if mode == "intersect":
        pairs = {p: s for p, s in forward.items() if p in backward}
    else:
        pairs = {**backward, **forward}
    ordered = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    if mode == "intersect":
        return [Candidate(i, j, s) for (i, j), s in ordered]
    used_src, used_tgt, out = set(), set(), []
    for (i, j), s in ordered:
        if i in used_src or j in used_tgt:
            continue
        used_src.add(i)
        used_tgt.add(j)
        out.append(Candidate(i, j, s))
    return out


def prf(predicted: set[tuple], gold: set[tuple]) -> dict[str, float]:
    """Precision, recall and F1 of predicted pairs against gold pairs."""
    correct = len(predicted & gold)
    p = correct / len(predicted) if predicted else 0.0
    r = correct / len(gold) if gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def best_threshold(candidates: list[Candidate], gold: set[tuple]) -> float:
    """The score threshold maximising F1 of ``{c : c.score >= threshold}`` against ``gold``.

    Cutting after the i-th best candidate; the threshold is the midpoint between its score and
    the next one's (the i-th score itself for the last), so it transfers to other splits.
    """
    if not candidates:
        return float("inf")
    ordered = sorted(candidates, key=lambda c: -c.score)
    best_f1, best_i, correct = -1.0, 0, 0
    for i, cand in enumerate(ordered):
        correct += (cand.source, cand.target) in gold
        p, r = correct / (i + 1), correct / len(gold) if gold else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best_f1:
            best_f1, best_i = f1, i
    if best_i + 1 < len(ordered):
        return (ordered[best_i].score + ordered[best_i + 1].score) / 2
    return ordered[best_i].score


def select(candidates: list[Candidate], threshold: float) -> set[tuple]:
    return {(c.source, c.target) for c in candidates if c.score >= threshold}
