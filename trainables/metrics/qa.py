"""Extractive-QA scores as the benchmarks' official scripts compute them.

* SQuAD v1.1 / v2.0 (``evaluate-v1.1.py`` / ``evaluate-v2.0.py``): lower-case, drop ASCII
  punctuation, drop English articles, collapse whitespace; EM and token F1, maximum over the
  gold answers. XQuAD and TyDiQA-GoldP are scored by v1.1 in XTREME (``third_party/
  evaluate_squad.py``). The two scripts differ (``rules``):

  - v1.1 (``f1_score``): F1 is 0 whenever no token is shared, so a prediction and a gold answer
    that both normalise to nothing score EM 1, F1 0; every question has a gold answer.
  - v2.0 (``get_raw_scores``, ``compute_f1``): gold answers that normalise to the empty string
    are dropped, and a question left without one is unanswerable (its only gold answer is "");
    when either side is empty, F1 is 1 if both are.
* MLQA (``mlqa_evaluation_v1.py``): every Unicode punctuation character (categories ``P*``),
  per-language article lists, and for Chinese a mixed segmentation where every CJK character is a
  token of its own.

Scores are fractions in [0, 1] (the official scripts print percentages), like every other
family's metrics.
"""
from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from typing import Callable, Iterable, Sequence

Normalizer = Callable[[str], list[str]]
#: the official scripts' scoring rules (see the module docstring)
SQUAD_V1 = "squad_v1.1"
SQUAD_V2 = "squad_v2.0"
RULES = (SQUAD_V1, SQUAD_V2)

_ASCII_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")

# MLQA: article patterns per language exactly as the official script uses them (its Arabic rule
# removes the definite article "ال" wherever it occurs, not only as a prefix).
_MLQA_ARTICLES: dict[str, re.Pattern | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile(r"\sال^|ال"),
    "hi": None,
    "zh": None,
}
_MIXED_SEGMENTATION = frozenset({"zh"})
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_UNICODE_PUNCT: frozenset[str] | None = None


def unicode_punctuation() -> frozenset[str]:
    """All characters of Unicode categories P* plus ASCII punctuation (built once, lazily)."""
    global _UNICODE_PUNCT
    if _UNICODE_PUNCT is None:
        _UNICODE_PUNCT = frozenset(
            chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")
        ) | _ASCII_PUNCT
    return _UNICODE_PUNCT


def squad_tokens(text: str) -> list[str]:
    """SQuAD normalisation, returned as the whitespace tokens F1 counts."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return _EN_ARTICLES.sub(" ", text).split()


def mixed_segmentation(text: str) -> list[str]:
    """Chinese: each CJK character (and punctuation mark) is a token; other runs split on spaces."""
    punct = unicode_punctuation()
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _CJK.match(ch) or ch in punct:
            tokens.extend(run.split())
            run = ""
            tokens.append(ch)
        else:
            run += ch
    tokens.extend(run.split())
    return tokens


def mlqa_tokens(text: str, language: str) -> list[str]:
    """MLQA normalisation for one of its seven languages, as tokens."""
    if language not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA metric: unknown language {language!r} "
                         f"(one of {', '.join(sorted(_MLQA_ARTICLES))})")
    punct = unicode_punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = _MLQA_ARTICLES[language]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = mixed_segmentation(text) if language in _MIXED_SEGMENTATION else text.split()
    return [t for t in tokens if t.strip()]


def mlqa_normalizer(language: str) -> Normalizer:
    mlqa_tokens("", language)  # fail early on an unknown language
    return lambda text: mlqa_tokens(text, language)


def exact_match(prediction: str, gold: str, normalize: Normalizer = squad_tokens) -> float:
    return float(normalize(prediction) == normalize(gold))


def token_f1(prediction: str, gold: str, normalize: Normalizer = squad_tokens,
             rules: str = SQUAD_V1) -> float:
    """Token-overlap F1. No shared token scores 0; under v2.0 an empty side scores 1 if both are
    empty (``compute_f1``), under v1.1 it scores 0 like any other miss (``f1_score``)."""
    pred, ref = normalize(prediction), normalize(gold)
    if rules == SQUAD_V2 and (not pred or not ref):
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score_one(prediction: str, golds: Sequence[str], normalize: Normalizer = squad_tokens,
              rules: str = SQUAD_V1) -> tuple[float, float]:
    """(EM, F1) of one prediction: the best over its gold answers, under ``rules``."""
    if rules not in RULES:
        raise ValueError(f"QA metric: unknown rules {rules!r} (one of {', '.join(RULES)})")
    golds = list(golds)
    if rules == SQUAD_V2:
        golds = [g for g in golds if normalize(g)] or [""]
    elif not golds:
        raise ValueError("QA metric: a question without gold answers needs the SQuAD v2.0 rules")
    return (max(exact_match(prediction, g, normalize) for g in golds),
            max(token_f1(prediction, g, normalize, rules) for g in golds))


def qa_scores(predictions: Iterable[str], golds: Iterable[Sequence[str]],
              normalize: Normalizer = squad_tokens, rules: str = SQUAD_V1) -> dict[str, float]:
    """Mean EM and F1 over questions, their mean ``em_f1``, and ``n``; all in [0, 1]."""
    pairs = [score_one(p, g, normalize, rules) for p, g in zip(predictions, golds, strict=True)]
    n = len(pairs)
    if not n:
        return {"exact_match": float("nan"), "f1": float("nan"), "em_f1": float("nan"), "n": 0.0}
    em = sum(p[0] for p in pairs) / n
    f1 = sum(p[1] for p in pairs) / n
    return {"exact_match": em, "f1": f1, "em_f1": (em + f1) / 2, "n": float(n)}
