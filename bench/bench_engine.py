"""Engine overhead: N tiny trials through `sweep run` (Ray Tune, 2 trials at a time) vs the same
trials run one after another in one process (no Ray, no MLflow). Prints both times and the ratio.

Target from the foundation issue: sweep time <= 0.6x the sequential time on 2 CPUs.
The sequential run uses the very trial configs the sweep sends (1 torch thread per trial, as
`resources.cpu: 1` gives); `--sequential-threads 2` lets it use both cores for each trial.
The sweep's fixed costs (process start, MLflow store, Ray start, worker start) are ~20 s here,
so the ratio only means something once trials are long enough to amortise them.
Run: .venv/bin/python bench/bench_engine.py [--seeds 6] [--epochs 3] [--n-train 2000]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="trials = 2 targets x seeds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--sequential-threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from sweep.plan import build_plan
    from sweep.run import StudyRunner
    from sweep.spec import load_spec
    from trainables.tiny_model import TinyModelSettings, ensure_tiny_model
    from trainables.toy import write_toy_xtreme
    from trainables.trial import run_trial

    work = Path(tempfile.mkdtemp(prefix="xstilts-bench-"))
    toy = write_toy_xtreme(work / "toy", n_train=args.n_train, n_dev=200, n_test=200, n_corpus=4000)
    model = ensure_tiny_model(work / "models", toy, TinyModelSettings(pretrain_steps=50))
    spec_data = {
        "name": "bench", "model": str(model), "intermediate": ["none"],
        "targets": [{"task": "toy_xnli", "languages": ["en", "xs"]}, {"task": "toy_pos", "languages": ["en", "xs"]}],
        "seeds": list(range(1, args.seeds + 1)),
        "hyperparameters": {"target": {"learning_rate": 5e-4, "epochs": args.epochs, "max_length": 64}},
        "tasks": {t: {"data_dir": str(toy)} for t in ("toy_xnli", "toy_pos")},
        "resources": {"cpu": 1}, "cache_dir": str(work / "cache"),
    }

    def spec_file(storage: str) -> Path:
        path = work / f"{storage}.yaml"
        path.write_text(yaml.safe_dump({**spec_data, "storage": str(work / storage)}))
        return path

    # sequential: the same trial configs the runner would send, run in this process
    seq_spec = load_spec(spec_file("sequential"))
    plan = build_plan(seq_spec)
    runner = StudyRunner(seq_spec, plan, tracking_uri=f"sqlite:///{work / 'seq.db'}")
    trials = [t for job in plan.jobs for t in runner.grid_trials(job)]
    for t in trials:
        t["num_threads"] = args.sequential_threads
    started = time.perf_counter()
    for t in trials:
        run_trial(t)
    sequential = time.perf_counter() - started

    # the engine: the CLI, local Ray, MLflow sqlite store, report at the end
    started = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "sweep"), "run", str(spec_file("sweep"))],
                          cwd=work, capture_output=True, text=True)
    engine = time.perf_counter() - started
    (work / "sweep.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit("sweep run failed")

    ratio = engine / sequential
    in_trials = sum(json.loads(p.read_text())["elapsed_s"]
                    for p in (work / "sweep").glob("bench/jobs/*/trials/*/result.json"))
    fixed = engine - in_trials / 2  # what the engine adds beyond two perfectly packed slots
    print(f"{len(trials)} trials ({args.epochs} epochs, {args.n_train} train examples each), 2 CPUs")
    print(f"{f'sequential, one process, {args.sequential_threads} thread(s)':<40}{sequential:8.1f} s")
    print(f"{'sweep run (Ray Tune + MLflow)':<40}{engine:8.1f} s")
    print(f"{'  time inside trials / 2 slots':<40}{in_trials / 2:8.1f} s")
    print(f"{'  engine overhead (the rest)':<40}{fixed:8.1f} s")
    print(f"{'ratio sweep / sequential':<40}{ratio:8.2f}   (target <= 0.60: {'met' if ratio <= 0.6 else 'NOT met'})")
    print(f"{'sequential work needed for <= 0.60':<40}{fixed / 0.1:8.0f} s   (ratio ~ 0.5 + overhead / sequential)")
    if args.keep:
        print(f"kept {work} (the sweep's output is in sweep.log)")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
