"""Multi-worker (data-parallel) trials: a Ray Train ``TorchTrainer`` started from a Tune trial.

Ray 2.60 runs Ray Train V2, whose trainers cannot be handed to ``Tuner`` any more; the Tune
trial function starts the ``TorchTrainer`` itself (``run_distributed``) and forwards what rank 0
reports to Tune through the trial's ``report`` callback. The hop is a Ray queue: Train calls
user callbacks in its controller actor, not in the trial's process.

Inside each worker (``trial_fn(config, ctx)``), the process group is already set up by Ray
Train (gloo on CPU, nccl on GPU). The helpers here make the single-process pieces
data-parallel without changing the training loop:

* ``shard(dataset, ctx)``: rank r takes examples r, r+W, r+2W, ... padded by wrapping around so
  every rank has the same number (as ``DistributedSampler``), hence the same number of steps;
* ``worker_settings``: the study's ``batch_size`` (per update, one process) is split over the
  workers, so the effective batch ``batch_size * grad_accumulation`` does not change with W;
* ``wrap_data_parallel``: DDP around the model, with ``model.forward_task`` (what every step
  function calls) routed through the DDP wrapper so its gradient all-reduce is armed. DeepSpeed
  needs no wrapper: ``DeepSpeedOptimization`` joins the existing process group
  (``dist_init_required=False``), so it never opens a port of its own.

Every rank evaluates the (small) English dev split itself, so all ranks take the same
model-selection decision; only rank 0 writes files (``ctx.is_main``) and rank 0's metrics are the
ones that reach Tune. All ranks must call ``ctx.report`` equally often (it is a barrier).

Stopping: when the trial's ``report`` callback raises (a scheduler prunes the trial, a script
stops it after some epoch), the workers must not go on training in the background. Each report
is therefore answered: rank 0 waits for the driver's go/stop for that report and broadcasts it,
so every rank leaves at the same report with ``StopRequested``; once the Train run has ended,
``run_distributed`` re-raises the callback's exception, as a single-process trial would.
"""
from __future__ import annotations

import logging
import math
import os
import queue as queue_lib
import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

FINAL_KEY = "__xstilts_final__"
# how long rank 0 waits for the driver's answer to a report before going on without it
REPLY_TIMEOUT_S = 600.0


class StopRequested(Exception):
    """Raised by ``ctx.report`` on every rank when the driver asked the trial to stop there."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this worker stands in the group, and how it reports (a barrier over all ranks)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    report: Callable[[dict], None]

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s interleaved share of ``n`` examples, padded by wrap-around to ceil(n/W)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: {rank} is not in 0..{world_size - 1}")
    if n == 0:
        return []
    per_rank = math.ceil(n / world_size)
    padded = [i % n for i in range(per_rank * world_size)]
    return padded[rank::world_size]


def shard(dataset, ctx: DistributedContext):
    """This rank's share of a ``datasets.Dataset`` (see ``shard_indices``)."""
    return dataset.select(shard_indices(len(dataset), ctx.rank, ctx.world_size))


def worker_settings(settings, world_size: int):
    """``TrainSettings`` for one of ``world_size`` workers: the micro-batch split over them."""
    if settings.batch_size % world_size:
        raise ValueError(f"batch_size: {settings.batch_size} is not divisible by {world_size} workers")
    return replace(settings, batch_size=settings.batch_size // world_size)


def wrap_data_parallel(model, ctx: DistributedContext, find_unused_parameters: bool | None = None):
    """Move the model to this worker's device and wrap it in DDP (returned; ``model`` is routed).

    With several task heads, a batch uses only one of them: DDP is then told to look for unused
    parameters (the default when the model has more than one head).
    """
    from torch.nn.parallel import DistributedDataParallel

    from trainables.deepspeed_backend import route_forward_task

    model.to(ctx.device)
    if find_unused_parameters is None:
        find_unused_parameters = len(getattr(model, "heads", ())) > 1
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
    route_forward_task(model, ddp)
    return ddp


def _agree_on(stop: bool, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (a broadcast; no-op for a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop
    flag = torch.tensor([1 if stop else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _await_reply(replies) -> bool:
    """Rank 0: the driver's answer to the report just made (True: stop)."""
    try:
        return bool(replies.get(block=True, timeout=REPLY_TIMEOUT_S))
    except queue_lib.Empty:
        log.warning("no answer from the trial's driver to a report within %.0f s: going on", REPLY_TIMEOUT_S)
        return False
    except Exception as exc:  # noqa: BLE001 - the queue goes with the driver: nobody to train for
        log.warning("the trial's driver is gone (%s): stopping", type(exc).__name__)
        return True


def _worker_loop(loop_config: dict) -> None:
    """Runs in every Ray Train worker: build the context, run the trial, report rank 0's result."""
    import ray.train
    import ray.train.torch

    train_ctx = ray.train.get_context()
    # DeepSpeed reads these (it joins Ray Train's process group instead of creating its own)
    for key, value in (("RANK", train_ctx.get_world_rank()), ("WORLD_SIZE", train_ctx.get_world_size()),
                       ("LOCAL_RANK", train_ctx.get_local_rank()),
                       ("LOCAL_WORLD_SIZE", train_ctx.get_local_world_size())):
        os.environ.setdefault(key, str(value))
    rank, device, replies = train_ctx.get_world_rank(), ray.train.torch.get_device(), loop_config["replies"]

    def report(metrics: dict) -> None:
        ray.train.report(dict(metrics))
        if _agree_on(_await_reply(replies) if rank == 0 else False, device):
            raise StopRequested(f"rank {rank}: the trial was stopped after this report")

    ctx = DistributedContext(rank=rank, world_size=train_ctx.get_world_size(),
                             local_rank=train_ctx.get_local_rank(), device=device, report=report)
    try:
        result = loop_config["trial_fn"](loop_config["config"], ctx)
    except StopRequested:
        log.info("rank %d: stopped by the trial's driver", rank)
        return
    ray.train.report({FINAL_KEY: result if ctx.is_main else None})


def _forwarding_callback(item_queue):
    """A Train ``UserCallback`` (runs in the controller actor) that queues rank 0's reports."""
    from ray.train.v2.api.callback import UserCallback

    class ForwardReports(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            item_queue.put(dict(metrics[0]))

    return ForwardReports()


def placement_strategy(config: dict) -> str:
    """Ray's placement strategy for the trial's workers, from the spec's ``resources.placement``
    (in the trial's ``settings``): ``strict_pack`` -> ``STRICT_PACK``; Ray's ``PACK`` by default."""
    resources = ((config.get("settings") or {}).get("resources") or {})
    return str(resources.get("placement") or "pack").upper()


def run_distributed(trial_fn: Callable[[dict, DistributedContext], Any], config: dict, *, num_workers: int,
                    use_gpu: bool = False, resources_per_worker: dict | None = None,
                    report: Callable[[dict], None] | None = None, storage_path: str | None = None,
                    storage_filesystem=None,
                    name: str | None = None, timeout_s: int = 1800) -> Any:
    """Run ``trial_fn(config, ctx)`` on ``num_workers`` Ray Train workers; return rank 0's result.

    Call it from a Ray Tune trial function (or any Ray driver): reports of rank 0 go to
    ``report`` as they happen. When ``report`` raises, the workers stop at that report and the
    exception is raised here once the Train run is over. ``trial_fn`` must be importable or
    picklable by value by workers.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    if num_workers < 1:
        raise ValueError(f"num_workers: must be >= 1, got {num_workers}")
    report = report or (lambda metrics: None)
    items = Queue(actor_options={"num_cpus": 0})      # rank 0's reports, to this process
    replies = Queue(actor_options={"num_cpus": 0})    # this process's go (False) / stop (True) for each
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"trial_fn": trial_fn, "config": config, "replies": replies},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=timeout_s),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources_per_worker,
                                     placement_strategy=placement_strategy(config)),
        run_config=RunConfig(name=name or f"xstilts-{uuid.uuid4().hex[:8]}",
                             storage_path=storage_path or tempfile.mkdtemp(prefix="xstilts-train-"),
                             storage_filesystem=storage_filesystem,
                             callbacks=[_forwarding_callback(items)]),
    )
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    final: dict = {}
    stopped: dict = {}  # the report callback's exception, once it raised

    def drain(block: bool) -> None:
        while True:
            try:
                metrics = items.get(block=block, timeout=0.5) if block else items.get_nowait()
            except queue_lib.Empty:  # ray.util.queue.Empty subclasses it
                return
            if FINAL_KEY in metrics:
                final["result"] = metrics[FINAL_KEY]
                continue
            if not stopped:
                try:
                    report(metrics)
                except BaseException as exc:  # noqa: BLE001 - re-raised once the workers are gone
                    stopped["error"] = exc
                    log.info("run_distributed: the report callback raised %s: stopping the workers",
                             type(exc).__name__)
            replies.put(bool(stopped))

    try:
        while thread.is_alive():
            drain(block=True)
    except BaseException:
        try:
            replies.put(True)  # interrupted here (Ctrl-C): the workers stop at their next report
        except Exception:  # noqa: BLE001 - Ray is going down: so are the workers
            pass
        raise
    thread.join()
    drain(block=False)
    for q in (items, replies):
        try:
            q.shutdown()
        except Exception:  # noqa: BLE001 - the queue actor is gone with the job anyway
            pass
    if stopped:
        raise stopped["error"]
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in final:
        metrics = getattr(outcome.get("result"), "metrics", None) or {}
        if FINAL_KEY not in metrics:
            raise RuntimeError("run_distributed: the workers ended without reporting a result")
        final["result"] = metrics[FINAL_KEY]
    return final["result"]
