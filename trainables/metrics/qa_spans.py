"""Answer-span decoding over a question's windows, as XTREME's ``run_squad.py`` does it.

XTREME's ``third_party/run_squad.py`` builds features with ``third_party/processors/squad.py``
and decodes them with ``transformers.data.metrics.squad_metrics.compute_predictions_logits``.
The rules reproduced here, from those two files:

* **windows**: window k holds the context sub-words from ``k * doc_stride`` on (``doc_stride`` is
  the step between window starts, not their overlap), as many as fit after the question;
* **max context** (``_new_check_is_max_context``): a context token belongs to the window where
  ``min(tokens left of it, tokens right of it) + 0.01 * window length`` is largest (ties: the
  earlier window); a span may only *start* at a token of its own max-context window;
* **n-best** (``_get_best_indexes``): the ``n_best`` highest start and end logits of a window, a
  stable descending sort, so equal logits rank the earlier token first; spans are start x end
  pairs in that order, windows in order, and the first of equally scored spans wins (the stable
  sort of ``prelim_predictions``); a span's score is start + end logit summed as Python floats;
* **null answer** (SQuAD v2): the null score is the lowest ``start[0] + end[0]`` over windows; the
  answer is "" when null score - best span score > ``null_threshold``;
* **no valid span**: the official decoder's stand-in prediction is the text ``"empty"`` (score 0).

Not reproduced: the official features are padded to ``max_seq_length`` and padding positions
take part in the n-best (they are then discarded as invalid, but can push valid tokens out of
the top ``n_best``); here the n-best is over the window's real tokens. The answer text is the
context's characters from the start token to the end token, where the official projects the
sub-word text back onto whitespace tokens (``get_final_text``); the two usually differ only in
whitespace, which EM/F1 normalise away, but where that projection fails the official answer
is the whole words the span touches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

N_BEST = 20
MAX_ANSWER_TOKENS = 30
NULL_THRESHOLD = 0.0
#: compute_predictions_logits' nonce prediction when no span is valid
NO_VALID_SPAN = "empty"


@dataclass(frozen=True)
class Window:
    """Scores of one window of a question: start/end logits, per-token context offsets and, per
    token, whether this window is the token's max-context window (None: every token is)."""

    start_logits: np.ndarray
    end_logits: np.ndarray
    offsets: Sequence[Sequence[int]]  # (start, end) character span per token; (-1, -1) outside
    max_context: Sequence[bool] | None = None

    def may_start(self, token: int) -> bool:
        return self.offsets[token][0] >= 0 and (self.max_context is None or bool(self.max_context[token]))


def max_context(spans: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """For windows covering document tokens ``[start, start + length)``, one boolean array per
    window: is the window the max-context window of each of its tokens?"""
    if not spans:
        return []
    end = max(s + n for s, n in spans)
    best_score = np.full(end, -np.inf)
    best_window = np.full(end, -1)
    for w, (start, length) in enumerate(spans):
        pos = np.arange(start, start + length)
        score = np.minimum(pos - start, start + length - 1 - pos) + 0.01 * length
        better = score > best_score[pos]          # strict: ties keep the earlier window
        best_score[pos[better]] = score[better]
        best_window[pos[better]] = w
    return [best_window[start:start + length] == w for w, (start, length) in enumerate(spans)]


def top_indexes(logits: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest logits; equal logits: the earlier index first."""
    return np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")[:n]


def best_answer(windows: Sequence[Window], context: str, *, n_best: int = N_BEST,
                max_answer_tokens: int = MAX_ANSWER_TOKENS, allow_null: bool = False,
                null_threshold: float = NULL_THRESHOLD) -> str:
    """The answer text of one question (see the module docstring for the rules)."""
    best_score, best_text = None, None
    null_score = None
    for w in windows:
        start = np.asarray(w.start_logits, dtype=np.float64)
        end = np.asarray(w.end_logits, dtype=np.float64)
        if allow_null and (null_score is None or start[0] + end[0] < null_score):
            null_score = float(start[0] + end[0])
        ends = top_indexes(end, n_best)
        for s in top_indexes(start, n_best):
            if not w.may_start(s):
                continue
            for e in ends:
                if w.offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(start[s] + end[e])
                if best_score is None or score > best_score:
                    best_score, best_text = score, context[w.offsets[s][0]: w.offsets[e][1]]
    if best_text is None:
        best_score, best_text = 0.0, NO_VALID_SPAN
    if allow_null and null_score is not None and null_score - best_score > null_threshold:
        return ""
    return best_text
