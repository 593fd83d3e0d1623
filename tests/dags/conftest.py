"""Airflow reads its settings at import: point it at a throwaway home before any test imports it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="aimass-airflow-dags-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW_CONFIG"] = str(Path(__file__).resolve().parents[2] / "airflow.cfg")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
