"""What one training step does with a batch, and how its gradients reach the optimizer.

Two small interfaces keep the loop in ``train.py`` closed to change:

* a ``TrainingStep`` computes the loss of a batch and calls ``backward`` on it, possibly
  several times (adversarial methods add perturbed passes); the plain step is one pass;
* an ``Optimization`` owns optimizer, schedule and the update (plain AdamW here, a DeepSpeed
  engine in ``trainables.deepspeed_backend``): ``backward`` scales for gradient accumulation,
  ``update`` clips, steps and zeroes, ``save_model`` writes the weights it trains (a collective:
  every rank calls it, rank 0 writes) and ``close`` releases what it holds once training ends.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Protocol

import torch
from transformers import get_linear_schedule_with_warmup

from trainables.model import save_model

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

    def save_model(self, tokenizer, out_dir: Path, meta: dict) -> None: ...

    def close(self) -> None: ...


def process_rank() -> int:
    """This process's rank in the trial's process group (0 without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the BERT/RoBERTa recipe)."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]


class PlainOptimization:
    """AdamW with linear warmup and decay, gradient clipping and accumulation (plain PyTorch).

    ``precision`` (a ``trainables.device.Precision``) fp16 adds a gradient scaler (bf16 and fp32
    need none: autocast itself is set on the model); ``fused`` AdamW on CUDA runs the update in
    one kernel per parameter group.
    """

    def __init__(self, model, settings, total_steps: int, *, precision=None, fused: bool = False) -> None:
        self.model = model
        self.accumulation = settings.grad_accumulation
        self.max_grad_norm = settings.max_grad_norm
        self.optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay),
                                           lr=settings.learning_rate, **({"fused": True} if fused else {}))
        warmup = int(settings.warmup_ratio * total_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, max(total_steps, 1))
        self.scaler = (torch.amp.GradScaler(precision.device_type)
                       if precision is not None and precision.name == "fp16" else None)

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.accumulation
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if math.isfinite(self.max_grad_norm):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def save_model(self, tokenizer, out_dir: Path, meta: dict) -> None:
        """``trainables.model.save_model`` on rank 0: every rank holds the same full weights."""
        if process_rank() == 0:
            save_model(self.model, tokenizer, out_dir, meta)

    def close(self) -> None:
        """Nothing to release: optimizer and schedule go with the last reference to them."""
