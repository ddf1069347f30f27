"""Data-parallel trials: sharding arithmetic, and a 2-worker gloo Ray Train job inside a Tune trial."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import pytest

from trainables.distributed import DistributedContext, shard_indices, worker_settings
from trainables.train import TrainSettings

SETTINGS = TrainSettings(learning_rate=5e-3, batch_size=8, eval_batch_size=8, epochs=2, max_length=8,
                         warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, grad_accumulation=1,
                         max_steps=None, seed=1)


@pytest.mark.parametrize("n, world, expected", [
    (6, 2, [[0, 2, 4], [1, 3, 5]]),
    (5, 2, [[0, 2, 4], [1, 3, 0]]),         # padded by wrap-around: equal step counts on both ranks
    (7, 3, [[0, 3, 6], [1, 4, 0], [2, 5, 1]]),
    (0, 2, [[], []]),
])
def test_shard_indices(n: int, world: int, expected: list[list[int]]) -> None:
    assert [shard_indices(n, r, world) for r in range(world)] == expected


def test_shard_rejects_bad_rank_and_batch() -> None:
    with pytest.raises(ValueError, match="^rank: 2 is not in 0..1"):
        shard_indices(4, 2, 2)
    with pytest.raises(ValueError, match="^batch_size: 8 is not divisible by 3 workers"):
        worker_settings(SETTINGS, 3)
    assert worker_settings(SETTINGS, 2).batch_size == 4


# ---------------------------------------------------------------- Ray Train + Tune (2 gloo workers)

VOCAB = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(40)]


def _tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def _model():
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from trainables.families.classification import ClassificationHead
    from trainables.model import MultiTaskModel

    torch.manual_seed(0)  # the same initial weights on every rank
    config = XLMRobertaConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=40, pad_token_id=0,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False), {"cls": ClassificationHead(32, 2, 0.0)})


def _ddp_trial(config: dict, ctx: DistributedContext) -> dict:
    """The worker side of a trial: shard, wrap in DDP, train with the ordinary loop."""
    import datasets
    import torch

    from trainables.distributed import shard, worker_settings, wrap_data_parallel
    from trainables.train import train

    torch.set_num_threads(1)
    n = config["n"]
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, len(VOCAB), (n, 6), generator=g)
    ids[:, 0] = 1
    full = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * 6] * n,
                                       "labels": (ids[:, 1] % 2).tolist(), "uid": list(range(n))})
    mine = shard(full, ctx)
    uids = list(mine["uid"])
    features = mine.remove_columns("uid")
    model = _model()
    initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    wrap_data_parallel(model, ctx)
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    settings = worker_settings(SETTINGS, ctx.world_size)
    summary = train(model, {"cls": task}, {"cls": features}, _tokenizer(), settings, dev_score=lambda: 0.5,
                    on_epoch_end=lambda e, m, i, s: ctx.report({"epoch": e + 1, "loss": m["train/loss"],
                                                                "rank": ctx.rank, "steps": m["train/steps"]}))
    final = torch.cat([p.detach().flatten() for p in model.parameters()])
    Path(config["out"], f"rank{ctx.rank}.json").write_text(json.dumps({
        "uids": uids, "params": final.tolist(), "changed": float((final - initial).abs().max()),
        "world": ctx.world_size, "batch_size": settings.batch_size}))
    return {"rank": ctx.rank, "steps": summary["steps"], "world": ctx.world_size}


def _tune_trial(config: dict) -> None:
    from ray import tune

    from trainables.distributed import run_distributed

    reports: list[dict] = []

    def forward(metrics: dict) -> None:
        reports.append(metrics)
        tune.report(metrics)

    result = run_distributed(_ddp_trial, config, num_workers=2, use_gpu=False, resources_per_worker={"CPU": 0.5},
                             report=forward, storage_path=config["storage"])
    tune.report({"final_rank": result["rank"], "final_steps": result["steps"], "final_world": result["world"],
                 "forwarded_ranks": [m["rank"] for m in reports], "forwarded_epochs": [m["epoch"] for m in reports]})


@pytest.mark.slow
def test_two_gloo_workers_inside_a_tune_trial(tmp_path: Path) -> None:
    import ray
    import ray.cloudpickle
    from ray import tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    out = tmp_path / "ranks"
    out.mkdir()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        tuner = tune.Tuner(tune.with_resources(_tune_trial, {"cpu": 0.5}),
                           param_space={"n": 30, "out": str(out), "storage": str(tmp_path / "train")},
                           run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="ddp"))
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert not grid.errors, grid.errors
    metrics = grid[0].metrics
    # rank 0's result comes back; 30 examples -> 15 per rank, micro-batch 8/2 = 4 -> 4 steps per epoch
    assert (metrics["final_rank"], metrics["final_world"], metrics["final_steps"]) == (0, 2, 8)
    assert metrics["forwarded_ranks"] == [0, 0] and metrics["forwarded_epochs"] == [1, 2]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["uids"] == list(range(0, 30, 2)) and ranks[1]["uids"] == list(range(1, 30, 2))
    assert ranks[0]["batch_size"] == 4
    # different data, same weights after every update: the gradients were averaged
    assert ranks[0]["changed"] > 1e-3
    assert max(abs(a - b) for a, b in zip(ranks[0]["params"], ranks[1]["params"])) < 1e-6


def _ds_trial(config: dict, ctx: DistributedContext) -> dict:
    """ZeRO-2 inside Ray Train's gloo group: DeepSpeed joins it, no port of its own."""
    import os

    os.environ["DS_ACCELERATOR"] = "cpu"
    import torch

    from trainables.deepspeed_backend import DeepSpeedOptimization
    from trainables.steps import plain_step

    torch.set_num_threads(1)
    model = _model()
    g = torch.Generator().manual_seed(10 + ctx.rank)  # a different batch on each rank
    batch = {"input_ids": torch.randint(4, len(VOCAB), (4, 6), generator=g),
             "attention_mask": torch.ones(4, 6, dtype=torch.long), "labels": torch.randint(0, 2, (4,), generator=g)}
    opt = DeepSpeedOptimization(model, SETTINGS, 10, ds_settings={"stage": 2, "precision": "fp32"})
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    model.train()
    losses = []
    for _ in range(3):
        losses.append(plain_step(model, task, batch, opt.backward))
        opt.update()
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    ctx.report({"loss": losses[-1]})
    Path(config["out"], f"ds{ctx.rank}.json").write_text(json.dumps({"params": params.tolist(), "losses": losses}))
    return {"rank": ctx.rank, "train_batch_size": opt.config["train_batch_size"],
            "micro": opt.config["train_micro_batch_size_per_gpu"]}


@pytest.mark.slow
def test_deepspeed_zero2_in_two_ray_train_workers(tmp_path: Path) -> None:
    import ray
    import ray.cloudpickle

    from trainables.distributed import run_distributed

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        reports: list[dict] = []
        result = run_distributed(_ds_trial, {"out": str(tmp_path)}, num_workers=2, use_gpu=False,
                                 resources_per_worker={"CPU": 1}, report=reports.append,
                                 storage_path=str(tmp_path / "train"))
    finally:
        ray.shutdown()
    assert result == {"rank": 0, "train_batch_size": 16, "micro": 8}   # 8 rows x 1 accumulation x 2 ranks
    assert len(reports) == 1
    ranks = [json.loads((tmp_path / f"ds{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["losses"][0] != ranks[1]["losses"][0]               # different data on each rank
    assert max(abs(a - b) for a, b in zip(ranks[0]["params"], ranks[1]["params"])) < 1e-6


def _sixteen_rows():
    """16 fixed 6-token rows, labelled by their second token's parity (the same on every rank)."""
    import datasets
    import torch

    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, len(VOCAB), (16, 6), generator=g)
    ids[:, 0] = 1
    return datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * 6] * 16,
                                       "labels": (ids[:, 1] % 2).tolist()})


def _oom_trial(config: dict, ctx: DistributedContext) -> dict:
    """DDP training whose rank 1 runs out of 'memory' above 2 rows per micro-batch, mid-collective
    for rank 0, as one GPU of a group filling up would."""
    import torch

    from trainables.distributed import shard, wrap_data_parallel
    from trainables.steps import plain_step
    from trainables.train import train

    torch.set_num_threads(1)
    full = _sixteen_rows()
    model = _model()
    wrap_data_parallel(model, ctx)
    settings = worker_settings(replace(SETTINGS, batch_size=config["hparams"]["batch_size"], epochs=1,
                                       grad_accumulation=config["hparams"]["grad_accumulation"]),
                               ctx.world_size)

    def step(model, task, batch, backward):
        if ctx.rank == 1 and batch["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return plain_step(model, task, batch, backward)

    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    summary = train(model, {"cls": task}, {"cls": shard(full, ctx)}, _tokenizer(), settings,
                    dev_score=lambda: 0.5, on_epoch_end=lambda e, m, i, s: ctx.report({"epoch": e + 1}),
                    step_fn=step)
    return {"micro": settings.batch_size, "accumulation": settings.grad_accumulation,
            "steps": summary["steps"]}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_rank_out_of_memory_retries_the_whole_group_with_a_smaller_micro_batch(tmp_path: Path) -> None:
    import ray
    import ray.cloudpickle

    from trainables.distributed import run_distributed
    from trainables.oom import run_with_oom_retry

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    retries: list[dict] = []
    try:
        result = run_with_oom_retry(
            lambda hp: run_distributed(_oom_trial, {"hparams": hp}, num_workers=2, use_gpu=False,
                                       resources_per_worker={"CPU": 1},
                                       storage_path=str(tmp_path / f"train{len(retries)}")),
            {"batch_size": 16, "grad_accumulation": 1}, floor=2, on_retry=lambda r, hp: retries.append(r))
    finally:
        ray.shutdown()
    # 16 -> 8 rows (4 per rank: rank 1 fails again) -> 4 rows (2 per rank, 4 accumulations)
    assert [(r["new_batch_size"], r["new_grad_accumulation"]) for r in retries] == [(8, 2), (4, 4)]
    assert result == {"micro": 2, "accumulation": 4, "steps": 1}   # 8 rows per rank, 2 x 4 per update


class Pruned(Exception):
    """What a scheduler or script raises from the report callback to stop a trial."""


def _epoch_logging_trial(config: dict, ctx: DistributedContext) -> dict:
    """DDP training over ``config['epochs']`` epochs; each rank appends every epoch it finishes
    to its own log before reporting it."""
    import torch

    from trainables.distributed import shard, wrap_data_parallel
    from trainables.train import train

    torch.set_num_threads(1)
    full = _sixteen_rows()
    model = _model()
    wrap_data_parallel(model, ctx)
    log = Path(config["out"], f"epochs{ctx.rank}.txt")

    def on_epoch_end(epoch, metrics, improved, state):
        with log.open("a") as f:
            f.write(f"{epoch + 1}\n")
        ctx.report({"epoch": epoch + 1})

    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    settings = worker_settings(replace(SETTINGS, epochs=config["epochs"]), ctx.world_size)
    train(model, {"cls": task}, {"cls": shard(full, ctx)}, _tokenizer(), settings, dev_score=lambda: 0.5,
          on_epoch_end=on_epoch_end)
    Path(config["out"], f"finished{ctx.rank}").touch()
    return {"rank": ctx.rank}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_raising_report_callback_stops_every_worker_at_that_report(tmp_path: Path) -> None:
    """Outside Ray Tune nothing kills the workers: they must leave at the report that raised."""
    import time

    import ray
    import ray.cloudpickle

    from trainables.distributed import run_distributed

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    seen: list[int] = []

    def stop_after_epoch_2(metrics: dict) -> None:
        seen.append(metrics["epoch"])
        if metrics["epoch"] == 2:
            raise Pruned("epoch 2 is enough")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        with pytest.raises(Pruned, match="epoch 2 is enough"):
            run_distributed(_epoch_logging_trial, {"out": str(tmp_path), "epochs": 6}, num_workers=2,
                            use_gpu=False, resources_per_worker={"CPU": 1}, report=stop_after_epoch_2,
                            storage_path=str(tmp_path / "train"))
        time.sleep(3)  # workers still running in the background would log epoch 3 meanwhile
        logs = [(tmp_path / f"epochs{r}.txt").read_text().split() for r in (0, 1)]
        # and the whole group is gone: its resources are free again
        free = ray.available_resources().get("CPU", 0)
    finally:
        ray.shutdown()
    assert seen == [1, 2]
    assert logs == [["1", "2"], ["1", "2"]]
    assert not list(tmp_path.glob("finished*"))
    assert free == 2
