"""Second run of the same study's data preparation: re-tokenises nothing (target <= 5% of the first).

Two fresh processes, one after the other, prepare the features of every split of the toy tasks
(JSON-lines and CoNLL-U sources, the latter read into in-memory datasets) with the same caches:
the first tokenises and writes the feature cache, the second must only read it. Prints the
preparation time of each run, their ratio, and how many texts each run sent to the tokenizer.
Run: .venv/bin/python bench/bench_prep.py [--n-train 8000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PREPARE = r"""
import json, sys, time
import datasets
from transformers import AutoTokenizer
from trainables.families import get_family
from trainables.families.base import set_feature_cache
from trainables.tasks import build_task
from trainables.tasks.base import TaskOptions

root, model, cache = sys.argv[1:4]
datasets.disable_progress_bars()
tokenizer = AutoTokenizer.from_pretrained(model)
calls = {"texts": 0}
original = type(tokenizer).__call__
def counting(self, text, *args, **kwargs):
    calls["texts"] += len(text) if isinstance(text, list) else 1
    return original(self, text, *args, **kwargs)
type(tokenizer).__call__ = counting
get_family("tagging")  # imports (seqeval, sklearn) are not data preparation: load them first
started = time.perf_counter()
set_feature_cache(cache + "/features")
rows = 0
for name, splits in (("toy_xnli", [("train", "en"), ("dev", "en"), ("test", "xs"), ("test", "xo")]),
                     ("toy_paraphrase", [("train", "en"), ("dev", "en")]),
                     ("toy_pos", [("train", "en"), ("dev", "en"), ("test", "xs"), ("test", "xv")]),
                     ("toy_chunk", [("train", "en"), ("dev", "en")])):
    task = build_task(name, TaskOptions(data_dir=root, cache_dir=cache))
    family = get_family(task.info.family)
    for split, lang in splits:
        rows += len(family.featurize(task, task.load(split, lang), tokenizer, 128))
print(json.dumps({"seconds": time.perf_counter() - started, "texts_tokenised": calls["texts"], "rows": rows}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=8000)
    args = parser.parse_args()

    from trainables.model import resolve_model_path
    from trainables.toy import write_toy_xtreme

    model = resolve_model_path("tiny", "~/.cache/xstilts")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_toy_xtreme(Path(tmp) / "toy", n_train=args.n_train, n_dev=1000, n_test=1000,
                                n_corpus=10)
        env = {**os.environ, "HF_DATASETS_CACHE": f"{tmp}/hf-cache", "PYTHONPATH": str(REPO)}
        runs = []
        for label in ("first run", "second run"):
            out = subprocess.run([sys.executable, "-c", PREPARE, str(root), model, f"{tmp}/cache"],
                                 capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{label} failed: {out.stderr.strip().splitlines()[-1]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{label:11s} {runs[-1]['seconds']:7.2f} s  {runs[-1]['texts_tokenised']:7d} texts "
                  f"tokenised  ({runs[-1]['rows']} feature rows)", flush=True)
    ratio = runs[1]["seconds"] / runs[0]["seconds"]
    print(f"\nratio second / first preparation: {ratio:.3f} "
          f"(target <= 0.05: {'met' if ratio <= 0.05 else 'NOT met'}); "
          f"second run tokenised {runs[1]['texts_tokenised']} texts")


if __name__ == "__main__":
    main()
