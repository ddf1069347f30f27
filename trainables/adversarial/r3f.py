"""R3F (Aghajanyan et al. 2020): task loss + lambda * symmetric KL(clean, noisy), no ascent.

The noise on the word embeddings is uniform on [-eps, eps] or normal with standard deviation
eps (as fairseq's R3F). The KL flows into both predictions (no detach, as fairseq).
``eps = 0`` makes the regulariser exactly zero (with dropout off). Cost: two forward passes,
one backward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.adversarial import register
from trainables.adversarial.base import AdversarialMethod, Delta, check, symmetric_kl

NOISE = ("uniform", "normal")


@dataclass(frozen=True)
class R3FSettings:
    eps: float = 1e-5
    noise: str = "uniform"
    #: weight of the regulariser (lambda in the paper)
    reg_lambda: float = 1.0

    def __post_init__(self) -> None:
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")
        check(self.noise in NOISE, "noise", f"must be one of {', '.join(NOISE)}, got {self.noise!r}")
        check(self.reg_lambda >= 0, "reg_lambda", f"must be >= 0, got {self.reg_lambda}")


@register
class R3F(AdversarialMethod):
    name = "r3f"
    Settings = R3FSettings

    def noise(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        eps = self.settings.eps
        if self.settings.noise == "uniform":
            return torch.empty_like(embeddings).uniform_(-eps, eps)
        return torch.randn_like(embeddings) * eps

    def __call__(self, model, task, batch, backward):
        loss, logits = model.forward_task(task, batch)
        delta = Delta(self.noise, batch)
        delta.track = False
        with delta.applied(model):
            _, noisy = model.forward_task(task, batch)
        regulariser = symmetric_kl(logits, noisy, batch)
        backward(loss + self.settings.reg_lambda * regulariser)
        self.last = {"clean": float(loss.detach()), "regulariser": float(regulariser.detach())}
        return self.last["clean"]
