"""Sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, QQP ...): accuracy."""
from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
from torch import nn

from trainables.families.base import Family, PadToLongest, cached_map, in_order, longest_first

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task


class ClassificationHead(nn.Module):
    """The RoBERTa head: dense + tanh over the first token, then a linear classifier."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


class Classification(Family):
    name = "classification"

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        pair = "text_b" in data.column_names

        def encode(batch):
            args = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
            enc = tokenizer(*args, truncation=True, max_length=max_length)
            enc["labels"] = batch["label"]
            return dict(enc)

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length)

    def collator(self, tokenizer):
        return PadToLongest(tokenizer)

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return ClassificationHead(hidden_size, len(task.labels), dropout)

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits, batch["labels"])

    @torch.no_grad()
    def predict(self, model, task: Task, features, tokenizer, batch_size: int) -> np.ndarray:
        order = longest_first(features)
        rows = features if order is None else features.select(order)
        loader = torch.utils.data.DataLoader(rows.with_format("torch"), batch_size=batch_size,
                                             collate_fn=self.collator(tokenizer))
        preds = []
        for batch in loader:
            logits = self.forward(model, model.heads[task.name], batch)
            preds.append(logits.argmax(-1).cpu().numpy())
        if not preds:
            return np.zeros(0, dtype=int)
        return np.asarray(in_order(list(np.concatenate(preds)), order))

    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        features = self.featurize(task, data, tokenizer, max_length)
        preds = self.predict(model, task, features, tokenizer, batch_size)
        gold = np.asarray(features["labels"])
        return {"accuracy": float((preds == gold).mean()) if len(gold) else float("nan"),
                "n": float(len(gold))}
