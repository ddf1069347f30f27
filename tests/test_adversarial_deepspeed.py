"""Adversarial training steps under DeepSpeed ZeRO-2 (fp32, on the CPU), in a subprocess.

FreeLB calls ``backward`` once per ascent step (K times per micro-batch), SMART once with the
regulariser added: under ZeRO-2 every ``engine.backward`` reduces each gradient once into the
partitioned accumulation buffers, and ``step`` is the boundary, so several backward calls in one
micro-step add up like gradient accumulation. The norm of the first step's reduced gradient is
compared with that of the same step on the plain PyTorch path (a lost or doubled backward would
change it). Helpers come from ``test_deepspeed`` (same directory).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from test_deepspeed import SETTINGS, _tiny_model, ds_env

CONFIGS = {"freelb": {"method": "freelb", "adv_steps": 3, "adv_lr": 0.1, "max_norm": 0.5},
           "smart": {"method": "smart", "noise_var": 1e-3, "step_size": 1e-2, "radius": 0.1}}
STEPS = 6


def test_freelb_and_smart_under_zero2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, __file__, json.dumps({"out": str(tmp_path)})], capture_output=True,
                          text=True, timeout=240, env=ds_env(), cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == set(CONFIGS)
    for name, result in results.items():
        losses = result["losses"]
        assert len(losses) == STEPS and all(math.isfinite(v) for v in losses), (name, losses)
        assert losses[-1] < losses[0], (name, losses)
        assert result["encoder_change"] > 1e-4 and result["head_change"] > 1e-4, (name, result)
        # every backward of the step reached the gradient, scaled as on the plain path
        assert result["grad_rel_diff"] < 1e-4, (name, result)
        assert result["backward_calls"] == (CONFIGS[name].get("adv_steps", 1)) * STEPS, (name, result)


# ---------------------------------------------------------------- the subprocess side

def _batch():
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (8, 12), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(8, 12, dtype=torch.long)
    for i in range(8):  # varied padding: padding positions stay unperturbed
        ids[i, 12 - i % 3:], mask[i, 12 - i % 3:] = 1, 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (8,), generator=g)}


def _plain_grads(config: dict, batch: dict) -> dict:
    """The first step's gradients on the plain PyTorch path (same seeds, same weights)."""
    import torch

    from trainables.adversarial import build_step

    model = _tiny_model(0).train()
    torch.manual_seed(123)
    build_step(config)(model, TASK, batch, lambda loss: loss.backward())
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


TASK = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))


def _worker(case: dict) -> dict:
    import logging

    import torch

    from trainables.adversarial import build_step
    from trainables.deepspeed_backend import DeepSpeedOptimization

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    batch = _batch()
    settings = replace(SETTINGS, batch_size=8, grad_accumulation=1, warmup_ratio=0.0, learning_rate=1e-2)
    results = {}
    for name, config in CONFIGS.items():
        expected = _plain_grads(config, batch)
        expected_norm = math.sqrt(sum(float(g.pow(2).sum()) for g in expected.values()))
        model = _tiny_model(0)
        initial = {k: v.detach().clone() for k, v in model.named_parameters()}
        opt = DeepSpeedOptimization(model, settings, 40, ds_settings={"stage": 2, "precision": "fp32"},
                                    checkpoint_dir=Path(case["out"]) / name)
        calls = []

        def backward(loss, opt=opt, calls=calls):
            calls.append(1)
            opt.backward(loss)

        model.train()
        step = build_step(config)
        losses, diff = [], None
        for i in range(STEPS):
            torch.manual_seed(123)
            losses.append(step(model, TASK, batch, backward))
            opt.update()
            if i == 0:  # the norm of the reduced gradient ZeRO-2 clipped and applied
                diff = abs(float(opt.engine.get_global_grad_norm()) - expected_norm) / expected_norm
        now = dict(model.named_parameters())
        change = {part: max(float((now[k].detach() - initial[k]).abs().max()) for k in initial if k.startswith(part))
                  for part in ("encoder.", "heads.")}
        results[name] = {"losses": losses, "grad_rel_diff": diff, "backward_calls": len(calls),
                         "encoder_change": change["encoder."], "head_change": change["heads."]}
    return results


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
