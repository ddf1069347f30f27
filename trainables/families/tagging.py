"""Token tagging (UD-POS, PAN-X NER, chunking, CCG): first-sub-word labels, span F1 + accuracy.

F1 is seqeval 0.0.12's (see ``trainables.metrics.tagging``): on IOB labels it equals seqeval 1.x,
on plain UPOS tags it keeps every tag its own type, as the published XTREME POS numbers.

Long sentences are not truncated: a sentence whose sub-words do not fit in ``max_length`` is
split into overlapping windows (see ``plan_windows``), and every word is *owned* by exactly one
window — the one in which it is most central (ties: the earlier window). Training labels a word
only in its owning window, and evaluation takes its prediction from that same window, so every
word of every sentence is trained on once and scored once, however long the sentence.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
from torch import nn

from trainables.families.base import Family, PadToLongest, cached_map, longest_first
from trainables.metrics.tagging import span_f1

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task

IGNORE = -100
#: bookkeeping columns kept in the cached features for evaluation, dropped for training
_EVAL_COLUMNS = ("window", "word_ids")
_LAYOUT = "windows-v1"


def plan_windows(lengths: list[int], size: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` of the windows that cover a sentence.

    ``lengths`` are the words' sub-word counts (each at most ``size``); a window holds at most
    ``size`` sub-words and never splits a word. Consecutive windows start about ``stride``
    sub-words apart (at a word boundary, at least one word later) and never leave a gap.
    """
    if not lengths:
        return []
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    windows: list[tuple[int, int]] = []
    start, n = 0, len(lengths)
    while True:
        end = int(np.searchsorted(offsets, offsets[start] + size, side="right")) - 1
        end = min(max(end, start + 1), n)
        windows.append((start, end))
        if end >= n:
            return windows
        target = int(np.searchsorted(offsets, offsets[start] + stride, side="left"))
        start = min(max(target, start + 1), end)


def owners(windows: list[tuple[int, int]], n_words: int) -> list[int]:
    """For each word, the index of the window where it has the most context on its shorter side."""
    best = [-1] * n_words
    score = [-1] * n_words
    for w, (start, end) in enumerate(windows):
        for word in range(start, end):
            context = min(word - start, end - 1 - word)
            if context > score[word]:  # strict: ties keep the earlier window
                best[word], score[word] = w, context
    return best


class Tagging(Family):
    name = "tagging"

    def windows(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        """Windowed features, in sentence order, with the bookkeeping columns ``window`` (its
        number within the sentence; 0 starts a new sentence) and ``word_ids`` (per position: the
        word whose prediction it gives, or -1)."""
        def encode(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=False)
            rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [],
                                     "window": [], "word_ids": []}
            for i, (tokens, tags) in enumerate(zip(batch["tokens"], batch["tags"])):
                ids, word_ids = enc["input_ids"][i], enc.word_ids(i)
                content = [p for p, w in enumerate(word_ids) if w is not None]
                head = ids[:content[0]] if content else ids[:1]
                tail = ids[content[-1] + 1:] if content else ids[1:]
                size = max(1, max_length - len(head) - len(tail))
                pieces: list[list[int]] = [[] for _ in tokens]
                for p in content:
                    pieces[word_ids[p]].append(ids[p])
                # a word the tokenizer drops still gets a position (and so a prediction)
                pieces = [(sub or [tokenizer.unk_token_id])[:size] for sub in pieces]
                # an empty sentence keeps one (word-less) window so sentence numbering holds
                spans = plan_windows([len(s) for s in pieces], size, max(1, size // 2)) or [(0, 0)]
                owner = owners(spans, len(tokens))
                for w, (start, end) in enumerate(spans):
                    input_ids, labels, words = list(head), [IGNORE] * len(head), [-1] * len(head)
                    for word in range(start, end):
                        mine = owner[word] == w
                        for k, piece in enumerate(pieces[word]):
                            input_ids.append(piece)
                            first = mine and k == 0
                            labels.append(int(tags[word]) if first else IGNORE)
                            words.append(word if first else -1)
                    input_ids += tail
                    labels += [IGNORE] * len(tail)
                    words += [-1] * len(tail)
                    rows["input_ids"].append(input_ids)
                    rows["attention_mask"].append([1] * len(input_ids))
                    rows["labels"].append(labels)
                    rows["window"].append(w)
                    rows["word_ids"].append(words)
            return rows

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length,
                          layout=_LAYOUT)

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        return self.windows(task, data, tokenizer, max_length).remove_columns(list(_EVAL_COLUMNS))

    def collator(self, tokenizer):
        return PadToLongest(tokenizer, {"labels": IGNORE})

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, len(task.labels)))

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                           ignore_index=IGNORE)

    @torch.no_grad()
    def predict(self, task: Task, model, data, tokenizer, *, batch_size: int,
                max_length: int) -> list[list[int]]:
        """Predicted tag ids per sentence, one per word (word-aligned with ``data["tokens"]``)."""
        windows = self.windows(task, data, tokenizer, max_length)
        examples = np.cumsum(np.asarray(windows["window"]) == 0) - 1
        word_ids = windows["word_ids"]
        features = windows.remove_columns(list(_EVAL_COLUMNS))
        order = longest_first(features)
        if order is None:
            order = np.arange(len(features))
        loader = torch.utils.data.DataLoader(features.select(order).with_format("torch"), batch_size=batch_size,
                                             collate_fn=self.collator(tokenizer))
        predicted = [[-1] * len(tokens) for tokens in data["tokens"]]
        rows = iter(order)
        for batch in loader:
            preds = self.forward(model, model.heads[task.name], batch).argmax(-1).cpu().numpy()
            for p_row in preds:
                row = int(next(rows))
                sentence = predicted[examples[row]]
                for position, word in enumerate(word_ids[row]):
                    if word >= 0:
                        sentence[word] = int(p_row[position])
        missing = sum(p < 0 for sentence in predicted for p in sentence)
        if missing:  # plan_windows covers every word; this would be a bug, not bad data
            raise RuntimeError(f"task {task.name}: {missing} words got no prediction")
        return predicted

    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        predicted = self.predict(task, model, data, tokenizer, batch_size=batch_size,
                                 max_length=max_length)
        gold_seqs = [[task.labels[i] for i in tags] for tags in data["tags"]]
        pred_seqs = [[task.labels[i] for i in tags] for tags in predicted]
        return {**tag_scores(gold_seqs, pred_seqs), "n": float(len(gold_seqs))}


def tag_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Token accuracy and span F1 as seqeval 0.0.12 (XTREME's scorer for POS and NER)."""
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in pred for t in s]
    if not flat_gold:
        return {"accuracy": float("nan"), "f1": float("nan")}
    accuracy = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)]))
    return {"accuracy": accuracy, "f1": span_f1(gold, pred)["f1"]}
