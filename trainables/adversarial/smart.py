"""SMART (Jiang et al. 2020): smoothness-inducing adversarial regularisation.

Start from Gaussian noise ``N(0, noise_var)`` (``noise_var`` is a variance; the MT-DNN code
multiplies unit noise by it instead), take ``ascent_steps`` steps of size ``step_size`` up the
symmetric KL between clean and noisy predictions, and normalise each position's perturbation
by its L-inf norm (``g / (max|g| + epsilon)``, as the MT-DNN implementation does), scaled to
``radius``. The loss is ``task loss + alpha * symmetric KL(clean, perturbed)`` with each KL
direction's target detached, as in MT-DNN. ``noise_var = 0`` makes the regulariser exactly
zero (with dropout off: both passes then see the same network).
Cost: 2 + ascent_steps forward passes, one backward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainables.adversarial import register
from trainables.adversarial.base import (AdversarialMethod, Delta, check, detach_logits,
                                         symmetric_kl)


@dataclass(frozen=True)
class SMARTSettings:
    noise_var: float = 1e-5
    step_size: float = 1e-3
    ascent_steps: int = 1
    #: weight of the smoothness regulariser
    alpha: float = 1.0
    #: stabiliser of the L-inf normalisation
    epsilon: float = 1e-6
    #: per-position L-inf size of the normalised perturbation (MT-DNN: 1)
    radius: float = 1.0

    def __post_init__(self) -> None:
        check(self.noise_var >= 0, "noise_var", f"must be >= 0, got {self.noise_var}")
        check(self.step_size >= 0, "step_size", f"must be >= 0, got {self.step_size}")
        check(self.ascent_steps >= 0, "ascent_steps", f"must be >= 0, got {self.ascent_steps}")
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        check(self.epsilon > 0, "epsilon", f"must be > 0, got {self.epsilon}")
        check(self.radius > 0, "radius", f"must be > 0, got {self.radius}")


def linf_normalise(value: torch.Tensor, radius: float, epsilon: float) -> torch.Tensor:
    """Each position's vector divided by its max-abs entry (SMART's 'inf' projection)."""
    peak = value.detach().abs().amax(dim=-1, keepdim=True)
    return radius * value / (peak + epsilon)


@register
class SMART(AdversarialMethod):
    name = "smart"
    Settings = SMARTSettings

    def __call__(self, model, task, batch, backward):
        s = self.settings
        loss, logits = model.forward_task(task, batch)
        std = math.sqrt(s.noise_var)
        delta = Delta(lambda e, _mask: torch.randn_like(e) * std, batch)
        # at zero noise the KL is at its minimum and its gradient vanishes (up to rounding that
        # the normalisation would blow up), so the ascent is skipped: the regulariser stays 0
        for _ in range(s.ascent_steps if s.noise_var > 0 else 0):
            with delta.applied(model):
                _, noisy = model.probe_task(task, batch)
            kl = symmetric_kl(detach_logits(logits), noisy, batch)
            grads = delta.grads(kl)
            delta.map(lambda v, g: linf_normalise(v + s.step_size * g, s.radius, s.epsilon), grads)
        delta.track = False
        delta.set(delta.values)
        with delta.applied(model):
            _, noisy = model.forward_task(task, batch)
        regulariser = symmetric_kl(logits, noisy, batch, detach_targets=True)
        backward(loss + s.alpha * regulariser)
        self.last = {"clean": float(loss.detach()), "regulariser": float(regulariser.detach())}
        return self.last["clean"]
