"""Encoder + one head per task; load from the tiny model, a hub id, a local dir or a checkpoint.

Heads are per task so one encoder can be trained on several intermediate tasks at once; only
the encoder travels from the intermediate phase to the target phase.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from trainables.families import get_family
from trainables.tasks.base import Task

log = logging.getLogger(__name__)

TINY = "tiny"


def resolve_model_path(model: str, cache_dir: str) -> str:
    """'tiny' -> the locally built tiny model (built on first use); else the id or path as given."""
    if model != TINY:
        return model
    from trainables.tiny_model import ensure_tiny_model

    cache = Path(cache_dir).expanduser()
    return str(ensure_tiny_model(cache / "models", cache / "toy_xtreme"))


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, batch: dict) -> torch.Tensor:
        inputs = {k: batch[k].to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids")
                  if k in batch}
        inputs.pop("token_type_ids", None)  # XLM-R has a single segment type
        return self.encoder(**inputs).last_hidden_state

    def loss(self, task: Task, batch: dict) -> torch.Tensor:
        batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
        return get_family(task.info.family).loss(self.heads[task.name], self.encode(batch), batch)


def build_model(start: str, tasks: list[Task], dropout: float | None = None) -> tuple[MultiTaskModel, object]:
    """Encoder from ``start`` (hub id or directory) plus a fresh head for each trainable task."""
    tokenizer = AutoTokenizer.from_pretrained(start)
    encoder = AutoModel.from_pretrained(start, add_pooling_layer=False)
    hidden = encoder.config.hidden_size
    p = encoder.config.hidden_dropout_prob if dropout is None else dropout
    heads = {t.name: get_family(t.info.family).make_head(t, hidden, p)
             for t in tasks if get_family(t.info.family).trainable}
    return MultiTaskModel(encoder, heads), tokenizer


def save_model(model: MultiTaskModel, tokenizer, out_dir: Path, meta: dict) -> None:
    """Save as a plain HF encoder directory (loadable by ``AutoModel``) plus the heads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    torch.save(model.heads.state_dict(), out_dir / "heads.pt")
    (out_dir / "xstilts.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
