"""FreeLB (Zhu et al. 2020): K ascent steps on the embeddings, parameter gradients of all K.

Each of the K passes calls ``backward(loss / K)``, so the parameter gradient is the average over
the K perturbations ("free" adversarial training); the perturbation ascends along its own
normalised gradient between passes and, with ``max_norm > 0``, is kept inside that ball.
Cost: K forward-backward passes. With K = 1 and ``init_mag = 0`` it is the plain step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.adversarial import register
from trainables.adversarial.base import (AdversarialMethod, Delta, check, check_norm, direction,
                                         project)


@dataclass(frozen=True)
class FreeLBSettings:
    adv_steps: int = 3
    adv_lr: float = 0.1
    #: size of the random start (0: start from zero)
    init_mag: float = 0.0
    #: radius of the perturbation (0: unbounded)
    max_norm: float = 0.0
    norm: str = "l2"

    def __post_init__(self) -> None:
        check(self.adv_steps >= 1, "adv_steps", f"must be >= 1, got {self.adv_steps}")
        check(self.adv_lr > 0, "adv_lr", f"must be > 0, got {self.adv_lr}")
        check(self.init_mag >= 0, "init_mag", f"must be >= 0, got {self.init_mag}")
        check(self.max_norm >= 0, "max_norm", f"must be >= 0 (0 = unbounded), got {self.max_norm}")
        check_norm(self.norm)


def random_start(init_mag: float, norm: str):
    """FreeLB's initialisation: uniform noise, for L2 scaled by init_mag / sqrt(#real entries).

    ``mask`` is the (N, L, 1) real-position mask of the encoder call (``Delta`` passes it)."""
    def init(embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if init_mag == 0:
            return torch.zeros_like(embeddings)
        noise = torch.empty_like(embeddings).uniform_(-1, 1)
        if norm == "linf":
            return noise * init_mag
        if mask is not None:
            lengths = mask.reshape(embeddings.shape[0], -1).sum(1).to(embeddings.device).float()
        else:
            lengths = torch.full((embeddings.shape[0],), float(embeddings.shape[1]),
                                 device=embeddings.device)
        scale = init_mag / torch.sqrt(lengths.clamp_min(1) * embeddings.shape[-1])
        return noise * scale.view(-1, 1, 1).to(noise.dtype)
    return init


@register
class FreeLB(AdversarialMethod):
    name = "freelb"
    Settings = FreeLBSettings

    def __call__(self, model, task, batch, backward):
        s = self.settings
        k = s.adv_steps
        delta = Delta(random_start(s.init_mag, s.norm), batch)
        losses = []

        def ascend(value, grad):
            value = value + s.adv_lr * direction(grad, s.norm)
            return project(value, s.max_norm, s.norm) if s.max_norm > 0 else value

        for step in range(k):
            delta.track = step < k - 1
            with delta.applied(model):
                loss, _ = model.forward_task(task, batch)
            losses.append(float(loss.detach()))
            backward(loss / k)
            if step == k - 1:
                break
            grads = delta.backward_grads()  # the same backward gave the perturbation's gradient
            delta.track = True
            delta.map(ascend, grads)
        self.last = {"clean": losses[0], "adversarial": sum(losses) / k,
                     "delta_norm": delta.max_norm(s.norm)}
        return losses[0]
