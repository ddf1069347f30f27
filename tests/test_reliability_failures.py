"""Deterministic failures fail fast (issue 14, item 6), on a real Ray Tune run: a missing file,
a corrupt record, a bad option or an explicit ``DeterministicError`` runs once even with
``max_failures: 2``; a lost connection or an out-of-memory error is still retried by Ray.
"""
from __future__ import annotations

import json

import pytest
import ray
from ray import tune
from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

from trainables.failures import DeterministicError, is_deterministic
from trainables.tune_entry import fail_fast

FAILURES = {
    "missing": lambda: open("/nonexistent/xstilts/train.jsonl"),
    "corrupt": lambda: json.loads('{"truncated": '),
    "bad_option": lambda: (_ for _ in ()).throw(ValueError("unknown pooling 'maen'")),
    "marked": lambda: (_ for _ in ()).throw(DeterministicError("loss became NaN at step 3 (epoch 1)")),
    "lost_connection": lambda: (_ for _ in ()).throw(ConnectionError("connection to the node was lost")),
    "out_of_memory": lambda: (_ for _ in ()).throw(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")),
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_only_transient_failures_are_retried(tmp_path, local_ray):
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    seen = []

    def trial(config):
        with open(attempts / config["kind"], "a") as f:
            f.write("x")
        FAILURES[config["kind"]]()

    def on_failure(config, line):
        seen.append(line)  # runs in the worker: only checks that it is called without error

    tuner = Tuner(tune.with_resources(fail_fast(on_failure)(trial), {"cpu": 0.5}),
                  param_space={"kind": tune.grid_search(sorted(FAILURES))},
                  tune_config=TuneConfig(max_concurrent_trials=2),
                  run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="fail-fast", verbose=0,
                                       failure_config=FailureConfig(max_failures=2)))
    grid = tuner.fit()
    counts = {p.name: len(p.read_text()) for p in attempts.iterdir()}
    assert counts == {"missing": 1, "corrupt": 1, "bad_option": 1, "marked": 1,
                      "lost_connection": 3, "out_of_memory": 3}
    errored = sorted(r.config["kind"] for r in grid if r.error is not None)
    assert errored == ["lost_connection", "out_of_memory"]


def test_wrapped_errors_are_classified_by_what_they_wrap():
    try:
        try:
            json.loads("{")
        except ValueError:
            raise OSError("It looks like the config file at 'model/config.json' is not a valid JSON file.")
    except OSError as exc:
        wrapped_corrupt = exc
    assert is_deterministic(wrapped_corrupt)  # transformers' way of reporting a corrupt config
    try:
        try:
            raise FileNotFoundError("cache")
        except FileNotFoundError:
            raise RuntimeError("CUDA out of memory")
    except RuntimeError as exc:
        oom_after_missing = exc
    assert not is_deterministic(oom_after_missing)  # anything transient in the chain: retried
    assert not is_deterministic(OSError(28, "No space left on device"))
    assert not is_deterministic(KeyboardInterrupt())
