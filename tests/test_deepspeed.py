"""DeepSpeed ZeRO on the CPU: config derivation, ZeRO-2/3 training steps, consolidated checkpoints.

Each engine runs in a fresh subprocess (this file run as a script): DeepSpeed initialises a
process group and global state once per process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainables.deepspeed_backend import DeepSpeedSettings, build_ds_config, micro_batch_size
from trainables.train import TrainSettings

SETTINGS = TrainSettings(learning_rate=1e-3, batch_size=32, eval_batch_size=8, epochs=1, max_length=16,
                         warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=2,
                         max_steps=100, seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ds_env() -> dict:
    return {**os.environ, "DS_ACCELERATOR": "cpu", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
            "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------- config derivation (no engine)

def test_config_batch_and_schedule() -> None:
    config = build_ds_config(DeepSpeedSettings(stage=2, precision="bf16"), SETTINGS, world_size=4)
    assert config["train_batch_size"] == 32
    assert config["train_micro_batch_size_per_gpu"] == 4          # 32 // (4 * 2)
    assert config["gradient_accumulation_steps"] == 2
    assert config["zero_optimization"] == {"stage": 2}
    assert config["bf16"]["enabled"] and not config["fp16"]["enabled"]
    assert config["gradient_clipping"] == 1.0
    sched = config["scheduler"]["params"]
    assert config["scheduler"]["type"] == "WarmupDecayLR"
    assert (sched["total_num_steps"], sched["warmup_num_steps"], sched["warmup_max_lr"]) == (100, 10, 1e-3)
    opt = config["optimizer"]
    assert opt["type"] == "AdamW" and opt["params"]["lr"] == 1e-3 and opt["params"]["weight_decay"] == 0.01


def test_config_offload_and_user_file(tmp_path: Path) -> None:
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"overlap_comm": True, "stage": 1},
                                "train_batch_size": "auto", "comms_logger": {"enabled": False}}))
    s = DeepSpeedSettings(stage=3, offload_optimizer="cpu", offload_param="cpu", precision="fp16",
                          config_file=str(user))
    config = build_ds_config(s, SETTINGS, world_size=1, total_steps=7)
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["overlap_comm"] is True       # ours over the file's, file's extras kept
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert config["train_batch_size"] == 32 and config["comms_logger"] == {"enabled": False}
    assert "torch_adam" not in config["optimizer"]["params"]         # offload needs DeepSpeedCPUAdam
    assert config["scheduler"]["params"]["total_num_steps"] == 7
    as_is = build_ds_config(replace(s, config_file_as_is=True), SETTINGS, world_size=1, total_steps=7)
    assert as_is["zero_optimization"] == {"overlap_comm": True, "stage": 1}


@pytest.mark.parametrize("batch, accumulation, world", [(30, 2, 4), (6, 2, 4), (10, 3, 1)])
def test_config_indivisible_batch(batch: int, accumulation: int, world: int) -> None:
    with pytest.raises(ValueError, match=rf"^batch_size: {batch} is not divisible"):
        build_ds_config(DeepSpeedSettings(), replace(SETTINGS, batch_size=batch, grad_accumulation=accumulation),
                        world_size=world)


def test_micro_batch() -> None:
    assert micro_batch_size(64, 4, 2) == 8
    assert micro_batch_size(5, 1, 1) == 5


@pytest.mark.parametrize("values, message", [
    ({"stage": 4}, "stage: must be one of 0 1 2 3"),
    ({"stage": 2, "offload_param": "cpu"}, "offload_param: parameter offload needs stage 3"),
    ({"stage": 0, "offload_optimizer": "cpu"}, "offload_optimizer: optimizer offload needs"),
    ({"precision": "fp8"}, "precision: must be one of"),
    ({"offload_optimizer": "nvme"}, "offload_optimizer: must be 'none' or 'cpu'"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing: must be true or false"),
    ({"stag": 2}, "stag: unknown DeepSpeed setting"),
    ({"config_file": "/nonexistent/ds.json"}, "config_file: no such file"),
])
def test_settings_validation(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        DeepSpeedSettings.from_dict(values)


# ---------------------------------------------------------------- engines (subprocesses)

def run_case(case: dict, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, json.dumps({**case, "out": str(tmp_path)})],
                          capture_output=True, text=True, timeout=240, env=ds_env(), cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_zero_training_and_consolidated_checkpoint(stage: int, tmp_path: Path) -> None:
    result = run_case({"stage": stage, "steps": 12}, tmp_path)
    losses = result["losses"]
    assert losses[-1] < 0.7 * losses[0], losses
    # the HF encoder written from the engine gives the engine's own outputs
    assert result["max_encoder_diff"] < 1e-5
    assert result["max_head_diff"] < 1e-5
    assert result["weights_changed"] > 1e-4   # the consolidated weights are the trained ones
    assert result["loaded_keys_missing"] == []
    # the resume checkpoint round-trips: reloading step-k state reproduces the next loss exactly
    assert result["resumed_loss"] == pytest.approx(result["continued_loss"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [3])
def test_train_loop_with_deepspeed_optimization(stage: int, tmp_path: Path) -> None:
    """``train(..., optimization=partial(DeepSpeedOptimization, ...))`` with accumulation and dev scoring."""
    result = run_case({"stage": stage, "mode": "train"}, tmp_path)
    epochs = result["epochs"]
    assert [m["train/steps"] for m in epochs] == [4, 8, 12]     # 32 rows, micro 4, accumulation 2
    assert epochs[-1]["train/loss"] < 0.8 * epochs[0]["train/loss"], epochs
    assert result["dev_scores"][-1] > result["dev_scores"][0]    # dev = training accuracy here, rises
    state = result["state"]
    assert state["tag"] == "step12" and Path(state["deepspeed_checkpoint"], "step12").is_dir()
    assert sorted(p.name for p in Path(state["deepspeed_checkpoint"]).glob("step*")) == ["step12"]  # older pruned
    assert result["micro_batch"] == 4 and result["accumulation"] == 2


def test_bf16_zero2_keeps_fp32_masters(tmp_path: Path) -> None:
    """bf16 engine: 16-bit module weights, but the consolidated checkpoint holds the fp32 masters."""
    result = run_case({"stage": 2, "mode": "bf16"}, tmp_path)
    assert result["module_dtype"] == "torch.bfloat16" and result["saved_dtypes"] == ["torch.float32"]
    assert result["losses"][-1] < 0.5 * result["losses"][0], result["losses"]
    # masters round to the module's bf16 weights, and are not all exactly representable in bf16
    assert result["max_master_vs_bf16"] <= 2 ** -7 * result["max_abs_weight"]
    assert result["masters_not_bf16"] > 0


@pytest.mark.slow
def test_zero3_gradient_checkpointing_matches_plain(tmp_path: Path) -> None:
    """fp32 ZeRO-3 + checkpointing: same first-update loss trajectory as ZeRO-2 without it."""
    a = run_case({"stage": 3, "steps": 4, "checkpointing": True, "skip_save": True}, tmp_path / "a")
    b = run_case({"stage": 2, "steps": 4, "skip_save": True}, tmp_path / "b")
    assert a["losses"] == pytest.approx(b["losses"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("offload", [{"offload_optimizer": "cpu"},
                                     {"offload_optimizer": "cpu", "offload_param": "cpu"}],
                         ids=["optimizer", "optimizer+param"])
def test_zero3_cpu_offload_trains_like_on_device_and_consolidates(offload: dict, tmp_path: Path) -> None:
    """Offload moves the optimizer (DeepSpeed's CPU Adam, built on first use) and the parameters to
    host memory: the same updates as without it, and a plain HF checkpoint at the end."""
    offloaded = run_case({"stage": 3, "steps": 12, **offload}, tmp_path / "offload")
    on_device = run_case({"stage": 3, "steps": 12, "skip_save": True}, tmp_path / "device")
    assert (offloaded["optimizer"], on_device["optimizer"]) == ("DeepSpeedCPUAdam", "AdamW")
    assert (offloaded["offload_param"], on_device["offload_param"]) == (offload.get("offload_param", "none"), "none")
    assert offloaded["losses"] == pytest.approx(on_device["losses"], abs=1e-4)
    assert offloaded["losses"][-1] < 0.7 * offloaded["losses"][0], offloaded["losses"]
    assert offloaded["max_encoder_diff"] < 1e-5 and offloaded["max_head_diff"] < 1e-5
    assert offloaded["weights_changed"] > 1e-4 and offloaded["loaded_keys_missing"] == []
    assert offloaded["resumed_loss"] == pytest.approx(offloaded["continued_loss"], abs=1e-6)


# ---------------------------------------------------------------- the subprocess side

def _tiny_model(seed: int):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from trainables.families.classification import ClassificationHead
    from trainables.model import MultiTaskModel

    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    encoder = XLMRobertaModel(config, add_pooling_layer=False)
    return MultiTaskModel(encoder, {"cls": ClassificationHead(32, 3, 0.0)})


def _worker(case: dict) -> dict:
    import logging

    import deepspeed
    import torch
    from transformers import AutoModel

    from trainables.deepspeed_backend import DeepSpeedOptimization, save_consolidated
    from trainables.steps import plain_step

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    gen = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(5, 100, (8, 12), generator=gen), "attention_mask": torch.ones(8, 12, dtype=torch.long),
             "labels": torch.randint(0, 3, (8,), generator=gen)}
    batch["input_ids"][:, 0] = 0
    model = _tiny_model(0)
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    settings = replace(SETTINGS, batch_size=8, grad_accumulation=1, warmup_ratio=0.0, learning_rate=1e-2)
    out = Path(case["out"])
    ds_settings = {"stage": case["stage"], "precision": "fp32", "gradient_checkpointing": case.get("checkpointing", False),
                   "offload_optimizer": case.get("offload_optimizer", "none"),
                   "offload_param": case.get("offload_param", "none")}
    opt = DeepSpeedOptimization(model, settings, 40, ds_settings=ds_settings, checkpoint_dir=out / "resume")
    model.train()
    losses = []
    for _ in range(case["steps"]):
        losses.append(plain_step(model, task, batch, opt.backward))
        opt.update()
    offload_param = opt.engine.zero_offload_param()
    result: dict = {"losses": losses, "optimizer": type(opt.engine.basic_optimizer).__name__,
                    "offload_param": str(getattr(offload_param, "device", None) or "none")}
    if case.get("skip_save"):
        return result
    state = opt.state_dict()
    continued = plain_step(model, task, batch, opt.backward)
    opt.update()
    opt.load_state_dict(state)
    resumed = plain_step(model, task, batch, opt.backward)
    result.update(continued_loss=continued, resumed_loss=resumed)
    opt.update()

    save_consolidated(opt.engine, model, None, out / "model", {"stage": case["stage"]})
    model.eval()
    params = list(model.parameters())
    with torch.no_grad(), deepspeed.zero.GatheredParameters(params):
        now = {k: v.detach().clone() for k, v in model.named_parameters()}  # before ZeRO-3 hooks re-partition
        own_hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        own_logits = model.heads["cls"](own_hidden)
    loaded = AutoModel.from_pretrained(out / "model", add_pooling_layer=False).eval()
    heads = torch.load(out / "model" / "heads.pt", weights_only=True)
    heads_module = _tiny_model(1).heads.eval()
    heads_module.load_state_dict(heads)
    with torch.no_grad():
        hidden = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = heads_module["cls"](hidden)
    loaded_names = set(loaded.state_dict())
    result.update(
        max_encoder_diff=float((hidden - own_hidden).abs().max()),
        max_head_diff=float((logits - own_logits).abs().max()),
        weights_changed=max(float((now[k] - initial[k]).abs().max()) for k in initial if k.startswith("encoder.")),
        loaded_keys_missing=sorted(k for k in initial if k.startswith("encoder.") and k[8:] not in loaded_names),
    )
    return result


def _train_worker(case: dict) -> dict:
    """Runs ``train()`` on 32 fixed rows with a DeepSpeed optimization (subprocess side)."""
    import logging

    import datasets
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from trainables.deepspeed_backend import DeepSpeedOptimization
    from trainables.families.classification import Classification
    from trainables.train import train

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    vocab = {f"w{i}": i for i in range(100)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="w3")),
                                        pad_token="w1", unk_token="w3")
    g = torch.Generator().manual_seed(5)
    label_tensor = torch.arange(32) % 3
    ids = 5 + 30 * label_tensor[:, None] + torch.randint(0, 30, (32, 10), generator=g)  # words give the label
    ids[:, 0] = 0
    labels = label_tensor.tolist()
    features = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * 10] * 32,
                                           "labels": labels})
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    model = _tiny_model(0)
    settings = replace(SETTINGS, batch_size=4, grad_accumulation=2, epochs=3, max_steps=None, warmup_ratio=0.1,
                       learning_rate=2e-2)
    made: dict = {}

    def optimization(m, s, total):
        made["opt"] = DeepSpeedOptimization(m, s, total, ds_settings={"stage": case["stage"], "precision": "fp32"},
                                            checkpoint_dir=Path(case["out"]) / "resume")
        return made["opt"]

    dev_scores: list[float] = []

    def dev_score() -> float:
        pred = Classification().predict(model, task, features, tokenizer, batch_size=16)
        dev_scores.append(float((pred == torch.tensor(labels).numpy()).mean()))
        return dev_scores[-1]

    epochs: list[dict] = []
    states: list[dict] = []
    train(model, {"cls": task}, {"cls": features}, tokenizer, settings, dev_score=dev_score,
          on_epoch_end=lambda e, m, i, st: (epochs.append(m), states.append(st["optimization"])),
          optimization=optimization)
    config = made["opt"].config
    return {"epochs": epochs, "dev_scores": dev_scores, "state": states[-1],
            "micro_batch": config["train_micro_batch_size_per_gpu"],
            "accumulation": config["gradient_accumulation_steps"]}


def _bf16_worker(case: dict) -> dict:
    import logging

    import torch

    from trainables.deepspeed_backend import DeepSpeedOptimization, consolidated_state_dict
    from trainables.steps import plain_step

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(5, 100, (8, 12), generator=g),
             "attention_mask": torch.ones(8, 12, dtype=torch.long), "labels": torch.randint(0, 3, (8,), generator=g)}
    model = _tiny_model(0)
    opt = DeepSpeedOptimization(model, replace(SETTINGS, batch_size=8, grad_accumulation=1, learning_rate=1e-2), 40,
                                ds_settings={"stage": case["stage"], "precision": "bf16"})
    model.train()
    losses = []
    for _ in range(12):
        losses.append(plain_step(model, task, batch, opt.backward))
        opt.update()
    masters = consolidated_state_dict(opt.engine)
    params = dict(model.named_parameters())
    diffs = [float((masters[n] - p.detach().float()).abs().max()) for n, p in params.items()]
    return {"losses": losses, "module_dtype": str(next(model.parameters()).dtype),
            "saved_dtypes": sorted({str(masters[n].dtype) for n in params}),
            "max_master_vs_bf16": max(diffs), "max_abs_weight": max(float(masters[n].abs().max()) for n in params),
            "masters_not_bf16": sum(int((masters[n] != masters[n].bfloat16().float()).sum()) for n in params)}


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    workers = {"train": _train_worker, "bf16": _bf16_worker}
    print(json.dumps(workers.get(args.get("mode"), _worker)(args)))
