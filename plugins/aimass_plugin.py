"""AI Mass inside the Airflow UI: the console, its tabs on DAG runs and tasks, links and macros.

* **Console** (`aimass.console`): a FastAPI app on Airflow's API server at ``/aimass``, shown
  in the navigation as "AI Mass console" and rendered inside the Airflow UI. Every route needs
  an Airflow login (the app inherits no auth; it depends on Airflow's own security
  dependencies).
* **Tabs**: "AI Mass" on each DAG run and task instance page shows that run's records and
  reports (clean summary, Data Docs, drift report, gate report, model card).
* **Macros** let templated fields point at a run's reports:
  ``{{ macros.aimass.report_dir('chicago_taxi', ds) }}``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from aimass.console.mount import ConsoleMount, WarmConsole
from aimass.platform.settings import Settings

CONSOLE_PREFIX = "/aimass"


def report_dir(dataset: str, ds: str) -> str:
    """Folder holding the reports (Data Docs, gate decision, run summary) of one partition."""
    return str(Settings.from_env().report_dir(dataset, ds))


def serving_url(model: str) -> str:
    """REST status URL of a model on the model server."""
    return f"{Settings.from_env().serving_rest_url}/v1/models/{model}"


# Built in the API server only (when it starts, or on its first request), not when a task
# imports the plugin for its macros.
CONSOLE = ConsoleMount()


def _views() -> list[dict[str, object]]:
    s = Settings.from_env()
    return [
        {
            "name": "AI Mass console",
            "href": f"{CONSOLE_PREFIX}/",
            "url_route": "aimass",
            "destination": "nav",
            "category": "AI Mass",
        },
        {
            "name": "AI Mass",
            "href": f"{CONSOLE_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "aimass-run",
        },
        {
            "name": "AI Mass",
            "href": f"{CONSOLE_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}/tasks/{{TASK_ID}}",
            "destination": "task_instance",
            "url_route": "aimass-task",
        },
        {
            "name": "MLflow (runs and registry)",
            "href": f"http://{s.host}:{s.mlflow_port}/#/models",
            "category": "AI Mass",
            "destination": "nav",
        },
    ]


class AimassPlugin(AirflowPlugin):
    name = "aimass"
    macros = [report_dir, serving_url]
    fastapi_apps = [{"app": CONSOLE, "url_prefix": CONSOLE_PREFIX, "name": "AI Mass console"}]
    fastapi_root_middlewares = [
        {"middleware": WarmConsole, "args": [], "kwargs": {"console": CONSOLE}, "name": "aimass"}
    ]
    external_views = _views()
