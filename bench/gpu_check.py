"""GPU checks for a lent device: one prepared script, run once (``--budget-s`` keeps it in time).

(a) ``study``: a demo-sized study end to end through ``sweep run`` with ``resources: {gpu: 1}``;
    every job's MLflow run must name a ``cuda`` device and, for training jobs, a non-zero
    ``train/peak_gpu_mem_gb``; wall time is recorded. With 2+ GPUs a 2-worker (DDP) variant too.
(b) ``throughput``: an XLM-R-Large-shaped model (random init from the preset), seq 256: tokens/s and
    MFU for the plain path in fp32 and in bf16 (autocast, fused AdamW) and for DeepSpeed ZeRO-2 bf16.
    MFU = tokens/s x FLOPs per token / the device's dense bf16 peak, with FLOPs per token =
    6 x non-embedding parameters (the weight matmuls of forward + backward; embedding lookups do
    no matmul) + 12 x layers x hidden x sequence length (attention scores and their weighted sum,
    forward + backward). The peak is looked up by the exact device (``PEAKS``); an unknown device
    gets no MFU and is named, not guessed. A bf16 MFU under 40% adds the top items of a short
    torch profiler trace.
(c) ``xl``: the largest XLM-R-XL-shaped micro-batch (doubling) whose ZeRO-3 step fits one GPU, with
    its peak memory next to ``trainables.presets``' estimate; CPU offload only where that estimate
    says the model does not fit the GPU (offload makes every step slow).

Each throughput/XL measurement runs in its own process (a fresh allocator and one engine). Usage:
``python bench/gpu_check.py [--out f.json] [--budget-s 420]``. ``--smoke`` runs everything on the CPU
with 2-layer models of the presets' widths and a small study, so the script is known to work before
device time is spent (``tests/test_gpu_check_smoke.py``); its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger("gpu_check")
REPO = Path(__file__).resolve().parents[1]
SWEEP = str(Path(sys.executable).parent / "sweep")
# dense bf16 peak FLOP/s by device name as torch reports it (NVIDIA data sheets, no sparsity);
# first match wins, so the PCIe and NVL variants come before the SXM parts they contain
PEAKS: tuple[tuple[str, float], ...] = (
    (r"H100 PCIe", 756e12),
    (r"H100 NVL", 835e12),
    (r"H100( SXM| 80GB HBM3)", 989e12),
    (r"H200 NVL", 835e12),
    (r"H200", 989e12),
    (r"A100", 312e12),
    (r"A10G", 125e12),
)
MFU_GOAL = 0.40


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of ``device_name``; None for a device not in ``PEAKS`` (it is named)."""
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name):
            return peak
    return None


def flops_per_token(model_params: int, preset, seq_len: int) -> float:
    """6 x non-embedding parameters + 12 x layers x hidden x seq_len (see the module doc)."""
    embedding = (preset.vocab + preset.max_positions + preset.type_vocab) * preset.hidden
    return 6 * (model_params - embedding) + 12 * preset.layers * preset.hidden * seq_len


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(smoke: bool) -> dict:
    return {**os.environ, **({"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"} if smoke else {}),
            "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "PYTHONPATH": str(REPO)}


# ----------------------------------------------------------------------- (b) and (c): one step loop

def build(preset_name: str, shape: dict | None, device: str):
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
    with torch.device(device):  # allocated where it trains: an XL init on the CPU takes minutes
        model = MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False),
                               {"cls": ClassificationHead(p.hidden, 3, 0.1)})
    return model, p


def measure(case: dict) -> dict:
    """A few timed steps on random full-length tokens (runs in a child process)."""
    import torch

    from trainables.device import Precision, configure_matmul
    from trainables.presets import estimate_for
    from trainables.steps import PlainOptimization, plain_step
    from trainables.train import TrainSettings

    device = case["device"]
    cuda = device == "cuda"
    ds = case.get("ds")
    on_device = not (ds and ds.get("offload_param", "none") != "none")
    model, preset = build(case["preset"], case.get("shape"), device if on_device else "cpu")
    model_params = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    micro, seq, precision = case["micro_batch"], case["seq_len"], case["precision"]
    configure_matmul(torch.device(device))
    settings = TrainSettings(learning_rate=1e-5, batch_size=micro, eval_batch_size=micro, epochs=1, max_length=seq,
                             warmup_ratio=0.0, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1,
                             max_steps=1000, seed=0)
    if ds:
        from trainables.deepspeed_backend import DeepSpeedOptimization

        opt = DeepSpeedOptimization(model, settings, 1000, ds_settings={**ds, "precision": precision})
    else:
        model.precision = Precision(precision, torch.device(device).type)
        opt = PlainOptimization(model, settings, 1000, precision=model.precision, fused=cuda)
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, preset.vocab, (micro, seq), generator=gen).to(device),
             "attention_mask": torch.ones(micro, seq, dtype=torch.long).to(device),
             "labels": torch.randint(0, 3, (micro,), generator=gen).to(device)}
    model.train()

    def step() -> float:
        loss = plain_step(model, task, batch, opt.backward)
        opt.update()
        return loss

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = [step() for _ in range(case["warmup"])]
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    losses += [step() for _ in range(case["steps"])]
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / case["steps"]
    tokens_per_s = micro * seq / seconds
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_flops(name)
    mfu = tokens_per_s * flops_per_token(model_params, preset, seq) / peak if peak else None
    profile = None
    if case.get("profile_below") is not None and (mfu is None or mfu < case["profile_below"]):
        profile = top_ops(step, cuda)
    estimate = estimate_for(preset, precision=precision, stage=ds["stage"] if ds else 0,
                            offload_optimizer=(ds or {}).get("offload_optimizer", "none"),
                            offload_param=(ds or {}).get("offload_param", "none"), micro_batch=micro, seq_len=seq,
                            gradient_checkpointing=(ds or {}).get("gradient_checkpointing", False),
                            autocast=not ds and precision != "fp32")
    return {"case": case["name"], "device": name, "peak_flops": peak, "params": preset.params,
            "model_params": model_params, "micro_batch": micro, "seq_len": seq, "step_seconds": seconds,
            "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token(model_params, preset, seq), "mfu": mfu,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
            "estimate_gb": estimate.total / 1e9, "losses": losses, "profile_top": profile,
            **({"note": f"unknown device {name!r}: no peak FLOP/s, MFU not computed"} if cuda and not peak else {})}


def top_ops(step, cuda: bool, rows: int = 12) -> list[str]:
    """The ops taking most time over three profiled steps (self time, device first on CUDA)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows).splitlines()


def run_case(case: dict, smoke: bool) -> dict:
    """``measure`` in a fresh process; an out-of-memory failure comes back as a record."""
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True,
                          env=process_env(smoke), cwd=REPO, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = proc.stderr[-2000:]
    oom = "out of memory" in tail.lower() or "OutOfMemoryError" in tail
    return {"case": case["name"], "micro_batch": case["micro_batch"], "failed": "oom" if oom else "error",
            "stderr_tail": tail[-800:]}


# ----------------------------------------------------------------------- (a): a study end to end

def study_spec(path: Path, *, smoke: bool, model: str | None, data: str | None, workers: int = 1) -> Path:
    """The demo study on one GPU per trial (``--smoke``: a 2-job cut of it on the CPU)."""
    import yaml

    spec = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    spec.update(name=f"gpu-check-w{workers}", storage=str(path.parent / "runs"),
                resources={"cpu": 2, "gpu": 0 if smoke else 1, "workers": workers})
    if smoke:
        spec.update(intermediate=["none"], seeds=[1], targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}])
        hyperparameters = spec["hyperparameters"]
        hyperparameters.pop("tasks", None)  # per-task overrides (epochs) would undo the cut
        for phase in hyperparameters.values():
            phase.update(epochs=1, max_length=32)
    if model:
        spec["model"] = model
    if data:
        spec["tasks"] = {t: {"data_dir": data} for t in ("toy_xnli", "toy_paraphrase", "toy_pos", "toy_chunk",
                                                         "toy_tatoeba")}
    spec.setdefault("mlflow", {})["log_checkpoints"] = False
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_study(work: Path, *, smoke: bool, model: str | None, data: str | None, workers: int = 1) -> dict:
    """``sweep run`` on ``study_spec``; every job's device, precision and peak GPU memory from MLflow."""
    import mlflow

    spec = study_spec(work / f"study-w{workers}.yaml", smoke=smoke, model=model, data=data, workers=workers)
    started = time.monotonic()
    proc = subprocess.run([SWEEP, "run", str(spec), "--yes"], capture_output=True, text=True, cwd=work, timeout=1500)
    wall = time.monotonic() - started
    record: dict = {"case": f"study-{workers}-worker", "wall_s": wall, "returncode": proc.returncode}
    if proc.returncode != 0:
        return {**record, "failed": "error", "stderr_tail": (proc.stdout + proc.stderr)[-1500:]}
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"gpu-check-w{workers}")
    jobs = []
    for run in client.search_runs([experiment.experiment_id], "tags.`xstilts.kind` = 'job'", max_results=1000):
        history = client.get_metric_history(run.info.run_id, "train/peak_gpu_mem_gb")
        jobs.append({"job": run.info.run_name, "stage": run.data.tags.get("xstilts.stage"),
                     "device": run.data.tags.get("xstilts.device"), "precision": run.data.tags.get("xstilts.precision"),
                     "peak_gpu_mem_gb": max((m.value for m in history), default=None)})
    expected = "cpu" if smoke else "cuda"
    wrong = [j for j in jobs if not (j["device"] or "").startswith(expected)
             or (not smoke and j["stage"] != "eval" and not j["peak_gpu_mem_gb"])]
    record.update(jobs=jobs, all_on_expected_device=not wrong and bool(jobs))
    if wrong:
        record.update(failed="error", stderr_tail=f"jobs not on {expected} (or without peak memory): {wrong[:3]}")
    return record


# ----------------------------------------------------------------------- the script

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--large-micro-batch", type=int, default=32)
    parser.add_argument("--xl-start-micro-batch", type=int, default=4)
    parser.add_argument("--max-xl-micro-batch", type=int, default=64)
    parser.add_argument("--only", nargs="*", choices=["study", "throughput", "xl"], default=None)
    parser.add_argument("--study-model", help="the study's model (default: the demo's tiny model)")
    parser.add_argument("--study-data", help="a toy_xtreme folder for the study's tasks (default: generated)")
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
        log.info("gpu_check: no CUDA device; skipped (run it on a GPU, or --smoke on the CPU)")
        return 0
    parts = set(args.only or ("study", "throughput", "xl"))
    started = time.monotonic()
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    summary: dict = {"device": torch.cuda.get_device_name() if gpus else "cpu", "gpus": gpus, "results": []}
    results = summary["results"]

    def case(name: str, preset: str, micro: int, precision: str, ds: dict | None, warmup: int, timed: int,
             **extra) -> dict:
        return {"name": name, "preset": preset, "shape": shapes.get(preset), "device": device, "seq_len": seq_len,
                "micro_batch": micro, "precision": precision, "warmup": warmup, "steps": timed, "ds": ds, **extra}

    if "study" in parts:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            results.append(run_study(Path(tmp), smoke=args.smoke, model=args.study_model, data=args.study_data))
            log.info("%s", {k: v for k, v in results[-1].items() if k != "jobs"})
            if gpus >= 2:
                results.append(run_study(Path(tmp), smoke=False, model=args.study_model, data=args.study_data,
                                         workers=2))
                log.info("%s", {k: v for k, v in results[-1].items() if k != "jobs"})
            else:
                summary["two_worker"] = f"skipped: {gpus or 'no'} GPU" + ("" if gpus == 1 else "s")
    if "throughput" in parts:
        for name, precision, ds in (("large-plain-fp32", "fp32", None), ("large-plain-bf16", "bf16", None),
                                    ("large-zero2-bf16", "bf16", {"stage": 2})):
            profile = MFU_GOAL if precision == "bf16" else None
            results.append(run_case(case(name, "xlm-roberta-large", args.large_micro_batch, precision, ds,
                                         warmup=3, timed=steps, profile_below=profile), args.smoke))
            log.info("%s", {k: v for k, v in results[-1].items() if k not in ("losses", "profile_top")})
    best = None
    if "xl" in parts:
        best = largest_xl(case, args, device, started)
        results.extend(best.pop("tried"))
    summary["xl_largest_fitting"] = best.get("fits") if best else None
    summary["seconds"] = time.monotonic() - started
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    errors = [r for r in results if r.get("failed") == "error"]  # an OOM ends the XL search; an error is a bug
    for r in errors:
        log.error("%s (micro-batch %s) failed: %s", r["case"], r.get("micro_batch"), r["stderr_tail"])
    return 1 if errors else 0


def largest_xl(case, args, device: str, started: float) -> dict:
    """Double the XL micro-batch until a step no longer fits (or the budget is spent)."""
    from trainables.presets import GB, PRESETS, estimate_for, fits

    ds = {"stage": 3, "gradient_checkpointing": True}
    if device == "cuda":
        import torch

        memory = torch.cuda.get_device_properties(0).total_memory
        on_gpu = estimate_for(PRESETS["facebook/xlm-roberta-xl"], precision="bf16", stage=3, micro_batch=1,
                              seq_len=256, gradient_checkpointing=True)
        if not fits(on_gpu, memory, reserve_fraction=0.1):  # offload only when the model cannot fit
            ds.update(offload_optimizer="cpu", offload_param="cpu")
        log.info("XL ZeRO-3 on %.0f GB: %s", memory / GB, "with CPU offload" if "offload_param" in ds else "no offload")
    tried, best, micro = [], None, args.xl_start_micro_batch if device == "cuda" else 1
    while micro <= args.max_xl_micro_batch:
        if best is not None and args.budget_s is not None and time.monotonic() - started > args.budget_s:
            log.info("time budget spent: the XL search stops before micro-batch %d", micro)
            break
        r = run_case(case("xl-zero3", "facebook/xlm-roberta-xl", micro, "bf16", ds, warmup=1, timed=2), args.smoke)
        log.info("%s", {k: v for k, v in r.items() if k not in ("losses", "profile_top")})
        tried.append(r)
        if "failed" in r:
            break
        best, micro = r, micro * 2
    return {"tried": tried, "fits": best}


if __name__ == "__main__":
    sys.exit(main())
