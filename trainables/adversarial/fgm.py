"""FGM (Miyato et al. 2017): one gradient-sized step on the word embeddings, then train on both.

Cost: two forward-backward passes (clean, adversarial).
"""
from __future__ import annotations

from dataclasses import dataclass

from trainables.adversarial import register
from trainables.adversarial.base import AdversarialMethod, BoundedAttackSettings, Delta, direction, zeros


@dataclass(frozen=True)
class FGMSettings(BoundedAttackSettings):
    """``epsilon``, ``norm`` and ``adv_weight``: one step of size ``epsilon``."""


@register
class FGM(AdversarialMethod):
    name = "fgm"
    Settings = FGMSettings

    def __call__(self, model, task, batch, backward):
        s = self.settings
        delta = Delta(zeros, batch)
        with delta.applied(model):
            loss, _ = model.forward_task(task, batch)
        backward(loss)
        grads = delta.backward_grads()
        delta.track = False
        delta.set([s.epsilon * direction(g, s.norm) for g in grads])
        with delta.applied(model):
            adv_loss, _ = model.forward_task(task, batch)
        backward(s.adv_weight * adv_loss)
        self.last = {"clean": float(loss.detach()), "adversarial": float(adv_loss.detach())}
        return self.last["clean"]
