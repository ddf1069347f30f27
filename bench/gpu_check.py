"""GPU throughput of the DeepSpeed path (run by hand on an H100/H200; skipped on the CPU).

1. XLM-R-Large-shaped model (random init), bf16, ZeRO-2, seq 256: tokens/s and MFU, where MFU =
   6 * params * tokens/s over the GPU's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s). 6*N*T
   counts the weight matmuls of forward + backward only (attention scores are left out), the
   usual convention, so it slightly understates the work done.
2. XLM-R-XL-shaped model, ZeRO-3 + optimizer and parameter offload to the CPU, gradient
   checkpointing: the largest micro-batch (1, 2, 4, ...) whose step fits one GPU, with its peak
   memory (``torch.cuda.max_memory_allocated``) next to ``trainables.presets``' estimate.

Each measurement runs in its own process, which launches DeepSpeed single-process itself
(RANK/WORLD_SIZE/MASTER_* set here). Usage: ``python bench/bench_gpu_throughput.py [--out f.json]``.

``--smoke`` runs the same two measurements on the CPU (DeepSpeed's CPU accelerator) with
2-layer models of the two presets' widths cut down, so the script is known to work before GPU
time is spent on it; its figures mean nothing. ``tests/test_bench_gpu_smoke.py`` runs it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger("bench_gpu_throughput")
REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_env(smoke: bool = False) -> dict:
    return {**os.environ, **({"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"} if smoke else {}), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "PYTHONPATH": str(REPO)}


def peak_flops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), None)


def build(preset_name: str, shape: dict | None = None, num_labels: int = 3):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from trainables.families.classification import ClassificationHead
    from trainables.model import MultiTaskModel
    from trainables.presets import PRESETS

    p = replace(PRESETS[preset_name], **(shape or {}))  # the smoke run's cut-down shapes
    config = XLMRobertaConfig(vocab_size=p.vocab, hidden_size=p.hidden, num_hidden_layers=p.layers,
                              num_attention_heads=p.heads, intermediate_size=p.intermediate,
                              max_position_embeddings=p.max_positions, type_vocab_size=1)
    torch.manual_seed(0)
    model = MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False),
                           {"cls": ClassificationHead(p.hidden, num_labels, 0.1)})
    return model, p


def measure(case: dict) -> dict:
    """One DeepSpeed engine, a few timed steps on random tokens (runs in a child process)."""
    import torch

    from trainables.deepspeed_backend import DeepSpeedOptimization
    from trainables.presets import estimate_for
    from trainables.steps import plain_step
    from trainables.train import TrainSettings

    model, preset = build(case["preset"], case.get("shape"))
    model_params = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    micro, seq = case["micro_batch"], case["seq_len"]
    device = case.get("device", "cuda")
    cuda = device == "cuda"
    settings = TrainSettings(learning_rate=1e-5, batch_size=micro, eval_batch_size=micro, epochs=1, max_length=seq,
                             warmup_ratio=0.0, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1,
                             max_steps=1000, seed=0)
    if case["ds"].get("offload_param", "none") == "none":
        model.to(device)
    opt = DeepSpeedOptimization(model, settings, 1000, ds_settings=case["ds"])
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, preset.vocab, (micro, seq), generator=gen).to(device),
             "attention_mask": torch.ones(micro, seq, dtype=torch.long).to(device),
             "labels": torch.randint(0, 3, (micro,), generator=gen).to(device)}
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []
    for _ in range(case["warmup"]):
        losses.append(plain_step(model, task, batch, opt.backward))
        opt.update()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(case["steps"]):
        losses.append(plain_step(model, task, batch, opt.backward))
        opt.update()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / case["steps"]
    tokens_per_s = micro * seq / seconds
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_flops(name)
    estimate = estimate_for(preset, precision=case["ds"]["precision"], stage=case["ds"]["stage"],
                            offload_optimizer=case["ds"].get("offload_optimizer", "none"),
                            offload_param=case["ds"].get("offload_param", "none"), micro_batch=micro, seq_len=seq,
                            gradient_checkpointing=case["ds"].get("gradient_checkpointing", False))
    return {"case": case["name"], "device": name, "params": preset.params, "model_params": model_params, "micro_batch": micro, "seq_len": seq,
            "step_seconds": seconds, "tokens_per_s": tokens_per_s,
            "mfu": 6 * preset.params * tokens_per_s / peak if peak else None,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
            "estimate_gb": estimate.total / 1e9, "losses": losses}


def run_case(case: dict) -> dict:
    """``measure`` in a fresh process (one engine per process); an OOM comes back as a record."""
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True,
                          env=single_process_env(smoke=case.get("device") == "cpu"), cwd=REPO, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = proc.stderr[-2000:]
    oom = "out of memory" in tail.lower() or "OutOfMemoryError" in tail
    return {"case": case["name"], "micro_batch": case["micro_batch"], "failed": "oom" if oom else "error",
            "stderr_tail": tail[-500:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--large-micro-batch", type=int, default=32)
    parser.add_argument("--max-xl-micro-batch", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: check the script runs")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no further XL micro-batch after this many seconds (device time is lent)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.case:
        print(json.dumps(measure(json.loads(args.case))))
        return 0
    import torch

    if args.smoke:
        device, seq_len, steps = "cpu", 32, 2
        shapes = {"xlm-roberta-large": {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128, "vocab": 1000},
                  "facebook/xlm-roberta-xl": {"layers": 2, "hidden": 80, "heads": 4, "intermediate": 160,
                                              "vocab": 1000}}
    elif torch.cuda.is_available():
        device, seq_len, steps, shapes = "cuda", 256, 10, {}
    else:
        log.info("bench_gpu_throughput: no CUDA device; skipped (run it on an H100/H200, or --smoke)")
        return 0

    def case(name: str, preset: str, micro: int, ds: dict, warmup: int, timed: int) -> dict:
        return {"name": name, "preset": preset, "shape": shapes.get(preset), "device": device, "seq_len": seq_len,
                "micro_batch": micro, "warmup": warmup, "steps": timed, "ds": ds}

    results = [run_case(case("large-bf16-zero2", "xlm-roberta-large", args.large_micro_batch,
                             {"stage": 2, "precision": "bf16"}, warmup=3, timed=steps))]
    log.info("%s", results[-1])
    best = None
    micro = 1
    started = time.monotonic()
    while micro <= args.max_xl_micro_batch:
        if best is not None and args.budget_s is not None and time.monotonic() - started > args.budget_s:
            log.info("time budget spent: the XL search stops before micro-batch %d", micro)
            break
        r = run_case(case("xl-zero3-offload", "facebook/xlm-roberta-xl", micro,
                          {"stage": 3, "precision": "bf16", "offload_optimizer": "cpu", "offload_param": "cpu",
                           "gradient_checkpointing": True}, warmup=1, timed=2))
        log.info("%s", r)
        results.append(r)
        if "failed" in r:
            break
        best = r
        micro *= 2
    summary = {"results": results, "xl_largest_fitting": best}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    errors = [r for r in results if r.get("failed") == "error"]  # an OOM ends the search; an error is a bug
    for r in errors:
        log.error("%s (micro-batch %s) failed: %s", r["case"], r["micro_batch"], r["stderr_tail"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
