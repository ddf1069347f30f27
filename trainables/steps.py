"""What one training step does with a batch, and how its gradients reach the optimizer.

Two small interfaces keep the loop in ``train.py`` closed to change:

* a ``TrainingStep`` computes the loss of a batch and calls ``backward`` on it, possibly
  several times (adversarial methods add perturbed passes); the plain step is one pass;
* an ``Optimization`` owns optimizer, schedule and the update (plain AdamW here, a DeepSpeed
  engine in ``trainables.deepspeed_backend``): ``backward`` scales for gradient accumulation,
  ``update`` clips, steps and zeroes.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
from transformers import get_linear_schedule_with_warmup

Backward = Callable[[torch.Tensor], None]


class TrainingStep(Protocol):
    def __call__(self, model, task, batch: dict, backward: Backward) -> float:
        """Forward and backward for one micro-batch; returns the (clean) loss value."""


def plain_step(model, task, batch: dict, backward: Backward) -> float:
    loss, _ = model.forward_task(task, batch)
    backward(loss)
    return float(loss.detach())


class Optimization(Protocol):
    def backward(self, loss: torch.Tensor) -> None: ...

    def update(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the BERT/RoBERTa recipe)."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]


class PlainOptimization:
    """AdamW with linear warmup and decay, gradient clipping and accumulation (plain PyTorch)."""

    def __init__(self, model, settings, total_steps: int) -> None:
        self.model = model
        self.accumulation = settings.grad_accumulation
        self.max_grad_norm = settings.max_grad_norm
        self.optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay),
                                           lr=settings.learning_rate)
        warmup = int(settings.warmup_ratio * total_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, max(total_steps, 1))

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accumulation).backward()

    def update(self) -> None:
        if math.isfinite(self.max_grad_norm):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
