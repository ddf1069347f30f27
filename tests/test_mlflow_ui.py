"""The MLflow UI shows a study as the engine records it: a real ``mlflow server`` on a store
written by sweep.tracking.Tracker, read by headless Chromium (the UI is a JavaScript app, so
plain HTTP fetches would only see an empty shell).

Chromium's ``--dump-dom`` with a virtual-time budget renders the page and prints the DOM; no
browser-driver package is needed. Screenshots are kept in ``test-artifacts/mlflow_ui/`` at the
repository root (gitignored). Skipped when no Chromium is installed
(``apt-get install -y chromium``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest

from fixtures import xstilts_study_store as fx

pytestmark = pytest.mark.slow  # a server start and two browser page loads: 30-90 s

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "mlflow_ui"
EXP = "ui-study"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"mlflow server did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if _browser() is None:
        pytest.skip("no Chromium found (apt-get install -y chromium); cannot test the MLflow UI")
    root = tmp_path_factory.mktemp("mlflow_ui")
    uri = f"sqlite:///{root}/mlflow.db"
    fx.write_toy_study(uri, EXP, root / "artifacts")
    port = _free_port()
    log = root / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
             "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield {"url": url, "uri": uri, "root": root}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (its workers)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _render(url: str, screenshot: Path, profile: Path, expect: list[str]) -> str:
    """The rendered DOM's text; retried with a longer virtual-time budget when the expected
    strings are not there yet (a slow machine may not finish the app's fetches in time)."""
    text = ""
    for budget in (20000, 60000):
        proc = subprocess.run(
            [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={profile}", "--window-size=1600,1200",
             f"--virtual-time-budget={budget}", f"--screenshot={screenshot}", "--dump-dom", url],
            capture_output=True, text=True, timeout=240, cwd=profile.parent)
        dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", proc.stdout, flags=re.S)
        text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
        if all(s in text for s in expect):
            break
    return text


def _keep(screenshot: Path) -> Path:
    """Check the screenshot is a real PNG and copy it where a person can look at it."""
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, screenshot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(screenshot, ARTIFACTS / screenshot.name))


def _job_runs(uri: str) -> tuple[str, list]:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(EXP)
    runs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'")
    return exp.experiment_id, runs


def test_experiment_opens_on_its_training_runs(server, tmp_path):
    """Opened at the address `sweep` prints (the experiment's own page, no tab named), MLflow 3
    shows the runs table, not the GenAI overview. The experiment's kind tag is what MLflow 3's
    earlier UIs go by; 3.17's UI goes by its GenAI / Model training switch, which the printed
    address sets (``workflowType=machine_learning``)."""
    from sweep.tracking import ui_url

    exp_id, runs = _job_runs(server["uri"])
    exp = mlflow.MlflowClient(server["uri"]).get_experiment(exp_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    shot = tmp_path / "experiment_landing.png"
    names = sorted(r.info.run_name for r in runs)
    assert len(names) == 3
    text = _render(ui_url(server["url"], exp_id), shot, tmp_path / "profile", [EXP, "toy", "matching runs"])
    # the runs table: the study's parent run (its 3 job runs nested, collapsed), and the count
    assert re.search(r"\b4 matching runs\b", text), text[:2000]
    assert "toy" in text and "Run Name" in text, text[:2000]
    for genai in ("Overview", "Token Usage", "Latency", "No data available"):
        assert genai not in text, f"the GenAI overview ({genai!r}) is shown: {text[:2000]}"
    _keep(shot)


def test_runs_page_lists_the_study(server, tmp_path):
    exp_id, _ = _job_runs(server["uri"])
    shot = tmp_path / "runs_page.png"
    text = _render(f"{server['url']}/#/experiments/{exp_id}/runs", shot, tmp_path / "profile",
                   [EXP, "toy"])
    assert EXP in text and "toy" in text  # the experiment and the study's parent run
    assert re.search(r"\b4 matching runs\b", text), text[:2000]  # parent + 3 job runs
    _keep(shot)


def test_compare_page_shows_job_runs_and_language_metrics(server, tmp_path):
    exp_id, runs = _job_runs(server["uri"])
    names = {r.info.run_name for r in runs}
    assert names == {"toy_chunk s1", "none→toy_xnli s1", "toy_chunk→toy_xnli s1"}
    ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
    url = (f"{server['url']}/#/compare-runs?runs={ids}"
           f"&experiments={urllib.parse.quote(json.dumps([exp_id]))}")
    expect = [*sorted(names), "toy_xnli/accuracy/xs", "toy_xnli/n/en", "xstilts.job_id"]
    shot = tmp_path / "compare_runs.png"
    text = _render(url, shot, tmp_path / "profile", expect)
    for item in expect:
        assert item in text, f"{item!r} not on the rendered page: {text[:2000]}"
    _keep(shot)
