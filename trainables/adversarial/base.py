"""Shared pieces of the adversarial training methods.

Every method is a ``TrainingStep`` (see ``trainables.steps``): it perturbs the output of the
word-embedding layer through ``model.perturb_embeddings`` and sends every loss whose gradient
must reach the parameters through ``backward`` (which scales for gradient accumulation and is
DeepSpeed's backward under DeepSpeed). The gradient with respect to the perturbation itself
comes either from that same ``backward`` (the perturbation is a leaf: ``Delta.backward_grads``,
for passes that also train: FGM, PGD's clean pass, FreeLB) or, for passes that must not touch
the parameters (PGD and SMART ascent), from ``torch.autograd.grad`` on a pass run with
``model.probe_task``, which goes around a DeepSpeed engine / DDP wrapper. A graph that went
through a DeepSpeed engine is never differentiated by anything but ``backward``: the engine
hooks its outputs, and any other autograd pass over them would run (and break) its
gradient reduction. Several ``backward`` calls in one micro-step (FreeLB: one per ascent
step) accumulate like gradient accumulation, under ZeRO-2 too.

Conventions used by all methods:

* a perturbation ``delta`` has the shape of the embedding output ``(N, L, H)`` (``N`` = batch,
  or batch x choices for multiple choice); norms are per example, over all its positions;
* a family whose forward pass calls the encoder more than once (the dual encoder: queries and
  candidates, padded separately) gets one perturbation per call (``Delta`` slots), each with
  its own per-sequence bound;
* padding positions (``attention_mask == 0``, or each call's ``<side>_attention_mask``) are
  never perturbed;
* the symmetric KL of SMART and R3F is taken over the last logit dimension and averaged over
  positions: examples for classification / multiple choice, labelled tokens for tagging (positions
  whose ``labels`` are -100 are left out), sequence positions' distributions for QA start and end
  logits (the two are averaged).
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
from typing import Any, Callable, ClassVar, Iterator

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


@dataclasses.dataclass(frozen=True)
class BoundedAttackSettings:
    """What the attacks with a fixed budget (FGM, PGD) share: the size of the perturbation and
    the weight of the loss on the perturbed input."""

    #: size of the perturbation, per example, in ``norm`` (PGD: the radius it is projected onto)
    epsilon: float = 1.0
    norm: str = "l2"
    #: weight of the adversarial loss added to the clean one
    adv_weight: float = 1.0

    def __post_init__(self) -> None:
        check(self.epsilon > 0, "epsilon", f"must be > 0, got {self.epsilon}")
        check_norm(self.norm)
        check(self.adv_weight >= 0, "adv_weight", f"must be >= 0, got {self.adv_weight}")


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


def call_mask(batch: dict, call: int, embeddings: torch.Tensor) -> torch.Tensor | None:
    """(N, L, 1) mask of the real positions of the ``call``-th encoder call of a forward pass.

    A family that encodes one sequence (group) per example has ``attention_mask``; one that
    encodes several per example in separate calls (the dual encoder: queries, then candidates)
    has one ``<side>_attention_mask`` per call, in the batch in the order it encodes them.
    None when no mask lines up with ``embeddings`` (nothing is then masked).
    """
    if isinstance(batch.get("attention_mask"), torch.Tensor):
        return position_mask(batch, embeddings)
    masks = [v for k, v in batch.items()
             if isinstance(k, str) and k.endswith("_attention_mask") and isinstance(v, torch.Tensor)]
    if call >= len(masks):
        return None
    return position_mask({"attention_mask": masks[call]}, embeddings)


class Delta:
    """The embedding hook of a method: adds a perturbation to the word embeddings.

    A family's forward pass may call the encoder more than once (the dual encoder embeds
    queries and candidates separately, with their own padding), so the perturbation has one
    *slot* per encoder call of a pass: ``values[i]`` is added to the output of the i-th call.
    Apply it with ``with delta.applied(model): ...`` (one block = one forward pass), which
    restarts the call count. A slot is created lazily on its first call (so it has that
    call's shape, dtype and device) by ``init(embeddings, mask)``, with ``mask`` the
    (N, L, 1) real-position mask or None; ``set`` replaces the values between passes. Norms
    and bounds are per sequence of a slot, as for multiple choice (batch x choices).
    ``track=True`` makes each value a leaf that requires grad: ``backward_grads`` after the
    step's ``backward`` of a training pass, or ``grads`` of a ``model.probe_task`` pass.
    """

    def __init__(self, init: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                 batch: dict) -> None:
        self.init = init
        self.batch = batch
        self.values: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        self.track = True
        self._call = 0

    @contextlib.contextmanager
    def applied(self, model) -> Iterator[None]:
        """One forward pass with the perturbation (``model.perturb_embeddings(self)``)."""
        self._call = 0
        with model.perturb_embeddings(self):
            yield

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        call = self._call
        self._call += 1
        if call == len(self.values):
            mask = call_mask(self.batch, call, embeddings)
            self.masks.append(mask)
            self.values.append(self._prepare(self.init(embeddings, mask), mask))
        value = self.values[call]
        if value.shape != embeddings.shape:
            raise RuntimeError(f"embedding output of encoder call {call} changed shape within a "
                               f"step: {tuple(value.shape)} -> {tuple(embeddings.shape)}")
        return embeddings + value

    def _prepare(self, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        value = value.detach()
        if mask is not None:
            value = value * mask.to(value.dtype)
        return value.requires_grad_(self.track)

    def set(self, values: list[torch.Tensor]) -> None:
        """New values, one per slot (padding positions are zeroed)."""
        if len(values) != len(self.values):
            raise ValueError(f"{len(values)} values for {len(self.values)} perturbation slots")
        self.values = [self._prepare(v, m) for v, m in zip(values, self.masks)]

    def map(self, fn: Callable[..., torch.Tensor], *others: list[torch.Tensor]) -> None:
        """``set([fn(value_i, other_i, ...) for each slot])``, on detached values."""
        self.set([fn(v.detach(), *rest) for v, *rest in zip(self.values, *others)])

    def grads(self, loss: torch.Tensor, *, retain_graph: bool = False) -> list[torch.Tensor]:
        """d loss / d value of each slot (zeros for a slot the loss does not depend on);
        parameter gradients are left alone. Only for a pass run with ``model.probe_task``
        (see there: a graph through a DeepSpeed engine must only be differentiated by its
        ``backward``); after a training pass, use ``backward_grads``."""
        found = torch.autograd.grad(loss, self.values, retain_graph=retain_graph, allow_unused=True)
        return [torch.zeros_like(v) if g is None else g for v, g in zip(self.values, found)]

    def backward_grads(self) -> list[torch.Tensor]:
        """The gradient of each (tracked) slot left by the step's ``backward`` of a pass.

        It is scaled as ``backward`` scales the loss (gradient accumulation, DeepSpeed's
        accumulation steps, an fp16 loss scale), which the ascent directions (``direction``)
        do not depend on; one backward gives both the parameter and the perturbation gradient.
        """
        return [torch.zeros_like(v) if v.grad is None else v.grad.detach() for v in self.values]

    def max_norm(self, norm: str) -> float:
        """The largest per-sequence norm over all slots (nan before the first pass)."""
        if not self.values:
            return math.nan
        return float(max(example_norms(v, norm).max() for v in self.values))


def zeros(embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
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
