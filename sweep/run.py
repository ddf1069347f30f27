"""Execute a plan on Ray Tune, stage by stage, resumably.

Layout of a study under the storage path::

    <storage>/<study>/plan.json
    <storage>/<study>/jobs/<job_id>/job.json                       # written last: the job is complete
    <storage>/<study>/jobs/<job_id>/trials/<trial>/{model/,result.json,error.txt,resume/}
    <storage>/<study>/ray/                                         # Ray Tune experiments
    <storage>/mlflow.db, <storage>/mlartifacts/                    # default MLflow store

The storage path is a local or shared folder, or an object-storage URI (``s3://``, ``gs://``):
every file access here goes through ``trainables.storage``, which keeps plain ``pathlib``
behaviour for folders. With object storage, the default MLflow store is a sqlite file under
the cache dir instead (``<cache_dir>/mlflow/<study>.db``): sqlite cannot live in a bucket.

A job is complete when ``job.json`` exists; running the same spec again skips it. Within an
unfinished job, trials with a ``result.json`` are skipped too, and a trial interrupted mid-way
continues from its last finished epoch. The whole study runs as one Ray Tune experiment fed by
``sweep.scheduler.DagSearcher``: a job's trials are issued once every job it depends on is
recorded, longest remaining path first (``sweep.costs``), with no stage or batch barrier;
searched jobs (Optuna, ASHA) run side by side, each with its own search state, and an
interrupted search continues (``jobs/<id>/search.json`` keeps its trials' values).
"""
from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray's newer console output ignores the progress reporter's column choice; the classic
# table shows the job label, epoch, loss and dev score per trial.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import CLIReporter

from sweep.costs import CostModel
from sweep.plan import Job, Plan, canonical_hash
from sweep.spec import Spec
from sweep.tracking import Tracker, TrialMetricsCallback
from trainables import storage
from trainables.contract import Tag, TrialConfig
from trainables.tasks import task_info
from trainables.records import (ERROR_FILE, RESULT_FILE, DamagedRecord, load_result, parse_record,
                                read_result)
from trainables.tune_entry import tune_trial

log = logging.getLogger(__name__)

MAX_PENDING = 10_000        # pending trials Tune asks the searcher for at most (it bounds them)
PROGRESS_FILE = "progress.json"
PROGRESS_EVERY_S = 5.0
JOB_FILE = "job.json"
JOB_FIELDS = {"job": dict, "metrics": dict, "hparams": dict, "model_dir": (str, type(None))}
PLAN_FIELDS = {"jobs": list}
NO_SPACE = "no space left on device"


def no_space_left(error: BaseException | str | None) -> bool:
    """Whether an exception (or a recorded reason) is a full disk (ENOSPC, or sqlite's own words)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error or "").lower()
    return NO_SPACE in text or "database or disk is full" in text


def disk_full(location) -> bool:
    """A local storage folder with less than 1 MiB left (object storage never is)."""
    if storage.is_remote(location):
        return False
    path = Path(location)
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize < 2**20


@dataclass
class JobOutcome:
    job_id: str
    status: str                      # finished | failed | blocked
    model_dir: str | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    resumed: bool = False            # complete before this run started


@dataclass
class RunSummary:
    outcomes: dict[str, JobOutcome]
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)


class StudyPaths:
    """Where a study's files go: ``Path``s under a local storage folder, or URIs (``str``)
    under an object-storage one (``remote``); ``trainables.storage`` reads and writes both."""

    def __init__(self, spec: Spec):
        self.remote = storage.is_remote(spec.storage)
        self.storage = spec.storage if self.remote else Path(spec.storage).expanduser().resolve()
        self.root = storage.join(self.storage, spec.name)
        self.cache_dir = Path(spec.cache_dir).expanduser()

    def job_dir(self, job_id: str) -> Path | str:
        return storage.join(self.root, "jobs", job_id)

    def trial_dir(self, job_id: str, trial_name: str) -> Path | str:
        return storage.join(self.job_dir(job_id), "trials", trial_name)

    def job_file(self, job_id: str) -> Path | str:
        return storage.join(self.job_dir(job_id), JOB_FILE)

    @property
    def artifact_root(self) -> Path:
        """A local MLflow artifact root (a tracking server keeps artifacts where it is set to)."""
        return self.cache_dir / "mlflow" / "mlartifacts" if self.remote else self.storage / "mlartifacts"

    @property
    def local_root(self) -> Path:
        """A local folder for the study's files (the report) before they go to ``root``."""
        return storage.staging_dir(self.root, self.cache_dir) if self.remote else self.root


def grid_points(space: dict) -> list[dict]:
    """Cartesian product of a job's grid values (fixed values repeated in every point)."""
    fixed = {k: v for k, v in space.items() if not isinstance(v, dict)}
    grids = {k: v["grid"] for k, v in space.items() if isinstance(v, dict) and "grid" in v}
    if not grids:
        return [fixed]
    names = sorted(grids)
    return [{**fixed, **dict(zip(names, combo))} for combo in itertools.product(*(grids[n] for n in names))]


def tune_search_space(space: dict) -> tuple[dict, dict]:
    """Split a job's space into fixed values and Tune sampling domains (for Optuna)."""
    fixed, domains = {}, {}
    for name, value in space.items():
        if not isinstance(value, dict):
            fixed[name] = value
        elif "grid" in value:
            domains[name] = tune.choice(value["grid"])
        else:
            kind = value["distribution"]
            if kind == "choice":
                domains[name] = tune.choice(list(value["values"]))
            elif kind == "uniform":
                domains[name] = tune.uniform(value["low"], value["high"])
            elif kind == "loguniform":
                domains[name] = tune.loguniform(value["low"], value["high"])
            elif kind == "randint":
                domains[name] = tune.randint(int(value["low"]), int(value["high"]) + 1)
    return fixed, domains


def trial_resources(cpu: float, gpu: float):
    """Resources of a Tune trial. A multi-worker trial only starts a Ray Train TorchTrainer,
    whose workers reserve ``cpu``/``gpu`` each; the trial itself takes a sliver of a CPU."""
    from ray.tune import PlacementGroupFactory

    single = PlacementGroupFactory([{"CPU": cpu, "GPU": gpu}] if gpu else [{"CPU": cpu}])
    launcher = PlacementGroupFactory([{"CPU": 0.1}])

    def resources(config: dict):
        settings = (config.get("trial") or {}).get("settings") or {}
        return launcher if int(settings.get("workers", 1)) > 1 else single

    return resources


def _main_metric(job: Job) -> str:
    return task_info(job.target).main_metric if job.target else "dev/score"


class StudyRunner:
    def __init__(self, spec: Spec, plan: Plan, *, tracking_uri: str, address: str | None = None,
                 max_concurrent: int | None = None, verbose: int = 1):
        self.spec = spec
        self.plan = plan
        self.paths = StudyPaths(spec)
        self.address = address
        self.max_concurrent = max_concurrent
        self.verbose = verbose
        self.tracker = Tracker(tracking_uri, spec.experiment, spec.name,
                               # a tracking server stores artifacts where it is configured to
                               # (--artifacts-destination: s3://, gs://); a local store beside it
                               artifact_root=None if tracking_uri.startswith(("http://", "https://"))
                               else self.paths.artifact_root)
        self.outcomes: dict[str, JobOutcome] = {}
        self.interrupted = False
        self._trial_dirs: dict[str, list[str]] = {}
        self._errored: set[str] = set()
        self._trial_errors: dict[str, str] = {}  # output dir -> Ray's reason, when error.txt is missing
        self._ended: set[str] = set()            # trial dirs that ended without an error
        self._last_values: dict[str, float] = {}  # trial dir -> its last search metric (ASHA stops)
        self._queues: dict = {}
        self._search: dict[str, dict] = {}
        self._progress_at = -1e18
        self.searcher = None
        self.costs = CostModel.from_dict(self._read_progress().get("costs"))

    # ------------------------------------------------------------------ driver
    def run(self) -> RunSummary:
        storage.makedirs(self.paths.root)
        self._write_plan()
        self._remove_leftover_tmp()
        if any(not storage.is_file(self.paths.job_file(j.id)) for j in self.plan.jobs):
            self._init_ray()
        self.tracker.start_study(self.plan, self.spec.source, self._study_params())
        try:
            pending = [j for j in self.plan.jobs if self._needs_run(j)]
            for stages in (("intermediate",), ("target", "eval")):  # one line per stage; no barrier
                todo = sum(1 for j in pending if j.stage in stages)
                if todo:
                    log.info("stage %s: %d of %d jobs to run", "+".join(stages), todo,
                             sum(1 for j in self.plan.jobs if j.stage in stages))
            if pending:
                self._run_jobs(pending)
            if not self.interrupted and not self.spec.keep_intermediate:
                self.tracker.wait_for_uploads()  # an upload still reading a checkpoint keeps it
                self._release_intermediate_checkpoints()
        except KeyboardInterrupt:  # a Ctrl-C outside Tune's own handling: the runs end KILLED
            self.interrupted = True
            raise
        finally:
            failed = sum(1 for o in self.outcomes.values() if o.status != "finished")
            self.tracker.finish_study(failed, self.interrupted)
        return RunSummary(self.outcomes, self.interrupted)

    def _write_plan(self) -> None:
        """plan.json, written again; one that an earlier run left damaged is named first."""
        location = storage.join(self.paths.root, "plan.json")
        try:
            text = storage.read_text(location)
            if text is not None:
                parse_record(location, text, PLAN_FIELDS)
        except (DamagedRecord, UnicodeDecodeError) as exc:
            log.warning("%s: written again", exc if isinstance(exc, DamagedRecord)
                        else f"{storage.display(location)} is damaged (not UTF-8 text)")
        storage.write_json(location, self.plan.to_dict())

    def _remove_leftover_tmp(self) -> None:
        """``*.tmp`` files and folders that an interrupted write left (local storage: object
        stores have no partial objects). Safe under the study's lease: no other run writes here."""
        if self.paths.remote:
            return
        leftovers = [path for pattern in ("*.tmp", "jobs/*/*.tmp", "jobs/*/trials/*/*.tmp",
                                          "jobs/*/trials/*/resume/*.tmp")
                     for path in sorted(self.paths.root.glob(pattern))
                     if not path.name.startswith("lease.json")]  # our own lease's heartbeat writes it
        for path in leftovers:
            if path.is_dir():
                storage.delete_dir(path)
            else:
                path.unlink(missing_ok=True)
        if leftovers:
            log.info("removed %d leftover *.tmp files under %s", len(leftovers), self.paths.root)

    def _release_intermediate_checkpoints(self) -> None:
        """Delete an intermediate job's checkpoints once every job that starts from it finished.

        A dependent that failed or was blocked keeps them (a re-run needs them). The job record
        stays; should a later run of an extended spec need the checkpoint again, the job is
        trained again (``_needs_run``). The MLflow artifact copy, if logged, is kept.
        """
        for job in self.plan.stage("intermediate"):
            outcome = self.outcomes.get(job.id)
            dependents = self.plan.dependents(job.id)
            if outcome is None or outcome.status != "finished" or not dependents:
                continue
            if not all(self.outcomes.get(d.id) and self.outcomes[d.id].status == "finished"
                       for d in dependents):
                continue
            trials = storage.join(self.paths.job_dir(job.id), "trials")
            removed = 0
            for name in storage.list_dirs(trials):  # trials/<trial>/model, in a folder or a bucket
                model_dir = storage.join(trials, name, "model")
                if storage.is_dir(model_dir):
                    storage.delete_dir(model_dir)
                    removed += 1
            if removed:
                log.info("removed the checkpoints of %s (%s): all %d dependent jobs finished",
                         job.id, job.label, len(dependents))

    def _study_params(self) -> dict:
        s = self.spec
        return {"model": s.model, "seeds": list(s.seeds), "targets": [t.task for t in s.targets],
                "intermediate": ["+".join(i) or "none" for i in s.intermediate],
                "search": s.search.model_dump(), "resources": s.resources.model_dump(),
                "jobs": len(self.plan.jobs)}

    def _init_ray(self) -> None:
        if ray.is_initialized():
            return
        # Workers import the project from the driver's environment locally; on a cluster the
        # nodes have it installed by cluster.yaml's setup commands.
        ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=self.verbose > 1,
                 include_dashboard=None if self.address else False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})

    def _needs_run(self, job: Job) -> bool:
        """False when the job is complete (recorded) or blocked by a failed dependency."""
        done = self._load_job(job)
        if done is not None and job.stage == "intermediate" and self._checkpoint_needed_again(job, done):
            log.info("intermediate job %s (%s) is trained again: its checkpoint was released and "
                     "a job that starts from it has not run", job.id, job.label)
            storage.delete_file(self.paths.job_file(job.id))
            for result in storage.find_files(storage.join(self.paths.job_dir(job.id), "trials"), RESULT_FILE):
                storage.delete_file(result)
            done = None
        if done is not None:
            self.outcomes[job.id] = done
            return False
        return True

    def _checkpoint_needed_again(self, job: Job, done: JobOutcome) -> bool:
        if done.model_dir and storage.is_dir(done.model_dir):
            return False
        return any(not storage.is_file(self.paths.job_file(d.id)) for d in self.plan.dependents(job.id))

    def _load_job(self, job: Job) -> JobOutcome | None:
        """The job's record, validated: a damaged one is named in one warning, removed, and the
        job runs again."""
        location = self.paths.job_file(job.id)
        try:
            text = storage.read_text(location)
            data = None if text is None else parse_record(location, text, JOB_FIELDS)
        except (DamagedRecord, UnicodeDecodeError) as exc:
            log.warning("%s: job %s (%s) runs again", exc if isinstance(exc, DamagedRecord) else
                        f"{storage.display(location)} is damaged (not UTF-8 text)", job.id, job.label)
            storage.delete_file(location)
            return None
        if data is None:
            return None
        return JobOutcome(job.id, "finished", data.get("model_dir"), data.get("metrics", {}), resumed=True)

    # ------------------------------------------------------------------ trials
    def _base_trial(self, job: Job, trial_name: str, hparams: dict) -> dict:
        """What one trial of ``job`` is given, in the plain form Ray Tune carries."""
        init_from = self.outcomes[job.depends_on[0]].model_dir if job.depends_on else None
        return TrialConfig(
            trial_id=f"{job.id}-{trial_name}", job_id=job.id, label=job.label, stage=job.stage,
            model=job.model, tasks=tuple(job.tasks), seed=job.seed, languages=tuple(job.languages),
            hparams=hparams, init_from=init_from, task_options=job.task_options,
            cache_dir=self.spec.cache_dir, settings=job.settings,
            num_threads=max(1, int(self.spec.resources.cpu)),
            output_dir=str(self.paths.trial_dir(job.id, trial_name)),
        ).to_dict()

    def grid_trials(self, job: Job) -> list[dict]:
        points = grid_points(job.hyperparameters)  # an eval job's: fixed max_length / eval_batch_size, or {}
        return [self._base_trial(job, "g" + canonical_hash(p, 8), p) for p in points]

    def _searched(self, job: Job) -> bool:
        return (job.stage != "eval" and
                (self.spec.search.algorithm == "optuna" or self.spec.search.scheduler == "asha")
                and any(isinstance(v, dict) for v in job.hyperparameters.values()))

    def _run_jobs(self, jobs: list[Job]) -> None:
        """All pending jobs in one Tune experiment: each job's trials go as soon as the jobs it
        depends on are recorded (``sweep.scheduler.DagSearcher``)."""
        from sweep.scheduler import DagSearcher, PerJobScheduler

        self._init_ray()  # only when there is something to run: a finished study starts no Ray
        s = self.spec.search
        self.searcher = DagSearcher(
            jobs, start_job=self._start_job, demand=lambda job: self._demand,
            capacity=ray.cluster_resources, on_blocked=self._block, cost_model=self.costs,
            trials=self._trial_count,
            concurrency=lambda job: (s.max_concurrent or self._trial_count(job)) if self._searched(job) else 1,
            max_in_flight=self.max_concurrent, on_change=self._write_progress)
        scheduler = PerJobScheduler(self._asha_for) if s.scheduler == "asha" else None
        self._fit(jobs, self.searcher, scheduler)
        self._write_progress(self.searcher, force=True)

    @property
    def _demand(self) -> dict[str, float]:
        from sweep.scheduler import trial_demand

        return trial_demand(self.spec.resources.model_dump())

    def _trial_count(self, job: Job) -> int:
        s = self.spec.search
        if self._searched(job) and s.algorithm == "optuna":
            return s.num_samples
        return len(grid_points(job.hyperparameters))

    def _asha_for(self, job_id: str):
        """One ASHA scheduler per searched job: its brackets compare that job's trials only."""
        from ray.tune.schedulers import ASHAScheduler

        job, s = self.plan.by_id[job_id], self.spec.search
        if not self._searched(job):
            return None
        # a trial reports once per epoch, then once more with its test metrics: that last
        # report must fall within max_t or ASHA would stop every trial before evaluation
        epochs = job.hyperparameters.get("epochs", 100)
        if isinstance(epochs, dict):
            epochs = max(epochs.get("grid") or epochs.get("values") or [epochs.get("high", 100)])
        return ASHAScheduler(metric=s.metric, mode=s.mode, time_attr="training_iteration",
                             max_t=max(int(epochs) + 1, s.grace_period + 1), grace_period=s.grace_period)

    def _block(self, job: Job) -> None:
        dep = next((d for d in job.depends_on if self.outcomes.get(d) is None
                    or self.outcomes[d].status != "finished"), job.depends_on[0])
        reason = f"blocked: intermediate job {dep} did not finish"
        log.warning("job %s (%s) %s", job.id, job.label, reason)
        self.outcomes[job.id] = JobOutcome(job.id, "blocked", error=reason)
        self._track(job, self.tracker.finish_job, job, status="blocked", error=reason)

    def _start_job(self, job: Job):
        """The trial queue of a job whose dependencies are recorded (``init_from`` is known now).
        A job with nothing left to run is recorded at once."""
        from sweep.scheduler import GridQueue, OptunaQueue

        s = self.spec.search
        state = self._search_state(job) if self._searched(job) else {}
        for name, entry in state.items():  # stopped early by ASHA in an earlier run: ended
            if entry.get("state") == "stopped":
                self._ended.add(str(self.paths.trial_dir(job.id, name)))
        if self._searched(job) and s.algorithm == "optuna":
            known = []
            for name, entry in sorted(state.items()):
                out = str(self.paths.trial_dir(job.id, name))
                result = None if self._pending(out) else read_result(out)
                if result is not None:
                    known.append((name, entry["params"], "complete", result["metrics"].get(s.metric)))
                elif entry.get("state") == "stopped":
                    known.append((name, entry["params"], "stopped", entry.get("value")))
                elif storage.is_file(storage.join(out, ERROR_FILE)):
                    known.append((name, entry["params"], "fail", None))
                else:
                    known.append((name, entry["params"], "issued", None))
            self._trial_dirs[job.id] = [str(self.paths.trial_dir(job.id, k[0])) for k in known]
            if known:
                log.info("search of %s (%s) continues: %d of %d trials kept, %d cut off run again",
                         job.id, job.label, sum(k[2] != "issued" for k in known), s.num_samples,
                         sum(k[2] == "issued" for k in known))
            fixed, _ = tune_search_space(job.hyperparameters)
            queue = OptunaQueue(job.hyperparameters, seed=job.seed, metric=s.metric, mode=s.mode,
                                num_samples=s.num_samples, max_concurrent=s.max_concurrent, known=known,
                                make_config=lambda name, params: self._searched_config(job, name, fixed, params),
                                record=lambda name, params: self._record_issued(job, name, params))
        else:
            trials = self.grid_trials(job)
            self._trial_dirs[job.id] = [t["output_dir"] for t in trials]
            pending = [t for t in trials if self._pending(t["output_dir"]) and t["output_dir"] not in self._ended]
            for trial in pending:  # an error left by an earlier run must not end the job early
                storage.delete_file(storage.join(trial["output_dir"], ERROR_FILE))
            queue = GridQueue([{"trial": t} for t in pending],
                              max_concurrent=s.max_concurrent if self._searched(job) else None)
        self._queues[job.id] = queue
        if queue.exhausted:  # every trial finished in an earlier run: record the job now
            self.maybe_finish_job(job.id)
        return queue

    def _searched_config(self, job: Job, name: str, fixed: dict, params: dict) -> dict:
        out = str(self.paths.trial_dir(job.id, name))
        if out not in self._trial_dirs[job.id]:
            self._trial_dirs[job.id].append(out)
        return {"trial": self._base_trial(job, name, {**fixed, **params})}

    def _read_progress(self) -> dict:
        try:
            return json.loads(storage.read_text(storage.join(self.paths.root, PROGRESS_FILE)) or "{}")
        except (ValueError, UnicodeDecodeError, OSError):
            return {}

    def _search_file(self, job: Job):
        return storage.join(self.paths.job_dir(job.id), "search.json")

    def _search_state(self, job: Job) -> dict:
        """``{trial name: {"params", "state", "value"}}`` of a searched job's trials so far."""
        if job.id not in self._search:
            location = self._search_file(job)
            try:
                text = storage.read_text(location)
                self._search[job.id] = dict(json.loads(text).get("trials", {})) if text else {}
            except (ValueError, UnicodeDecodeError, AttributeError):
                log.warning("%s is damaged: the search of %s starts over", storage.display(location), job.id)
                self._search[job.id] = {}
        return self._search[job.id]

    def _record_issued(self, job: Job, name: str, params: dict, state: str = "issued", value=None) -> None:
        entry = {"params": params, "state": state}
        if value is not None:
            entry["value"] = value
        self._search_state(job)[name] = entry
        if not self.paths.remote:
            storage.makedirs(self.paths.job_dir(job.id))
        storage.write_json(self._search_file(job), {"job_id": job.id, "trials": self._search[job.id]})

    def _write_progress(self, searcher, force: bool = False) -> None:
        """``progress.json``: jobs per state and stage, jobs running, the refined cost model
        (``sweep status SPEC`` reads it); at most every few seconds."""
        now = time.monotonic()
        if not force and now - self._progress_at < PROGRESS_EVERY_S:
            return
        self._progress_at = now
        running = sorted({job_id for job_id, _, _ in searcher.live.values()})
        storage.write_json(storage.join(self.paths.root, PROGRESS_FILE),
                           {"updated": time.time(), "counts": searcher.counts(), "running": running,
                            "in_flight": len(searcher.live), "capacity": searcher._cap,
                            "demand": self._demand, "costs": self.costs.to_dict()})

    def _pending(self, output_dir: str) -> bool:
        """True unless the trial has a good ``result.json``; a damaged one is named in one
        warning and removed, and the trial runs again."""
        try:
            return load_result(output_dir) is None
        except DamagedRecord as exc:
            log.warning("%s: the trial runs again", exc)
            storage.delete_file(storage.join(output_dir, RESULT_FILE))
            return True

    def maybe_finish_job(self, job_id: str, output_dir: str | None = None, errored: bool = False,
                         error: str | None = None) -> None:
        """Record a job as soon as each of its trials has a result, a final error, or was
        stopped early (ASHA), and it will issue no more (a search's ``num_samples``).

        A trial counts as failed only once Tune gives up on it (after its retries), not while
        an ``error.txt`` from an attempt that Ray will retry is lying in its folder; or when it
        ended without a result but with an ``error.txt`` (a deterministic failure, which
        ``tune_entry`` ends without an exception so that Ray does not retry it).
        """
        if output_dir and not errored and storage.is_file(storage.join(output_dir, ERROR_FILE)) \
                and not storage.is_file(storage.join(output_dir, RESULT_FILE)):
            errored = True
        if errored and output_dir:
            self._errored.add(output_dir)
            if error:
                self._trial_errors[str(output_dir)] = error
        elif output_dir:
            self._ended.add(str(output_dir))
            job = self.plan.by_id.get(job_id)
            name = storage.basename(output_dir)
            if job is not None and self._searched(job) and not storage.is_file(storage.join(output_dir, RESULT_FILE)):
                self._record_issued(job, name, self._search_state(job).get(name, {}).get("params", {}),
                                    state="stopped", value=self._last_values.get(str(output_dir)))
        dirs = self._trial_dirs.get(job_id)
        queue = self._queues.get(job_id)
        if job_id in self.outcomes or dirs is None or queue is None or not queue.exhausted or queue.running:
            return
        if all(d in self._errored or d in self._ended or storage.is_file(storage.join(d, RESULT_FILE))
               for d in dirs):
            job = self.plan.by_id[job_id]
            self._finish_job(job, dirs, nested=self._nested(job))
            self._queues.pop(job_id, None)
            if self.searcher is not None and job_id in self.outcomes:
                self.searcher.job_done(job_id, self.outcomes[job_id].status == "finished")

    def _nested(self, job: Job) -> bool:
        return self._searched(job) or len(grid_points(job.hyperparameters)) > 1

    def _fit(self, jobs: list[Job], search_alg, scheduler=None) -> None:
        from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

        trainable = tune.with_resources(tune_trial, trial_resources(self.spec.resources.cpu,
                                                                    self.spec.resources.gpu))
        callback = TrialMetricsCallback(
            self.tracker, {j.id: j for j in jobs}, on_trial_done=self.maybe_finish_job,
            nested={j.id: self._nested(j) for j in jobs},
            main_metrics={j.id: _main_metric(j) for j in jobs}, last_values=self._last_values,
            search_metric=self.spec.search.metric)
        reporter = CLIReporter(parameter_columns={"trial/label": "job"},
                               metric_columns={"epoch": "epoch", "train/loss": "loss",
                                               "dev/score": "dev"},
                               max_report_frequency=30,
                               max_column_length=48)  # multi-task labels stay readable
        # Ray Tune writes its experiment folders through pyarrow too, given our filesystem
        ray_path, ray_fs = storage.for_ray(storage.join(self.paths.root, "ray"))
        run_config = RunConfig(name=f"study-{int(time.time())}", storage_path=ray_path,
                               storage_filesystem=ray_fs, verbose=self.verbose,
                               failure_config=FailureConfig(max_failures=self.spec.max_failures),
                               callbacks=[callback], progress_reporter=reporter)
        # the searcher bounds what is in flight by the cluster's resources; Tune's own limit
        # only sets how many pending trials it asks the searcher for in one go
        pending = sum(self._trial_count(j) for j in jobs)
        tune_config = TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=-1,
                                 max_concurrent_trials=max(1, min(pending, MAX_PENDING)),
                                 # one worker process serves many trials: torch and
                                 # transformers are imported once, not once per trial
                                 reuse_actors=True,
                                 trial_dirname_creator=lambda t: t.trial_id)
        tuner = Tuner(trainable, param_space={}, tune_config=tune_config, run_config=run_config)
        try:
            grid = tuner.fit()
        except Exception as exc:  # noqa: BLE001 - Tune reading back its own files from a full disk
            if not (no_space_left(exc) or disk_full(self.paths.root)):
                raise
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OSError(errno.ENOSPC, f"{NO_SPACE} (Ray Tune: {type(exc).__name__}: {line})") from exc
        for result in grid:
            metrics = result.metrics or {}
            ended = metrics.get("trial_id") in callback.ended or metrics.get("done")
            if result.error is None and not ended:
                self.interrupted = True
        if not self.interrupted and search_alg.pending_jobs():
            self.interrupted = True  # Tune stopped (a Ctrl-C) before every trial was issued
        if self.interrupted:
            log.warning("the sweep was interrupted; run the same command again to resume")
            return
        for job in jobs:  # a job whose trials all ended but that nothing recorded (should not happen)
            if job.id not in self.outcomes and job.id in self._trial_dirs:
                log.warning("job %s (%s) recorded at the end of the experiment", job.id, job.label)
                self._finish_job(job, self._trial_dirs[job.id], nested=self._nested(job))

    def _finish_job(self, job: Job, trial_dirs: list[str], nested: bool) -> None:
        """Select the best trial on the search metric, record the job, write job.json last."""
        results, errors, stopped = [], [], []
        for d in trial_dirs:
            r = read_result(d)
            err = None if r is not None else storage.read_text(storage.join(d, ERROR_FILE))
            if r is not None:
                results.append(r)
            elif err is not None:
                errors.append(err.strip())
            elif str(d) in self._trial_errors:  # it could not write error.txt (a full disk)
                errors.append(self._trial_errors[str(d)])
            elif d in self._errored:  # Ray gave up on it, and no error could be written down
                errors.append(f"{NO_SPACE} (the trial could not write its error)" if disk_full(d)
                              else "the trial failed without recording why (see Ray's output)")
            else:  # stopped early by the scheduler (ASHA) or killed without a word
                stopped.append(storage.basename(d))
        if not results or (errors and not nested):
            error = errors[0] if errors else f"no trial finished ({len(stopped)} stopped)"
            if no_space_left(error) and not error.startswith(NO_SPACE):
                error = f"{NO_SPACE}: {error}"
            log.error("job %s (%s) failed: %s", job.id, job.label, error)
            self.outcomes[job.id] = JobOutcome(job.id, "failed", error=error)
            self._track(job, self.tracker.finish_job, job, status="failed", error=error)
            return
        metric, sign = self.spec.search.metric, (1 if self.spec.search.mode == "max" else -1)
        best = max(results, key=lambda r: sign * r["metrics"].get(metric, float("-inf") * sign))
        outcome = JobOutcome(job.id, "finished", best.get("model_dir"), best["metrics"])
        if not self._track(job, self.tracker.finish_job, job, status="finished", metrics=best["metrics"],
                           hparams=best["hparams"],
                           model_dir=best.get("model_dir") if job.stage != "eval" else None,
                           log_checkpoint=self.spec.mlflow.log_checkpoints,
                           extra_tags={Tag.BEST_TRIAL: best["trial_id"], Tag.TRIALS: len(trial_dirs),
                                       Tag.FAILED_TRIALS: len(errors), Tag.STOPPED_TRIALS: len(stopped),
                                       **oom_tag(best), **hardware_tags(best)}):
            return
        try:
            storage.write_json(self.paths.job_file(job.id),
                               {"job": job.to_dict(), "best_trial": best["trial_id"],
                                "model_dir": best.get("model_dir"), "metrics": best["metrics"],
                                "hparams": best["hparams"], "failed_trials": errors})
        except OSError as exc:  # a full disk: the job is failed, the driver goes on
            self._record_failure(job, exc, f"could not write {storage.display(self.paths.job_file(job.id))}")
            self._track(job, self.tracker.finish_job, job, status="failed", error=self.outcomes[job.id].error)
            return
        self.outcomes[job.id] = outcome

    def _track(self, job: Job, write, *args, **kwargs) -> bool:
        """An MLflow write that must not end the driver (sqlite on a full disk, a server gone):
        on failure the job is failed (its trials' results stay, so a later run only records it)."""
        try:
            write(*args, **kwargs)
            return True
        except Exception as exc:  # noqa: BLE001 - MlflowException, sqlite's OperationalError, OSError
            if job.id not in self.outcomes or self.outcomes[job.id].status == "finished":
                self._record_failure(job, exc, "could not record it in MLflow")
            return False

    def _record_failure(self, job: Job, exc: BaseException, what: str) -> None:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        error = f"{NO_SPACE}: {what}" if no_space_left(exc) else f"{what}: {line}"
        log.error("job %s (%s) failed: %s", job.id, job.label, error)
        self.outcomes[job.id] = JobOutcome(job.id, "failed", error=error)


def hardware_tags(result: dict) -> dict[str, str]:
    """What the selected trial really ran on (``cuda:0 NVIDIA H100 80GB HBM3``, ``bf16``): a wrong
    path (a reserved GPU left idle) shows in the MLflow runs table at a glance."""
    return {name: str(result[key]) for name, key in ((Tag.DEVICE, "device"), (Tag.PRECISION, "precision"))
            if result.get(key)}


def oom_tag(result: dict) -> dict[str, str]:
    """The micro-batch changes out-of-memory retries made in a trial, as one readable tag
    (``16x1 -> 8x2; 8x2 -> 4x4``: micro-batch x accumulation); nothing when none were needed."""
    retries = result.get("oom_retries") or []
    if not retries:
        return {}
    return {Tag.OOM_RETRIES: "; ".join(f"{r['old_batch_size']}x{r['old_grad_accumulation']} -> "
                                     f"{r['new_batch_size']}x{r['new_grad_accumulation']}" for r in retries)}


def run_study(spec: Spec, plan: Plan, *, tracking_uri: str, address: str | None = None,
              max_concurrent: int | None = None, verbose: int = 1) -> RunSummary:
    return StudyRunner(spec, plan, tracking_uri=tracking_uri, address=address,
                       max_concurrent=max_concurrent, verbose=verbose).run()


def progress_lines(spec: Spec, plan: Plan) -> list[str]:
    """``sweep status SPEC``: jobs done / running / ready / waiting per stage (from the study's
    job records and the driver's ``progress.json``) and an ETA from the cost model (the DAG
    order simulated on the cluster's slots; a running job counts as not yet started)."""
    from sweep.simulate import SimJob, simulate_dag

    paths = StudyPaths(spec)
    try:
        progress = json.loads(storage.read_text(storage.join(paths.root, PROGRESS_FILE)) or "{}")
    except (ValueError, UnicodeDecodeError, OSError):
        progress = {}
    done = {j.id for j in plan.jobs if storage.is_file(paths.job_file(j.id))}
    running = set(progress.get("running") or ()) - done
    rows: dict[str, dict[str, int]] = {}
    for job in plan.jobs:
        state = ("done" if job.id in done else "running" if job.id in running else
                 "ready" if all(d in done for d in job.depends_on) else "waiting")
        stage = rows.setdefault(job.stage, {"done": 0, "running": 0, "ready": 0, "waiting": 0})
        stage[state] += 1
    lines = [f"study {spec.name}: {len(done)} of {len(plan.jobs)} jobs done"]
    for stage, counts in rows.items():
        lines.append(f"  {stage:<12} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    costs = CostModel.from_dict(progress.get("costs"))
    demand = progress.get("demand") or {}
    capacity = progress.get("capacity") or {}
    key = "GPU" if demand.get("GPU") else "CPU"
    slots = max(1, int(capacity.get(key, 0) // (demand.get(key) or 1))) if capacity else 1
    s = spec.search
    searched = s.algorithm == "optuna"
    left = [SimJob(j.id, j.stage, tuple(d for d in j.depends_on if d not in done), costs.seconds(j),
                   s.num_samples if searched and any(isinstance(v, dict) for v in j.hyperparameters.values())
                   else len(grid_points(j.hyperparameters)), s.max_concurrent)
            for j in plan.jobs if j.id not in done]
    eta = simulate_dag(left, slots) if left else 0.0
    when = progress.get("updated")
    lines.append(f"ETA {eta / 3600:.1f} h on {slots} trial slot(s) (cost model"
                 f"{', refined from finished trials' if costs.ratio else ', not yet refined'})"
                 + (f"; driver's last progress {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}"
                    if when else "; no driver has run yet"))
    return lines
