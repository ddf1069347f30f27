"""Design check of the toy world: intermediate rows x targets x seeds on a toy world of any data seed.

The demo's numbers are one toy world (data seed 0); a design choice made on them is tuned on the
demo's own test data. This script builds the toy world and the tiny model for another data seed
(``--data-seed 1``), runs the demo's recipe (``search_spaces/demo.yaml``'s hyperparameters, or
overrides) through the same trial code the sweep runs (``trainables.trial.run_trial``), and prints
per target and row the language average (mean ± std over seeds), its Δ vs ``none`` and the
per-language means. Two trials run at a time, one thread each, like the demo on 2 cores.

Rows: ``none``, a task, ``a&b`` (one multi-task intermediate job), ``a+b`` (a then b).
``mlm`` mixes masked-LM on the toy world's four corpora. Takes minutes (the model build ~2 min);
``--smoke`` runs all of it on a cut-down world and model in well under a minute.
Run: .venv/bin/python bench/toy_design.py --data-seed 1 --rows none,toy_chunk --targets toy_xnli
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainables.families import get_family  # noqa: E402 - after the repository is on the path
from trainables.tasks import task_info  # noqa: E402

SMOKE_WORLD = {"n_train": 120, "n_dev": 40, "n_test": 40, "n_corpus": 400}
SMOKE_MODEL = {"vocab_size": 600, "hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64,
               "pretrain_steps": 4, "batch_size": 16, "contrast_batch": 8}


def parse_values(text: str) -> dict:
    """``a=1,b=2e-3,c=cls`` -> {"a": 1, "b": 0.002, "c": "cls"}."""
    out: dict = {}
    for item in filter(None, text.split(",")):
        name, _, raw = item.partition("=")
        for kind in (int, float):
            try:
                out[name] = kind(raw)
                break
            except ValueError:
                continue
        else:
            out[name] = raw
    return out


def demo_hyperparameters() -> dict:
    """The demo spec's per-phase and per-task hyperparameters (fixed values)."""
    spec = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text(encoding="utf-8"))
    return spec["hyperparameters"]


def run_one(config: dict) -> dict:
    """One trial in this worker process, one thread (as a demo trial on a 2-core machine)."""
    import torch

    from trainables.trial import run_trial
    torch.set_num_threads(1)
    result = run_trial(config)
    return {"metrics": result["metrics"], "model_dir": result.get("model_dir")}


def job_hyperparameters(phase: dict, per_task: dict, overrides: dict, tasks: tuple[str, ...]) -> dict:
    """As the sweep: a job that trains one task takes its task's values over the phase's (a
    multi-task one keeps the phase's), and the command line's over both."""
    own = per_task.get(tasks[0], {}) if len(tasks) == 1 else {}
    return {**phase, **own, **overrides}


class Design:
    def __init__(self, args: argparse.Namespace) -> None:
        from trainables.contract import HYPERPARAMETERS
        from trainables.tiny_model import TinyModelSettings, ensure_tiny_model
        from trainables.toy import TOY_LANGUAGES
        from trainables.toy.world import write_toy_xtreme

        self.args = args
        self.out = Path(args.out)
        self.languages = TOY_LANGUAGES
        self.defaults = {n: i.default for n, i in HYPERPARAMETERS.items() if not i.optional}
        world_args = SMOKE_WORLD if args.smoke else {}
        self.world = write_toy_xtreme(self.out / f"world-s{args.data_seed}", seed=args.data_seed, **world_args)
        settings = replace(TinyModelSettings(), **{**(SMOKE_MODEL if args.smoke else {}),
                                                   **parse_values(args.model)})
        started = time.time()
        self.model = str(ensure_tiny_model(self.out / "models", self.world, settings))
        print(f"tiny model ready in {time.time() - started:.0f} s: {self.model}", flush=True)
        # trial folders per model (its name keys its settings and data), so runs never mix
        self.runs = self.out / "runs" / Path(self.model).name
        hp = demo_hyperparameters()
        self.intermediate_hp = hp["intermediate"]
        self.intermediate_overrides = parse_values(args.intermediate)  # over the per-task values too
        self.target_hp = hp["target"]
        self.task_hp = hp.get("tasks", {})
        # what an intermediate job's result depends on besides its tasks and seed: names its folder
        # and the folders of the targets that start from it
        self.intermediate_tag = "-".join(f"{k}{v}" for k, v in sorted(
            {**self.intermediate_hp, **self.intermediate_overrides, "mlm_cap": args.mlm_cap,
             **{f"{task}.{k}": v for task, values in self.task_hp.items() for k, v in values.items()}}.items()))
        self.target_overrides = parse_values(args.target)  # over the per-task values too

    def options(self, task: str) -> dict:
        if task == "mlm":
            return {"corpus": str(self.world / "corpus"), "corpus_languages": list(self.languages),
                    "examples_cap": self.args.mlm_cap}
        return {"data_dir": str(self.world)}

    def config(self, stage: str, tasks: tuple[str, ...], seed: int, hp: dict, out: Path,
               init: str | None, languages: tuple[str, ...] = ()) -> dict:
        return {"trial_id": out.name, "job_id": out.name, "stage": stage, "model": self.model,
                "tasks": list(tasks), "seed": seed, "output_dir": str(out),
                "hparams": {**self.defaults, **hp}, "languages": list(languages), "init_from": init,
                "task_options": {t: self.options(t) for t in tasks},
                "cache_dir": str(self.out / "cache"), "num_threads": 1}

    def intermediate(self, pool: ProcessPoolExecutor, rows: list[str], seeds: list[int]) -> dict:
        """The model directory each (row, seed) starts its targets from; link by link for ``a+b``."""
        starts: dict = {(row, seed): None for row in rows for seed in seeds}
        chains = {row: row.split("+") for row in rows if row != "none"}
        for depth in range(max((len(c) for c in chains.values()), default=0)):
            futures = {}
            for row, links in chains.items():
                if depth >= len(links):
                    continue
                for seed in seeds:
                    name = f"{'+'.join(links[:depth + 1])}-seed{seed}"
                    out = self.runs / "intermediate" / self.intermediate_tag / name
                    tasks = tuple(links[depth].split("&"))
                    hp = job_hyperparameters(self.intermediate_hp, self.task_hp, self.intermediate_overrides, tasks)
                    config = self.config("intermediate", tasks, seed, hp, out, starts[(row, seed)])
                    futures[(row, seed)] = pool.submit(run_one, config)
            for key, future in futures.items():
                result = future.result()
                starts[key] = result["model_dir"]
                print(f"intermediate {key[0]} seed {key[1]}: English dev "
                      f"{100 * result['metrics'].get('dev/score', float('nan')):.1f}", flush=True)
        return starts

    def targets(self, pool: ProcessPoolExecutor, rows: list[str], targets: list[str], seeds: list[int],
                starts: dict) -> dict:
        futures = {}
        for row in rows:
            for target in targets:
                info = task_info(target)
                evaluation = not get_family(info.family).trainable  # an eval job (Tatoeba)
                hp = job_hyperparameters(self.target_hp, self.task_hp, self.target_overrides, (target,))
                if evaluation:
                    hp = {"max_length": hp["max_length"]}
                tag = "-".join(f"{k}{v}" for k, v in sorted(hp.items()))
                start = self.intermediate_tag if row != "none" else "none"
                languages = info.languages
                for seed in seeds:
                    out = self.runs / "target" / start / tag / f"{row}-{target}-seed{seed}"
                    futures[(row, target, seed)] = pool.submit(run_one, self.config(
                        "eval" if evaluation else "target", (target,), seed, hp, out, starts[(row, seed)],
                        languages))
        return {key: future.result()["metrics"] for key, future in futures.items()}


def table(results: dict, rows: list[str], targets: list[str], seeds: list[int], languages) -> list[str]:
    lines = []
    for target in targets:
        metric = task_info(target).main_metric
        baseline = None
        for row in rows:
            runs = [results[(row, target, seed)] for seed in seeds]
            averages = [100 * run[f"{target}/{metric}/avg"] for run in runs]
            mean = statistics.mean(averages)
            std = statistics.stdev(averages) if len(averages) > 1 else 0.0
            per_language = " ".join(
                f"{lang} {100 * statistics.mean(run[f'{target}/{metric}/{lang}'] for run in runs):.1f}"
                for lang in languages if f"{target}/{metric}/{lang}" in runs[0])
            if row == "none":
                baseline = mean
            delta = f" ({mean - baseline:+.1f})" if baseline is not None and row != "none" else ""
            lines.append(f"{target:12s} {row:28s} {mean:5.1f} ± {std:.1f}{delta}  [{per_language}]")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-seed", type=int, default=1, help="toy world seed (the demo's is 0)")
    parser.add_argument("--rows", default="none,toy_mnli,toy_paraphrase,toy_chunk")
    parser.add_argument("--targets", default="toy_xnli,toy_pos,toy_tatoeba")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--intermediate", default="", help="intermediate hyperparameters, a=1,b=2")
    parser.add_argument("--target", default="", help="target hyperparameters, a=1,b=2")
    parser.add_argument("--model", default="", help="TinyModelSettings fields, a=1,b=2")
    parser.add_argument("--mlm-cap", type=int, default=2000, help="masked-LM examples per epoch (row a&mlm)")
    parser.add_argument("--out", default=None, help="working folder, kept (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="cut-down world and model, one epoch")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.smoke:
        args.intermediate = ",".join(filter(None, ["epochs=1", args.intermediate]))
        args.target = ",".join(filter(None, ["epochs=1", args.target]))
    rows, targets = args.rows.split(","), args.targets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="toy-design-") as scratch:
        args.out = args.out or scratch
        design = Design(args)
        started = time.time()
        with ProcessPoolExecutor(2) as pool:
            starts = design.intermediate(pool, rows, seeds)
            results = design.targets(pool, rows, targets, seeds, starts)
        print(f"intermediate and {len(results)} target trials in {time.time() - started:.0f} s; data seed {args.data_seed}, "
              f"mean ± std over seeds {seeds} of the language average (×100), Δ vs none:")
        print("\n".join(table(results, rows, targets, seeds, design.languages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
