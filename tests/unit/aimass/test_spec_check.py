"""`aimass spec check`: a spec, and the first rows of its data read with the spec's parsing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aimass.data.sample_data import fetch_sample
from aimass.data.spec import DatasetSpec
from aimass.data.spec_check import PROBLEM, WARN, check, load_spec_file, spec_path
from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit

SPEC = {
    "name": "toy",
    "source": {"format": "csv", "header": True, "null_values": ["?"]},
    "schema": {"id": "long", "city": "string", "price": "double", "sold": "long"},
    "label": {"name": "sold_label", "column": "sold", "task": "binary"},
    "features": {"numeric": ["price"], "categorical": ["city"]},
}
GOOD = "id,city,price,sold\n1,Oslo,10.5,1\n2,Bergen,8,0\n3,?,7.25,1\n"


def _spec(tmp_path: Path, **source: object) -> tuple[DatasetSpec, Path]:
    raw = {**SPEC, "source": {**SPEC["source"], **source}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_spec_file(path), path


def _check(tmp_path: Path, settings: Settings, text: str, **source: object):  # type: ignore[no-untyped-def]
    spec, path = _spec(tmp_path, **source)
    data = tmp_path / "data.csv"
    data.write_text(text, encoding="utf-8")
    return check(spec, str(path), settings, data=str(data))


def _levels(report) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(f.level, f.text) for f in report.findings]


def test_a_file_that_fits_passes_and_the_report_says_what_clients_send(
    tmp_path: Path, settings: Settings
) -> None:
    report = _check(tmp_path, settings, GOOD)
    assert report.ok, _levels(report)
    text = report.render()
    assert "clients send these raw columns, as in the source: city, price" in text
    assert "3 rows read" in text
    assert text.endswith("result   OK: the spec is valid and the rows fit")


def test_a_value_of_the_wrong_type_is_counted_with_examples(
    tmp_path: Path, settings: Settings
) -> None:
    text = GOOD + "4,Oslo,cheap,1\n5,Oslo,n/a,0\n6,Oslo,8.0,1.0\n"
    report = _check(tmp_path, settings, text)
    assert not report.ok
    (problem,) = report.problems
    assert problem.text.startswith("price (double): 2 of 6 values do not parse")
    assert "'cheap' (line 5)" in problem.text and "'n/a' (line 6)" in problem.text
    # 1.0 is an integral decimal: a long, as the clean job reads it.
    assert "sold" not in problem.text


def test_a_missing_column_is_named(tmp_path: Path, settings: Settings) -> None:
    report = _check(tmp_path, settings, "id,city,sold\n1,Oslo,1\n")
    assert not report.ok
    assert "missing columns ['price']" in report.problems[0].text


def test_a_semicolon_file_fits_a_semicolon_spec_and_not_a_comma_one(
    tmp_path: Path, settings: Settings
) -> None:
    text = GOOD.replace(",", ";")
    assert _check(tmp_path, settings, text, delimiter=";").ok
    report = _check(tmp_path, settings, text)
    assert not report.ok
    assert "is source.delimiter (',') right?" in report.problems[0].text


def test_quoted_fields_and_spaces_around_values_are_read_as_the_clean_job_reads_them(
    tmp_path: Path, settings: Settings
) -> None:
    text = 'id,city,price,sold\n1,"Oslo, Norway",10.5,1\n2 , Bergen ,\t8 ,0\n3,"a ""b""", ? ,1\n'
    report = _check(tmp_path, settings, text)
    assert report.ok, _levels(report)
    # Without trimming " 8 " is no number.
    untrimmed = _check(tmp_path, settings, text, trim=False)
    assert [f.text.split(":")[0] for f in untrimmed.problems] == ["id (long)", "price (double)"]


def test_null_labels_warn_and_a_wrong_binary_label_is_a_problem(
    tmp_path: Path, settings: Settings
) -> None:
    report = _check(tmp_path, settings, GOOD + "4,Oslo,3,\n")
    assert report.ok
    assert (
        WARN,
        "label sold_label: 1 of 4 rows have no value in sold: the clean job "
        "quarantines them (null label)",
    ) in _levels(report)
    report = _check(tmp_path, settings, GOOD + "4,Oslo,3,2\n")
    assert any("must hold 0 or 1" in text for level, text in _levels(report) if level == PROBLEM)


def test_a_wrong_field_count_is_a_problem(tmp_path: Path, settings: Settings) -> None:
    report = _check(tmp_path, settings, GOOD + "4,Oslo,3\n")
    assert "1 rows have another field count than the 4 columns (line 5 has 3)" in (
        report.problems[0].text
    )


def test_the_cli_prints_a_bad_spec_as_one_line(tmp_path: Path, settings: Settings) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**SPEC, "schema": {**SPEC["schema"], "price": "float"}}, sort_keys=False)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "aimass.cli", "spec", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        f"spec check: {bad}: dataset spec 'toy': schema.price has type 'float'; use one of "
        "string, long, double"
    ]
    assert "Traceback" not in proc.stderr


def test_a_spec_name_is_found_in_conf_datasets() -> None:
    assert spec_path("chicago_taxi", REPO_ROOT / "conf") == (
        REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml"
    )
    assert spec_path("my.yaml", REPO_ROOT / "conf") == Path("my.yaml")


@pytest.fixture(scope="module")
def samples() -> Path:
    """The sample data in the repo's var dir, fetched when missing (as `make setup` does)."""
    var = REPO_ROOT / "var"
    fetch_sample(var)
    return var


SHIPPED = sorted(p.stem for p in (REPO_ROOT / "conf" / "datasets").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_passes_on_its_sample_data(
    name: str, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(samples))
    proc = subprocess.run(
        [sys.executable, "-m", "aimass.cli", "spec", "check", name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rows read" in proc.stdout and "OK: the spec is valid and the rows fit" in proc.stdout
