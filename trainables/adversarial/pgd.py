"""PGD (Madry et al. 2018) on the word embeddings: several projected ascent steps, then train.

The clean pass also gives the first ascent gradient, so ``steps`` ascent steps cost ``steps - 1``
extra forward passes with a gradient for the perturbation only, plus one adversarial
forward-backward: ``steps + 1`` forward passes in all, two parameter backward passes.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainables.adversarial import register
from trainables.adversarial.base import (AdversarialMethod, BoundedAttackSettings, Delta, check, direction,
                                         project, zeros)


@dataclass(frozen=True)
class PGDSettings(BoundedAttackSettings):
    """``epsilon`` (the radius of the ball), ``norm``, ``adv_weight``, and the ascent steps."""

    #: ascent step size (alpha)
    step_size: float = 0.3
    steps: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.step_size > 0, "step_size", f"must be > 0, got {self.step_size}")
        check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")


@register
class PGD(AdversarialMethod):
    name = "pgd"
    Settings = PGDSettings

    def __call__(self, model, task, batch, backward):
        s = self.settings
        delta = Delta(zeros, batch)
        with delta.applied(model):
            loss, _ = model.forward_task(task, batch)
        backward(loss)
        grads = delta.backward_grads()
        for step in range(s.steps):
            delta.track = step < s.steps - 1
            delta.map(lambda v, g: project(v + s.step_size * direction(g, s.norm), s.epsilon, s.norm),
                      grads)
            if step == s.steps - 1:
                break
            with delta.applied(model):
                ascent_loss, _ = model.probe_task(task, batch)
            grads = delta.grads(ascent_loss)
        with delta.applied(model):
            adv_loss, _ = model.forward_task(task, batch)
        backward(s.adv_weight * adv_loss)
        self.last = {"clean": float(loss.detach()), "adversarial": float(adv_loss.detach())}
        return self.last["clean"]
