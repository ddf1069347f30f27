"""``sweep``: validate, plan, run and report a study.

Exit codes: 0 done; 1 some jobs failed (the rest finished); 2 bad input (nothing started);
130 interrupted (run the same command again to resume).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sweep.spec import Spec, SpecError, load_spec
from trainables.contract import Tag, tag

log = logging.getLogger("sweep")


def tracking_uri_for(spec: Spec, cli_uri: str | None) -> str:
    """--mlflow-uri, else the spec's mlflow.tracking_uri, else MLFLOW_TRACKING_URI, else sqlite
    (beside the runs; under the cache dir when the storage is object storage)."""
    from sweep.tracking import default_tracking_uri, local_tracking_uri
    from trainables.storage import display, is_remote

    uri = cli_uri or spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if is_remote(spec.storage):
        uri = local_tracking_uri(spec.cache_dir, spec.name)
        log.warning("storage %s is object storage, where a sqlite MLflow store cannot live: MLflow "
                    "records go to %s on this machine only; set MLFLOW_TRACKING_URI (or --mlflow-uri) "
                    "to a tracking server to keep them with the study", display(spec.storage), uri)
        return uri
    return default_tracking_uri(Path(spec.storage).expanduser().resolve())  # created by the run


def tracking_field(spec: Spec, cli_uri: str | None) -> str:
    """Where the tracking URI came from, for error messages."""
    if cli_uri:
        return "--mlflow-uri"
    if spec.mlflow.tracking_uri:
        return "mlflow.tracking_uri"
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "mlflow (default store)"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _setup_logging(verbose: int) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow", "urllib3", "filelock", "datasets", "httpx", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow logs a store error with its traceback before raising it; we report it in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def cmd_validate(args) -> int:
    from sweep.checks import check_storage, check_tracking

    spec = load_spec(args.spec)
    check_storage(spec)
    check_tracking(tracking_uri_for(spec, None), tracking_field(spec, None), spec.source)
    print(f"{args.spec}: valid study '{spec.name}'")
    return 0


def cmd_plan(args) -> int:
    from sweep.plan import build_plan, format_plan

    from sweep.checks import LARGE_PLAN_TRIALS, plan_trials

    spec = load_spec(args.spec)
    plan = build_plan(spec)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_plan(plan))
    trials = plan_trials(plan, spec)
    if trials > LARGE_PLAN_TRIALS:
        log.warning("the plan has %d trials (%d jobs), above %d: `sweep run` asks for --yes",
                    trials, len(plan.jobs), LARGE_PLAN_TRIALS)
    return 0


def cmd_run(args) -> int:
    if args.address:
        from sweep.cluster import use_cluster_token

        use_cluster_token()  # before anything imports ray
    from sweep.plan import build_plan, format_plan

    from sweep.checks import LARGE_PLAN_TRIALS, check_storage, check_tracking, plan_trials

    spec = load_spec(args.spec)
    plan = build_plan(spec)
    if args.dry_run:
        print(format_plan(plan))
        return 0
    trials = plan_trials(plan, spec)
    if trials > LARGE_PLAN_TRIALS and not args.yes:
        raise SpecError("", f"the plan has {trials} trials ({len(plan.jobs)} jobs), above "
                            f"{LARGE_PLAN_TRIALS}: check it with `sweep plan`, or pass --yes to run it",
                        spec.source)
    # in seconds, before anything starts: a writable storage folder, an MLflow store that answers
    check_storage(spec)
    uri = tracking_uri_for(spec, args.mlflow_uri)
    check_tracking(uri, tracking_field(spec, args.mlflow_uri), spec.source)
    from sweep.lease import Lease, LeaseHeld
    from sweep.run import StudyPaths

    try:
        lease = Lease(StudyPaths(spec).root, spec.name).acquire()
    except LeaseHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_leased(args, spec, plan, uri)
    finally:
        lease.release()


def _run_leased(args, spec: Spec, plan, uri: str) -> int:
    from sweep.prepare import prepare_study
    from sweep.run import no_space_left, run_study

    log.info("study %s: %d jobs; MLflow at %s", spec.name, len(plan.jobs), uri)
    prepare_study(spec)
    try:
        summary = run_study(spec, plan, tracking_uri=uri, address=args.address,
                            max_concurrent=args.max_concurrent, verbose=args.verbose)
    except Exception as exc:  # a full disk under the driver's own writes: one line, exit 1
        if not no_space_left(exc):
            raise
        print(f"error: no space left on device under {spec.storage}: free some space and run the "
              "same command again to resume", file=sys.stderr)
        return 1
    resumed = sum(1 for o in summary.outcomes.values() if o.resumed)
    print(f"\nstudy {spec.name}: {summary.count('finished')} jobs finished ({resumed} already done "
          f"before this run), {summary.count('failed')} failed, {summary.count('blocked')} blocked")
    for outcome in summary.outcomes.values():
        if outcome.status != "finished":
            job = plan.by_id[outcome.job_id]
            print(f"  {outcome.status}: {job.label} [{job.id}] {outcome.error or ''}")
    if summary.interrupted:
        print("interrupted: run the same command again to resume")
        return 130
    if any(no_space_left(o.error) for o in summary.outcomes.values()):
        print(f"error: no space left on device under {spec.storage}: free some space and run the "
              "same command again to resume", file=sys.stderr)
        return 1
    report = _report(spec, uri)
    print(f"\nMLflow UI: mlflow ui --backend-store-uri '{uri}'  (then open {_ui_page(uri, spec)})")
    from sweep.report.reading import what_the_table_shows

    print(f"\n{what_the_table_shows(report)}")
    return 1 if summary.count("failed") or summary.count("blocked") else 0


def _ui_page(uri: str, spec: Spec, base: str = "http://127.0.0.1:5000") -> str:
    """The study's runs table in the MLflow UI (not MLflow 3's GenAI overview)."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking import ui_url

    try:
        exp = MlflowClient(uri).get_experiment_by_name(spec.experiment)
    except Exception:  # noqa: BLE001 - a link is a courtesy: the plain address still works
        exp = None
    return ui_url(base, exp.experiment_id) if exp else base


DEFAULT_FEATURES = "syntax_knn"  # the URIEL feature set of the typology scatter


def default_group_by(spec: Spec) -> str | None:
    """Studies with groups report by group; studies with factors by the first factor's value."""
    if spec.groups:
        return tag(Tag.GROUP)
    if spec.factors:
        from sweep.spec import Grid

        name = spec.factors[0]
        phase = "intermediate" if isinstance(spec.hyperparameters["intermediate"].get(name), Grid) else "target"
        return f"factors.{phase}.{name}"
    return None


def _report(spec: Spec, uri: str, *, group_by: str | None = None, compare: list[str] = (),
            figures: bool = True, html: bool = True, distance_features: str = DEFAULT_FEATURES,
            distance_metric: str = "cosine") -> None:
    from sweep.report import StudySource, generate_report
    from sweep.run import StudyPaths
    from trainables import storage

    others = [load_spec(path) for path in compare]
    order = ["+".join(i) if i else "none" for i in spec.intermediate]
    study = StudyPaths(spec)
    report, paths = generate_report(
        uri, spec.experiment, spec.name, study.local_root, intermediate_order=order,
        target_order=[t.task for t in spec.targets], group_by=group_by or default_group_by(spec),
        compare=[StudySource(tracking_uri_for(o, None), o.experiment, o.name) for o in others],
        figures=figures, html=html, distance_features=distance_features,
        distance_metric=distance_metric)
    print()
    print(paths["md"].read_text() if "md" in paths else report)
    print("report written to " + ", ".join(str(p) for k, p in paths.items() if k in ("md", "csv", "html")))
    if study.remote:  # written locally, then copied beside the study's runs
        for path in paths.values():
            storage.upload_file(path, storage.join(study.root, Path(path).name))
        print(f"report copied to {storage.display(study.root)}/")
    if "html" in paths:
        print(f"HTML report with figures: {Path(paths['html']).resolve().as_uri()}")
    return report


def cmd_report(args) -> int:
    from sweep.checks import check_group_by, check_study_ran

    spec = load_spec(args.spec)
    if not args.no_figures and args.distance_features != DEFAULT_FEATURES:
        from sweep.languages import feature_sets

        known = feature_sets()
        if args.distance_features not in known:
            print(f"error: --distance-features: {args.distance_features!r} is not a lang2vec feature "
                  f"set; choose from {', '.join(known)}", file=sys.stderr)
            return 2
    uri = tracking_uri_for(spec, args.mlflow_uri)
    check_study_ran(spec, uri, tracking_field(spec, args.mlflow_uri))  # nothing is created before
    for other in args.compare or []:
        other_spec = load_spec(other)
        check_study_ran(other_spec, tracking_uri_for(other_spec, None), tracking_field(other_spec, None))
    if args.group_by:
        check_group_by(uri, spec.experiment, args.group_by)
    _report(spec, uri, group_by=args.group_by,
            compare=args.compare or [], figures=not args.no_figures, html=not args.no_html,
            distance_features=args.distance_features, distance_metric=args.distance_metric)
    return 0


def cmd_submit(args) -> int:
    from sweep.submit import SubmitError, job_address, submit

    spec = load_spec(args.spec)  # a bad spec is caught here, before anything reaches the cluster
    address = job_address(args.address)
    try:
        job_id = submit(args.spec, spec.name, address=address, cwd=args.cwd, mlflow_uri=args.mlflow_uri,
                        max_concurrent=args.max_concurrent, yes=args.yes)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(job_id)
    log.info("follow it with `sweep status --job %s` and `sweep logs %s --follow`", job_id, job_id)
    return 0


def cmd_status(args) -> int:
    if args.spec:  # one study's progress, from its files
        from sweep.plan import build_plan
        from sweep.run import progress_lines

        spec = load_spec(args.spec)
        print("\n".join(progress_lines(spec, build_plan(spec))))
        return 0
    from sweep.submit import SubmitError, job_address, status_lines

    try:
        lines, state = status_lines(job_address(args.address), args.job)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 1 if state in ("FAILED", "STOPPED") else 0


def cmd_logs(args) -> int:
    from sweep.submit import SubmitError, job_address, print_logs

    try:
        state = print_logs(job_address(args.address), args.job, args.follow)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if args.follow and state in ("FAILED", "STOPPED") else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=1,
                        help="more output (-vv also streams trial logs)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a study spec and exit")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="print the job DAG of a study")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run (or resume) a study on Ray Tune")
    p.add_argument("spec")
    p.add_argument("--address", help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite file in the storage path; "
                                        "under the cache dir for s3:// / gs:// storage)")
    p.add_argument("--max-concurrent", type=positive_int, help="at most this many trials at once")
    p.add_argument("--yes", action="store_true",
                   help="run a plan even when it is very large (more trials than sweep.checks.LARGE_PLAN_TRIALS)")
    p.add_argument("--dry-run", action="store_true", help="validate and plan only; start nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the study's results table from MLflow")
    p.add_argument("spec")
    p.add_argument("--mlflow-uri")
    p.add_argument("--group-by", help="an MLflow param or tag to group rows by (default: the spec's "
                                      "groups, else its first factor)")
    p.add_argument("--compare", action="append", metavar="OTHER.yaml",
                   help="another study to put beside this one (e.g. the same study on another model)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--no-html", action="store_true", help="no HTML page")
    p.add_argument("--distance-features", default=DEFAULT_FEATURES, metavar="SET",
                   help="URIEL feature set (lang2vec) of the typological distance from English in "
                        "the scatter plots (default: %(default)s; e.g. syntax_wals, phonology_knn)")
    p.add_argument("--distance-metric", default="cosine", choices=("cosine", "euclidean"),
                   help="distance between the URIEL vectors (default: %(default)s)")
    p.set_defaults(func=cmd_report)

    job_server = ("Ray job server (the dashboard), default: $RAY_API_SERVER_ADDRESS, else "
                  "http://127.0.0.1:8265 (what `ray dashboard cluster.yaml` forwards)")
    p = sub.add_parser("submit", help="run a study's driver as a Ray Job on the cluster's head; "
                                      "prints the job id and returns")
    p.add_argument("spec", help="the spec, as a path under --cwd on the head (and readable here)")
    p.add_argument("--address", help=job_server)
    p.add_argument("--cwd", default="~/xstilts",
                   help="folder on the head the driver runs in (default: %(default)s, the checkout "
                        "the cluster files sync)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI as seen from the head (default: the "
                                        "spec's, else the head's MLFLOW_TRACKING_URI, else sqlite)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--yes", action="store_true", help="run a very large plan (see `sweep run --yes`)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="a submitted study's job: its state (or all sweep jobs); "
                                      "with SPEC: that study's jobs done / running / ready / waiting and an ETA")
    p.add_argument("spec", nargs="?", help="a study spec: its progress per stage, from its storage")
    p.add_argument("--job", help="job id printed by `sweep submit` (default: list sweep jobs)")
    p.add_argument("--address", help=job_server)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="a submitted study's driver output")
    p.add_argument("job", help="job id printed by `sweep submit`")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--address", help=job_server)
    p.set_defaults(func=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
