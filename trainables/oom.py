"""Retry a trial with a smaller micro-batch when the GPU runs out of memory.

A sweep over batch sizes and models will hit configurations that do not fit; rather than fail
the trial, the same effective batch is reached with smaller micro-batches and more gradient
accumulation: in ``TrainSettings`` ``batch_size`` is the micro-batch the loop feeds and an
update happens every ``grad_accumulation`` micro-batches, so ``batch_size * grad_accumulation``
is kept constant (the optimisation is the same up to floating-point summation order).
"""
from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

OOM_MESSAGES = (
    "out of memory",                 # "CUDA out of memory", "HIP out of memory", DeepSpeed's "... out of memory"
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cuda error: out of memory",
    "not enough memory",             # DeepSpeed's swapper/offload ("Not enough memory ...")
    "can't allocate memory",         # torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory")
    "failed to allocate",            # DeepSpeed / NCCL allocation failures
)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OOM errors and runtime errors whose message says memory ran out.

    Follows ``__cause__``/``__context__`` so wrapped errors (Ray, DeepSpeed) are recognised,
    and the per-rank errors of a failed Ray Train worker group (``worker_failures``), so one
    rank running out of memory makes the whole data-parallel trial retry with a smaller batch.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError):
            return True
        if isinstance(current, (RuntimeError, MemoryError)):
            message = str(current).lower()
            if isinstance(current, MemoryError) or any(m in message for m in OOM_MESSAGES):
                return True
        pending += [current.__cause__, current.__context__,
                    *(getattr(current, "worker_failures", None) or {}).values()]
    return False


def free_accelerator_memory() -> None:
    """Drop unreachable tensors and give cached CUDA blocks back before the next try."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def smaller_micro_batch(micro: int, floor: int = 1) -> int | None:
    """The largest divisor of ``micro`` that is at most half of it and >= floor, else None.

    A divisor keeps ``micro * accumulation`` exact: 16 -> 8, 6 -> 3, 3 -> 1, 5 -> 1.
    """
    for candidate in range(micro // 2, max(floor, 1) - 1, -1):
        if candidate >= 1 and micro % candidate == 0:
            return candidate
    return None


@dataclass(frozen=True)
class OomOutcome(Generic[T]):
    """What an attempt returned, and what actually ran: the hyperparameters of the attempt that
    fitted (a smaller micro-batch after an OOM) and one record per retry before it."""

    value: T
    hparams: dict
    retries: list[dict] = field(default_factory=list)


def retry_on_oom(fn: Callable[[dict], T], hparams: dict, *, floor: int = 1,
                 on_retry: Callable[[dict, dict], None] | None = None) -> OomOutcome[T]:
    """``fn(hparams)``; on OOM, again with a smaller micro-batch and proportionally more accumulation.

    ``on_retry(record, new_hparams)`` is called before each retry; ``record`` holds attempt,
    old/new ``batch_size`` and ``grad_accumulation`` and the error's first line (for MLflow).
    When the micro-batch cannot shrink below ``floor`` the last OOM error is raised.
    """
    current = dict(hparams)
    retries: list[dict] = []
    while True:
        try:
            return OomOutcome(fn(current), current, retries)
        except BaseException as exc:  # noqa: BLE001 - filtered right below
            if not is_out_of_memory(exc):
                raise
            micro = int(current["batch_size"])
            accumulation = int(current.get("grad_accumulation", 1))
            smaller = smaller_micro_batch(micro, floor)
            if smaller is None:
                log.error("out of memory at batch_size %d (floor %d): giving up", micro, floor)
                raise
            record = {"attempt": len(retries) + 1, "old_batch_size": micro, "old_grad_accumulation": accumulation,
                      "new_batch_size": smaller, "new_grad_accumulation": accumulation * (micro // smaller),
                      "error": (str(exc).splitlines() or [type(exc).__name__])[0][:300]}
        # outside the except block: the traceback (and the tensors its frames hold) is gone
        free_accelerator_memory()
        retries.append(record)
        current = {**current, "batch_size": record["new_batch_size"],
                   "grad_accumulation": record["new_grad_accumulation"]}
        log.warning("out of memory: retrying with batch_size %d x grad_accumulation %d (was %d x %d)",
                    record["new_batch_size"], record["new_grad_accumulation"], micro, accumulation)
        if on_retry is not None:
            on_retry(record, dict(current))


def run_once(fn: Callable[[dict], T], hparams: dict) -> OomOutcome[T]:
    """One attempt, no retry: a rank of a multi-worker trial, whose worker group is retried as a
    whole (one rank retrying alone would leave the others waiting in a collective)."""
    current = dict(hparams)
    return OomOutcome(fn(current), current)


def run_with_oom_retry(fn: Callable[[dict], T], hparams: dict, *, floor: int = 1,
                       on_retry: Callable[[dict, dict], None] | None = None) -> T:
    """``retry_on_oom``'s value alone, for callers that only need what ``fn`` returned."""
    return retry_on_oom(fn, hparams, floor=floor, on_retry=on_retry).value
