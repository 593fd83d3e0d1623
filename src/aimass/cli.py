"""The `aimass` command line: sample data, the demo services, runs and their summaries, specs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("aimass")


def _cmd_fetch_sample(args: argparse.Namespace) -> int:
    from aimass.data.sample_data import fetch_sample

    files = fetch_sample(Path(args.var_dir).resolve(), force=args.force)
    for name, path in files.items():
        log.info("sample %s: %s", name, path)
    return 0


DEMO_WORKERS = 2


def _up(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import os

    from aimass.platform.settings import Settings
    from aimass.stack import services

    if getattr(args, "profile", None):
        os.environ["AIMASS_PROFILE"] = args.profile
    settings = Settings.from_env()
    services.prepare(settings)
    services.start(settings)
    services.wait_ready(settings)
    return settings


def _cmd_up(args: argparse.Namespace) -> int:
    from aimass.stack import cluster, services

    settings = _up(args)
    log.info(
        "%s profile up: Airflow http://%s:%d (user %s, password in %s)",
        cluster.profile(settings),
        settings.host,
        settings.airflow_port,
        services.ADMIN_USER,
        services.airflow_secrets_path(settings),
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from aimass.platform.airflow_api import AirflowClient
    from aimass.stack import services

    settings = _up(args)
    client = AirflowClient(
        f"http://{settings.host}:{settings.airflow_port}",
        services.ADMIN_USER,
        services.admin_password(settings),
    )
    dag_id = "aimass_retrain"
    client.wait_for_dag(dag_id)
    # Two workers unless told otherwise, so the demo exercises multi-worker training (the
    # DAG's default, auto, gives 1 worker on a machine with fewer than 8 cores and no GPU).
    conf = {"workers": args.workers or DEMO_WORKERS}
    run_id = client.trigger(dag_id, conf, note="started by `make demo`")
    log.info(
        "waiting for %s run %s (follow it at http://%s:%d/dags/%s)",
        dag_id,
        run_id,
        settings.host,
        settings.airflow_port,
        dag_id,
    )
    state = client.wait_for_run(dag_id, run_id, timeout_s=args.timeout)
    print(render_summary(settings, client, dag_id, run_id, state))
    return 0 if state == "success" else 1


def render_summary(settings, client, dag_id: str, run_id: str, state: str) -> str:  # type: ignore[no-untyped-def]
    """The text `make demo` prints: what happened, and where to look next."""
    from aimass.stack import services

    lines = [""]
    lines.append(f"== AI Mass: {dag_id} run {run_id}: {state.upper()}")
    summary = None
    try:
        summary = client.xcom(dag_id, run_id, "publish_summary")
    except Exception as exc:  # a failed run has no summary; say where to look instead
        log.debug("no summary: %s", exc)
    if summary:
        lines.extend(summary_lines(settings, summary, live=True))
    else:
        states = client.task_states(dag_id, run_id)
        for task, st in states.items():
            lines.append(f"  {task:20s} {st}")
        lines.append(f"task logs: {services.airflow_home(settings) / 'logs'}")
    lines.extend(footer_lines(settings, (summary or {}).get("dataset")))
    return "\n".join(lines)


def summary_lines(settings, summary: dict, *, live: bool) -> list[str]:  # type: ignore[no-untyped-def,type-arg]
    """A run summary (``RunSummary.dump()``) as the lines `make demo` prints.

    ``live``: ask the model server now for the deployed example row's prediction.
    """
    lines: list[str] = []
    clean, quality = summary.get("clean") or {}, summary.get("quality") or {}
    lines.append(
        f"data     {summary['dataset']} ds={summary['ds']}: rows in {clean.get('rows_in')}, "
        f"clean {clean.get('rows_clean')}, quarantined {clean.get('rows_quarantined')}, "
        f"duplicates {clean.get('rows_duplicate', 0)}"
    )
    lines.append(
        f"quality  {'passed' if quality.get('success') else 'FAILED'}: {quality.get('passed')}/{quality.get('expectations')} "
        f"expectations, {len(quality.get('warnings') or [])} warnings; Data Docs: {quality.get('data_docs')}"
    )
    chosen = (summary.get("trigger") or {}).get("input") or {}
    if chosen.get("path") or clean.get("input"):
        how = f" ({chosen['detail']})" if chosen.get("detail") else ""
        lines.append(f"input    {chosen.get('path') or clean.get('input')}{how}")
    drift = summary.get("drift") or {}
    if drift.get("status") == "skipped":
        lines.append(f"drift    skipped: {drift.get('reason')}")
    elif drift:
        flagged = drift.get("critical_features", []) + drift.get("warning_features", [])
        lines.append(
            f"drift    {drift['status']} against champion v{drift.get('champion_version')}"
            f"{' (' + ', '.join(flagged) + ')' if flagged else ''}; report: {drift.get('report_html')}"
        )
    model = summary.get("model") or {}
    gate = summary.get("gate") or {}
    if not model:
        lines.append(f"model    none: the run stopped before training ({summary.get('outcome')})")
        return lines
    cand = gate.get("candidate") or {}
    shown = ", ".join(
        f"{k.replace('_', ' ')} {v:.4f}"
        for k, v in cand.items()
        if k in ("auc", "accuracy", "log_loss", "rmse", "mae", "r2")
    )
    lines.append(
        f"model    registry version {model.get('registry_version')} ({gate.get('task', 'binary')}) "
        f"trained on {model.get('workers')} worker(s) in {model.get('train_seconds')} s; "
        f"holdout {shown}"
    )
    champ = gate.get("champion")
    primary = gate.get("primary_metric") or "auc"
    against = (
        f"against champion v{gate.get('champion_version')} ({primary} {champ[primary]:.4f})"
        if champ and primary in champ
        else "no champion yet"
    )
    if not gate:
        lines.append(f"gate     none: the run stopped before the gate ({summary.get('outcome')})")
        return lines
    lines.append(f"gate     {'PASSED' if gate.get('passed') else 'REJECTED'} {against}")
    lines.extend(f"           {c}" for c in gate.get("checks") or [])
    if compression := gate.get("compression"):
        lines.append(f"compress {compression.get('why')}")
    card = (summary.get("links") or {}).get("model_card")
    if card:
        lines.append(f"card     model card (importance, calibration, slices): {card}")
    dep = summary.get("deployment")
    if dep:
        lines.append(
            f"deploy   serving version {dep['serving_version']} is 'stable' (previous {dep.get('previous_version')}), "
            f"MLflow alias champion -> v{dep['registry_version']}"
        )
        instance = dep.get("rest_instance")
        lines.append(
            _live_prediction(settings, summary["dataset"], instance)
            if live or not instance
            else "predict  example row "
            + ", ".join(f"{k}={v!r}" for k, v in instance.items())
            + "; ask the model server now with --predict"
        )
    else:
        lines.append("deploy   skipped: production unchanged")
    return lines


def footer_lines(settings, dataset: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """Where to look next: the UIs (never a password, only where it is kept), state, data."""
    from aimass.stack import mlflow_auth, services

    lines = [""]
    # Passwords are never printed (a summary ends up in terminals and CI logs): where they are.
    lines.append(
        f"Airflow UI    http://{settings.host}:{settings.airflow_port}  (login {services.ADMIN_USER}; "
        f"password: admin_password in {services.airflow_secrets_path(settings)})"
    )
    lines.append(
        f"AI Mass console  http://{settings.host}:{settings.airflow_port}/plugin/aimass  "
        "(in Airflow's navigation; read-only user 'viewer', password: viewer_password in "
        f"{services.airflow_secrets_path(settings)})"
    )
    lines.append(
        f"MLflow UI     http://{settings.host}:{settings.mlflow_port}  (login "
        f"{mlflow_auth.ADMIN_USER}; password: admin_password in {mlflow_auth.secrets_path(settings)})"
    )
    lines.append(
        f"Model server  REST http://{settings.host}:{settings.serving_rest_port}/v1/models/<dataset>  "
        f"gRPC {settings.host}:{settings.serving_grpc_port}"
    )
    lines.append(f"State         {settings.var_dir} (lake/, reports/, serving/, mlflow/, logs/)")
    dataset = dataset or "<dataset>"
    lines.append(
        f"New data      copy a CSV into {settings.landing_location(dataset)}: a run starts by itself"
    )
    lines.append("Stop with `make stop`.")
    return lines


def _cmd_airflow(args: argparse.Namespace) -> int:
    """Run the `airflow` CLI against this install's Airflow (home, DB, DAGs folder)."""
    import subprocess

    from aimass.platform.settings import Settings
    from aimass.stack import services

    settings = Settings.from_env()
    return subprocess.call(
        [services._bin("airflow"), *args.args], env=services.airflow_env(settings)
    )


def _live_prediction(settings, model: str, instance: dict | None) -> str:  # type: ignore[no-untyped-def]
    """Ask the model server now (REST, label stable) for one holdout row's prediction."""
    from aimass.serving.client import ServingClient

    if not instance:
        return "predict  (no example row)"
    client = ServingClient(settings.serving_grpc_target, settings.serving_rest_url)
    try:
        answer = client.predict_rest(model, [instance], label="stable")
    except Exception as exc:  # the summary still prints; the error says what went wrong
        return f"predict  the model server did not answer: {exc}"
    finally:
        client.close()
    shown = ", ".join(f"{k}={v!r}" for k, v in instance.items())
    first = answer[0]
    result = (
        "probabilities [" + ", ".join(f"{float(p):.4f}" for p in first) + "]"
        if isinstance(first, list)
        else f"{float(first):.4f}"
    )
    return (
        f"predict  POST /v1/models/{model}/labels/stable:predict {{{shown}}}\n         -> {result}"
    )


def _cmd_stop(args: argparse.Namespace) -> int:
    from aimass.platform.settings import Settings
    from aimass.stack import services

    stopped = services.stop(Settings.from_env())
    log.info("stopped: %s", ", ".join(stopped) or "nothing was running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from aimass.platform.settings import Settings
    from aimass.stack import services

    for name, pid in services.status(Settings.from_env()).items():
        print(f"{name:24s} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    """List runs from their records, or show one run's records."""
    import json

    from aimass.platform.records import RecordStore, RunSummary
    from aimass.platform.settings import Settings

    settings = Settings.from_env()
    store = RecordStore(settings.reports_dir)
    if args.words[:1] == ["show"]:
        return _runs_show(settings, store, args.words[1:], predict=args.predict)
    if len(args.words) > 2:
        raise SystemExit(f"error: too many arguments: {args.words}; {RUNS_USAGE}")
    args.dataset, args.run_id = [*args.words, None, None][:2]
    if args.run_id:
        if not args.dataset:
            raise SystemExit("error: name the dataset too: aimass runs DATASET RUN_ID")
        for kind, record in store.run(args.dataset, args.run_id).items():
            print(f"== {kind}")
            print(json.dumps(record.dump(), indent=2, sort_keys=True))
        return 0
    for dataset in [args.dataset] if args.dataset else store.datasets():
        for run in store.runs(dataset):
            if isinstance(run, RunSummary):
                line = run.lineage
                outcome = run.outcome
                versions = f"registry v{line.registry_version or '-'} serving v{line.serving_version or '-'}"
            else:
                outcome, versions = "no summary (running, or stopped early)", ""
            print(f"{dataset:18s} ds={run.ds}  {run.run_id:44s} {outcome:10s} {versions}")
    return 0


RUNS_USAGE = "aimass runs [DATASET [RUN_ID]], or aimass runs show [DATASET [RUN_ID]]"


def _runs_show(settings, store, words: list[str], *, predict: bool) -> int:  # type: ignore[no-untyped-def]
    """`make demo`'s summary of a run from its records: the newest run, the newest of a
    dataset, or the one named."""
    from aimass.platform.errors import ConfigError
    from aimass.platform.records import RunSummary

    if len(words) > 2:
        raise SystemExit(f"error: too many arguments: {words}; {RUNS_USAGE}")
    dataset, run_id = [*words, None, None][:2]
    known = [d for d in store.datasets() if store.runs(d)]
    if dataset is None:
        runs = sorted(
            (r for d in known for r in store.runs(d)), key=lambda r: r.requested_at, reverse=True
        )
        if not runs:
            raise ConfigError(f"no runs recorded under {store.reports_dir} yet; start one first")
    elif dataset not in known:
        raise ConfigError(f"no runs of dataset {dataset!r}; datasets with runs: {known or 'none'}")
    else:
        runs = store.runs(dataset)
    if run_id is not None:
        names = [r.run_id for r in runs]
        runs = [r for r in runs if r.run_id == run_id]
        if not runs:
            raise ConfigError(
                f"no run {run_id!r} of {dataset}; its runs, newest first: {names[:10]}"
            )
    run = runs[0]
    lines = [f"== AI Mass: {run.dag_id} run {run.run_id} of {run.dataset} ds={run.ds}: "]
    if isinstance(run, RunSummary):
        lines[0] += run.outcome.upper()
        lines.extend(summary_lines(settings, run.dump(), live=predict))
    else:
        lines[0] += "NO SUMMARY (running, or stopped before publish_summary)"
        records = store.run(run.dataset, run.run_id)
        lines.append(f"records  {', '.join(records)} in {run.records_dir}")
        lines.append(f"task logs: {settings.var_dir / 'airflow' / 'logs'} (or the Airflow UI)")
    lines.extend(footer_lines(settings, run.dataset))
    print("\n".join(lines))
    return 0


def _cmd_spec_check(args: argparse.Namespace) -> int:
    """Validate a spec and check the first rows of its data against it (no Spark, no run)."""
    from aimass.data import spec_check
    from aimass.platform.errors import ConfigError
    from aimass.platform.settings import Settings

    settings = Settings.from_env()
    path = spec_check.spec_path(args.spec, settings.conf_dir)
    try:
        spec = spec_check.load_spec_file(path)
    except ConfigError as exc:
        print(f"spec check: {path}: {exc}")
        return 1
    report = spec_check.check(spec, str(path), settings, data=args.data, rows=args.rows)
    print(report.render())
    return 0 if report.ok else 1


def _cmd_spec_init(args: argparse.Namespace) -> int:
    """Draft a spec from a CSV or Parquet file, write it, then check it."""
    from aimass.data import spec_check, spec_draft
    from aimass.platform.errors import ConfigError
    from aimass.platform.settings import Settings

    settings = Settings.from_env()
    source = Path(args.file)
    try:
        drafted = spec_draft.draft(
            source, label=args.label, task=args.task, name=args.name, var_dir=settings.var_dir
        )
    except ConfigError as exc:
        print(f"spec init: {source}: {exc}")
        return 1
    out = (
        Path(args.out) if args.out else settings.conf_dir / "datasets" / f"{drafted.spec.name}.yaml"
    )
    if out.exists() and not args.force:
        print(f"spec init: {out} exists; pass --force to overwrite it, or --out another path")
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(drafted.text, encoding="utf-8")
    print(f"wrote {out}: edit it (the comments say what to check), then `aimass spec check {out}`")
    for note in drafted.notes:
        print(f"  {note}")
    print()
    report = spec_check.check(drafted.spec, str(out), settings, data=str(source), rows=args.rows)
    print(report.render())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aimass", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser(
        "fetch-sample",
        help="download the sample datasets (pinned PyPI wheels: tfx, palmerpenguins, vega_datasets)",
    )
    fetch.add_argument("--var-dir", default="var", help="runtime state folder (default: var)")
    fetch.add_argument("--force", action="store_true", help="download again even if present")
    fetch.set_defaults(func=_cmd_fetch_sample)

    demo = sub.add_parser(
        "demo", help="start the services, run the retraining DAG through Airflow, print a summary"
    )
    demo.add_argument(
        "--workers",
        type=int,
        default=0,
        help="training workers (default: 2, so the demo trains on several workers)",
    )
    demo.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the run")
    profile_help = (
        "embedded (default: SQLite, LocalExecutor) or cluster (PostgreSQL, Celery, S3, Spark)"
    )
    demo.add_argument("--profile", choices=("embedded", "cluster"), help=profile_help)
    demo.set_defaults(func=_cmd_demo)
    up = sub.add_parser("up", help="start the services of a profile, and run nothing")
    up.add_argument("--profile", choices=("embedded", "cluster"), help=profile_help)
    up.set_defaults(func=_cmd_up)
    af = sub.add_parser(
        "airflow", help="run the airflow CLI against this install (e.g. `aimass airflow dags list`)"
    )
    af.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the airflow CLI")
    af.set_defaults(func=_cmd_airflow)
    sub.add_parser("stop", help="stop the services that `demo` started").set_defaults(
        func=_cmd_stop
    )
    sub.add_parser("status", help="show which services are running").set_defaults(func=_cmd_status)
    runs = sub.add_parser(
        "runs", help="list runs (outcome, versions) from their records, or show one run's records"
    )
    runs.add_argument(
        "words",
        nargs="*",
        metavar="[show] [DATASET [RUN_ID]]",
        help="DATASET: only its runs; RUN_ID: every record of that run; `show` first: `make "
        "demo`'s summary of the newest run (of DATASET; or RUN_ID)",
    )
    runs.add_argument(
        "--predict", action="store_true", help="show: ask the model server for the example row"
    )
    runs.set_defaults(func=_cmd_runs)
    spec = sub.add_parser("spec", help="check a dataset spec against its data, or draft one")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True)
    check = spec_sub.add_parser(
        "check", help="validate a spec and check the first rows of its data against it"
    )
    check.add_argument("spec", help="a spec name (conf/datasets/NAME.yaml) or a YAML file")
    check.add_argument(
        "--data",
        help="the file or folder to check (default: source.path, else the newest landed file)",
    )
    check.add_argument("--rows", type=int, default=1000, help="rows to read (default: 1000)")
    check.set_defaults(func=_cmd_spec_check)
    init = spec_sub.add_parser("init", help="draft a spec from a CSV or Parquet file")
    init.add_argument("file", help="a CSV or Parquet file (or a folder of them)")
    init.add_argument("--label", required=True, help="the column to predict")
    init.add_argument(
        "--task",
        choices=("binary", "multiclass", "regression"),
        help="default: inferred from the label's values",
    )
    init.add_argument("--name", help="the dataset's name (default: from the file name)")
    init.add_argument("--out", help="where to write it (default: conf/datasets/NAME.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    init.add_argument("--rows", type=int, default=1000, help="rows the check reads")
    init.set_defaults(func=_cmd_spec_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    from aimass.platform.errors import ConfigError

    try:
        return int(args.func(args))
    except ConfigError as exc:  # a user's mistake: say what to fix, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
