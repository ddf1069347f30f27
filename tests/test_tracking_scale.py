"""MLflow that scales: checkpoint uploads off the driver's scheduling path, the checkpoint's
location as a tag, nested trial runs named by their hyperparameters, final metrics not logged
again at step 0.

The upload test runs a real study against a real ``mlflow server`` reached through a loopback
proxy that holds every artifact upload for a while (as a far-away artifact store would): the
trials' start times, from Ray Tune's own records, show no trial waiting for an upload.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest

from sweep.plan import Job, Plan
from sweep.tracking import Tracker, hparam_run_name
from tests import ray_local
from tests.conftest import run_sweep, write_spec

UPLOAD_DELAY_S = 1.0  # per artifact file; a checkpoint has several


def _job(hp: dict) -> Job:
    return Job(id="t-job", stage="target", model="tiny", seed=1, intermediate=(), target="toy_xnli",
               languages=("en",), hyperparameters=hp)


def test_nested_trial_runs_are_named_by_their_hyperparameters(tmp_path):
    hp = {"learning_rate": {"grid": [1e-5, 3e-5]}, "batch_size": {"grid": [16, 32]}, "epochs": 2}
    assert hparam_run_name(hp, {"learning_rate": 1e-5, "batch_size": 32, "epochs": 2}) == "lr=1e-05 bs=32"
    assert hparam_run_name({"warmup_ratio": {"distribution": "uniform", "low": 0, "high": 0.2}},
                           {"warmup_ratio": 0.123456}) == "warmup=0.123"
    assert hparam_run_name({"epochs": 2}, {"epochs": 2}) is None  # nothing searched
    job = _job(hp)
    tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "exp", "study", tmp_path / "art")
    tracker.start_study(Plan("study", [job]), None, {})
    run_id = tracker.trial_run(job, "t-job-gabc", True, "accuracy",
                               hparams={"learning_rate": 1e-5, "batch_size": 32, "epochs": 2})
    run = tracker.client.get_run(run_id)
    assert run.info.run_name == "lr=1e-05 bs=32"
    assert run.data.tags["mlflow.parentRunId"] == tracker.job_run(job, None)


def test_final_metrics_are_not_logged_again_at_step_0_and_the_checkpoint_is_a_tag(tmp_path):
    job = _job({"learning_rate": 1e-4})
    tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "exp", "study", tmp_path / "art")
    tracker.start_study(Plan("study", [job]), None, {})
    run_id = tracker.trial_run(job, "t-job-g1", False, "accuracy")  # a single trial: the job's run
    tracker.log_metrics(run_id, {"dev/score": 0.5, "epoch": 1}, step=1)
    tracker.log_metrics(run_id, {"dev/score": 0.6, "epoch": 2, "toy_xnli/accuracy/en": 0.7}, step=3)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"x" * 1000)
    tracker.finish_job(job, status="finished", metrics={"dev/score": 0.6, "toy_xnli/accuracy/en": 0.7,
                                                        "toy_xnli/accuracy/avg": 0.7},
                       model_dir=str(model), log_checkpoint=False)
    history = {k: [(m.step, m.value) for m in tracker.client.get_metric_history(run_id, k)]
               for k in ("dev/score", "toy_xnli/accuracy/en", "toy_xnli/accuracy/avg")}
    assert history["dev/score"] == [(1, 0.5), (3, 0.6)]        # no second copy at step 0
    assert history["toy_xnli/accuracy/en"] == [(3, 0.7)]
    assert history["toy_xnli/accuracy/avg"] == [(3, 0.7)]      # a new one goes at the last step
    run = tracker.client.get_run(run_id)
    assert run.data.tags["xstilts.checkpoint"] == str(model)
    assert "xstilts.checkpoint_upload" not in run.data.tags
    assert tracker.client.list_artifacts(run_id) == []          # off: nothing uploaded


class _SlowUploads(BaseHTTPRequestHandler):
    """Forwards everything to the MLflow server; holds artifact uploads for UPLOAD_DELAY_S."""

    target: tuple[str, int]
    held: list[float] = []

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "PUT" and "/mlflow-artifacts/artifacts/" in self.path:
            time.sleep(UPLOAD_DELAY_S)
            type(self).held.append(time.time())
        conn = http.client.HTTPConnection(*self.target, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_mlflow(tmp_path):
    port = ray_local.free_port()
    log = (tmp_path / "mlflow.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handler = type("Handler", (_SlowUploads,), {"target": ("127.0.0.1", port), "held": []})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        ray_local.wait_for_http(f"http://127.0.0.1:{port}/health", timeout=120)
        yield {"uri": f"http://127.0.0.1:{proxy.server_port}", "direct": f"http://127.0.0.1:{port}",
               "handler": handler}
    finally:
        proxy.shutdown()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_checkpoint_uploads_do_not_delay_other_trials(tmp_path, toy_root, small_model, slow_mlflow):
    """Three single-trial jobs one at a time, each checkpoint's upload held several seconds:
    no trial starts later than Tune's own gap after the one before it."""
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, name="uploads",
                      intermediate=["toy_chunk"], seeds=[1, 2, 3],
                      targets=[{"task": "toy_xnli", "languages": ["en"]}],
                      hyperparameters={"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32,
                                                        "batch_size": 32},
                                       "target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32,
                                                  "batch_size": 32}},
                      mlflow={"log_checkpoints": True})
    proc = run_sweep("run", str(spec), "--max-concurrent", "1", "--mlflow-uri", slow_mlflow["uri"],
                     cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = mlflow.MlflowClient(slow_mlflow["direct"])
    exp = client.get_experiment_by_name("uploads")
    jobs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'")
    trained = [r for r in jobs if r.data.tags["xstilts.stage"] in ("intermediate", "target")]
    assert len(trained) == 6
    for run in trained:  # every upload ran to its end before the driver exited
        assert run.data.tags["xstilts.checkpoint_upload"] == "finished", run.data.tags
        assert run.data.tags["xstilts.checkpoint"].endswith("/model")
        assert any(a.path == "checkpoint/heads.pt" for a in client.list_artifacts(run.info.run_id, "checkpoint"))
    held = slow_mlflow["handler"].held
    per_checkpoint = len(held) / 6 * UPLOAD_DELAY_S
    assert per_checkpoint >= 3, f"uploads were held only {per_checkpoint:.1f} s each"

    # the study's trials one after another (one Tuner feeds the whole DAG; --max-concurrent 1)
    spans = sorted(span for tuner_dir in (tmp_path / "runs" / "uploads" / "ray").iterdir()
                   for span in _trial_spans(tuner_dir))
    assert len(spans) == 6, spans
    gaps = [later[0] - earlier[1] for earlier, later in zip(spans, spans[1:])]
    print(f"\ncheckpoint uploads held {per_checkpoint:.1f} s each; gaps between trials: "
          + ", ".join(f"{g:.1f} s" for g in gaps))
    # with uploads in the Tune callback each gap would be at least one upload's hold
    assert max(gaps) < per_checkpoint * 0.6, gaps


def _trial_spans(tuner_dir: Path) -> list[tuple[float, float]]:
    """(start, end) of each trial of one Tuner, from Ray Tune's own per-trial result.json."""
    spans = []
    for result in tuner_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            spans.append((rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]))
    return sorted(spans)
