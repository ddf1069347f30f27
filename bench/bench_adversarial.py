"""Cost of the adversarial training steps relative to the plain step.

Times one training step (forward, backward, no optimizer update) of each method on the same
batch and a small random XLM-R (hidden 128, 4 layers, sequence 64, batch 16), takes the median
over several rounds (the methods in turn within a round) and prints the ratio to the plain
step, with the passes each method makes, counted with hooks: encoder forward passes, backward passes through the encoder
(including those that only compute the perturbation's gradient) and ``backward`` calls (losses
whose gradient reaches the parameters). FreeLB with K steps makes K of each.

Run: ``python bench/bench_adversarial.py [--repeats 7] [--device cpu]``. Prints numbers only.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import XLMRobertaConfig, XLMRobertaModel  # noqa: E402

from trainables.adversarial import build_step  # noqa: E402
from trainables.families.classification import ClassificationHead  # noqa: E402
from trainables.model import MultiTaskModel  # noqa: E402

log = logging.getLogger("bench_adversarial")

METHODS = {
    "plain": None,
    "fgm": {"method": "fgm"},
    "pgd (3 steps)": {"method": "pgd", "steps": 3},
    "freelb (K=2)": {"method": "freelb", "adv_steps": 2},
    "freelb (K=3)": {"method": "freelb", "adv_steps": 3},
    "smart (1 ascent)": {"method": "smart"},
    "r3f": {"method": "r3f"},
}
TASK = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))


def build(device: str, hidden: int, layers: int) -> MultiTaskModel:
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=8000, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=4, intermediate_size=4 * hidden,
                              max_position_embeddings=130, pad_token_id=1)
    model = MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False),
                           {"cls": ClassificationHead(hidden, 3, 0.1)})
    return model.to(device).train()


def batch(device: str, size: int, length: int) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 8000, (size, length), generator=g)
    ids[:, 0] = 0
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": torch.randint(0, 3, (size,), generator=g).to(device)}


def count_passes(model: MultiTaskModel, config, data: dict) -> tuple[int, int, int]:
    counts = {"forward": 0, "backward": 0, "param": 0}

    def bump(key):
        def hook(*_):
            counts[key] += 1
        return hook

    handles = [model.encoder.register_forward_hook(bump("forward")),
               model.encoder.encoder.layer[0].register_full_backward_hook(bump("backward"))]

    def backward(loss):
        counts["param"] += 1
        loss.backward()

    model.zero_grad(set_to_none=True)
    build_step(config)(model, TASK, data, backward)
    for handle in handles:
        handle.remove()
    return counts["forward"], counts["backward"], counts["param"]


def one_step(model: MultiTaskModel, step, data: dict, device: str) -> float:
    model.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(model, TASK, data, lambda loss: loss.backward())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_steps(model: MultiTaskModel, data: dict, repeats: int, device: str) -> dict[str, float]:
    """Median step time per method, the methods taken in turn within each round (plus two
    warm-up rounds), so a burst of load on a shared machine hits every method alike."""
    steps = {name: build_step(config) for name, config in METHODS.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 2):
        for name, step in steps.items():
            seconds = one_step(model, step, data, device)
            if round_ >= 2:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = build(args.device, args.hidden, args.layers)
    data = batch(args.device, args.batch, args.length)
    log.info("device %s, hidden %d, %d layers, batch %d x %d, median of %d steps",
             args.device, args.hidden, args.layers, args.batch, args.length, args.repeats)
    log.info("%-18s %8s %9s %9s %10s %7s", "method", "forward", "backward", "param-bw",
             "median ms", "ratio")
    passes = {name: count_passes(model, config, data) for name, config in METHODS.items()}
    medians = time_steps(model, data, args.repeats, args.device)
    plain = medians["plain"]
    for name, (forward, backward, param) in passes.items():
        log.info("%-18s %8d %9d %9d %10.1f %7.2f", name, forward, backward, param,
                 1000 * medians[name], medians[name] / plain)


if __name__ == "__main__":
    main()
