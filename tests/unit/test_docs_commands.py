"""Every command the docs tell a user to run is classified in tests/docskit.py.

A new command in README.md or docs/*.md fails here, naming its file and line, until it gets
a class: run against the e2e stack (tests/e2e/test_retrain_dag.py's last test), covered by a
named test, or not runnable here with a reason.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import docskit
import pytest

from aimass.data.spec import load_spec
from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit


def test_every_command_in_the_docs_is_classified() -> None:
    commands = docskit.extract()
    assert len(commands) >= 10, [str(c) for c in commands]
    missing = [str(c) for c in commands if docskit.classify(c) is None]
    assert not missing, (
        "commands in the docs with no class in tests/docskit.py CLASSES (run against the "
        "stack, covered by a named test, or not runnable here with a reason):\n"
        + "\n".join(missing)
    )


def test_every_class_matches_a_command_in_the_docs() -> None:
    commands = docskit.extract()
    stale = [
        c.pattern
        for c in docskit.CLASSES
        if not any(re.match(c.pattern, cmd.text) for cmd in commands)
    ]
    assert not stale, f"classes in tests/docskit.py that match no command any more: {stale}"


def test_every_covered_command_names_a_test_that_exists() -> None:
    for cls in docskit.CLASSES:
        if cls.kind == docskit.COVERED:
            path, _, name = cls.where.partition("::")
            assert (REPO_ROOT / path).is_file(), f"{cls.pattern}: {path} does not exist"
            if name:
                source = (REPO_ROOT / path).read_text(encoding="utf-8")
                assert f"def {name}(" in source, f"{cls.pattern}: no test {name} in {path}"
        elif cls.kind == docskit.NOT_HERE:
            assert cls.where, f"{cls.pattern}: a command not run here needs its reason"
        else:
            assert cls.kind == docskit.RUN, cls


def test_a_block_splits_into_commands_at_line_ends_unless_continued_or_quoted(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# title\n"
        "```bash\n"
        "# a comment\n"
        "make demo   # starts it\n"
        "$ aimass runs \\\n"
        "  --all\n"
        'curl -d \'{"a": [\n'
        "  1]}'\n"
        "```\n"
        "```yaml\n"
        "not: a command\n"
        "```\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "x.md").write_text(
        "```sh\nls var\n```\n```console\n$ aimass runs\nan output line\n```\n", encoding="utf-8"
    )
    found = [(c.file, c.line, c.text) for c in docskit.extract(tmp_path)]
    assert found == [
        ("README.md", 4, "make demo   # starts it"),
        ("README.md", 5, "aimass runs \\\n  --all"),
        ("README.md", 7, "curl -d '{\"a\": [\n  1]}'"),
        ("docs/x.md", 2, "ls var"),
        ("docs/x.md", 5, "aimass runs"),
    ]


def test_the_stack_ports_and_var_dir_replace_the_docs_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("AIMASS_SERVING_REST_PORT", "18501")
    monkeypatch.setenv("AIMASS_SERVING_GRPC_PORT", "18500")
    settings = Settings.from_env()
    text = docskit.substitute(
        "curl -s http://127.0.0.1:8501/v1/models/x; C('127.0.0.1:8500', 'http://localhost:8501')"
        "; cp var/data/raw/a/b.csv var/landing/a/b.csv",
        settings,
    )
    assert text == (
        "curl -s http://127.0.0.1:18501/v1/models/x; C('127.0.0.1:18500', 'http://localhost:18501')"
        f"; cp {REPO_ROOT}/var/data/raw/a/b.csv {settings.var_dir}/landing/a/b.csv"
    )


def _predict_examples() -> list[tuple[docskit.Command, str, dict]]:
    out = []
    for command in docskit.extract():
        cls = docskit.classify(command)
        if cls is not None and cls.expect == "predictions":
            model = re.search(r"/v1/models/(\w+)/", command.text).group(1)  # type: ignore[union-attr]
            body = re.search(r"-d '(.*)'", command.text, re.S).group(1)  # type: ignore[union-attr]
            out += [(command, model, row) for row in json.loads(body)["instances"]]
    return out


def test_every_predict_example_sends_the_raw_columns_the_model_reads() -> None:
    examples = _predict_examples()
    assert examples
    for command, model, row in examples:
        spec = load_spec(model)
        assert sorted(row) == sorted(spec.model_inputs), (
            f"{command}: send exactly the spec's model_inputs {list(spec.model_inputs)}"
        )


def test_every_taxi_predict_example_is_a_row_of_the_sample_as_written_there() -> None:
    sample = REPO_ROOT / "var" / "data" / "raw" / "chicago_taxi" / "data.csv"
    if not sample.exists():
        pytest.skip(f"{sample} is missing: run `make setup`")
    with open(sample, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for command, model, row in _predict_examples():
        if model != "chicago_taxi":
            continue
        as_written = {k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()}
        assert any(all(r[k] == v for k, v in as_written.items()) for r in rows), (
            f"{command}: no row of {sample} has these values as written"
        )


@pytest.mark.parametrize(
    ("stdout", "code", "problem"),
    [
        ('{"predictions": [0.7]}', 0, ""),
        ('{"predictions": [0.7]}', 7, "exited 7"),
        ("<html>", 0, "answered no JSON"),
        ('{"error": "instance 0 has keys [...]"}', 0, "not one prediction per instance"),
        ('{"predictions": [0.7, 0.1]}', 0, "not one prediction per instance"),
    ],
)
def test_a_predict_example_must_answer_one_prediction_per_instance(
    stdout: str, code: int, problem: str
) -> None:
    command = docskit.Command("README.md", 1, """curl -d '{"instances": [{"a": 1}]}'""")
    cls = docskit.Class("curl ", docskit.RUN, expect="predictions")
    proc = subprocess.CompletedProcess(["bash"], code, stdout=stdout, stderr="")
    found = docskit.check(command, cls, proc)
    assert problem in found if problem else found == "", found


def test_a_python_example_must_print_what_its_class_expects() -> None:
    command = docskit.Command("docs/serving.md", 1, "print(1)", docskit.PYTHON)
    cls = docskit.Class("print", docskit.RUN, expect="prints probabilities")
    ok = subprocess.CompletedProcess(["python"], 0, stdout="{'probabilities': [0.7]}", stderr="")
    assert docskit.check(command, cls, ok) == ""
    silent = subprocess.CompletedProcess(["python"], 0, stdout="", stderr="")
    assert docskit.check(command, cls, silent).startswith("printed no 'probabilities'")


def test_commands_in_the_prose_are_commands_too_and_run_without_placeholders() -> None:
    inline = [c for c in docskit.extract() if c.language == docskit.INLINE]
    texts = [c.text for c in inline]
    assert any(t.startswith(".venv/bin/aimass runs show") for t in texts), texts
    assert any(t.startswith("make stop") for t in texts), texts
    for command in inline:
        cls = docskit.classify(command)
        assert cls is not None, command
        if cls.kind == docskit.RUN and re.search(r"[<\[…]", command.text):
            assert cls.run_as and not re.search(r"[<\[…]", cls.run_as), (command, cls)
