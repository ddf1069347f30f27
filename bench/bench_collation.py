"""Collation against an XLM-R Large training step: does the input pipeline starve a GPU?

Measures here, on the CPU, the time the training loop spends producing one batch (the Arrow
``select`` of the batch's rows and dynamic padding, as ``trainables.train.MultiTaskBatches``
does it) for a batch of 32 sentences of 20 to ``max_length`` tokens, and divides it by a lower
bound on the GPU step it feeds: XLM-R Large's FLOPs for those 32 x ``max_length`` tokens (6 x
non-embedding parameters + the attention term, as ``bench/gpu_check.py`` counts them) at 100%
of an H100's dense bf16 peak. The real step is slower (40% MFU is a good run), so the printed
ratio is an upper bound; and on CUDA the loop prefetches batches in a background thread, so
collation overlaps the step instead of adding to it. Goal: < 5% of a step at 40% MFU.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

H100_BF16 = 989e12
BATCH = 32


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 1, "<s>": 0, "</s>": 2, "<unk>": 3, **{f"w{i}": i + 4 for i in range(1000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def features(n: int, max_length: int, seed: int = 0):
    import datasets

    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, max_length + 1, n)
    ids = [rng.integers(4, 1004, k).tolist() for k in lengths]
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * k for k in lengths],
                                       "labels": rng.integers(0, 3, n).tolist()})


def seconds_per_batch(max_length: int, batches: int = 200) -> float:
    from trainables.families import get_family
    from trainables.train import MultiTaskBatches

    collate = get_family("classification").collator(tokenizer())
    loop = MultiTaskBatches({"cls": features(BATCH * batches, max_length)}, {"cls": collate}, BATCH)
    started = time.perf_counter()
    count = sum(1 for _ in loop.epoch(seed=0, epoch=0))
    return (time.perf_counter() - started) / count


def step_lower_bound(max_length: int) -> float:
    from gpu_check import flops_per_token

    from trainables.presets import PRESETS

    large = PRESETS["xlm-roberta-large"]
    params = large.params - (large.hidden * large.hidden + large.hidden)  # trained without the pooler
    return BATCH * max_length * flops_per_token(params, large, max_length) / H100_BF16


def main() -> int:
    print(f"{'max_length':>10} {'collate ms':>11} {'step >= ms':>11} {'ratio':>7} {'at 40% MFU':>11}")
    worst = 0.0
    for max_length in (128, 256, 512):
        collate, step = seconds_per_batch(max_length), step_lower_bound(max_length)
        worst = max(worst, collate / step)
        print(f"{max_length:>10} {collate * 1e3:>11.2f} {step * 1e3:>11.2f} {collate / step:>7.1%} "
              f"{collate / (step / 0.4):>11.1%}")
    print(f"worst ratio {worst:.1%} of a step at 100% MFU on an H100 (goal < 5% at 40% MFU, a good run; "
          "prefetching on CUDA overlaps collation with the step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
