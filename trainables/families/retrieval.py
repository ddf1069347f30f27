"""Retrieval families.

* ``retrieval`` (evaluation only, no training data): sentence embeddings pooled from one hidden
  layer. Two raw schemas:

  - parallel sentences ``{source, target}`` (Tatoeba, ``source`` = xx, ``target`` = en): top-1
    accuracy, ``accuracy`` en -> xx (XTREME's direction) and ``accuracy_xx_to_en``;
  - bitext mining ``{id, text, side, part, gold}`` (BUCC): ``side`` is ``"xx"`` or ``"en"``,
    ``part`` is ``"dev"`` or ``"test"``, ``gold`` the id of the sentence's gold partner on the
    other side ("" if none). As XTREME's ``utils_retrieve.py``: margin mining over each side's
    unique sentences, sentences that occur twice get no id (their pairs are dropped), and pairs
    are thresholded at the F1-best threshold of the ``dev`` part (0 if no dev candidate is
    correct) and scored on the ``test`` part (see ``trainables.metrics.retrieval``).

* ``dual_encoder`` (trained, LAReQA / Mewsli-X): one shared encoder embeds queries and
  candidates (mean over the last layer's tokens, L2-normalised). Training schema
  ``{query, candidate}``: in-batch negatives, softmax over the batch's candidates with a
  temperature. Evaluation schema, a *pool* in one table: ``{text, kind, relevant}`` where
  ``kind`` is ``"query"`` or ``"candidate"``, candidates are numbered 0.. in row order among the
  candidate rows, and a query's ``relevant`` lists those numbers (``pool_dataset`` builds it).
  Metric: mAP@20.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import datasets
import faiss
import numpy as np
import torch
from torch import nn

from trainables.families.base import Family, cached_map
from trainables.metrics import retrieval as metrics

if TYPE_CHECKING:  # families reach tasks through their interface only
    from trainables.tasks.base import Task

log = logging.getLogger(__name__)


def by_length(texts: list[str]) -> np.ndarray:
    """Texts longest first (by characters, before tokenising): batches that pad little."""
    return np.argsort([-len(t) for t in texts], kind="stable")


POOLINGS = ("mean", "cls")
MAP_K = 20


def default_layer(num_layers: int) -> int:
    """Layer 14 of 24 for XLM-R Large (XTREME's choice), scaled to other depths."""
    return max(1, round(num_layers * 14 / 24))


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """(B, L, H) -> (B, H): mean over non-padding tokens, or the first token (``cls``)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"retrieval pooling {pooling!r} is not one of {POOLINGS}")
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


class Retrieval(Family):
    name = "retrieval"
    trainable = False

    def featurize(self, task, data, tokenizer, max_length):
        return data

    @torch.no_grad()
    def embed(self, model, sentences: list[str], tokenizer, *, batch_size: int, max_length: int,
              layer: int | None = None, pooling: str = "mean") -> np.ndarray:
        """Pooled states of one hidden layer, L2-normalised."""
        encoder = model.encoder
        depth = encoder.config.num_hidden_layers
        layer = default_layer(depth) if layer is None else layer
        if not 0 <= layer <= depth:
            raise ValueError(f"retrieval layer {layer} does not exist: the model has layers 0..{depth}")
        if pooling not in POOLINGS:
            raise ValueError(f"retrieval pooling {pooling!r} is not one of {POOLINGS}")
        out = []
        order = by_length(sentences)
        sentences = [sentences[i] for i in order]
        for start in range(0, len(sentences), batch_size):
            enc = tokenizer(sentences[start:start + batch_size], truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(model.device) for k, v in enc.items() if k != "token_type_ids"}
            hidden = encoder(**enc, output_hidden_states=True).hidden_states[layer]
            out.append(pool(hidden, enc["attention_mask"], pooling).float().cpu().numpy())
        emb = (np.concatenate(out).astype("float32")[np.argsort(order)] if out
               else np.zeros((0, encoder.config.hidden_size), "float32"))
        faiss.normalize_L2(emb)
        return emb

    @staticmethod
    def top1_accuracy(queries: np.ndarray, keys: np.ndarray) -> float:
        """Share of queries whose cosine nearest key is the aligned line (ties: lowest index)."""
        return metrics.top1_accuracy(queries, keys)

    def evaluate(self, task: Task, model, data: datasets.Dataset, tokenizer, *, batch_size, max_length):
        def embed(sentences):
            return self.embed(model, list(sentences), tokenizer, batch_size=batch_size,
                              max_length=max_length, layer=task.options.layer,
                              pooling=task.options.pooling or "mean")

        if "side" in data.column_names:
            return self.evaluate_mining(data, embed)
        src, tgt = embed(data["source"]), embed(data["target"])
        # XTREME's third_party/evaluate_retrieval.py (task tatoeba) calls utils_retrieve's
        # similarity_search(x=xx, y=en): the index holds the xx sentences and the English ones
        # are the queries, so the reported accuracy is en -> xx
        return {"accuracy": self.top1_accuracy(tgt, src),
                "accuracy_xx_to_en": self.top1_accuracy(src, tgt),
                "n": float(len(src))}

    @staticmethod
    def evaluate_mining(data: datasets.Dataset, embed, k: int = 4, mode: str = "max") -> dict[str, float]:
        """BUCC: threshold from the dev part (F1-best), applied to the test part.

        Without a test part the dev part is scored with its own threshold (an upper bound).
        """
        rows = data.to_pandas()
        parts = {}
        for part in ("dev", "test"):
            sub = rows[rows["part"] == part]
            if sub.empty:
                continue
            xx, en = sub[sub["side"] == "xx"], sub[sub["side"] == "en"]
            x_text, e_text = list(xx["text"]), list(en["text"])
            x_unique, e_unique = metrics.unique_sentences(x_text), metrics.unique_sentences(e_text)
            candidates = metrics.mine(embed(x_unique), embed(e_unique), k=k, mode=mode)
            pairs = metrics.mined_pairs(candidates, x_unique, e_unique,
                                        metrics.sentence_ids(x_text, list(xx["id"])),
                                        metrics.sentence_ids(e_text, list(en["id"])))
            gold = {(i, g) for i, g in zip(xx["id"], xx["gold"]) if g}
            parts[part] = (pairs, gold)
        if not parts:
            raise ValueError("BUCC data has no 'dev' or 'test' part")
        dev_pairs, dev_gold = parts.get("dev", parts.get("test"))
        threshold = metrics.best_threshold(dev_pairs, dev_gold)
        pairs, gold = parts.get("test", parts["dev"])
        result = metrics.prf(metrics.select(pairs, threshold), gold)
        return {**result, "threshold": float(threshold), "n": float(len(gold))}


# --- dual encoder: trained retrieval (LAReQA, Mewsli-X) ---

def pool_dataset(queries: Sequence[str], candidates: Sequence[str],
                 relevant: Sequence[Sequence[int]]) -> datasets.Dataset:
    """Queries and a candidate pool as one table (the dual encoder's evaluation schema)."""
    if len(relevant) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(relevant)} relevance lists")
    texts = list(queries) + list(candidates)
    kinds = ["query"] * len(queries) + ["candidate"] * len(candidates)
    rel = [list(map(int, r)) for r in relevant] + [[] for _ in candidates]
    features = datasets.Features({"text": datasets.Value("string"), "kind": datasets.Value("string"),
                                  "relevant": datasets.List(datasets.Value("int64"))})
    return datasets.Dataset.from_dict({"text": texts, "kind": kinds, "relevant": rel}, features=features)


def split_pool(data: datasets.Dataset) -> tuple[list[str], list[str], list[list[int]]]:
    """The inverse of ``pool_dataset``: (queries, candidates, relevant)."""
    kinds = data["kind"]
    texts, relevant = data["text"], data["relevant"]
    queries = [t for t, k in zip(texts, kinds) if k == "query"]
    rel = [r for r, k in zip(relevant, kinds) if k == "query"]
    candidates = [t for t, k in zip(texts, kinds) if k == "candidate"]
    return queries, candidates, rel


class DualEncoderHead(nn.Module):
    """No weights: holds the softmax temperature (heads are per task, so it is per task)."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return queries @ candidates.T / self.temperature


class DualEncoder(Family):
    name = "dual_encoder"
    #: default in-batch softmax temperature (a task class may set ``temperature``)
    temperature = 0.05

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        def encode(batch):
            q = tokenizer(batch["query"], truncation=True, max_length=max_length)
            c = tokenizer(batch["candidate"], truncation=True, max_length=max_length)
            return {"q_input_ids": q["input_ids"], "c_input_ids": c["input_ids"]}

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length)

    def collator(self, tokenizer):
        pad = tokenizer.pad_token_id

        def side(rows, key):
            length = max(len(r[key]) for r in rows)
            ids = torch.full((len(rows), length), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, r in enumerate(rows):
                seq = torch.as_tensor(r[key], dtype=torch.long)
                ids[i, :len(seq)], mask[i, :len(seq)] = seq, 1
            return ids, mask

        def collate(rows):
            q_ids, q_mask = side(rows, "q_input_ids")
            c_ids, c_mask = side(rows, "c_input_ids")
            return {"q_input_ids": q_ids, "q_attention_mask": q_mask,
                    "c_input_ids": c_ids, "c_attention_mask": c_mask}

        return collate

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        """Temperature: the task option ``temperature`` if the spec has one, else the task
        class's ``temperature``, else the family default (0.05)."""
        value = getattr(task.options, "temperature", None) or getattr(task, "temperature", None)
        return DualEncoderHead(float(value or self.temperature))

    @staticmethod
    def encode_side(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = model.encode({"input_ids": ids, "attention_mask": mask})
        return nn.functional.normalize(pool(hidden, mask.to(hidden.device), "mean"), dim=-1)

    def forward(self, model, head: nn.Module, batch: dict):
        """(B, B) similarities: query i against every candidate of the batch."""
        q = self.encode_side(model, batch["q_input_ids"], batch["q_attention_mask"])
        c = self.encode_side(model, batch["c_input_ids"], batch["c_attention_mask"])
        return head(q, c)

    def loss(self, logits, batch):
        """Cross-entropy toward the diagonal: candidate i is query i's positive."""
        return nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    @torch.no_grad()
    def embed(self, model, texts: list[str], tokenizer, *, batch_size: int, max_length: int) -> np.ndarray:
        out = []
        order = by_length(texts)
        texts = [texts[i] for i in order]
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            vec = self.encode_side(model, enc["input_ids"].to(model.device),
                                   enc["attention_mask"].to(model.device))
            out.append(vec.float().cpu().numpy())
        hidden = model.encoder.config.hidden_size
        return np.concatenate(out).astype("float32")[np.argsort(order)] if out else np.zeros((0, hidden), "float32")

    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        """mAP@20 over every query; a query without a relevant candidate scores 0 (Mewsli-X's
        scorer counts a gold entity missing from the candidates as a miss). Ties are broken by
        the task's ``ranking`` (see ``trainables.metrics.retrieval``)."""
        queries, candidates, relevant = split_pool(data)
        missing = sum(not r for r in relevant)
        if missing:
            log.warning("%s: %d of %d queries have no relevant candidate; they score 0",
                        task.name, missing, len(queries))
        q = self.embed(model, queries, tokenizer, batch_size=batch_size, max_length=max_length)
        c = self.embed(model, candidates, tokenizer, batch_size=batch_size, max_length=max_length)
        ranker = getattr(task, "ranking", "stable")
        return {f"map_at_{MAP_K}": metrics.mean_average_precision_at_k(q, c, relevant, MAP_K, ranker),
                "n": float(len(queries))}
