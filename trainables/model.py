"""Encoder + one head per task; load from the tiny model, a hub id, a local dir or a checkpoint.

Heads are per task so one encoder can be trained on several intermediate tasks at once; only
the encoder travels from the intermediate phase to the target phase.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

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
        # the plain path's mixed precision (``trainables.device.Precision``): the encoder runs
        # under autocast; None = as the weights are (fp32, or DeepSpeed's own 16-bit weights)
        self.precision = None

    def autocast(self):
        """The forward-pass autocast context of this model's precision (a no-op without one)."""
        return self.precision.autocast() if self.precision is not None else contextlib.nullcontext()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, batch: dict) -> torch.Tensor:
        inputs = {k: batch[k].to(self.device, non_blocking=True)  # pinned batches copy asynchronously
                  for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        inputs.pop("token_type_ids", None)  # XLM-R has a single segment type
        if self.precision is None or not self.precision.mixed:
            return self.encoder(**inputs).last_hidden_state
        with self.autocast():
            hidden = self.encoder(**inputs).last_hidden_state
        # heads run in fp32 outside an autocast block (under one, autocast casts them again)
        return hidden.float()

    def forward_task(self, task: Task, batch: dict) -> tuple[torch.Tensor, object]:
        """(loss, logits) of one task's batch: the one forward pass every training step uses."""
        batch = {k: v.to(self.device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}
        family = get_family(task.info.family)
        logits = family.forward(self, self.heads[task.name], batch)
        return family.loss(logits, batch), logits

    def probe_task(self, task: Task, batch: dict) -> tuple[torch.Tensor, object]:
        """``forward_task`` for a pass whose graph is only differentiated with respect to an
        input perturbation (``torch.autograd.grad``: the ascent passes of PGD and SMART), never
        backpropagated into the parameters.

        It skips a DeepSpeed engine or DDP wrapper that ``forward_task`` is routed through
        (``route_forward_task``): the engine hooks its forward's outputs and would take that
        gradient for a backward of the step (and reduce empty buckets), and DDP expects a
        parameter backward after each of its forwards. Parameters are not partitioned under
        ZeRO 0-2; ZeRO-3's per-module hooks gather them.
        """
        return type(self).forward_task(self, task, batch)

    def forward(self, task: Task, batch: dict) -> tuple[torch.Tensor, object]:
        """``model(task, batch)``: the same as ``forward_task``, through module hooks (DeepSpeed)."""
        return self.forward_task(task, batch)

    def loss(self, task: Task, batch: dict) -> torch.Tensor:
        return self.forward_task(task, batch)[0]

    def input_embeddings(self) -> nn.Module:
        """The word-embedding layer whose output adversarial methods perturb."""
        return self.encoder.get_input_embeddings()

    def freeze_input_embeddings(self) -> None:
        """Keep the word embeddings as pretrained (``freeze_embeddings``): English fine-tuning
        updates only English rows, so frozen rows keep every language where pretraining put it."""
        self.input_embeddings().requires_grad_(False)

    @contextlib.contextmanager
    def perturb_embeddings(self, perturb: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
        """Within the block, the word embeddings of every forward pass are ``perturb(embeddings)``.

        A forward hook on the embedding layer: works for every family (multiple choice reshapes
        before it), for multi-task batches and inside a DeepSpeed engine, which wraps this module.
        """
        handle = self.input_embeddings().register_forward_hook(lambda _m, _i, out: perturb(out))
        try:
            yield
        finally:
            handle.remove()


def build_model(start: str, tasks: list[Task], dropout: float | None = None) -> tuple[MultiTaskModel, object]:
    """Encoder from ``start`` (hub id or directory) plus a fresh head for each trainable task."""
    tokenizer = AutoTokenizer.from_pretrained(start)
    encoder = AutoModel.from_pretrained(start, add_pooling_layer=False)
    hidden = encoder.config.hidden_size
    p = encoder.config.hidden_dropout_prob if dropout is None else dropout
    heads = {t.name: get_family(t.info.family).make_head(t, hidden, p)
             for t in tasks if get_family(t.info.family).trainable}
    return MultiTaskModel(encoder, heads), tokenizer


def load_saved_weights(model: MultiTaskModel, directory: str | Path) -> None:
    """Load a ``save_model`` directory's weights into ``model`` in place, on its device.

    The tensors go straight to the device the model is on (no CPU copy of the weights), and are
    cast to the model's parameter dtype: the dev-selected epoch is evaluated where it trained.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    device = str(next(model.parameters()).device)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device=device))
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    # non-persistent buffers (position ids) may be saved (a DeepSpeed consolidation) or not
    buffers = {name for name, _ in model.encoder.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    unexpected = [k for k in unexpected if k not in buffers]
    if missing or unexpected:
        raise RuntimeError(f"{directory}: weights do not fit the model (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    model.heads.load_state_dict(torch.load(directory / "heads.pt", map_location=device, weights_only=True))


def build_on_device(directory: str | Path, tasks: list[Task], device: torch.device,
                    dtype: torch.dtype) -> tuple[MultiTaskModel, object]:
    """A ``save_model`` directory as a model built directly on ``device`` in ``dtype``.

    For evaluating a DeepSpeed-trained model: the ZeRO engine is gone, and no full fp32 copy is
    made on the CPU (the skeleton is allocated on the device, then the weights are loaded there).
    """
    from transformers import AutoConfig

    directory = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = AutoConfig.from_pretrained(directory)
    with torch.device(device):
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
        hidden = config.hidden_size
        heads = {t.name: get_family(t.info.family).make_head(t, hidden, config.hidden_dropout_prob)
                 for t in tasks if get_family(t.info.family).trainable}
        model = MultiTaskModel(encoder, heads)
    model.to(dtype=dtype)
    load_saved_weights(model, directory)
    return model, tokenizer


def save_model(model: MultiTaskModel, tokenizer, out_dir: Path, meta: dict) -> None:
    """Save as a plain HF encoder directory (loadable by ``AutoModel``) plus the heads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    torch.save(model.heads.state_dict(), out_dir / "heads.pt")
    (out_dir / "xstilts.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
