"""``sweep submit`` / ``sweep status --job`` / ``sweep logs``: the study's driver as a Ray Job.

``sweep run`` drives a study from the terminal it was typed in: closing that terminal ends
the sweep. ``sweep submit`` hands the same ``sweep run SPEC --address auto`` to the cluster's
job server (Ray's job submission API, the dashboard's port 8265) instead: the driver runs on
the head node, and the terminal is free as soon as the job id is printed. Status and logs are
read back through the same API, from any machine that reaches the dashboard.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import time

from sweep.cluster import use_cluster_token

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"   # `ray dashboard cluster.yaml` forwards it here
DEFAULT_CWD = "~/xstilts"                    # where the cluster files put the checkout
STUDY_KEY = "xstilts_study"                  # job metadata: which study a job drives
FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class SubmitError(Exception):
    """A job server that cannot be reached, an unknown job: one line for the user."""


def job_address(cli_address: str | None) -> str:
    """--address, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS (when it is an http one), else the
    forwarded dashboard on this machine."""
    for value in (cli_address, os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if value and (cli_address or value.startswith(("http://", "https://"))):
            return value
    return DEFAULT_ADDRESS


def _client(address: str):
    use_cluster_token()  # before Ray is imported: a token cluster refuses requests without it
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SubmitError(f"no Ray job server at {address} ({first}); is the cluster up, and "
                          "`ray dashboard CLUSTER.yaml` forwarding its port?") from None


def _cd(cwd: str) -> str:
    """``cd`` into ``cwd`` on the head; a leading ``~`` is left for the head's shell."""
    if cwd == "~" or cwd.startswith("~/"):
        rest = cwd[2:]
        return "cd ~" + (f"/{shlex.quote(rest)}" if rest else "")
    return f"cd {shlex.quote(cwd)}"


def entrypoint(spec: str, cwd: str, *, mlflow_uri: str | None = None,
               max_concurrent: int | None = None, yes: bool = False) -> str:
    """The shell command the job runs on the head: the same ``sweep run``, joined to the cluster."""
    args = ["sweep", "run", spec, "--address", "auto"]
    if mlflow_uri:
        args += ["--mlflow-uri", mlflow_uri]
    if max_concurrent:
        args += ["--max-concurrent", str(max_concurrent)]
    if yes:
        args.append("--yes")
    return f"{_cd(cwd)} && exec {shlex.join(args)}"


def submission_id(study: str) -> str:
    """``sweep-<study>-<UTC time>``: readable, and unique per second."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", study).strip("-")[:40] or "study"
    return f"sweep-{slug}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def submit(spec_path: str, study: str, *, address: str, cwd: str, mlflow_uri: str | None = None,
           max_concurrent: int | None = None, yes: bool = False, env: dict[str, str] | None = None) -> str:
    """Start the study's driver as a Ray Job on the head; return the job id at once."""
    client = _client(address)
    command = entrypoint(spec_path, cwd, mlflow_uri=mlflow_uri, max_concurrent=max_concurrent, yes=yes)
    env_vars = {"PYTHONUNBUFFERED": "1", **(env or {})}
    job_id = client.submit_job(
        entrypoint=command, submission_id=submission_id(study),
        # the head runs no trials (CPU: 0): the driver takes no resources, so it starts there
        entrypoint_num_cpus=0, metadata={STUDY_KEY: study},
        runtime_env={"env_vars": env_vars})
    log.info("submitted %s to %s: %s", study, address, command)
    return job_id


def _info(client, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "does not exist" in str(exc) or "404" in str(exc):
            raise SubmitError(f"no job {job_id!r} on this cluster (`sweep status` lists them)") from None
        raise SubmitError(str(exc).strip().splitlines()[0]) from None


def status_lines(address: str, job_id: str | None) -> tuple[list[str], str | None]:
    """What ``sweep status`` prints, and the job's status (None when listing)."""
    client = _client(address)
    if job_id:
        info = _info(client, job_id)
        state = str(info.status.value if hasattr(info.status, "value") else info.status)
        lines = [f"job {job_id}: {state}"]
        if info.metadata and info.metadata.get(STUDY_KEY):
            lines.append(f"  study:   {info.metadata[STUDY_KEY]}")
        lines.append(f"  command: {info.entrypoint}")
        if info.start_time:
            lines.append(f"  started: {_when(info.start_time)}")
        if info.end_time:
            lines.append(f"  ended:   {_when(info.end_time)}")
        if info.message:
            lines.append(f"  message: {info.message.strip().splitlines()[-1]}")
        return lines, state
    jobs = [j for j in client.list_jobs() if (j.metadata or {}).get(STUDY_KEY)]
    jobs.sort(key=lambda j: j.start_time or 0)
    if not jobs:
        return ["no sweep jobs on this cluster (start one with `sweep submit SPEC`)"], None
    lines = [f"{'job':<40} {'study':<24} {'status':<10} started"]
    for j in jobs:
        state = str(j.status.value if hasattr(j.status, "value") else j.status)
        lines.append(f"{j.submission_id or j.job_id:<40} {j.metadata[STUDY_KEY]:<24} {state:<10} "
                     f"{_when(j.start_time) if j.start_time else '-'}")
    return lines, None


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def print_logs(address: str, job_id: str, follow: bool, out=sys.stdout) -> str:
    """Print the job's driver output (to its end with ``follow``); return its status."""
    client = _client(address)
    _info(client, job_id)  # an unknown id: one line, before any streaming
    if not follow:
        out.write(client.get_job_logs(job_id))
        out.flush()
    else:
        async def stream() -> None:
            async for chunk in client.tail_job_logs(job_id):
                out.write(chunk)
                out.flush()

        asyncio.run(stream())
    info = _info(client, job_id)
    return str(info.status.value if hasattr(info.status, "value") else info.status)
