"""The commands the docs tell a user to run, and what the tests do with each one.

``extract()`` reads the fenced ``bash``/``sh``/``console``/``shell`` blocks of README.md and
docs/*.md and splits them into commands: a line ending in ``\\`` and a quote left open go on
with the next line; a line that is only a comment is skipped; in a ``console`` block only a
line that starts with the prompt ``$ `` is a command (the others are its output), and the
prompt is dropped. A ``python`` block is one command, run with the venv's python. In the
prose, an inline code span that starts with ``make ``, ``aimass `` or ``.venv/bin/aimass `` is
a command too (language ``inline``): those often carry placeholders (``<name|file>``,
``[run id]``), so a ``RUN`` class gives the concrete command the stack runs (``run_as``). ``classify()`` gives each command one entry of ``CLASSES``, the first whose pattern
matches its start:

- ``RUN``: run against the e2e stack by ``run_against_stack`` (the last test of
  tests/e2e/test_retrain_dag.py), which asserts exit 0 and what ``expect`` names;
- ``COVERED``: run elsewhere; ``where`` names the test (``path::test``) or the CI script;
- ``NOT_HERE``: not runnable on these machines; ``where`` says why.

tests/unit/test_docs_commands.py fails on a command without a class (naming its file and
line), on a class that matches no command, and on a ``COVERED`` test that does not exist.

What ``run_against_stack`` changes in a command before running it (``SUBSTITUTIONS``; the
docs write the ports and paths of ``make demo``):

- ``127.0.0.1:8501``/``localhost:8501`` (REST), ``:8500`` (gRPC), ``:8080`` (Airflow) and
  ``:5000`` (MLflow) become the stack's ports;
- ``var/data/raw/`` becomes the repository's ``var/data/raw/`` (the sample files that
  ``make setup`` fetched; the stack's own var dir holds only a slice), and any other
  ``var/`` the stack's var dir;

Commands run with ``bash -euo pipefail -c`` (a ``python`` block with ``.venv/bin/python -c``)
from the repository root, in the environment of
the stack (``AIMASS_VAR_DIR`` and the ports are set), so ``.venv/bin/aimass`` talks to the
stack and ``$AIMASS_…`` in a command is the stack's value.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aimass.platform.settings import REPO_ROOT

if TYPE_CHECKING:
    from aimass.platform.airflow_api import AirflowClient
    from aimass.platform.settings import Settings

SHELL_LANGUAGES = ("bash", "sh", "console", "shell")
PYTHON = "python"
INLINE = "inline"
# An inline code span that is a command a user is told to run.
_INLINE = re.compile(r"`((?:make|aimass|\.venv/bin/aimass) [^`]+)`")
RUN, COVERED, NOT_HERE = "run", "covered", "not here"


@dataclass(frozen=True)
class Command:
    file: str  # relative to the repository root
    line: int  # the line of its first line
    text: str
    language: str = "bash"  # "bash" (any of SHELL_LANGUAGES) or PYTHON

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text.splitlines()[0]}"


@dataclass(frozen=True)
class Class:
    pattern: str  # a regex matched at the start of the command
    kind: str  # RUN, COVERED or NOT_HERE
    where: str = ""  # COVERED: the test (path::name) or script; NOT_HERE: the reason
    # RUN: "predictions" (a JSON answer with one prediction per instance), "json" (any JSON
    # object), "new run <dag id>" (a new run of that DAG exists afterwards), "prints <text>"
    # (the output has <text>), "" (exit 0 only)
    expect: str = ""
    # RUN of an inline command with placeholders: the concrete command run on the stack.
    run_as: str = ""


_TRIGGER = r"\.venv/bin/aimass airflow dags trigger "
CLASSES: tuple[Class, ...] = (
    Class(
        r"make (up|demo) PROFILE=cluster\b",
        COVERED,
        "tests/e2e/test_cluster_profile.py::"
        "test_a_retrain_runs_on_postgres_celery_s3_and_the_spark_cluster",
    ),
    Class(
        r"make demo\b",
        COVERED,
        "tests/e2e/test_retrain_dag.py::test_two_runs_deploy_then_gate_against_the_champion",
    ),
    Class(r"make test(\s|$)", COVERED, ".ci/run"),
    Class(r"make test-cluster$", COVERED, ".ci/run"),
    Class(r"make (lint|setup)$", COVERED, ".ci/run"),
    Class(
        r"make test-unit$",
        NOT_HERE,
        "a subset of `make test` (unit and DAG tests), which .ci/run runs",
    ),
    Class(r"make help$", RUN, run_as="make help", expect="prints demo"),
    Class(r"make status$", RUN, run_as=".venv/bin/aimass status", expect="prints running"),
    Class(
        r"make (stop|clean|distclean)$",
        NOT_HERE,
        "stops (and clean/distclean delete the state of) the stack the docs test runs on; "
        "every e2e module's teardown stops its stack with the same aimass.stack.services.stop",
    ),
    Class(
        r"make (bench|bench-[a-z]+|bench-docs)$",
        NOT_HERE,
        "a benchmark: minutes of a quiet machine, run by hand (docs/benchmarks.md); "
        "tests/unit/bench checks the benchmarks' helpers and tables",
    ),
    Class(r"make bench-<name>$", NOT_HERE, "a template: <name> is one of the bench-* targets"),
    Class(r"make … PYTHON=", NOT_HERE, "a template: any target with another python3.11"),
    Class(
        r"aimass airflow …$", NOT_HERE, "stands for any Airflow CLI command (examples above run)"
    ),
    Class(
        r"(\.venv/bin/)?aimass spec check <name",
        RUN,
        run_as=".venv/bin/aimass spec check chicago_taxi",
        expect="prints OK: the spec is valid",
    ),
    Class(
        r"(\.venv/bin/)?aimass spec init <file> --label <column>",
        RUN,
        run_as=".venv/bin/aimass spec init var/data/raw/palmer_penguins/penguins.csv "
        "--label species --out var/docs-draft/penguins_draft.yaml --force",
        expect="prints penguins_draft",
    ),
    Class(
        r"\.venv/bin/aimass runs show ",
        RUN,
        run_as=".venv/bin/aimass runs show chicago_taxi",
        expect="prints == AI Mass",
    ),
    Class(
        r"\.venv/bin/aimass runs( \[DATASET| chicago_taxi <run id>|$)",
        RUN,
        run_as=".venv/bin/aimass runs chicago_taxi",
        expect="prints deployed",
    ),
    Class(
        r"\.venv/bin/aimass fetch-sample ",
        COVERED,
        "tests/unit/aimass/test_sample_data.py::test_every_sample_is_pinned_and_read_by_a_shipped_spec",
    ),
    Class(
        r"\.venv/bin/aimass demo ",
        COVERED,
        "tests/e2e/test_retrain_dag.py::test_two_runs_deploy_then_gate_against_the_champion",
    ),
    Class(r"curl -s http://127\.0\.0\.1:8501/v1/models/\w+\s*$", RUN, expect="json"),
    Class(
        r"curl -s -X POST http://127\.0\.0\.1:8501/v1/models/\w+/labels/stable:predict ",
        RUN,
        expect="predictions",
    ),
    Class(r"\.venv/bin/python -c 'from aimass\.serving\.client import ServingClient", RUN),
    Class(
        r"import numpy as np\nfrom aimass\.serving\.client import ServingClient\n",
        RUN,
        expect="prints probabilities",
    ),
    Class(r"mkdir -p var/landing/\w+$", RUN),
    Class(r"cp var/data/raw/\w+/[\w.]+ var/landing/\w+/[\w.-]+$", RUN),
    Class(_TRIGGER + r"<dag id> ", NOT_HERE, "a template: <dag id> and the conf are placeholders"),
    Class(_TRIGGER + r"aimass_retrain ", RUN, expect="new run aimass_retrain"),
    Class(_TRIGGER + r"aimass_tune ", RUN, expect="new run aimass_tune"),
    Class(_TRIGGER + r"aimass_rollback ", RUN, expect="new run aimass_rollback"),
    Class(
        _TRIGGER + r"aimass_batch_predict ",
        COVERED,
        "tests/e2e/test_retrain_dag.py::test_two_runs_deploy_then_gate_against_the_champion",
    ),
    Class(
        r"\.venv/bin/aimass airflow backfill create --dag-id aimass_retrain ",
        COVERED,
        # The e2e stack runs without the nightly schedule, where Airflow refuses backfills.
        "tests/dags/test_dag_integrity.py::test_the_nightly_retrain_dag_backfills_the_docs_range",
    ),
    Class(r"\.venv/bin/aimass spec check \w+ ", RUN, expect="prints OK: the spec is valid"),
    Class(
        r"python -m aimass\.serving\.server ",
        COVERED,
        "tests/integration/test_model_server.py::test_rest_predict_row_and_columnar_formats",
    ),
    Class(
        r"export AIRFLOW_CONN_SPARK_DEFAULT=",
        COVERED,
        "tests/integration/test_spark_cluster.py::test_operator_ran_the_job_on_the_standalone_master",
    ),
    Class(r"cp docker/\.env\.example ", NOT_HERE, "the docker/ stack: no Docker engine here"),
    Class(
        r"docker compose ",
        NOT_HERE,
        "no Docker engine here (tests/unit/aimass/test_docker_stack.py checks the compose file)",
    ),
)

SUBSTITUTIONS = (
    "127.0.0.1:8501 and localhost:8501 -> the stack's REST port; :8500 gRPC, :8080 Airflow, "
    ":5000 MLflow likewise; var/data/raw/ -> the repository's var/data/raw/; other var/ -> "
    "the stack's var dir"
)


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _open_quote(text: str) -> bool:
    """Whether ``text`` ends inside a single- or double-quoted string (shell rules)."""
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
    return bool(quote)


def split_commands(
    lines: list[str], file: str, first_line: int, *, prompt: bool = False
) -> list[Command]:
    """The commands of one code block whose first line is ``first_line`` of ``file``.

    ``prompt``: a console block, where only lines that start with ``$ `` are commands.
    """
    out: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(lines):
        line = raw.rstrip()
        if not pending:
            stripped = line.strip()
            if prompt and not stripped.startswith("$ "):
                continue  # a console block's output
            if stripped.startswith("$ "):
                stripped = stripped[2:]
            if not stripped or stripped.startswith("#"):
                continue
            line, start = stripped, first_line + offset
        pending.append(line)
        text = "\n".join(pending)
        if line.endswith("\\") or _open_quote(text):
            continue
        out.append(Command(file, start, text))
        pending = []
    if pending:
        out.append(Command(file, start, "\n".join(pending)))
    return out


def extract(root: Path = REPO_ROOT) -> list[Command]:
    """Every command in the shell blocks of README.md and docs/*.md, in file order."""
    commands: list[Command] = []
    fence = re.compile(r"^\s*```\s*(\w*)")
    for path in doc_files(root):
        rel = str(path.relative_to(root))
        block: list[str] | None = None  # the lines of the open block, None outside one
        language, block_start = "", 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = fence.match(line)
            if match and block is None:
                block, block_start = [], number + 1
                language = match.group(1)
            elif match and block is not None:
                if language in SHELL_LANGUAGES:
                    commands += split_commands(
                        block, rel, block_start, prompt=language == "console"
                    )
                elif language == PYTHON and any(line.strip() for line in block):
                    commands.append(Command(rel, block_start, "\n".join(block), PYTHON))
                block = None
            elif block is not None:
                block.append(line)
            else:
                commands += [
                    Command(rel, number, m.group(1), INLINE) for m in _INLINE.finditer(line)
                ]
    return commands


def classify(command: Command) -> Class | None:
    return next((c for c in CLASSES if re.match(c.pattern, command.text)), None)


def substitute(text: str, settings: Settings) -> str:
    """``text`` with the stack's ports and var dir for the docs' (see ``SUBSTITUTIONS``)."""
    ports = {
        "8501": str(settings.serving_rest_port),
        "8500": str(settings.serving_grpc_port),
        "8080": str(settings.airflow_port),
        "5000": str(settings.mlflow_port),
    }
    for doc_port, port in ports.items():
        text = re.sub(rf"\b(127\.0\.0\.1|localhost):{doc_port}\b", rf"\g<1>:{port}", text)
    text = re.sub(r"(?<![\w/.])var/data/raw/", f"{REPO_ROOT}/var/data/raw/", text)
    text = re.sub(r"(?<![\w/.])var/", f"{settings.var_dir}/", text)
    return text


def _instances(text: str) -> int:
    body = re.search(r"-d '(.*)'", text, re.S)
    return len(json.loads(body.group(1))["instances"]) if body else 0


def check(command: Command, cls: Class, proc: subprocess.CompletedProcess[str]) -> str:
    """What is wrong with a command's run ("" when nothing)."""
    if proc.returncode != 0:
        return f"exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"
    if cls.expect.startswith("prints ") and cls.expect.removeprefix("prints ") not in proc.stdout:
        return f"printed no {cls.expect.removeprefix('prints ')!r}: {proc.stdout[-500:]!r}"
    if cls.expect in ("json", "predictions"):
        try:
            answer = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return f"answered no JSON: {proc.stdout[-500:]!r}"
        if not isinstance(answer, dict):
            return f"answered {answer!r}, not a JSON object"
        if cls.expect == "predictions":
            predictions = answer.get("predictions")
            if not isinstance(predictions, list) or len(predictions) != _instances(command.text):
                return f"answered {str(answer)[:500]}, not one prediction per instance"
    return ""


def run_against_stack(settings: Settings, client: AirflowClient) -> list[str]:
    """Run every ``RUN`` command on the stack; the failures, one line each with its place."""
    env = {**os.environ, "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    failures: list[str] = []
    for command in extract():
        cls = classify(command)
        if cls is None or cls.kind != RUN:
            continue
        dag = cls.expect.removeprefix("new run ") if cls.expect.startswith("new run ") else ""
        before = {r["dag_run_id"] for r in client.runs(dag)} if dag else set()
        text = substitute(cls.run_as or command.text, settings)
        if command.language == PYTHON:
            argv = [str(REPO_ROOT / ".venv" / "bin" / "python"), "-c", text]
        else:
            argv = ["bash", "-euo", "pipefail", "-c", text]
        try:
            proc = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{command}: still running after 180 s")
            continue
        problem = check(command, cls, proc)
        if not problem and dag:
            if not {r["dag_run_id"] for r in client.runs(dag)} - before:
                problem = f"made no new run of {dag}: {proc.stdout[-500:]}"
        if problem:
            failures.append(f"{command}: {problem}")
    return failures
