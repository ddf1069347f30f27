"""Token tagging (UD-POS, PAN-X NER, chunking): first-sub-word labels, seqeval F1 + accuracy."""
from __future__ import annotations

import warnings

import datasets
import numpy as np
import torch
from seqeval.metrics import f1_score
from torch import nn
from transformers import DataCollatorForTokenClassification

from trainables.families.base import Family, cached_map
from trainables.tasks.base import Task

IGNORE = -100


class Tagging(Family):
    name = "tagging"

    def featurize(self, task: Task, data, tokenizer, max_length: int) -> datasets.Dataset:
        def encode(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True,
                            max_length=max_length)
            labels = []
            for i, tags in enumerate(batch["tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(IGNORE if word is None or word == previous else tags[word])
                    previous = word
                labels.append(row)
            enc["labels"] = labels
            return dict(enc)

        return cached_map(data, encode, tokenizer=tokenizer, family=self.name, max_length=max_length)

    def collator(self, tokenizer):
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE,
                                                  return_tensors="pt")

    def make_head(self, task: Task, hidden_size: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, len(task.labels)))

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                           ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, task, model, data, tokenizer, *, batch_size, max_length):
        features = self.featurize(task, data, tokenizer, max_length)
        loader = torch.utils.data.DataLoader(features.with_format("torch"), batch_size=batch_size,
                                             collate_fn=self.collator(tokenizer))
        gold_seqs, pred_seqs = [], []
        for batch in loader:
            logits = self.forward(model, model.heads[task.name], batch)
            preds = logits.argmax(-1).cpu().numpy()
            gold = batch["labels"].cpu().numpy()
            for p_row, g_row in zip(preds, gold):
                keep = g_row != IGNORE
                gold_seqs.append([task.labels[i] for i in g_row[keep]])
                pred_seqs.append([task.labels[i] for i in p_row[keep]])
        flat_gold = [t for s in gold_seqs for t in s]
        flat_pred = [t for s in pred_seqs for t in s]
        accuracy = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)])) if flat_gold else float("nan")
        with warnings.catch_warnings():  # plain tags (UPOS) are scored as one-token spans, as XTREME does
            warnings.filterwarnings("ignore", message=".*seems not to be NE tag")
            f1 = float(f1_score(gold_seqs, pred_seqs)) if flat_gold else float("nan")
        return {"accuracy": accuracy, "f1": f1, "n": float(len(gold_seqs))}
