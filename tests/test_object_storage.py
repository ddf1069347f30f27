"""Object storage (``storage: s3://...`` / ``gs://...``) against real S3 and GCS APIs on loopback:
moto's server and gcp-storage-emulator.

The servers listen on 127.0.0.1 only, on free ports; S3 gets dummy credentials from the
environment (as a user's would come from theirs), the GCS emulator anonymous access. Every URI
names its server with ``endpoint_override``, so nothing here can reach a real bucket. The tests
taking ``store`` run on both.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from trainables import storage

BUCKET = "xstilts-test"
# distinctive values, so a test can look for them where they must never appear (moto takes any)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAXSTILTSTESTKEY01", "AWS_SECRET_ACCESS_KEY": "xstilts-dummy-secret-4f9c2e",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class _Server:
    """A loopback object store: URIs naming it, a pyarrow filesystem on it, its keys."""

    scheme = ""
    env: dict = {}  # what a process needs in its environment to reach it

    def __init__(self, port: int, options: str):
        self.port, self.options, self.bucket = port, options, BUCKET

    def uri(self, prefix: str, bucket: str = BUCKET) -> str:
        return f"{self.scheme}://{bucket}/{prefix}?{self.options}"

    def fs(self):
        raise NotImplementedError

    def keys(self, prefix: str) -> list[str]:
        """Every object under ``BUCKET/prefix``, as paths relative to it."""
        import pyarrow.fs

        infos = self.fs().get_file_info(pyarrow.fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True,
                                                                allow_not_found=True))
        return sorted(i.path[len(BUCKET) + len(prefix) + 2:] for i in infos
                      if i.type == pyarrow.fs.FileType.File)


class S3Server(_Server):
    scheme, env = "s3", CREDENTIALS

    def __init__(self, port: int):
        super().__init__(port, f"endpoint_override=127.0.0.1:{port}&scheme=http")

    def fs(self):
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                                       region="us-east-1", access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                       secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                       allow_bucket_creation=True)


class GcsServer(_Server):
    scheme = "gs"

    def __init__(self, port: int):
        super().__init__(port, f"endpoint_override=127.0.0.1:{port}&scheme=http&anonymous=true")

    def fs(self):
        import pyarrow.fs

        return pyarrow.fs.GcsFileSystem(anonymous=True, endpoint_override=f"127.0.0.1:{self.port}", scheme="http")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(port)
        s3.fs().create_dir(BUCKET)
        yield s3
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def gcs():
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield GcsServer(port)
    finally:
        server.stop()


@pytest.fixture(params=["s3", "gs"])
def store(request):
    """Each object store in turn."""
    return request.getfixturevalue("s3" if request.param == "s3" else "gcs")


# --------------------------------------------------------------------------- locations, no server

def test_locations_join_keep_the_connection_options():
    uri = "s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.is_remote(uri) and storage.is_remote("gs://b/p") and not storage.is_remote("runs")
    assert not storage.is_remote(Path("/tmp/s3:/x"))
    assert storage.join(uri, "e2e", "plan.json") == \
        "s3://bucket/runs/e2e/plan.json?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.join("s3://bucket", "a") == "s3://bucket/a"
    assert storage.join("runs", "e2e") == Path("runs/e2e")            # local: a Path, as before
    assert storage.basename(storage.join(uri, "trials", "g1")) == "g1"
    assert storage.display(storage.join(uri, "x")) == "s3://bucket/runs/x"
    staged = storage.staging_dir(storage.join(uri, "e2e"), "/cache")
    assert staged.parts[:4] == ("/", "cache", "staging", "s3") and staged.parts[-2:] == ("runs", "e2e")
    assert staged != storage.staging_dir("s3://bucket/runs/e2e", "/cache")  # another endpoint


def test_spec_storage_accepts_s3_and_gs_and_rejects_other_schemes_in_one_line():
    from sweep.spec import SpecError, parse_spec

    base = {"name": "x", "targets": ["toy_xnli"]}
    for ok in ("runs", "/mnt/nfs/runs", "s3://bucket/runs", "gs://bucket/runs",
               "s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http&region=eu-west-1",
               "gs://bucket/runs?endpoint_override=127.0.0.1:4443&scheme=http&anonymous=true"):
        assert parse_spec({**base, "storage": ok}).storage == ok
    cases = {"hdfs://nn/runs": "unsupported scheme 'hdfs://'", "https://host/runs": "unsupported scheme",
             "s3://": "needs a bucket", "s3://bucket/runs?verbose=1": "unknown s3:// option 'verbose'",
             "s3://bucket/runs?secret_key=hunter2": "credentials do not go in the URI",
             "s3://AKIA:hunter2@bucket/runs": "credentials do not go in the URI"}
    for bad, message in cases.items():
        with pytest.raises(SpecError) as err:
            parse_spec({**base, "storage": bad}, source="study.yaml")
        text = str(err.value)
        assert text.startswith("study.yaml: storage: ") and message in text and "\n" not in text, text
        assert "hunter2" not in text
    with pytest.raises(SpecError, match="cache_dir: must be a local folder"):
        parse_spec({**base, "cache_dir": "s3://bucket/cache"})


# --------------------------------------------------------------------------- helpers on S3 and GCS

def test_files_and_folders_round_trip(store, tmp_path):
    root = store.uri("unit/files")
    assert not storage.exists(root) and storage.read_text(storage.join(root, "a.json")) is None
    storage.write_json(storage.join(root, "a.json"), {"x": 1})
    storage.write_text(storage.join(root, "sub", "b.txt"), "hello\n")
    assert storage.read_json(storage.join(root, "a.json")) == {"x": 1}
    assert storage.read_text(storage.join(root, "sub", "b.txt")) == "hello\n"
    assert storage.is_file(storage.join(root, "a.json")) and not storage.is_dir(storage.join(root, "a.json"))
    assert storage.is_dir(storage.join(root, "sub")) and storage.list_dirs(root) == ["sub"]
    assert storage.list_dirs(storage.join(root, "nowhere")) == []
    storage.write_text(storage.join(root, "sub", "deeper", "a.json"), "{}")
    assert storage.find_files(root, "a.json") == sorted([storage.join(root, "a.json"),
                                                         storage.join(root, "sub", "deeper", "a.json")])
    storage.delete_file(storage.join(root, "a.json"))
    storage.delete_file(storage.join(root, "a.json"))              # missing: nothing happens
    assert not storage.exists(storage.join(root, "a.json"))
    storage.delete_dir(storage.join(root, "sub"))
    storage.delete_dir(storage.join(root, "sub"))
    assert store.keys("unit/files") == []

    local = tmp_path / "model"
    (local / "nested").mkdir(parents=True)
    (local / "config.json").write_text('{"a": 1}')
    (local / "heads.pt").write_bytes(os.urandom(3 * 1024 * 1024))  # a multipart-sized object
    (local / "nested" / "x.txt").write_text("x")
    (local / "skip.tmp").write_text("no")
    target = store.uri("unit/model")
    assert storage.upload_dir(local, target, exclude=("skip.tmp",)) == 3
    assert store.keys("unit/model") == ["config.json", "heads.pt", "nested/x.txt"]
    assert set(storage.manifest(target)) == {"config.json", "heads.pt", "nested/x.txt"}
    back = tmp_path / "back"
    assert storage.download_dir(target, back)
    assert (back / "heads.pt").read_bytes() == (local / "heads.pt").read_bytes()
    assert (back / "nested" / "x.txt").read_text() == "x" and not (back / "skip.tmp").exists()
    assert not storage.download_dir(store.uri("unit/nothing"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_a_start_model_is_staged_once_and_again_when_it_changes(s3, tmp_path):
    remote = s3.uri("unit/stage/model")
    storage.write_text(storage.join(remote, "config.json"), '{"v": 1}')
    cache = tmp_path / "cache"
    first = storage.stage_model(remote, cache)
    assert first.is_relative_to(cache / "staging") and (first / "config.json").read_text() == '{"v": 1}'
    (first / "marker").write_text("still the same copy")
    assert (storage.stage_model(remote, cache) / "marker").is_file()   # unchanged: not fetched again
    storage.write_text(storage.join(remote, "config.json"), '{"v": 22}')  # retrained: new listing
    again = storage.stage_model(remote, cache)
    assert (again / "config.json").read_text() == '{"v": 22}' and not (again / "marker").exists()
    with pytest.raises(FileNotFoundError, match="no model at s3://xstilts-test/unit/none"):
        storage.stage_model(s3.uri("unit/none"), cache)


def test_access_check_fails_in_one_line_for_a_missing_bucket(s3):
    storage.check_access(s3.uri("unit/access"))                    # creates the prefix, leaves no probe
    assert s3.keys("unit/access") == []
    with pytest.raises(storage.StorageError) as err:
        storage.check_access(s3.uri("runs", bucket="no-such-bucket"))
    assert "no-such-bucket" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- a trial on S3

HP = dict(learning_rate=1e-3, batch_size=16, eval_batch_size=64, epochs=2, max_length=48,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


def _trial(output_dir: str, cache: Path, toy_root: Path, model: Path, **fields) -> dict:
    options = {t: {"data_dir": str(toy_root)} for t in ("toy_chunk", "toy_xnli")}
    return {"trial_id": "t", "job_id": "j", "stage": "intermediate", "model": str(model),
            "tasks": ["toy_chunk"], "seed": 7, "hparams": HP, "task_options": options,
            "output_dir": output_dir, "cache_dir": str(cache), "num_threads": 1, **fields}


def test_a_trial_mirrors_to_the_bucket_resumes_from_it_and_a_target_starts_from_it(store, tmp_path, toy_root, small_model):
    """The resume state and best model go up after each epoch; another "node" (an empty cache)
    continues from them; result.json comes last; a target trial stages the model from S3."""
    from trainables.trial import run_trial

    out = store.uri("trial/inter")
    cache_a, cache_b = tmp_path / "node-a", tmp_path / "node-b"

    def stop_after_first_epoch(metrics):
        if metrics.get("epoch") == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(_trial(out, cache_a, toy_root, small_model), report=stop_after_first_epoch)
    keys = store.keys("trial/inter")
    assert "resume/state.pt" in keys and "model/config.json" in keys and "model/heads.pt" in keys
    assert "result.json" not in keys and "error.txt" not in keys

    reports: list[dict] = []
    result = run_trial(_trial(out, cache_b, toy_root, small_model), report=reports.append)
    assert [r["epoch"] for r in reports if "epoch" in r] == [2] and result["resumed_from_epoch"] == 1
    keys = store.keys("trial/inter")
    assert "result.json" in keys and not any(k.startswith("resume/") for k in keys)
    assert result["model_dir"] == storage.join(out, "model")
    assert storage.read_json(storage.join(out, "result.json"))["metrics"] == result["metrics"]
    assert not storage.staging_dir(out, cache_b).exists()          # the local copy is gone
    assert run_trial(_trial(out, cache_b, toy_root, small_model))["metrics"] == result["metrics"]  # done

    target_out = store.uri("trial/target")
    target = run_trial(_trial(target_out, cache_a, toy_root, small_model, stage="target", tasks=["toy_xnli"],
                              languages=["en", "xs"], init_from=result["model_dir"],
                              hparams={**HP, "epochs": 1}))
    assert {"toy_xnli/accuracy/en", "toy_xnli/accuracy/xs"} <= set(target["metrics"])
    staged = storage.staging_dir(result["model_dir"], cache_a)
    assert (staged / "heads.pt").is_file()                          # read from the bucket
    assert "model/heads.pt" in store.keys("trial/target") and "result.json" in store.keys("trial/target")


def test_a_failed_trial_leaves_error_txt_in_the_bucket(s3, tmp_path, small_model):
    from trainables.trial import run_trial

    out = s3.uri("trial/broken")
    with pytest.raises(Exception, match="nowhere"):
        run_trial(_trial(out, tmp_path / "cache", tmp_path / "nowhere", small_model, tasks=["toy_xnli"]))
    error = storage.read_text(storage.join(out, "error.txt"))
    assert error.count("\n") == 1 and "nowhere" in error
    assert storage.read_text(storage.join(out, "result.json")) is None


_DEEPSPEED_TRIAL = """
import json, sys
from trainables.trial import run_trial

config, stop = json.loads(sys.argv[1]), int(sys.argv[2])

def report(metrics):
    if metrics.get("epoch") == stop:
        raise KeyboardInterrupt

try:
    result = run_trial(config, report=report)
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True}))
else:
    print(json.dumps(result))
"""


@pytest.mark.slow
def test_a_deepspeed_trial_resumes_from_its_checkpoint_in_the_bucket_on_another_node(
        s3, tmp_path, toy_root, small_model):
    """The ZeRO checkpoint (resume/deepspeed/<tag>/) goes up with state.pt; a fresh cache (another
    node) downloads it and DeepSpeed loads it from its own staging folder, not the first one's."""
    import subprocess
    import sys

    from tests.test_deepspeed import ds_env

    out = s3.uri("trial/deepspeed")
    hparams = {**HP, "epochs": 2}

    def run(cache: Path, stop: int) -> dict:
        config = _trial(out, cache, toy_root, small_model, hparams=hparams,
                        settings={"deepspeed": {"stage": 2, "precision": "fp32"}})
        proc = subprocess.run([sys.executable, "-c", _DEEPSPEED_TRIAL, json.dumps(config), str(stop)],
                              capture_output=True, text=True, timeout=600, env={**ds_env(), **CREDENTIALS},
                              cwd=Path(__file__).resolve().parents[1])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert run(tmp_path / "node-a", stop=1) == {"interrupted": True}
    keys = s3.keys("trial/deepspeed")
    tags = {k.split("/")[2] for k in keys if k.startswith("resume/deepspeed/step")}
    assert len(tags) == 1 and "resume/state.pt" in keys and "result.json" not in keys
    import shutil

    shutil.rmtree(tmp_path / "node-a")                              # that node is gone
    result = run(tmp_path / "node-b", stop=0)
    assert result["resumed_from_epoch"] == 1 and result["model_dir"] == storage.join(out, "model")
    keys = s3.keys("trial/deepspeed")
    assert "result.json" in keys and not any(k.startswith("resume/") for k in keys)


# --------------------------------------------------------------------------- `sweep run` on S3

def test_sweep_run_with_a_missing_bucket_fails_early_in_one_line(s3, tmp_path, toy_root, small_model):
    from tests.conftest import run_sweep, write_spec

    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model,
                      storage=s3.uri("runs", bucket="no-such-bucket"))
    proc = run_sweep("run", str(spec), cwd=tmp_path, env=CREDENTIALS, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "storage: cannot" in errors[0] and "no-such-bucket" in errors[0], proc.stderr


@pytest.mark.slow
def test_sweep_run_on_object_storage_writes_everything_to_the_bucket_and_resumes_from_it(store, tmp_path, toy_root, small_model):
    from tests.conftest import run_sweep, write_spec

    hp = {"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32},
          "target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32}}
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["toy_chunk"],
                      targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}], hyperparameters=hp,
                      storage=store.uri("runs"), mlflow={"log_checkpoints": True})  # off by default
    proc = run_sweep("run", str(spec), cwd=tmp_path, env=store.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "2 jobs finished" in proc.stdout, out
    assert "a sqlite MLflow store cannot live" in proc.stderr          # the warning, once per run
    assert not (tmp_path / "runs").exists()                          # nothing went to a local folder

    keys = store.keys("runs/e2e")
    plan = json.loads(store.fs().open_input_stream(f"{BUCKET}/runs/e2e/plan.json").read())
    (inter,) = [j for j in plan["jobs"] if j["stage"] == "intermediate"]
    (target,) = [j for j in plan["jobs"] if j["stage"] == "target"]
    for job in (inter, target):
        assert f"jobs/{job['id']}/job.json" in keys
    results = {k.split("/")[1]: k for k in keys if k.startswith("jobs/") and k.endswith("/result.json")}
    assert set(results) == {inter["id"], target["id"]}
    target_trial = results[target["id"]].rsplit("/", 1)[0]
    assert {f"{target_trial}/model/{f}" for f in ("config.json", "heads.pt", "xstilts.json")} <= set(keys)
    # the intermediate checkpoint was released (its only dependent finished): deleted from the bucket
    assert not any(k.startswith(f"jobs/{inter['id']}/") and "/model/" in k for k in keys)
    assert {"report.md", "report.csv"} <= set(keys) and any(k.startswith("ray/") for k in keys)

    # the target trial started from the intermediate model in the bucket, through a staged copy
    record = json.loads(store.fs().open_input_stream(f"{BUCKET}/runs/e2e/{results[target['id']]}").read())
    assert record["config"]["init_from"].startswith(f"{store.scheme}://{BUCKET}/runs/e2e/jobs/{inter['id']}/")
    assert record["model_dir"].startswith(f"{store.scheme}://")
    staged = storage.staging_dir(record["config"]["init_from"], tmp_path / "cache")
    assert (staged / "config.json").is_file()

    # MLflow: a local sqlite store under the cache dir, with the checkpoint logged from the bucket
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'cache' / 'mlflow' / 'e2e.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    inter_run = next(r for r in runs if r.data.tags["xstilts.stage"] == "intermediate")
    assert "checkpoint/heads.pt" in {a.path for a in client.list_artifacts(inter_run.info.run_id, "checkpoint")}
    # the credentials came from the environment and went nowhere in MLflow: no param, tag or run name
    secrets = (CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # the S3 server's
    every_run = client.search_runs([exp.experiment_id])
    assert len(every_run) > len(runs)                                  # the study's run and trial runs too
    for r in every_run:
        recorded = [*r.data.params.items(), *r.data.tags.items(), ("name", r.info.run_name or "")]
        assert not [(k, v) for k, v in recorded if any(x in f"{k}={v}" for x in secrets)], r.info.run_id

    again = run_sweep("run", str(spec), cwd=tmp_path, env=store.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 jobs finished (2 already done before this run)" in again.stdout
    assert "Started a local Ray instance" not in again.stdout + again.stderr  # nothing to run


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["ddp", "zero2", "zero3"])
def test_a_two_worker_trial_resumes_from_the_bucket_on_a_wiped_node(engine, s3, tmp_path, toy_root, small_model):
    """Two Ray Train workers (DDP over gloo, or DeepSpeed ZeRO-2/3 with each rank's optimizer
    shard), each staging its own ``rank<r>/`` copy of the bucket's ``resume/``: stopped after its
    first epoch and restarted on an empty cache, both ranks continue from the bucket's state (a
    rank starting over would not match rank 0). The ranks then split the languages: each
    evaluates one, on the dev-selected weights (a rank without ``model/`` stages it from the
    bucket, so no rank evaluates a sharded ZeRO-3 model alone), with the same metrics as one
    process evaluating those weights."""
    import io
    import shutil
    import threading
    import time

    import ray
    import torch

    from trainables.trial import run_trial

    prefix = f"trial/workers-{engine}"
    out = s3.uri(prefix)
    cache = tmp_path / "node"
    settings = {"workers": 2, "resources": {"cpu": 0.5},
                **({"deepspeed": {"stage": int(engine[-1])}} if engine.startswith("zero") else {})}
    config = _trial(out, cache, toy_root, small_model, stage="target", tasks=["toy_xnli"], languages=["en", "xs"],
                    hparams={**HP, "epochs": 2, "max_length": 32}, settings=settings)

    def stop_after_first_epoch(metrics):
        if metrics.get("epoch") == 1:
            raise KeyboardInterrupt  # how Ray stops a trial; the workers leave at this report

    staged = storage.staging_dir(out, cache)
    seen: set[str] = set()
    running = threading.Event()

    def watch() -> None:  # each rank's staging folder lives only while the trial runs
        while running.is_set():
            for path in ("rank0/resume/state.pt", "rank0/model/heads.pt", "rank1/resume/state.pt", "rank1/model"):
                if (staged / path).exists():
                    seen.add(path)
            time.sleep(0.02)

    reports: list[dict] = []
    # the workers inherit the fixture's dummy credentials from this process's environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trial(config, report=stop_after_first_epoch)
        keys = s3.keys(prefix)
        assert "resume/state.pt" in keys and "model/heads.pt" in keys
        assert "result.json" not in keys and "error.txt" not in keys
        if engine.startswith("zero"):  # one checkpoint tag, with the optimizer shard of each rank
            shards = {k.rsplit("/", 1)[1] for k in keys if k.startswith("resume/deepspeed/step")}
            assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= shards
        with s3.fs().open_input_stream(f"{BUCKET}/{prefix}/resume/state.pt") as f:
            assert torch.load(io.BytesIO(f.read()), weights_only=False)["epoch"] == 0   # epoch 1 finished
        shutil.rmtree(cache)                                            # another node: nothing local

        running.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            result = run_trial(config, report=reports.append)
        finally:
            running.clear()
            watcher.join()
    finally:
        ray.shutdown()
    # both ranks staged the bucket's resume state and went on from it; rank 1 stages model/ only
    # to evaluate its share, when the selected weights are not the ones it holds (always after DeepSpeed)
    assert seen - {"rank1/model"} == {"rank0/resume/state.pt", "rank0/model/heads.pt", "rank1/resume/state.pt"}, seen
    if engine.startswith("zero"):
        assert "rank1/model" in seen
    assert result["evaluated_by"] == {"en": 0, "xs": 1}             # each language once, split over the ranks
    assert result["resumed_from_epoch"] == 1
    epochs = [r for r in reports if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [2]                      # epoch 1 was not trained again
    assert epochs[0]["train/steps"] == result["steps"] > 0 and result["steps"] % 2 == 0  # steps of both epochs
    assert {"toy_xnli/accuracy/en", "toy_xnli/accuracy/xs"} <= set(result["metrics"])
    keys = s3.keys(prefix)
    assert "result.json" in keys and "error.txt" not in keys and not any(k.startswith("resume/") for k in keys)
    assert {"model/config.json", "model/heads.pt"} <= set(keys)
    assert result["model_dir"] == storage.join(out, "model")
    assert storage.read_json(storage.join(out, "result.json"))["metrics"] == result["metrics"]
    assert not staged.exists()                                      # the local copies are gone
    # the same weights evaluated in one process give the same per-language metrics
    from trainables.model import build_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions
    from trainables.trial.evaluation import evaluate_languages as _evaluate_languages

    local = tmp_path / "selected"
    storage.download_dir(storage.join(out, "model"), local)
    task = build_task("toy_xnli", TaskOptions.from_dict({"data_dir": str(toy_root)}, str(cache)))
    model, tokenizer = build_model(str(local), [task])
    model.heads.load_state_dict(torch.load(local / "heads.pt", weights_only=True))
    single, by = _evaluate_languages(task, model, tokenizer, ("en", "xs"), config["hparams"])
    assert by == {"en": 0, "xs": 0}
    assert {k: v for k, v in result["metrics"].items() if k.startswith("toy_xnli/")} == single
