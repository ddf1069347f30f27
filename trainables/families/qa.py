"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): predict the answer span's start and end.

A long context is cut into overlapping windows that start ``doc_stride`` sub-words apart (the
step between windows, as XTREME's ``run_squad.py``); a window that does not contain the answer
is trained to point at the first token (``<s>``, index 0). At evaluation the answer is decoded
over all windows of a question as the official decoder does (``trainables.metrics.qa_spans``:
max-context windows, n-best start x end logits, ties to the earlier token, "empty" when no span
is valid, the null answer for SQuAD v2). Metrics are EM and F1 on a 0-1 scale (like accuracy
elsewhere) plus their mean ``em_f1``, the usual QA summary, under the SQuAD v1.1 rules, or v2.0
for tasks with unanswerable questions.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
from torch import nn

from trainables.families.base import Family, PadToLongest, cached_map, in_order, longest_first
from trainables.metrics.qa import SQUAD_V1, SQUAD_V2, Normalizer, qa_scores, squad_tokens
from trainables.metrics.qa_spans import Window, best_answer, max_context

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task

log = logging.getLogger(__name__)

DOC_STRIDE = 128
MAX_QUERY_TOKENS = 64
OUTSIDE = (-1, -1)  # offsets of a token that is not part of the context
#: feature layout (part of the feature cache key): windows step by doc_stride
_LAYOUT = "step-windows-v2"


def window_settings(max_length: int, doc_stride: int | None = None) -> tuple[int, int]:
    """(doc_stride, max_query_length) for a window length: 128 / 64 at 384 and longer, scaled
    down proportionally (a third / a half of the window) for short windows."""
    stride = doc_stride if doc_stride is not None else min(DOC_STRIDE, max_length // 3)
    return stride, min(MAX_QUERY_TOKENS, max_length // 2)


def _truncate_questions(tokenizer, questions: list[str], max_query: int) -> list[str]:
    """Cut questions longer than ``max_query`` sub-words at a sub-word boundary."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for question, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
        out.append(question[: offsets[max_query - 1][1]] if len(ids) > max_query else question)
    return out


def _answer_tokens(offsets, sequence_ids, start_char: int, end_char: int) -> tuple[int, int]:
    """Token indices of the answer's first and last sub-word in one window; (0, 0) if the
    window does not contain the whole answer."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context:
        return 0, 0
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start + 1 <= last and offsets[start + 1][0] <= start_char:
        start += 1
    end = last
    while end - 1 >= first and offsets[end - 1][1] >= end_char:
        end -= 1
    return start, end


def _windows(tokenizer, questions: list[str], contexts: list[str], max_length: int,
             doc_stride: int) -> list[tuple[int, int, dict]]:
    """(row, first context sub-word of the window, encoding) of every window, rows in order.

    A window holds as many context sub-words as fit after the question (``room``), and window k
    starts at sub-word ``k * doc_stride`` (``processors/squad.py``: ``len(spans) * doc_stride``),
    so the tokenizer's overflow *overlap* is ``room - doc_stride``. Rows are grouped by question
    length, which fixes ``room``, and each group is tokenised in one call.
    """
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    special = tokenizer.num_special_tokens_to_add(pair=True)
    out: list[tuple[int, int, dict]] = []
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        room = max_length - length - special
        if room < 1:
            raise ValueError(f"qa: max_length {max_length} leaves no room for the context")
        step = min(doc_stride, room)
        if step < doc_stride:
            log.warning("qa: doc_stride %d exceeds the %d context sub-words a window holds; "
                        "windows step by %d", doc_stride, room, step)
        enc = tokenizer([questions[i] for i in rows], [contexts[i] for i in rows],
                        truncation="only_second", max_length=max_length, stride=room - step,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
        first: dict[int, int] = {}
        for f, sample in enumerate(enc["overflow_to_sample_mapping"]):
            k = f - first.setdefault(sample, f)       # the window's number within its row
            sequence_ids = enc.sequence_ids(f)
            out.append((rows[sample], k * step,
                        {"input_ids": enc["input_ids"][f], "attention_mask": enc["attention_mask"][f],
                         "offsets": enc["offset_mapping"][f], "sequence_ids": sequence_ids}))
    out.sort(key=lambda item: (item[0], item[1]))
    return out


def encode_windows(tokenizer, batch: dict, max_length: int, doc_stride: int, max_query: int,
                   *, for_eval: bool) -> dict:
    """A batch of raw QA rows -> one feature per window (training: positions; eval: offsets and
    ``doc_start``, the window's first context sub-word, for the max-context rule)."""
    questions = _truncate_questions(tokenizer, [q.lstrip() for q in batch["question"]], max_query)
    windows = _windows(tokenizer, questions, list(batch["context"]), max_length, doc_stride)
    out: dict[str, list] = {"input_ids": [w[2]["input_ids"] for w in windows],
                            "attention_mask": [w[2]["attention_mask"] for w in windows]}
    if for_eval:
        out["example_row"] = [batch["__row"][row] for row, _, _ in windows]
        out["doc_start"] = [start for _, start, _ in windows]
        # character span of every token inside the context, -1 elsewhere (two flat int columns,
        # which Arrow hands back as numpy arrays without building Python lists per token)
        spans = [[o if s == 1 else OUTSIDE for o, s in zip(w["offsets"], w["sequence_ids"])]
                 for _, _, w in windows]
        out["char_start"] = [[o[0] for o in window] for window in spans]
        out["char_end"] = [[o[1] for o in window] for window in spans]
        return out
    starts, ends = [], []
    for row, _, w in windows:
        answers = batch["answers"][row]
        if not answers["text"]:
            start, end = 0, 0
        else:
            start_char = int(answers["answer_start"][0])
            start, end = _answer_tokens(w["offsets"], w["sequence_ids"], start_char,
                                        start_char + len(answers["text"][0]))
        starts.append(start)
        ends.append(end)
    out["start_positions"], out["end_positions"] = starts, ends
    return out


class SpanHead(nn.Module):
    """One linear layer to a start and an end score per token (BERT's SQuAD head)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.out(hidden).unbind(-1)
        return start, end


def question_windows(parts: list[tuple]) -> list[Window]:
    """(doc_start, offsets, (start, end) logits) of one question's windows -> ``Window``s whose
    ``max_context`` marks the tokens this window is the max-context window of."""
    inside = [offsets[:, 0] >= 0 for _, offsets, _ in parts]
    owned = max_context([(start, int(mask.sum())) for (start, _, _), mask in zip(parts, inside)])
    windows = []
    for (_, offsets, (start, end)), mask, mine in zip(parts, inside, owned):
        flags = np.zeros(len(offsets), dtype=bool)
        flags[np.flatnonzero(mask)] = mine
        windows.append(Window(start, end, offsets, flags))
    return windows


class QuestionAnswering(Family):
    name = "qa"

    def _settings(self, task: Task, max_length: int) -> tuple[int, int]:
        return window_settings(max_length, getattr(task.options, "doc_stride", None))

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        """Training features: input ids, attention mask, start and end positions only."""
        stride, max_query = self._settings(task, max_length)
        return cached_map(data, lambda b: encode_windows(tokenizer, b, max_length, stride, max_query,
                                                         for_eval=False),
                          tokenizer=tokenizer, family=self.name, max_length=max_length,
                          doc_stride=stride, max_query=max_query, mode="train",
                          layout=_LAYOUT)

    def eval_features(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        """Evaluation features: windows with the row of their question and context offsets."""
        stride, max_query = self._settings(task, max_length)
        rows = data.add_column("__row", list(range(len(data))))
        return cached_map(rows, lambda b: encode_windows(tokenizer, b, max_length, stride, max_query,
                                                         for_eval=True),
                          tokenizer=tokenizer, family=self.name, max_length=max_length,
                          doc_stride=stride, max_query=max_query, mode="eval",
                          layout=_LAYOUT)

    def collator(self, tokenizer):
        return PadToLongest(tokenizer)

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return SpanHead(hidden_size)

    def loss(self, logits, batch):
        start_logits, end_logits = logits
        return (nn.functional.cross_entropy(start_logits, batch["start_positions"])
                + nn.functional.cross_entropy(end_logits, batch["end_positions"])) / 2

    @torch.no_grad()
    def window_logits(self, model, task: Task, features, tokenizer,
                      batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(start, end) logits of every window, cut to the window's own length."""
        inputs = features.select_columns(["input_ids", "attention_mask"])
        order = longest_first(inputs)
        if order is not None:
            inputs = inputs.select(order)
        loader = torch.utils.data.DataLoader(inputs.with_format("torch"), batch_size=batch_size,
                                             collate_fn=self.collator(tokenizer))
        out = []
        for batch in loader:
            start, end = self.forward(model, model.heads[task.name], batch)
            lengths = batch["attention_mask"].sum(-1).tolist()
            start, end = start.float().cpu().numpy(), end.float().cpu().numpy()
            out.extend((start[i, :n], end[i, :n]) for i, n in enumerate(lengths))
        return in_order(out, order)

    def predict(self, task: Task, model, data, tokenizer, *, batch_size: int,
                max_length: int) -> list[str]:
        """The predicted answer text of every question in ``data`` (in order)."""
        features = self.eval_features(task, data, tokenizer, max_length)
        logits = self.window_logits(model, task, features, tokenizer, batch_size)
        per_row: list[list[tuple]] = [[] for _ in range(len(data))]
        spans = features.select_columns(["example_row", "doc_start", "char_start", "char_end"])
        f = 0
        for chunk in spans.with_format("numpy").iter(batch_size=1024):
            for row, doc_start, first, last in zip(chunk["example_row"], chunk["doc_start"],
                                                   chunk["char_start"], chunk["char_end"]):
                per_row[int(row)].append((int(doc_start), np.stack([first, last], axis=1), logits[f]))
                f += 1
        log.debug("%s: %d questions in %d windows", task.name, len(data), len(features))
        allow_null = bool(getattr(task, "unanswerable", False))
        return [best_answer(question_windows(parts), context, allow_null=allow_null)
                for parts, context in zip(per_row, data["context"])]

    def normalizer(self, task: Task, data, language: str | None) -> Normalizer:
        """The task's answer normalisation for the split's language (SQuAD's by default)."""
        if language is None:
            from trainables.tasks.squad_format import marked_language

            language = marked_language(data)
        chooser = getattr(task, "normalizer", None)
        return chooser(language) if chooser is not None else squad_tokens

    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length,
                 language: str | None = None):
        """EM, F1 and em_f1 on a 0-1 scale, and ``n`` (questions)."""
        was_training = model.training
        model.eval()
        try:
            predictions = self.predict(task, model, data, tokenizer, batch_size=batch_size,
                                       max_length=max_length)
        finally:
            model.train(was_training)
        golds = [a["text"] for a in data["answers"]]
        rules = SQUAD_V2 if getattr(task, "unanswerable", False) else SQUAD_V1
        return qa_scores(predictions, golds, self.normalizer(task, data, language), rules)
