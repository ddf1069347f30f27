"""QA decoding and scoring against the official scripts (issue 13, item 2).

Expected values are worked out by hand from the official code:
google-research/xtreme ``third_party/processors/squad.py`` (windows, ``_new_check_is_max_context``),
``transformers.data.metrics.squad_metrics.compute_predictions_logits`` (n-best, ties, "empty",
null answer; called by XTREME's ``third_party/run_squad.py``), XTREME's
``third_party/evaluate_squad.py`` (SQuAD v1.1 ``f1_score``) and SQuAD's ``evaluate-v2.0.py``
(``get_raw_scores``, ``compute_f1``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainables.families.qa import encode_windows, question_windows
from trainables.metrics.qa import SQUAD_V1, SQUAD_V2, score_one
from trainables.metrics.qa_spans import NO_VALID_SPAN, Window, best_answer, max_context, top_indexes

XQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad"

# <s> q q </s> </s> then context tokens over "hello big world again" then </s>
CONTEXT = "hello big world again"
OFFSETS = np.array([(-1, -1)] * 5 + [(0, 5), (6, 9), (10, 15), (16, 21)] + [(-1, -1)])


def _window(start: dict[int, float], end: dict[int, float], offsets=OFFSETS, owned=None) -> Window:
    s, e = np.zeros(len(offsets), dtype=np.float32), np.zeros(len(offsets), dtype=np.float32)
    for i, v in start.items():
        s[i] = v
    for i, v in end.items():
        e[i] = v
    return Window(s, e, offsets, owned)


# --- windows and max context ---

def test_max_context_by_hand():
    # windows over document tokens [0, 10) and [5, 15): token 7 scores min(7, 2) + 0.1 = 2.1 in
    # the first and min(2, 7) + 0.1 = 2.1 in the second: a tie, the earlier window keeps it;
    # token 8 scores 1.1 vs 3.1: the second window's
    first, second = max_context([(0, 10), (5, 10)])
    assert first.tolist() == [True] * 8 + [False] * 2            # tokens 0..7
    assert second.tolist() == [False] * 3 + [True] * 7           # tokens 8..14
    # the 0.01 * length bonus: token 7 of [(0, 10), (5, 9)] scores 2.1 vs 2.09 -> first
    a, b = max_context([(0, 10), (5, 9)])
    assert a[7] and not b[2]


def test_two_windows_decided_by_max_context():
    # one question, two windows over a 6-token context "a b c d e f"; window 0 holds tokens
    # 0..3, window 1 tokens 2..5 (doc_stride 2). Token 2 ("c") scores min(2, 1) + 0.04 = 1.04
    # in window 0 and min(0, 3) + 0.04 = 0.04 in window 1: window 0 owns it. Window 1's best
    # span starts at "c" (score 10 + 10) but may not start there; its next best, "e" (1 + 1),
    # loses to window 0's "c d" (3 + 3). Without the rule the answer would be window 1's "c".
    context = "a b c d e f"
    chars = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    off0 = np.array([(-1, -1)] * 3 + chars[0:4] + [(-1, -1)])
    off1 = np.array([(-1, -1)] * 3 + chars[2:6] + [(-1, -1)])
    z = np.zeros(8, dtype=np.float32)
    s0, e0, s1, e1 = z.copy(), z.copy(), z.copy(), z.copy()
    s0[5], e0[6] = 3.0, 3.0               # window 0: "c d" = 6
    s1[3], e1[3] = 10.0, 10.0             # window 1: "c" = 20 (not its max-context token)
    s1[5], e1[5] = 1.0, 1.0               # window 1: "e" = 2
    parts = [(0, off0, (s0, e0)), (2, off1, (s1, e1))]
    windows = question_windows(parts)
    assert windows[1].max_context.tolist() == [False] * 3 + [False, True, True, True, False]
    assert best_answer(windows, context) == "c d"
    assert best_answer([Window(s0, e0, off0), Window(s1, e1, off1)], context) == "c"


def test_ties_break_toward_the_earlier_token_and_window():
    # _get_best_indexes sorts stably: equal start logits at tokens 5 and 7 rank 5 first, and
    # the first of equally scored spans wins: (5, 8) "hello big world again" over (7, 8)
    w = _window({5: 3.0, 7: 3.0}, {8: 3.0})
    assert top_indexes(w.start_logits, 3)[:2].tolist() == [5, 7]
    assert best_answer([w], CONTEXT) == "hello big world again"
    # equal ends at 6 and 8 for start 5: end 6 first -> "hello big"
    assert best_answer([_window({5: 3.0}, {6: 2.0, 8: 2.0})], CONTEXT) == "hello big"
    # the same best score in two windows: the earlier window's span
    later = _window({8: 3.0}, {8: 3.0})
    earlier = _window({6: 3.0}, {6: 3.0})
    assert best_answer([earlier, later], CONTEXT) == "big"
    assert best_answer([later, earlier], CONTEXT) == "again"


def test_no_valid_span_gives_the_official_empty_text():
    # only question tokens score: every n-best pair is invalid
    w = _window({1: 9.0, 2: 8.0}, {1: 9.0, 2: 8.0})
    assert best_answer([w], CONTEXT, n_best=2) == NO_VALID_SPAN == "empty"
    # SQuAD v2: the stand-in "empty" scores 0, so the null answer wins iff its score is > 0
    positive = _window({0: 1.0, 1: 9.0, 2: 8.0}, {0: 1.0, 1: 9.0, 2: 8.0})
    negative = _window({0: -1.0, 1: 9.0, 2: 8.0}, {0: -1.0, 1: 9.0, 2: 8.0})
    assert best_answer([positive], CONTEXT, n_best=3, allow_null=True) == ""
    assert best_answer([negative], CONTEXT, n_best=3, allow_null=True) == "empty"


def test_windows_step_by_doc_stride(small_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    words = " ".join(f"w{i % 7} river stone" for i in range(40))
    batch = {"question": ["Where?", "Where is the long river of the stone?"],
             "context": [words, words], "__row": [0, 1],
             "answers": [{"text": ["river"], "answer_start": [3]}] * 2}
    feats = encode_windows(tokenizer, batch, 48, 10, 24, for_eval=True)
    full = tokenizer(words, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    rows = np.asarray(feats["example_row"])
    assert rows.tolist() == sorted(rows.tolist())                 # windows grouped by question
    for row in (0, 1):
        index = np.flatnonzero(rows == row)
        starts = [feats["doc_start"][f] for f in index]
        assert starts == [10 * k for k in range(len(index))]      # the step, whatever the overlap
        for f in index:
            chars = [c for c in feats["char_start"][f] if c >= 0]
            first = feats["doc_start"][f]
            assert chars == [o[0] for o in full[first:first + len(chars)]]
        last = index[-1]
        assert feats["doc_start"][last] + sum(c >= 0 for c in feats["char_start"][last]) == len(full)


@pytest.mark.skipif(not (XQUAD / "xquad.en.json").is_file(), reason="no shared XQuAD data")
def test_real_xquad_windows_partition_every_context_by_max_context(small_model):
    """Every context sub-word of a real XQuAD paragraph is owned by exactly one window."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    paragraphs = json.loads((XQUAD / "xquad.en.json").read_text())["data"][0]["paragraphs"][:5]
    batch = {"question": [p["qas"][0]["question"] for p in paragraphs],
             "context": [p["context"] for p in paragraphs], "__row": list(range(len(paragraphs))),
             "answers": [{"text": [], "answer_start": []}] * len(paragraphs)}
    feats = encode_windows(tokenizer, batch, 64, 16, 24, for_eval=True)
    for row in range(len(paragraphs)):
        index = [f for f, r in enumerate(feats["example_row"]) if r == row]
        assert len(index) > 1
        parts = [(feats["doc_start"][f],
                  np.stack([feats["char_start"][f], feats["char_end"][f]], axis=1),
                  (np.zeros(len(feats["input_ids"][f])), np.zeros(len(feats["input_ids"][f]))))
                 for f in index]
        windows = question_windows(parts)
        owners: dict[int, int] = {}
        for (start, offsets, _), w in zip(parts, windows):
            for j, t in enumerate(np.flatnonzero(offsets[:, 0] >= 0)):
                if w.max_context[t]:
                    assert start + j not in owners
                    owners[start + j] = t
        n_tokens = len(tokenizer(paragraphs[row]["context"], add_special_tokens=False)["input_ids"])
        assert sorted(owners) == list(range(n_tokens))


# --- EM / F1 rules ---

def test_v1_1_f1_is_zero_without_a_common_token_even_when_both_are_empty():
    # evaluate_squad.py f1_score: num_same == 0 -> 0; exact_match_score compares normalised text
    assert score_one("a", ["the"], rules=SQUAD_V1) == (1.0, 0.0)
    assert score_one("", ["an"], rules=SQUAD_V1) == (1.0, 0.0)


def test_v2_drops_gold_answers_that_normalise_to_nothing():
    # get_raw_scores keeps gold answers with a non-empty normalisation; none left -> [""]
    assert score_one("the", ["The", "Paris"], rules=SQUAD_V2) == (0.0, 0.0)   # gold = ["Paris"]
    assert score_one("Paris", ["a", "Paris"], rules=SQUAD_V2) == (1.0, 1.0)
    # compute_f1: either side empty -> 1 iff both are
    assert score_one("", ["the"], rules=SQUAD_V2) == (1.0, 1.0)
    assert score_one("an", [], rules=SQUAD_V2) == (1.0, 1.0)
    assert score_one("Paris", ["the"], rules=SQUAD_V2) == (0.0, 0.0)
    # with the v1.1 rules "the" stays a gold answer: EM 1 against "the", F1 0
    assert score_one("the", ["The", "Paris"], rules=SQUAD_V1) == (1.0, 0.0)
