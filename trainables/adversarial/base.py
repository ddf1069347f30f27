"""Shared pieces of the adversarial training methods.

Every method is a ``TrainingStep`` (see ``trainables.steps``): it perturbs the output of the
word-embedding layer through ``model.perturb_embeddings`` and sends every loss whose gradient
must reach the parameters through ``backward`` (which scales for gradient accumulation and is
DeepSpeed's backward under DeepSpeed). Gradients with respect to the perturbation itself are
taken with ``torch.autograd.grad``, which leaves parameter gradients alone.

Conventions used by all methods:

* a perturbation ``delta`` has the shape of the embedding output ``(N, L, H)`` (``N`` = batch,
  or batch x choices for multiple choice); norms are per example, over all its positions;
* padding positions (``attention_mask == 0``) are never perturbed;
* the symmetric KL of SMART and R3F is taken over the last logit dimension and averaged over
  positions: examples for classification / multiple choice, labelled tokens for tagging (positions
  whose ``labels`` are -100 are left out), sequence positions' distributions for QA start and end
  logits (the two are averaged).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from trainables.steps import Backward

NORMS = ("l2", "linf")
IGNORE = -100
_TINY = 1e-12


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Config values come from YAML: accept ints for floats and numeric strings ('1e-5')."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name}: expected a number, got {value!r}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def validate_settings(cls: type, settings: dict, *, owner: str) -> Any:
    """Build the frozen dataclass ``cls`` from a dict: unknown fields get a did-you-mean, values
    are coerced to the field types, and ``cls.__post_init__`` checks ranges."""
    if not isinstance(settings, dict):
        raise ValueError(f"{owner}: settings must be a mapping, got {type(settings).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in settings.items():
        if key not in fields:
            raise ValueError(f"{key}: unknown setting of {owner}{did_you_mean(str(key), list(fields))}; "
                             f"known: {', '.join(sorted(fields))}")
        kind = fields[key].type
        kind = _TYPES.get(kind, kind) if isinstance(kind, str) else kind
        values[key] = _coerce(key, value, kind)
    return cls(**values)


def check(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{field}: {problem}")


def check_norm(norm: str) -> None:
    check(norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}, got {norm!r}")


# --- perturbation geometry ------------------------------------------------------------------

def position_mask(batch: dict, embeddings: torch.Tensor) -> torch.Tensor | None:
    """(N, L, 1) mask of the real (non-padding) positions, or None when it cannot be aligned."""
    mask = batch.get("attention_mask")
    if mask is None or mask.numel() != embeddings.shape[0] * embeddings.shape[1]:
        return None
    return mask.reshape(embeddings.shape[0], embeddings.shape[1], 1).to(embeddings.device,
                                                                         embeddings.dtype)


def example_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``delta`` (N, ...) over all its other dimensions, in float32."""
    flat = delta.detach().float().flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: g / ||g||_2 per example, or sign(g) for L-inf."""
    if norm == "linf":
        return grad.sign()
    g = grad.float()
    scale = g.flatten(1).norm(dim=1).clamp_min(_TINY)
    return (g / scale.view(-1, *([1] * (g.dim() - 1)))).to(grad.dtype)


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Projection onto the per-example ``norm`` ball of radius ``epsilon``."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    norms = example_norms(delta, "l2")
    factor = (epsilon / norms.clamp_min(_TINY)).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1))).to(delta.dtype)


class Delta:
    """The embedding hook of a method: adds ``self.value`` to the word embeddings.

    The value is created lazily on the first forward pass (so it has the embedding output's
    shape, dtype and device) by ``init(embeddings)``; ``set`` replaces it between passes.
    ``track=True`` makes the value a leaf that requires grad, for ``torch.autograd.grad``.
    """

    def __init__(self, init: Callable[[torch.Tensor], torch.Tensor], batch: dict) -> None:
        self.init = init
        self.batch = batch
        self.value: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.track = True

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        if self.value is None:
            self.mask = position_mask(self.batch, embeddings)
            self.set(self.init(embeddings))
        if self.value.shape != embeddings.shape:
            raise RuntimeError(f"embedding output changed shape within a step: "
                               f"{tuple(self.value.shape)} -> {tuple(embeddings.shape)}")
        return embeddings + self.value

    def set(self, value: torch.Tensor) -> None:
        value = value.detach()
        if self.mask is not None:
            value = value * self.mask.to(value.dtype)
        self.value = value.requires_grad_(self.track)


def zeros(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(embeddings)


# --- the smoothness term of SMART and R3F -----------------------------------------------------

def _kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor, detach_targets: bool) -> torch.Tensor:
    """KL(p||q) + KL(q||p) for each row of the last dimension, in float32."""
    p_log = F.log_softmax(p_logits.float(), dim=-1)
    q_log = F.log_softmax(q_logits.float(), dim=-1)
    p_target = p_log.detach() if detach_targets else p_log
    q_target = q_log.detach() if detach_targets else q_log
    kl_pq = (p_target.exp() * (p_target - q_log)).sum(-1)  # KL(p||q), gradient through q
    kl_qp = (q_target.exp() * (q_target - p_log)).sum(-1)  # KL(q||p), gradient through p
    return kl_pq + kl_qp


def symmetric_kl(clean, noisy, batch: dict | None = None, *, detach_targets: bool = False
                 ) -> torch.Tensor:
    """Mean symmetric KL between two predictions (tensors, or tuples of tensors for QA).

    The mean is over every distribution but the last dimension; for (B, L, T) tagging logits
    with (B, L) ``labels``, positions labelled -100 are left out. ``detach_targets`` stops the
    gradient through the target distribution of each direction (SMART); R3F lets it flow.
    """
    if isinstance(clean, (tuple, list)):
        parts = [symmetric_kl(c, n, batch, detach_targets=detach_targets) for c, n in zip(clean, noisy)]
        return torch.stack(parts).mean()
    rows = _kl_rows(clean, noisy, detach_targets)
    labels = (batch or {}).get("labels")
    if (clean.dim() == 3 and isinstance(labels, torch.Tensor)
            and tuple(labels.shape) == tuple(clean.shape[:2])):
        keep = (labels.to(rows.device) != IGNORE).to(rows.dtype)
        return (rows * keep).sum() / keep.sum().clamp_min(1.0)
    return rows.mean()


def detach_logits(logits):
    if isinstance(logits, (tuple, list)):
        return type(logits)(x.detach() for x in logits)
    return logits.detach()


class AdversarialMethod:
    """Base of the methods: holds validated settings and the numbers of its last step.

    ``last`` (for logging and tests) maps "clean" / "adversarial" / "regulariser" to floats.
    """

    name: ClassVar[str]
    Settings: ClassVar[type]

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.last: dict[str, float] = {}

    def __call__(self, model, task, batch: dict, backward: Backward) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"
