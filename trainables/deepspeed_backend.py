"""DeepSpeed ZeRO as an ``Optimization`` for the training loop (large encoders: XLM-R XL/XXL).

``train(..., optimization=functools.partial(DeepSpeedOptimization, ds_settings=...))`` swaps
plain AdamW for a DeepSpeed engine without touching the loop or the step functions:

* the loop feeds micro-batches of ``TrainSettings.batch_size`` rows and calls ``update()``
  every ``grad_accumulation`` micro-batches, so the engine runs with
  ``managed_gradient_accumulation: false`` (``backward`` only accumulates; ``step`` is the
  boundary that reduces, clips and updates) and the effective batch handed to
  ``build_ds_config`` is ``batch_size * grad_accumulation * world_size``;
* every training forward must go through the engine (its forward registers the backward
  prologue ZeRO needs, and ZeRO-3's root hook resets the parameter-fetch trace), so the model's
  ``forward_task`` is re-routed through the engine while the engine lives (``route_forward_task``);
* ``state_dict()`` writes a DeepSpeed checkpoint (sharded optimizer and weights, one file per
  rank) into ``checkpoint_dir`` and returns a small dict pointing at it; ``load_state_dict``
  loads it back. Every rank must call both.

``config_file``: a user ds_config JSON is the base and the values derived here (batch sizes,
optimizer, schedule, clipping, ZeRO stage/offload, precision) are merged over it, so the file
can tune everything else (bucket sizes, overlap_comm, ...). ``config_file_as_is=True`` uses the
file unchanged (its batch sizes must then agree with the loop; DeepSpeed checks that).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from trainables.steps import parameter_groups, process_rank

log = logging.getLogger(__name__)

STAGES = (0, 1, 2, 3)
OFFLOAD = ("none", "cpu")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DeepSpeedSettings:
    stage: int = 2
    offload_optimizer: str = "none"
    offload_param: str = "none"
    precision: str = "bf16"
    gradient_checkpointing: bool = False
    config_file: str | None = None
    config_file_as_is: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stage, bool) or self.stage not in STAGES:
            raise ValueError(f"stage: must be one of 0 1 2 3, got {self.stage!r}")
        for name in ("offload_optimizer", "offload_param"):
            if getattr(self, name) not in OFFLOAD:
                raise ValueError(f"{name}: must be 'none' or 'cpu', got {getattr(self, name)!r}")
        if self.offload_param != "none" and self.stage != 3:
            raise ValueError(f"offload_param: parameter offload needs stage 3, got stage {self.stage}")
        if self.offload_optimizer != "none" and self.stage == 0:
            raise ValueError("offload_optimizer: optimizer offload needs ZeRO stage 1, 2 or 3")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of fp32 bf16 fp16, got {self.precision!r}")
        for name in ("gradient_checkpointing", "config_file_as_is"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if self.config_file is not None and not Path(self.config_file).expanduser().is_file():
            raise ValueError(f"config_file: no such file: {self.config_file}")

    @classmethod
    def from_dict(cls, values: dict) -> "DeepSpeedSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown DeepSpeed setting (known: {' '.join(sorted(known))})")
        return cls(**values)


def single_process_env() -> None:
    """What DeepSpeed needs to run in one process without MPI discovery (a plain trial).

    Inside Ray Train the process group exists already and nothing is set. Otherwise rank 0 of a
    world of 1 on a free loopback port, and ``DS_ACCELERATOR=cpu`` on machines without CUDA.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ or "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def micro_batch_size(batch_size: int, grad_accumulation: int, world_size: int) -> int:
    """Per-device micro-batch of an effective batch; an error when it does not divide evenly."""
    per_step = world_size * grad_accumulation
    if batch_size % per_step or batch_size < per_step:
        raise ValueError(f"batch_size: {batch_size} is not divisible by world_size {world_size} x "
                         f"grad_accumulation {grad_accumulation}")
    return batch_size // per_step


def build_ds_config(settings: DeepSpeedSettings, train_settings, world_size: int,
                    total_steps: int | None = None) -> dict:
    """The ds_config for an effective batch of ``train_settings.batch_size`` rows per update.

    ``train_settings.batch_size`` here is the batch of one optimizer update over all workers;
    micro-batch = batch_size // (world_size * grad_accumulation). The schedule is linear warmup
    then linear decay to 0 over ``total_steps`` (``max_steps`` when not given). Unlike the plain
    path's schedule, DeepSpeed's WarmupDecayLR warms up over at least 2 steps and its first
    update runs at lr 0, so trajectories match the plain path only up to a one-step shift.
    """
    if world_size < 1:
        raise ValueError(f"world_size: must be >= 1, got {world_size}")
    accumulation = train_settings.grad_accumulation
    micro = micro_batch_size(train_settings.batch_size, accumulation, world_size)
    total = total_steps if total_steps is not None else train_settings.max_steps
    if not total or total < 1:
        raise ValueError("total_steps: needed for the WarmupDecayLR schedule (give it or max_steps)")
    zero: dict = {"stage": settings.stage}
    if settings.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": settings.offload_optimizer, "pin_memory": True}
    if settings.offload_param != "none":
        zero["offload_param"] = {"device": settings.offload_param, "pin_memory": True}
    # torch's AdamW unless offloading (that needs DeepSpeedCPUAdam); FusedAdam needs built ops
    optimizer_params = {"lr": train_settings.learning_rate, "weight_decay": train_settings.weight_decay,
                        "betas": [0.9, 0.999], "eps": 1e-8}
    if settings.offload_optimizer == "none":
        optimizer_params["torch_adam"] = True
    config: dict = {
        "train_batch_size": train_settings.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "managed_gradient_accumulation": False,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "total_num_steps": int(total), "warmup_min_lr": 0.0,
            "warmup_max_lr": train_settings.learning_rate,
            # DeepSpeed wants >= 1 warmup step (and warms up over at least 2)
            "warmup_num_steps": max(1, int(train_settings.warmup_ratio * total)), "warmup_type": "linear"}},
        "zero_optimization": zero,
        "bf16": {"enabled": settings.precision == "bf16"},
        "fp16": {"enabled": settings.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if math.isfinite(train_settings.max_grad_norm):
        config["gradient_clipping"] = train_settings.max_grad_norm
    if settings.offload_optimizer != "none":
        config["zero_force_ds_cpu_optimizer"] = True
    if settings.config_file:
        user = json.loads(Path(settings.config_file).expanduser().read_text())
        return user if settings.config_file_as_is else _merge(user, config)
    return config


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, recursing into dicts present in both."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def route_forward_task(model, engine) -> None:
    """Make ``model.forward_task`` (what every step function calls) run through ``engine``.

    ``engine`` is a DeepSpeed engine or a DDP wrapper around ``model``. ``engine(task, batch)``
    calls ``model(task, batch)`` = ``MultiTaskModel.forward``, which calls ``self.forward_task``
    again: that inner call (flagged) runs the class's own ``forward_task``. In eval mode the
    wrapper is skipped (evaluation needs no gradient sync; ZeRO-3's per-module hooks still gather).
    """
    own = type(model).forward_task
    inside = {"depth": 0}

    def forward_task(task, batch):
        if inside["depth"] or not model.training:
            return own(model, task, batch)
        inside["depth"] += 1
        try:
            return engine(task, batch)
        finally:
            inside["depth"] -= 1

    model.forward_task = forward_task


class DeepSpeedOptimization:
    """The ``Optimization`` protocol over a DeepSpeed engine (ZeRO 0-3, offload, bf16/fp16)."""

    def __init__(self, model, settings, total_steps: int, *, ds_settings: DeepSpeedSettings | dict,
                 checkpoint_dir: str | os.PathLike | None = None) -> None:
        import deepspeed

        self.ds_settings = (ds_settings if isinstance(ds_settings, DeepSpeedSettings)
                            else DeepSpeedSettings.from_dict(ds_settings))
        self.model = model
        world = _world_size()
        effective = replace(settings, batch_size=settings.batch_size * settings.grad_accumulation * world)
        self.config = build_ds_config(self.ds_settings, effective, world, total_steps=max(total_steps, 1))
        if self.ds_settings.gradient_checkpointing:
            model.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=parameter_groups(model, settings.weight_decay), config=self.config,
            dist_init_required=not (torch.distributed.is_available() and torch.distributed.is_initialized()))
        route_forward_task(model, self.engine)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="ds-ckpt-"))

    def backward(self, loss: torch.Tensor) -> None:
        """``engine.backward``: may be called several times per micro-batch (FreeLB: once per
        ascent step); each call reduces its gradients once into ZeRO's accumulation buffers and
        ``update`` is the boundary, so they add up like accumulated micro-batches (DeepSpeed's
        ``global_samples`` counter then counts backward calls, not micro-batches). A graph that
        went through the engine must be differentiated only here: the engine hooks its outputs,
        so a ``torch.autograd.grad`` over them runs its reduction on empty buckets (the
        adversarial methods take perturbation-only gradients on ``model.probe_task`` passes)."""
        self.engine.backward(loss)

    def update(self) -> None:
        self.engine.step()

    def save_model(self, tokenizer, out_dir: Path, meta: dict) -> None:
        """The consolidated weights in ``trainables.model.save_model``'s layout (``save_consolidated``):
        a collective, since ZeRO partitions them; every rank must call it, rank 0 writes."""
        save_consolidated(self.engine, self.model, tokenizer, out_dir, meta)

    def close(self) -> None:
        """Release the engine (hooks, partitions, optimizer state) once training is over."""
        destroy = getattr(self.engine, "destroy", None)
        if destroy is not None:
            destroy()

    def state_dict(self) -> dict:
        """Saves a DeepSpeed checkpoint (all ranks) and returns where it is."""
        tag = f"step{self.engine.global_steps}"
        self.engine.save_checkpoint(str(self.checkpoint_dir), tag=tag)
        self._prune(keep=tag)
        return {"deepspeed_checkpoint": str(self.checkpoint_dir), "tag": tag}

    def _prune(self, keep: str) -> None:
        """Only the newest checkpoint is needed to resume; older tags go once all ranks saved.

        Every rank prunes its own folder: ranks may checkpoint into folders of their own (the
        staging folders of a trial on object storage); a shared folder is pruned by whoever
        gets there first.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        for old in self.checkpoint_dir.glob("step*"):
            if old.is_dir() and old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def load_state_dict(self, state: dict) -> None:
        # the state names the folder it was saved in; a trial resumed elsewhere (another node's
        # staging folder) finds the same checkpoint in its own folder
        where = state["deepspeed_checkpoint"]
        if (self.checkpoint_dir / state["tag"]).is_dir():
            where = str(self.checkpoint_dir)
        path, _ = self.engine.load_checkpoint(where, tag=state["tag"])
        if path is None:
            raise FileNotFoundError(f"deepspeed_checkpoint: nothing at {where} "
                                    f"(tag {state['tag']})")


def consolidated_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """Full weights of the engine's module on rank 0's CPU; None on the other ranks.

    A collective: call it on every rank. ZeRO-3 gathers its partitioned weights layer by layer
    in their training dtype (16 bit under bf16/fp16: an XXL model is 21 GB instead of 43 GB) onto
    rank 0 only. ZeRO 0-2 keep full module weights on every rank; there the fp32 master copy is
    taken where the optimizer keeps one (a gather of its partitions), and only rank 0 keeps it.
    """
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    from deepspeed.utils import safe_get_full_fp32_param

    keep = process_rank() == 0
    state = {}
    for name, param in engine.module.named_parameters():
        full = safe_get_full_fp32_param(param)  # every rank takes part in the gather
        if keep:
            state[name] = (full if full is not None else param).detach().float().cpu().clone()
    if not keep:
        return None
    for name, buffer in engine.module.named_buffers():
        state[name] = buffer.detach().cpu().clone()
    return state


def save_consolidated(engine, model, tokenizer, out_dir: Path, meta: dict) -> None:
    """``trainables.model.save_model``'s layout (HF encoder dir + heads.pt) from a ZeRO engine.

    Every rank gathers (collective); rank 0 writes.
    """
    state = consolidated_state_dict(engine)
    if state is None:  # not rank 0
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    heads = {k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")}
    dtypes = {v.dtype for k, v in encoder.items() if v.is_floating_point()}
    model.encoder.config.dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model.encoder.save_pretrained(out_dir, state_dict=encoder)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    torch.save(heads, out_dir / "heads.pt")
    (out_dir / "xstilts.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
