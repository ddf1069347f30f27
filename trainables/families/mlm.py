"""Masked language modelling as one more task in multi-task intermediate training.

X-STILTs' alternative to plain intermediate training mixes continued masked-LM on
target-language text into it, so the encoder keeps its multilingual representations while it
learns the English task. The head is the RoBERTa LM transform with the decoder tied to the
input embeddings; masking is dynamic (15%, of which 80/10/10 mask/random/keep).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling

from trainables.families.base import Family, cached_map

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task

MASK_PROBABILITY = 0.15
IGNORE = -100


class LMTransform(nn.Module):
    """dense + GELU + LayerNorm; the output projection is the (tied) word-embedding matrix."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.gelu(self.dense(hidden)))


class MaskedLM(Family):
    name = "mlm"

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        def encode(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length,
                            return_special_tokens_mask=True)
            return dict(enc)

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length)

    def collator(self, tokenizer):
        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=MASK_PROBABILITY,
                                               return_tensors="pt")

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return LMTransform(hidden_size)

    def forward(self, model, head, batch):
        hidden = head(model.encode(batch))
        return hidden @ model.input_embeddings().weight.t()

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                           ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        """Masked-token accuracy with a fixed masking seed (comparable across epochs)."""
        features = self.featurize(task, data, tokenizer, max_length).with_format("torch")
        collate = self.collator(tokenizer)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        correct = total = 0
        try:
            for start in range(0, len(features), batch_size):
                rows = [features[i] for i in range(start, min(start + batch_size, len(features)))]
                batch = collate(rows)
                logits = self.forward(model, model.heads[task.name], batch)
                labels = batch["labels"].to(logits.device)
                keep = labels != IGNORE
                correct += int((logits.argmax(-1)[keep] == labels[keep]).sum())
                total += int(keep.sum())
        finally:
            torch.random.set_rng_state(generator_state)
        return {"accuracy": correct / total if total else float("nan"), "n": float(len(features))}
