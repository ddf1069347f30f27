"""MLflow records of a study, written from the driver only.

One parent run per study, one child run per job (nested trial runs only when a job searches
hyperparameters). Runs are found again by their tags, so a retried or resumed job writes into
its existing run and never creates a second one. Only the driver talks to MLflow: trials need
no access to the tracking server, and a sqlite store sees a single writer.
"""
from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from sweep.plan import Job, Plan
from trainables import storage
from trainables.contract import Tag, tag

log = logging.getLogger(__name__)

# Ray adds these to every result; they are progress bookkeeping, not study metrics.
_TUNE_KEYS = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid",
              "iterations_since_restore", "time_since_restore", "done"}


def default_tracking_uri(storage_dir: Path) -> str:
    """A sqlite file beside the runs: MLflow 3 refuses plain ``file:`` stores."""
    return f"sqlite:///{(storage_dir / 'mlflow.db').resolve()}"


def local_tracking_uri(cache_dir: str | Path, study: str) -> str:
    """The default store of a study on object storage, where sqlite cannot live:
    ``<cache_dir>/mlflow/<study>.db`` on the driver's machine."""
    folder = Path(cache_dir).expanduser().resolve() / "mlflow"  # created by the Tracker
    return f"sqlite:///{folder / f'{study}.db'}"


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested dicts -> ``a.b.c`` keys, the form MLflow params take."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: str(value)[:6000]}


# MLflow 3's UI opens an experiment on the page its kind names; without this tag it may guess
# "GenAI" and land on an empty traces overview instead of the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# short names in nested trial runs' names (``lr=1e-05 bs=32``)
_SHORT_NAMES = {"learning_rate": "lr", "batch_size": "bs", "weight_decay": "wd",
                "warmup_ratio": "warmup", "grad_accumulation": "accum", "max_length": "len"}


def hparam_run_name(space: dict[str, Any], hparams: dict[str, Any]) -> str | None:
    """``lr=1e-05 bs=32``: the values of the hyperparameters a job searches over (the ones its
    space gives as a grid or a distribution), in the space's order; None when none vary."""
    parts = []
    for name, value in space.items():
        if isinstance(value, dict) and name in hparams:
            v = hparams[name]
            text = f"{v:.3g}" if isinstance(v, float) else str(v)
            parts.append(f"{_SHORT_NAMES.get(name, name)}={text}")
    return " ".join(parts) or None


def ui_url(base: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs table. MLflow 3.17's UI opens experiments on
    its GenAI overview unless its GenAI / Model training switch says otherwise (it does not read
    the experiment's kind tag): ``workflowType=machine_learning`` sets that switch."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def _tag_filter(tags: dict[str, str]) -> str:
    """An MLflow search filter for runs carrying all of ``tags`` (short ``Tag`` names)."""
    return " and ".join(f"tags.`{tag(k)}` = '{v}'" for k, v in tags.items())


class Tracker:
    """All MLflow writes of one study."""

    def __init__(self, tracking_uri: str, experiment: str, study: str, artifact_root: Path | None = None):
        self.uri = tracking_uri
        if tracking_uri.startswith("sqlite:///"):  # the store's folder, on first use
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri)
        self.study = study
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_root.resolve().as_uri() if artifact_root else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id
        self.experiment = experiment
        tags = self.client.get_experiment(self.experiment_id).tags
        if EXPERIMENT_KIND_TAG not in tags:  # one the user set stays
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        # checkpoint uploads run here, off the Tune callback (the driver's scheduling loop)
        self._uploads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlflow-upload")
        self._pending: list[Future] = []
        self.parent_id: str | None = None
        self._job_runs: dict[str, str] = {}
        self._trial_runs: dict[str, str] = {}
        self._open: set[str] = set()  # runs this process set RUNNING and has not ended

    def __getstate__(self) -> dict:
        """Ray Tune pickles its callbacks (and so this tracker): without the upload thread."""
        state = dict(self.__dict__)
        state["_uploads"], state["_pending"] = None, []
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._uploads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlflow-upload")

    # ------------------------------------------------------------------ lookup
    def _find(self, tags: dict[str, str]) -> str | None:
        runs = self.client.search_runs([self.experiment_id], _tag_filter(tags), max_results=2)
        if len(runs) > 1:
            log.warning("several MLflow runs match %s; using the oldest", tags)
            runs = sorted(runs, key=lambda r: r.info.start_time)
        return runs[0].info.run_id if runs else None

    def _create(self, name: str, tags: dict[str, str], parent: str | None) -> str:
        all_tags = {tag(k): str(v) for k, v in tags.items()}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    # ------------------------------------------------------------------ study
    def start_study(self, plan: Plan, spec_file: str | None, params: dict[str, Any]) -> str:
        identity = {Tag.KIND: "study", Tag.STUDY: self.study}
        run_id = self._find(identity)
        if run_id is None:
            run_id = self._create(self.study, identity, None)
            self._log_params(run_id, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
        counts = plan.counts()
        self.client.log_batch(run_id, metrics=[Metric(f"plan/{k}", v, _now(), 0) for k, v in counts.items()])
        if spec_file:
            self.client.log_artifact(run_id, spec_file, "spec")
        self.parent_id = run_id
        self._open.add(run_id)
        return run_id

    def finish_study(self, failed: int, interrupted: bool = False) -> None:
        self.wait_for_uploads()
        if self.parent_id is None:
            return
        status = "KILLED" if interrupted else ("FAILED" if failed else "FINISHED")
        self.client.set_tag(self.parent_id, tag(Tag.FAILED_JOBS), str(failed))
        if interrupted:
            self.kill_open()
        self.client.set_terminated(self.parent_id, status=status)
        self._open.discard(self.parent_id)

    def kill_open(self) -> None:
        """Mark every run this process left RUNNING (jobs and trials cut off by Ctrl-C) KILLED."""
        for run_id in sorted(self._open - {self.parent_id}):
            try:
                if self.client.get_run(run_id).data.tags.get(tag(Tag.STATUS)) == "running":
                    self.client.set_tag(run_id, tag(Tag.STATUS), "interrupted")
                self.client.set_terminated(run_id, status="KILLED")
            except Exception as exc:  # noqa: BLE001 - a store that went away: the others still
                log.warning("could not mark MLflow run %s KILLED: %s", run_id, exc)
            self._open.discard(run_id)

    def end_trial(self, trial_key: str, errored: bool) -> None:
        """A nested trial run ends with its trial (the job's own run ends in ``finish_job``)."""
        run_id = self._trial_runs.get(trial_key)
        if run_id is not None and run_id in self._open:
            self.client.set_terminated(run_id, status="FAILED" if errored else "FINISHED")
            self._open.discard(run_id)

    # ------------------------------------------------------------------ jobs
    def job_run(self, job: Job, main_metric: str | None) -> str:
        """The job's child run: found by its job id, created (with all params) on first use."""
        if job.id in self._job_runs:
            return self._job_runs[job.id]
        run_id = self._find({Tag.KIND: "job", Tag.JOB_ID: job.id})
        if run_id is None:
            tags = {Tag.KIND: "job", Tag.STUDY: self.study, Tag.JOB_ID: job.id, Tag.STAGE: job.stage,
                    Tag.INTERMEDIATE: job.intermediate_name, Tag.TARGET: job.target or "",
                    Tag.SEED: job.seed, Tag.MAIN_METRIC: main_metric or "", Tag.STATUS: "running",
                    Tag.TRAIN_EXAMPLES: "" if job.intermediate_examples is None else job.intermediate_examples,
                    Tag.TARGET_EXAMPLES: "" if job.target_examples is None else job.target_examples,
                    Tag.GROUP: job.group}
            run_id = self._create(job.label, tags, self.parent_id)
            params = {"model": job.model, "seed": job.seed, "stage": job.stage,
                      "intermediate": job.intermediate_name, "target": job.target or "",
                      "languages": ",".join(job.languages), "depends_on": ",".join(job.depends_on),
                      "hp": job.hyperparameters, "task_options": job.task_options,
                      "train_examples": job.intermediate_examples, "target_examples": job.target_examples,
                      "settings": job.settings, "factors": job.factors}
            self._log_params(run_id, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, tag(Tag.STATUS), "running")
        self._job_runs[job.id] = run_id
        self._open.add(run_id)
        return run_id

    def trial_run(self, job: Job, trial_key: str, nested: bool, main_metric: str | None,
                  hparams: dict | None = None) -> str:
        """Where a trial's metrics go: the job run itself, or a nested run when searching."""
        job_run = self.job_run(job, main_metric)
        if not nested:
            return job_run
        if trial_key not in self._trial_runs:
            run_id = self._find({Tag.KIND: "trial", Tag.TRIAL_ID: trial_key})
            if run_id is None:
                name = hparam_run_name(job.hyperparameters, hparams or {})
                run_id = self._create(name or f"{job.label} {trial_key.rsplit('-', 1)[-1]}",
                                      {Tag.KIND: "trial", Tag.STUDY: self.study, Tag.JOB_ID: job.id,
                                       Tag.TRIAL_ID: trial_key}, job_run)
            else:
                self.client.update_run(run_id, status="RUNNING")
            self._trial_runs[trial_key] = run_id
            self._open.add(run_id)
        return self._trial_runs[trial_key]

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
        now = _now()
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _TUNE_KEYS
                 and not math.isinf(float(v))]
        for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(run_id, metrics=batch[start:start + 900])

    def finish_job(self, job: Job, *, status: str, metrics: dict | None = None,
                   hparams: dict | None = None, model_dir: str | None = None,
                   error: str | None = None, log_checkpoint: bool = True, extra_tags: dict | None = None) -> None:
        run_id = self.job_run(job, None)
        if metrics:
            self._log_final(run_id, metrics)
        if hparams:
            self._log_params(run_id, {"selected": hparams})
        tags = {Tag.STATUS: status, **(extra_tags or {})}
        if error:
            tags[Tag.ERROR] = error[:4000]
        if model_dir:  # where the selected checkpoint is, whether or not MLflow gets a copy
            tags[Tag.CHECKPOINT] = storage.display(model_dir)
            if log_checkpoint:
                tags[Tag.CHECKPOINT_UPLOAD] = "running"
        self.client.log_batch(run_id, tags=[RunTag(tag(k), str(v)) for k, v in tags.items()])
        if model_dir and log_checkpoint:
            self._pending.append(self._uploads.submit(self._upload_checkpoint, run_id, model_dir))
        self.client.set_terminated(run_id, status="FINISHED" if status == "finished" else "FAILED")
        self._open.discard(run_id)

    def _log_final(self, run_id: str, metrics: dict[str, Any]) -> None:
        """A job's selected metrics, at the run's last step, and only those the run does not
        already hold with that value (a job's single trial has streamed them into it)."""
        run = self.client.get_run(run_id)
        have = run.data.metrics
        new = {k: v for k, v in metrics.items() if k not in have or have[k] != v}
        if new:
            step = max((m.step for m in run.data._metric_objs), default=0)
            self.log_metrics(run_id, new, step=step)

    def _upload_checkpoint(self, run_id: str, model_dir: str) -> None:
        """Runs on the upload thread; a failed upload is a tag, never a failed sweep."""
        started = time.monotonic()
        try:
            self._log_checkpoint(run_id, model_dir)
            state = "finished"
        except Exception as exc:  # noqa: BLE001 - the checkpoint stays where the tag says
            log.warning("could not upload the checkpoint %s to MLflow: %s", storage.display(model_dir), exc)
            state = f"failed: {exc}"[:500]
        self.client.set_tag(run_id, tag(Tag.CHECKPOINT_UPLOAD), state)
        log.info("checkpoint upload of run %s: %s after %.1f s", run_id, state, time.monotonic() - started)

    def wait_for_uploads(self) -> None:
        """Block until every checkpoint upload started so far has ended (end of a study)."""
        pending, self._pending = self._pending, []
        if pending:
            log.info("waiting for %d checkpoint upload(s) to MLflow", sum(not f.done() for f in pending))
        for future in pending:
            future.result()

    def _log_checkpoint(self, run_id: str, model_dir: str) -> None:
        """The selected model under ``checkpoint/``; one in object storage goes through a
        temporary local copy."""
        if not storage.is_remote(model_dir):
            if not Path(model_dir).is_dir():  # a tag saying "finished" must mean it is there
                raise FileNotFoundError(f"{model_dir} is gone")
            self.client.log_artifacts(run_id, model_dir, "checkpoint")
            return
        import tempfile

        with tempfile.TemporaryDirectory(prefix="xstilts-checkpoint-") as tmp:
            if storage.download_dir(model_dir, tmp):
                self.client.log_artifacts(run_id, tmp, "checkpoint")

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        existing = self.client.get_run(run_id).data.params
        flat = {k: v for k, v in flatten("", params).items() if k not in existing}
        items = [Param(k, v) for k, v in flat.items()]
        for start in range(0, len(items), 90):  # MLflow caps params per batch at 100
            self.client.log_batch(run_id, params=items[start:start + 90])


def _now() -> int:
    return int(time.time() * 1000)


class TrialMetricsCallback(tune.Callback):
    """Streams each trial's reports into its MLflow run, and tells the runner when a trial ends
    (``on_trial_done(job_id, output_dir, errored)``) so its job is recorded without waiting
    for the rest of the batch."""

    def __init__(self, tracker: Tracker, jobs: dict[str, Job], nested: dict[str, bool],
                 main_metrics: dict[str, str], on_trial_done=None, last_values: dict | None = None,
                 search_metric: str | None = None):
        self.tracker = tracker
        # output dir -> the trial's last value of the search metric (what ASHA stopped it at)
        self.last_values = last_values if last_values is not None else {}
        self.search_metric = search_metric
        self.on_trial_done = on_trial_done
        # Tune ids of trials that ended (completed, stopped early by a scheduler, or errored):
        # any other trial left in the result grid was cut off by an interrupt.
        self.ended: set[str] = set()
        self.jobs = jobs
        self.nested = nested
        self.main_metrics = main_metrics
        self._epochs_logged: dict[str, set[int]] = {}  # run id -> epochs (steps) in MLflow
        self._keys: dict[str, str] = {}                # Tune trial id -> our trial key

    def on_trial_start(self, iteration, trials, trial, **info):
        """A job's MLflow run is created when its first trial starts (so its duration is the
        trials' time, not the queue's)."""
        job = self.jobs.get(trial.config["trial"]["job_id"])
        if job is None:
            return
        try:
            self.tracker.job_run(job, self.main_metrics.get(job.id))
        except Exception:  # tracking must never take the sweep down
            log.exception("could not create the MLflow run of %s", job.label)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        job = self.jobs.get(trial.config["trial"]["job_id"])
        key = result.get("trial_key")
        if job is None or key is None:
            return
        value = result.get(self.search_metric) if self.search_metric else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.last_values[str(trial.config["trial"].get("output_dir"))] = float(value)
        self._keys[trial.trial_id] = key
        try:
            run_id = self.tracker.trial_run(job, key, self.nested[job.id], self.main_metrics.get(job.id),
                                            hparams={**trial.config["trial"].get("hparams", {}),
                                                     **(trial.config.get("hp") or {})})
            step = self._step(run_id, trial, result)
            if step is not None:
                self.tracker.log_metrics(run_id, result, step=step)
        except Exception:  # tracking must never take the sweep down
            log.exception("could not log metrics of %s to MLflow", key)

    def _step(self, run_id: str, trial, result: dict) -> int | None:
        """The MLflow step of a report: the trial's own epoch (not Tune's iteration count, which
        starts again at 1 when a trial resumes), so a resumed trial's curves continue where they
        stopped. An epoch already in MLflow is not logged twice (None). The final report goes
        one step after the last epoch; other reports (an OOM retry) at the last epoch."""
        logged = self._epochs_logged.get(run_id)
        if logged is None:  # what earlier runs of the driver logged for this run
            history = self.tracker.client.get_metric_history(run_id, "epoch")
            logged = self._epochs_logged[run_id] = {int(m.step) for m in history}
        epoch = result.get("epoch")
        if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and not result.get("done"):
            if int(epoch) in logged:
                log.info("epoch %d of %s is already in MLflow; not logged again", int(epoch),
                         result.get("trial_key"))
                return None
            self._fill_gap(run_id, trial, int(epoch), logged)
            logged.add(int(epoch))
            return int(epoch)
        last = max(logged, default=0)
        if not result.get("done"):
            return last
        cfg = trial.config
        epochs = {**cfg["trial"].get("hparams", {}), **(cfg.get("hp") or {})}.get("epochs")
        return max(last, epochs if isinstance(epochs, int) else 0) + 1

    def _fill_gap(self, run_id: str, trial, epoch: int, logged: set[int]) -> None:
        """Epochs before ``epoch`` that finished (their resume state was saved) but whose report
        never reached MLflow (a Ctrl-C between the two): logged from the trial's ``curve.json``."""
        missing = set(range(1, epoch)) - logged
        if not missing:
            return
        from trainables.records import read_curve

        output_dir = trial.config["trial"].get("output_dir")
        if trial.config.get("hp"):  # a searched trial's folder is named after its Tune id
            output_dir = storage.join(output_dir, trial.trial_id)
        points = [p for p in read_curve(output_dir) if int(p["epoch"]) in missing]
        for point in points:
            self.tracker.log_metrics(run_id, point, step=int(point["epoch"]))
            logged.add(int(point["epoch"]))
        if points:
            log.info("logged epochs %s of %s from its curve.json (their reports never reached MLflow)",
                     ",".join(str(int(p["epoch"])) for p in points), trial.config["trial"].get("label"))

    def _done(self, trial, errored: bool) -> None:
        self.ended.add(trial.trial_id)
        key = self._keys.get(trial.trial_id)
        if key is not None:
            try:
                self.tracker.end_trial(key, errored)
            except Exception as exc:  # noqa: BLE001 - tracking must never take the sweep down
                log.warning("could not end the MLflow run of %s: %s", key, exc)
        if self.on_trial_done is None:
            return
        try:
            cfg = trial.config["trial"]
            self.on_trial_done(cfg["job_id"], cfg.get("output_dir"), errored,
                               error=trial_error_line(trial) if errored else None)
        except Exception:  # recording a job must never take the sweep down
            log.exception("could not record the job of trial %s", trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._done(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._done(trial, errored=True)


def trial_error_line(trial) -> str | None:
    """The one line that says why Ray gave up on a trial (the exception's own line, from
    Tune's error file), for a trial that could not write its ``error.txt`` (a full disk)."""
    try:
        text = str(trial.get_error() or "")
    except Exception:  # noqa: BLE001 - an error file that cannot be read: no reason, not a crash
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "No space left on device" in line:
            return "no space left on device: " + line
    exceptions = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception", "Interrupt"))]
    return (exceptions or lines or [None])[-1]
