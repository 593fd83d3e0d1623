"""aimass_retrain with and without the human approval step (AIMASS_REQUIRE_APPROVAL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (
    "import json, dags.aimass_retrain as m\n"
    "from airflow.serialization.serialized_objects import DagSerialization as S\n"
    "d = m.dag\n"
    "S.from_dict(S.to_dict(d))  # the DAG processor stores it serialized\n"
    "t = {i: d.get_task(i) for i in d.task_ids}\n"
    "print(json.dumps({\n"
    "  'tasks': sorted(d.task_ids),\n"
    "  'down': {i: sorted(x.downstream_task_ids) for i, x in t.items()},\n"
    "  'types': {i: type(x).__name__ for i, x in t.items()},\n"
    "  'retries': {i: x.retries for i, x in t.items()},\n"
    "  'approval': {k: getattr(t.get('check_approval'), k, None) for k in\n"
    "     ('options', 'defaults', 'multiple')},\n"
    "  'timeout_h': getattr(t.get('check_approval'), 'response_timeout', None) and\n"
    "     t['check_approval'].response_timeout.total_seconds() / 3600,\n"
    "  'force': {k: d.params.get_param(k).schema for k in ('force_deploy', 'force_reason')},\n"
    "}))\n"
)


def _shape(approval: str | None) -> dict:
    env = {**os.environ}
    env.pop("AIMASS_REQUIRE_APPROVAL", None)
    if approval is not None:
        env["AIMASS_REQUIRE_APPROVAL"] = approval
    out = subprocess.run(
        [sys.executable, "-c", SHAPE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_approval_the_gate_branches_to_compression_then_deploy_or_reject() -> None:
    shape = _shape(None)
    assert "check_approval" not in shape["tasks"]
    assert shape["down"]["evaluate_candidate"] == ["compress_candidate", "reject_candidate"]
    assert shape["down"]["compress_candidate"] == ["deploy_model"]
    assert shape["force"]["force_deploy"]["type"] == "boolean"
    assert shape["force"]["force_reason"]["type"] == "string"
    assert shape["force"]["force_reason"]["maxLength"] == 500


def test_with_approval_a_person_approves_between_the_gate_and_deploy() -> None:
    shape = _shape("true")
    assert shape["types"]["check_approval"] == "ApprovalOperator"
    assert shape["down"]["evaluate_candidate"] == ["check_approval", "reject_candidate"]
    assert shape["down"]["check_approval"] == ["compress_candidate"]
    assert shape["down"]["compress_candidate"] == ["deploy_model"]
    assert shape["down"]["deploy_model"] == ["publish_summary"]
    assert shape["approval"] == {
        "options": ["Approve", "Reject"],
        "defaults": ["Reject"],
        "multiple": False,
    }
    assert shape["timeout_h"] == 24
    assert shape["retries"]["check_approval"] >= 1


def test_a_bad_approval_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from aimass.platform.errors import ConfigError
    from aimass.platform.settings import Settings

    monkeypatch.setenv("AIMASS_REQUIRE_APPROVAL", "maybe")
    with pytest.raises(ConfigError, match="AIMASS_REQUIRE_APPROVAL='maybe' is not a boolean"):
        Settings.from_env()
    monkeypatch.setenv("AIMASS_REQUIRE_APPROVAL", "True")
    assert Settings.from_env().require_approval is True
    monkeypatch.delenv("AIMASS_REQUIRE_APPROVAL")
    assert Settings.from_env().require_approval is False
