"""Dynamic padding + length grouping vs padding every batch to 256, on an XNLI-like length mix.

Same model, same examples, same training step (MultiTaskModel + AdamW); what differs is only how
batches are padded and grouped. Throughput is *real* (non-padding) tokens per second of training.
Target from the task-library issue: grouped dynamic padding >= 2x the padded-to-256 throughput.

The length mix imitates XNLI premise+hypothesis pairs under XLM-R's tokenizer (median ~45
sub-words, long tail to 256): log-normal, clipped to [10, 256].
Run: .venv/bin/python bench/bench_padding.py [--steps 20] [--batch-size 32] [--hidden 256]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def xnli_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=np.log(45), sigma=0.45, size=n), 10, 256).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--examples", type=int, default=4000)
    args = parser.parse_args()

    import datasets
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, XLMRobertaConfig, XLMRobertaModel

    from trainables.families.classification import ClassificationHead
    from trainables.model import MultiTaskModel, resolve_model_path
    from trainables.steps import PlainOptimization, plain_step
    from trainables.train import MultiTaskBatches, TrainSettings

    torch.manual_seed(0)
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("tiny", "~/.cache/xstilts"))
    lengths = xnli_like_lengths(args.examples)
    rng = np.random.default_rng(1)
    ids = [[0] + rng.integers(5, tokenizer.vocab_size, size=n - 2).tolist() + [2] for n in lengths]
    features = datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
                                           "labels": rng.integers(0, 3, size=len(ids)).tolist()})
    config = XLMRobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=args.hidden,
                              num_hidden_layers=args.layers, num_attention_heads=4,
                              intermediate_size=4 * args.hidden, max_position_embeddings=260)

    class Task:  # the training step only needs a name and a family
        name = "xnli_like"

        class info:
            family = "classification"

    settings = TrainSettings(learning_rate=2e-5, batch_size=args.batch_size, eval_batch_size=64, epochs=1,
                             max_length=256, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0,
                             grad_accumulation=1, max_steps=None, seed=0)
    setups = {
        "padded to 256": (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=256), False),
        "dynamic padding": (DataCollatorWithPadding(tokenizer), False),
        "dynamic + length grouping": (DataCollatorWithPadding(tokenizer), True),
    }
    results = {}
    for name, (collator, grouped) in setups.items():
        torch.manual_seed(0)
        model = MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False),
                               {Task.name: ClassificationHead(args.hidden, 3, 0.1)})
        model.train()
        opt = PlainOptimization(model, settings, total_steps=args.steps + 3)
        batches = MultiTaskBatches({Task.name: features}, {Task.name: collator}, args.batch_size,
                                   group_by_length=grouped)
        stream = batches.epoch(seed=0, epoch=0)
        real = padded = 0
        for step in range(args.steps + 3):
            _, batch = next(stream)
            if step == 3:  # the first steps warm up allocators and kernels
                started, real, padded = time.perf_counter(), 0, 0
            plain_step(model, Task, batch, opt.backward)
            opt.update()
            real += int(batch["attention_mask"].sum())
            padded += batch["input_ids"].numel()
        seconds = time.perf_counter() - started
        results[name] = (real / seconds, padded / max(real, 1))
        print(f"{name:28s} {real / seconds:9.0f} real tokens/s   padding overhead x{padded / real:.2f}",
              flush=True)
    base = results["padded to 256"][0]
    ratio = results["dynamic + length grouping"][0] / base
    print(f"\nmedian length {int(np.median(lengths))}, batch {args.batch_size}, {args.steps} steps each")
    print(f"ratio dynamic+grouping / padded-to-256: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'})")
    print(f"ratio dynamic (no grouping) / padded-to-256: {results['dynamic padding'][0] / base:.2f}x")


if __name__ == "__main__":
    main()
