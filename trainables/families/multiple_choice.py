"""Multiple choice (XCOPA, SIQA, COPA, HellaSwag, Cosmos QA, CommonsenseQA): accuracy.

Raw schema ``{context: str, question: str, choices: list[str], label: int}`` (``question`` may be
empty; when given it is prepended to every choice). Each (context, question + choice) pair is
encoded separately and scored by one linear unit over its first token, so a model trained with
3 choices (SIQA) scores 2-choice XCOPA unchanged: the number of choices may differ between tasks
and even within a batch (missing choices are masked out).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import datasets
import numpy as np
import torch
from torch import nn

from trainables.families.base import Family, cached_map

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task


def choice_features() -> datasets.Features:
    return datasets.Features({"context": datasets.Value("string"), "question": datasets.Value("string"),
                              "choices": datasets.List(datasets.Value("string")),
                              "label": datasets.Value("int64")})


def choice_dataset(contexts: Sequence[str], questions: Sequence[str], choices: Sequence[Sequence[str]],
                   labels: Sequence[int]) -> datasets.Dataset:
    """Columns in the family's schema with fixed features (so splits from any source concatenate)."""
    return datasets.Dataset.from_dict(
        {"context": list(contexts), "question": [q or "" for q in questions],
         "choices": [list(c) for c in choices], "label": [int(v) for v in labels]},
        features=choice_features())


def best_choice(logits: torch.Tensor) -> np.ndarray:
    """Per example, the plain argmax over choices (exact ties: the first), as XTREME's
    ``third_party/run_xcopa.py`` scores XCOPA (``np.argmax(predictions, axis=1)``)."""
    return logits.float().cpu().numpy().argmax(axis=-1)


class ChoiceHead(nn.Module):
    """Dropout + one linear unit over the first token: a score per (context, choice) sequence."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(self.dropout(hidden[:, 0])).squeeze(-1)


class MultipleChoice(Family):
    name = "multiple_choice"

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        has_question = "question" in data.column_names

        def encode(batch):
            ids = []
            for i, context in enumerate(batch["context"]):
                question = batch["question"][i] if has_question else ""
                seconds = [f"{question} {c}".strip() if question else c for c in batch["choices"][i]]
                enc = tokenizer([context] * len(seconds), seconds, truncation=True, max_length=max_length)
                ids.append(enc["input_ids"])
            return {"input_ids": ids, "labels": batch["label"]}

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length)

    def collator(self, tokenizer):
        pad = tokenizer.pad_token_id

        def collate(rows: list[dict]) -> dict:
            n_choices = max(len(r["input_ids"]) for r in rows)
            length = max(len(seq) for r in rows for seq in r["input_ids"])
            ids = torch.full((len(rows), n_choices, length), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), n_choices, length), dtype=torch.long)
            present = torch.zeros((len(rows), n_choices), dtype=torch.bool)
            for b, row in enumerate(rows):
                for c, seq in enumerate(row["input_ids"]):
                    seq = torch.as_tensor(seq, dtype=torch.long)
                    ids[b, c, :len(seq)], mask[b, c, :len(seq)] = seq, 1
                    present[b, c] = True
                mask[b, len(row["input_ids"]):, 0] = 1  # absent choices: one token, masked below
            labels = torch.as_tensor([int(r["labels"]) for r in rows], dtype=torch.long)
            return {"input_ids": ids, "attention_mask": mask, "choice_mask": present, "labels": labels}

        return collate

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return ChoiceHead(hidden_size, dropout)

    def forward(self, model, head: nn.Module, batch: dict):
        """(B, C, L) -> encode (B*C, L) -> (B, C) logits; absent choices get -inf."""
        b, c, length = batch["input_ids"].shape
        flat = {"input_ids": batch["input_ids"].reshape(b * c, length),
                "attention_mask": batch["attention_mask"].reshape(b * c, length)}
        logits = head(model.encode(flat)).reshape(b, c)
        present = batch["choice_mask"].to(logits.device)
        return logits.masked_fill(~present, torch.finfo(logits.dtype).min)

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits, batch["labels"].to(logits.device))

    @torch.no_grad()
    def predict(self, model, task: Task, features, tokenizer, batch_size: int) -> np.ndarray:
        collate = self.collator(tokenizer)
        preds = []
        for start in range(0, len(features), batch_size):
            rows = features.select(range(start, min(start + batch_size, len(features))))
            batch = collate([rows[i] for i in range(len(rows))])
            preds.append(best_choice(self.forward(model, model.heads[task.name], batch)))
        return np.concatenate(preds) if preds else np.zeros(0, dtype=int)

    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        features = self.featurize(task, data, tokenizer, max_length)
        preds = self.predict(model, task, features, tokenizer, batch_size)
        gold = np.asarray(features["labels"])
        return {"accuracy": float((preds == gold).mean()) if len(gold) else float("nan"),
                "n": float(len(gold))}
