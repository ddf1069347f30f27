"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): predict the answer span's start and end.

A long context is cut into overlapping windows (``doc_stride`` sub-words of overlap); a window
that does not contain the answer is trained to point at the first token (``<s>``, index 0). At
evaluation the best span over all windows of a question is taken (n-best start x end logits,
context tokens only, at most ``MAX_ANSWER_TOKENS`` long); for tasks with unanswerable questions
(SQuAD v2) the empty answer wins when its score beats the best span. Metrics are EM and F1 on a
0-1 scale (like accuracy elsewhere) plus their mean ``em_f1``, the usual QA summary.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import datasets
import numpy as np
import torch
from torch import nn
from transformers import DataCollatorWithPadding

from trainables.families.base import Family, cached_map
from trainables.metrics.qa import Normalizer, qa_scores, squad_tokens
from trainables.tasks.base import Task

log = logging.getLogger(__name__)

DOC_STRIDE = 128
MAX_QUERY_TOKENS = 64
N_BEST = 20
MAX_ANSWER_TOKENS = 30
NULL_THRESHOLD = 0.0
OUTSIDE = (-1, -1)  # offsets of a token that is not part of the context


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


def encode_windows(tokenizer, batch: dict, max_length: int, doc_stride: int, max_query: int,
                   *, for_eval: bool) -> dict:
    """A batch of raw QA rows -> one feature per window (training: positions; eval: offsets)."""
    questions = _truncate_questions(tokenizer, [q.lstrip() for q in batch["question"]], max_query)
    longest = max((len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]),
                  default=0)
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room < 2:
        raise ValueError(f"qa: max_length {max_length} leaves no room for the context")
    stride = max(0, min(doc_stride, room - 1))
    enc = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    sample_map = enc.pop("overflow_to_sample_mapping")
    out: dict[str, list] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if for_eval:
        out["example_row"] = [batch["__row"][i] for i in sample_map]
        # character span of every token inside the context, -1 elsewhere (two flat int columns,
        # which Arrow hands back as numpy arrays without building Python lists per token)
        spans = [[o if s == 1 else OUTSIDE for o, s in zip(offsets, enc.sequence_ids(f))]
                 for f, offsets in enumerate(enc["offset_mapping"])]
        out["char_start"] = [[o[0] for o in window] for window in spans]
        out["char_end"] = [[o[1] for o in window] for window in spans]
        return out
    starts, ends = [], []
    for f, offsets in enumerate(enc["offset_mapping"]):
        answers = batch["answers"][sample_map[f]]
        if not answers["text"]:
            start, end = 0, 0
        else:
            start_char = int(answers["answer_start"][0])
            start, end = _answer_tokens(offsets, enc.sequence_ids(f), start_char,
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


@dataclass(frozen=True)
class Window:
    """Scores of one window of a question: start/end logits and per-token context offsets."""

    start_logits: np.ndarray
    end_logits: np.ndarray
    offsets: Sequence[Sequence[int]]  # (start, end) character span per token; (-1, -1) outside


def best_answer(windows: Sequence[Window], context: str, *, n_best: int = N_BEST,
                max_answer_tokens: int = MAX_ANSWER_TOKENS, allow_null: bool = False,
                null_threshold: float = NULL_THRESHOLD) -> str:
    """The highest-scoring span (start + end logit) over all windows, as context text.

    Only spans of context tokens, end >= start and at most ``max_answer_tokens`` long count,
    among the ``n_best`` starts and ends of each window. With ``allow_null`` the answer is empty
    when the null score (logits at index 0, lowest over windows) exceeds the best span's by more
    than ``null_threshold``. Without it an empty string comes back only if no span is valid.
    """
    best_score, best_text = -math.inf, ""
    null_score = math.inf
    for w in windows:
        null_score = min(null_score, float(w.start_logits[0] + w.end_logits[0]))
        starts = np.argsort(w.start_logits)[::-1][:n_best]
        ends = np.argsort(w.end_logits)[::-1][:n_best]
        for s in starts:
            if w.offsets[s][0] < 0:
                continue
            for e in ends:
                if w.offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(w.start_logits[s] + w.end_logits[e])
                if score > best_score:
                    best_score, best_text = score, context[w.offsets[s][0]: w.offsets[e][1]]
    if allow_null and (best_score == -math.inf or null_score - best_score > null_threshold):
        return ""
    return best_text


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
                          doc_stride=stride, max_query=max_query, mode="train")

    def eval_features(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        """Evaluation features: windows with the row of their question and context offsets."""
        stride, max_query = self._settings(task, max_length)
        rows = data.add_column("__row", list(range(len(data))))
        return cached_map(rows, lambda b: encode_windows(tokenizer, b, max_length, stride, max_query,
                                                         for_eval=True),
                          tokenizer=tokenizer, family=self.name, max_length=max_length,
                          doc_stride=stride, max_query=max_query, mode="eval")

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

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
        inputs = features.select_columns(["input_ids", "attention_mask"]).with_format("torch")
        loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size,
                                             collate_fn=self.collator(tokenizer))
        out = []
        for batch in loader:
            start, end = self.forward(model, model.heads[task.name], batch)
            lengths = batch["attention_mask"].sum(-1).tolist()
            start, end = start.float().cpu().numpy(), end.float().cpu().numpy()
            out.extend((start[i, :n], end[i, :n]) for i, n in enumerate(lengths))
        return out

    def predict(self, task: Task, model, data, tokenizer, *, batch_size: int,
                max_length: int) -> list[str]:
        """The predicted answer text of every question in ``data`` (in order)."""
        features = self.eval_features(task, data, tokenizer, max_length)
        logits = self.window_logits(model, task, features, tokenizer, batch_size)
        windows: list[list[Window]] = [[] for _ in range(len(data))]
        spans = features.select_columns(["example_row", "char_start", "char_end"]).with_format("numpy")
        f = 0
        for chunk in spans.iter(batch_size=1024):
            for row, first, last in zip(chunk["example_row"], chunk["char_start"], chunk["char_end"]):
                start, end = logits[f]
                windows[int(row)].append(Window(start, end, np.stack([first, last], axis=1)))
                f += 1
        log.debug("%s: %d questions in %d windows", task.name, len(data), len(features))
        allow_null = bool(getattr(task, "unanswerable", False))
        return [best_answer(w, context, allow_null=allow_null)
                for w, context in zip(windows, data["context"])]

    def normalizer(self, task: Task, data, language: str | None) -> Normalizer:
        """The task's answer normalisation for the split's language (SQuAD's by default)."""
        if language is None:
            from trainables.tasks.squad_v1 import marked_language

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
        return qa_scores(predictions, golds, self.normalizer(task, data, language))
