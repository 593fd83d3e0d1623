"""AI Mass inside the Airflow UI: links to MLflow and the model server, and report macros.

The links open in the Airflow navigation bar ("AI Mass" menu). Macros let templated fields
point at a run's reports: ``{{ macros.aimass.report_dir('chicago_taxi', ds) }}``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from aimass.platform.settings import Settings


def report_dir(dataset: str, ds: str) -> str:
    """Folder holding the reports (Data Docs, gate decision, run summary) of one partition."""
    return str(Settings.from_env().report_dir(dataset, ds))


def serving_url(model: str) -> str:
    """REST status URL of a model on the model server."""
    return f"{Settings.from_env().serving_rest_url}/v1/models/{model}"


def _links() -> list[dict[str, str]]:
    s = Settings.from_env()
    return [
        {
            "name": "MLflow (runs and registry)",
            "href": f"http://{s.host}:{s.mlflow_port}/#/models",
            "category": "AI Mass",
            "destination": "nav",
        },
        {
            "name": "Model server status",
            "href": f"{s.serving_rest_url}/v1/models/chicago_taxi",
            "category": "AI Mass",
            "destination": "nav",
        },
    ]


class AimassPlugin(AirflowPlugin):
    name = "aimass"
    macros = [report_dir, serving_url]
    external_views = _links()
