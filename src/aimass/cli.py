"""The `aimass` command line: sample data, the demo services, and a run summary."""

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


def _cmd_demo(args: argparse.Namespace) -> int:
    from aimass.platform.airflow_api import AirflowClient
    from aimass.platform.settings import Settings
    from aimass.stack import services

    settings = Settings.from_env()
    services.prepare(settings)
    services.start(settings)
    services.wait_ready(settings)
    client = AirflowClient(
        f"http://{settings.host}:{settings.airflow_port}",
        services.ADMIN_USER,
        services.admin_password(settings),
    )
    dag_id = "aimass_retrain"
    client.wait_for_dag(dag_id)
    conf = {"workers": args.workers} if args.workers else {}
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
    from aimass.stack import mlflow_auth, services

    lines = [""]
    lines.append(f"== AI Mass: {dag_id} run {run_id}: {state.upper()}")
    summary = None
    try:
        summary = client.xcom(dag_id, run_id, "publish_summary")
    except Exception as exc:  # a failed run has no summary; say where to look instead
        log.debug("no summary: %s", exc)
    if summary:
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
        lines.append(f"gate     {'PASSED' if gate.get('passed') else 'REJECTED'} {against}")
        lines.extend(f"           {c}" for c in gate.get("checks") or [])
        dep = summary.get("deployment")
        if dep:
            lines.append(
                f"deploy   serving version {dep['serving_version']} is 'stable' (previous {dep.get('previous_version')}), "
                f"MLflow alias champion -> v{dep['registry_version']}"
            )
            lines.append(_live_prediction(settings, summary["dataset"], dep.get("rest_instance")))
        else:
            lines.append("deploy   skipped: production unchanged")
    else:
        states = client.task_states(dag_id, run_id)
        for task, st in states.items():
            lines.append(f"  {task:20s} {st}")
        lines.append(f"task logs: {services.airflow_home(settings) / 'logs'}")
    lines.append("")
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
    dataset = (summary or {}).get("dataset") or "<dataset>"
    lines.append(
        f"New data      copy a CSV into {settings.landing_location(dataset)}: a run starts by itself"
    )
    lines.append("Stop with `make stop`.")
    return "\n".join(lines)


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

    store = RecordStore(Settings.from_env().reports_dir)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aimass", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch-sample", help="download the Chicago Taxi sample CSVs (tfx wheel)")
    fetch.add_argument("--var-dir", default="var", help="runtime state folder (default: var)")
    fetch.add_argument("--force", action="store_true", help="download again even if present")
    fetch.set_defaults(func=_cmd_fetch_sample)

    demo = sub.add_parser(
        "demo", help="start the services, run the retraining DAG through Airflow, print a summary"
    )
    demo.add_argument(
        "--workers", type=int, default=0, help="training workers (default: the DAG's)"
    )
    demo.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the run")
    demo.set_defaults(func=_cmd_demo)
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
    runs.add_argument("dataset", nargs="?", help="only this dataset's runs")
    runs.add_argument("run_id", nargs="?", help="show every record of this run")
    runs.set_defaults(func=_cmd_runs)
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
