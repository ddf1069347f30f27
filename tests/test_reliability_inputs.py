"""Rough inputs and up-front checks (issue 14, items 4 and 7): each gives one line naming the
field or file, exit code 2, and nothing started or created. In process and fast: no Ray run.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from sweep.cli import main

SPEC = {"name": "rough", "model": "tiny", "targets": ["toy_xnli"], "seeds": [1]}


def _spec(tmp_path: Path, **fields) -> Path:
    data = {**SPEC, "storage": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), **fields}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def _created(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir()} - {"study.yaml", "study2.yaml"}


def test_duplicate_key_names_the_key_and_both_lines(tmp_path, capsys):
    spec = tmp_path / "study.yaml"
    spec.write_text("name: rough\nseeds: [1]\ntargets: [toy_xnli]\nseeds: [2]\n")
    assert main(["validate", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert "'seeds' is given twice" in line and "lines 2 and 4" in line and "study.yaml" in line
    nested = tmp_path / "study2.yaml"
    nested.write_text("name: rough\ntargets: [toy_xnli]\nhyperparameters:\n  target:\n"
                      "    epochs: 1\n    epochs: 2\n")
    assert main(["run", str(nested)]) == 2
    assert "study2.yaml: hyperparameters.target.epochs: key 'epochs' is given twice (lines 5 and 6)" \
        in _one_error_line(capsys)
    assert _created(tmp_path) == set()


@pytest.mark.parametrize("content, words", [
    ("name: rough\n".encode("utf-16"), "not a text file"),
    (b"name: caf\xe9\ntargets: [toy_xnli]\n", "line 1: not UTF-8 text"),
    (bytes(range(256)) * 4, "not a text file"),
])
def test_binary_or_non_utf8_spec_is_one_line(tmp_path, capsys, content, words):
    spec = tmp_path / "study.yaml"
    spec.write_bytes(content)
    assert main(["plan", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert words in line and "study.yaml" in line


def test_a_directory_spec_is_a_directory(tmp_path, capsys):
    (tmp_path / "study.yaml").mkdir()
    assert main(["validate", str(tmp_path / "study.yaml")]) == 2
    assert "is a directory" in _one_error_line(capsys)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_concurrent_must_be_positive(tmp_path, capsys, value):
    spec = _spec(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(spec), "--max-concurrent", value])
    assert exit_.value.code == 2
    assert "--max-concurrent" in capsys.readouterr().err
    assert _created(tmp_path) == set()


def test_report_on_a_study_that_never_ran_creates_nothing(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert main(["report", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert "study 'rough' has not run yet" in line and "sweep run" in line
    assert _created(tmp_path) == set()  # no runs/ folder, no mlflow.db


def test_a_very_large_plan_needs_yes(tmp_path, capsys, caplog):
    lrs = [round(1e-5 * (i + 1), 8) for i in range(150)]
    spec = _spec(tmp_path, hyperparameters={"target": {"learning_rate": lrs, "batch_size": list(range(1, 151))}})
    assert main(["run", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert "22500 trials" in line and "--yes" in line
    assert _created(tmp_path) == set()
    assert main(["plan", str(spec)]) == 0
    assert "22500 trials" in caplog.text  # a warning; the plan is printed


def test_storage_that_is_a_file(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    spec = _spec(tmp_path)
    for command in ("validate", "run"):
        assert main([command, str(spec)]) == 2
        line = _one_error_line(capsys)
        assert "storage:" in line and "is a file, not a folder" in line
    assert _created(tmp_path) == {"runs"}


def test_storage_that_cannot_be_written(tmp_path, capsys):
    spec = _spec(tmp_path, storage="/proc/xstilts-runs")  # not writable, even for root
    assert main(["validate", str(spec)]) == 2
    assert "storage: cannot write in /proc" in _one_error_line(capsys)


@pytest.mark.parametrize("uri, words", [
    ("garbage", "'garbage' is not an MLflow tracking URI"),
    ("ftp://example.org/mlflow", "is not an MLflow tracking URI"),
])
def test_garbage_tracking_uri_is_one_line(tmp_path, capsys, uri, words):
    spec = _spec(tmp_path, mlflow={"tracking_uri": uri})
    assert main(["validate", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert "mlflow.tracking_uri:" in line and words in line
    assert main(["run", str(spec)]) == 2
    _one_error_line(capsys)
    assert _created(tmp_path) == set()


def test_a_sqlite_store_that_is_not_a_database(tmp_path, capsys):
    (tmp_path / "bad.db").write_text("this is not sqlite\n" * 100)
    spec = _spec(tmp_path, mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'bad.db'}"})
    assert main(["validate", str(spec)]) == 2
    assert "is not a usable sqlite database" in _one_error_line(capsys)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_tracking_server_fails_in_seconds(tmp_path, capsys):
    spec = _spec(tmp_path)
    started = time.monotonic()
    assert main(["run", str(spec), "--mlflow-uri", f"http://127.0.0.1:{_free_port()}"]) == 2
    assert time.monotonic() - started < 10
    line = _one_error_line(capsys)
    assert "--mlflow-uri:" in line and "does not answer" in line
    assert _created(tmp_path) == set()  # nothing started: no storage folder, no lease


def test_a_tracking_server_that_never_answers_fails_in_under_10_s(tmp_path, capsys):
    """A server that accepts connections and then says nothing (a hung process, a firewall that
    drops packets after the handshake): the check's timeout, not MLflow's minutes of retries."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        spec = _spec(tmp_path, mlflow={"tracking_uri": f"http://127.0.0.1:{listener.getsockname()[1]}"})
        started = time.monotonic()
        assert main(["validate", str(spec)]) == 2
        assert time.monotonic() - started < 10
        assert "does not answer within 5 s" in _one_error_line(capsys)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert _created(tmp_path) == set()
