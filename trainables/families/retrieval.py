"""Parallel-sentence retrieval (Tatoeba-style): mean-pooled layer embeddings, faiss top-1.

No training data: a retrieval target is an evaluation job on the encoder it is given.
"""
from __future__ import annotations

import datasets
import faiss
import numpy as np
import torch

from trainables.families.base import Family
from trainables.tasks.base import Task


def default_layer(num_layers: int) -> int:
    """Layer 14 of 24 for XLM-R Large (XTREME's choice), scaled to other depths."""
    return max(1, round(num_layers * 14 / 24))


class Retrieval(Family):
    name = "retrieval"
    trainable = False

    def featurize(self, task, data, tokenizer, max_length):
        return data

    @torch.no_grad()
    def embed(self, model, sentences: list[str], tokenizer, *, batch_size: int, max_length: int,
              layer: int | None = None) -> np.ndarray:
        """Mean over the non-padding tokens of one hidden layer, L2-normalised."""
        encoder = model.encoder
        depth = encoder.config.num_hidden_layers
        layer = default_layer(depth) if layer is None else layer
        if not 0 <= layer <= depth:
            raise ValueError(f"retrieval layer {layer} does not exist: the model has layers 0..{depth}")
        out = []
        for start in range(0, len(sentences), batch_size):
            enc = tokenizer(sentences[start:start + batch_size], truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(model.device) for k, v in enc.items()}
            hidden = encoder(**enc, output_hidden_states=True).hidden_states[layer]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(pooled.float().cpu().numpy())
        emb = np.concatenate(out).astype("float32") if out else np.zeros((0, encoder.config.hidden_size), "float32")
        faiss.normalize_L2(emb)
        return emb

    @staticmethod
    def top1_accuracy(queries: np.ndarray, keys: np.ndarray) -> float:
        """Share of queries whose cosine nearest neighbour among ``keys`` is the aligned line."""
        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(keys)
        _, nearest = index.search(queries, 1)
        return float((nearest[:, 0] == np.arange(len(queries))).mean())

    def evaluate(self, task: Task, model, data: datasets.Dataset, tokenizer, *, batch_size, max_length):
        layer = task.options.layer
        src = self.embed(model, data["source"], tokenizer, batch_size=batch_size,
                         max_length=max_length, layer=layer)
        tgt = self.embed(model, data["target"], tokenizer, batch_size=batch_size,
                         max_length=max_length, layer=layer)
        return {"accuracy": self.top1_accuracy(src, tgt),       # xx -> en, as XTREME reports
                "accuracy_en_to_xx": self.top1_accuracy(tgt, src),
                "n": float(len(src))}
