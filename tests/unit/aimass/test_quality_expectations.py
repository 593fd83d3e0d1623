"""The hand-written expectations file (aimass.data.quality), checked without Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.data.quality import (
    SPEC_SOURCE,
    expectation_class,
    find_expectations_file,
    gx_expectation,
    load_expectations,
    plan_suite,
    plan_suite_with_file,
    raise_for_critical,
)
from aimass.data.spec import load_spec
from aimass.platform.errors import ConfigError, DataQualityError
from aimass.platform.settings import REPO_ROOT

pytestmark = pytest.mark.unit

SPEC = load_spec(TAXI_SPEC)


def _write(tmp_path: Path, entries: Any) -> Path:
    path = tmp_path / "expectations" / "chicago_taxi.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"expectations": entries}), encoding="utf-8")
    return path


def test_the_example_file_is_found_and_valid() -> None:
    path = find_expectations_file(REPO_ROOT / "conf", "chicago_taxi")

    assert path == REPO_ROOT / "conf" / "expectations" / "chicago_taxi.yaml"
    plan = load_expectations(path, SPEC)
    assert 3 <= len(plan) <= 4
    assert {p.source for p in plan} == {str(path)}
    assert any(p.severity == "critical" for p in plan)
    assert any(p.severity == "warning" for p in plan)
    assert all(p.notes for p in plan)


def test_missing_file_means_none_and_the_spec_suite_only(tmp_path: Path) -> None:
    assert find_expectations_file(tmp_path, "chicago_taxi") is None
    assert plan_suite_with_file(SPEC, None) == plan_suite(SPEC)
    with pytest.raises(ConfigError, match="does not exist"):
        load_expectations(tmp_path / "nope.yaml", SPEC)


def test_good_file_is_appended_to_the_spec_suite_with_its_source(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "expectation": "expect_column_pair_values_a_to_be_greater_than_b",
                "kwargs": {"column_A": "fare", "column_B": "tips", "or_equal": True},
                "notes": "a tip is never more than the fare",
            },
            {
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "split", "value_set": ["train", "holdout"]},
                "severity": "warning",
            },
        ],
    )
    assert find_expectations_file(tmp_path, "chicago_taxi") == path

    plan = plan_suite_with_file(SPEC, path)

    generated = plan_suite(SPEC)
    assert plan[: len(generated)] == generated
    assert all(p.source == SPEC_SOURCE for p in generated)
    pair, split = plan[len(generated) :]
    assert (pair.expectation, pair.severity, pair.source) == (
        "expect_column_pair_values_a_to_be_greater_than_b",
        "critical",  # the default
        str(path),
    )
    assert pair.notes == "a tip is never more than the fare"
    assert (split.kwargs["column"], split.severity, split.source) == ("split", "warning", str(path))


def test_any_gx_expectation_class_is_built_with_severity_and_source(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "expectation": "expect_column_kl_divergence_to_be_less_than",
                "kwargs": {
                    "column": "trip_start_hour",
                    "partition_object": {"values": [0, 1], "weights": [0.5, 0.5]},
                    "threshold": 0.5,
                },
                "severity": "warning",
                "notes": "hours stay spread",
            }
        ],
    )
    (planned,) = load_expectations(path, SPEC)

    gx_obj = gx_expectation(planned)

    assert type(gx_obj).__name__ == "ExpectColumnKLDivergenceToBeLessThan"
    assert gx_obj.severity.value == "warning"
    assert gx_obj.notes == "hours stay spread"
    assert gx_obj.meta == {"aimass_severity": "warning", "aimass_source": str(path)}
    assert expectation_class("expect_column_mean_to_be_between").__name__ == (
        "ExpectColumnMeanToBeBetween"
    )


def test_unknown_expectation_names_the_entry_and_close_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "company"}},
            {"expectation": "expect_column_valuse_to_be_in_set", "kwargs": {"column": "fare"}},
        ],
    )

    with pytest.raises(ConfigError) as err:
        load_expectations(path, SPEC)

    message = str(err.value)
    assert message.startswith(f"{path}: expectations[1] (expect_column_valuse_to_be_in_set)")
    assert "unknown expectation" in message
    assert "did you mean expect_column_values_to_be_in_set" in message


def test_bad_severity(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "expectation": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "company"},
                "severity": "fatal",
            }
        ],
    )
    with pytest.raises(
        ConfigError,
        match=r"expectations\[0\] .*severity must be 'critical' .* or 'warning' .*got 'fatal'",
    ):
        load_expectations(path, SPEC)


@pytest.mark.parametrize(
    ("expectation", "kwargs", "bad"),
    [
        ("expect_column_values_to_not_be_null", {"column": "fares"}, "column 'fares'"),
        (
            "expect_column_pair_values_to_be_equal",
            {"column_A": "fare", "column_B": "tip"},
            "column_B 'tip'",
        ),
        (
            "expect_compound_columns_to_be_unique",
            {"column_list": ["company", "trip_start_timestmp"]},
            "column_list 'trip_start_timestmp'",
        ),
    ],
)
def test_unknown_column(tmp_path: Path, expectation: str, kwargs: dict[str, Any], bad: str) -> None:
    path = _write(tmp_path, [{"expectation": expectation, "kwargs": kwargs}])

    with pytest.raises(ConfigError) as err:
        load_expectations(path, SPEC)

    message = str(err.value)
    assert message.startswith(f"{path}: expectations[0] ({expectation}): {bad}")
    assert "is not a column of the clean partition (did you mean" in message
    assert "the label 'big_tipper' or 'split'" in message


@pytest.mark.parametrize(
    ("expectation", "kwargs", "problem"),
    [
        (
            "expect_column_mean_to_be_between",
            {"column": "fare", "min_value": "cheap"},
            "min_value: value is not a valid float",
        ),
        (
            "expect_column_mean_to_be_between",
            {"column": "fare", "maximum": 30},
            "maximum: unknown argument",
        ),
        ("expect_column_values_to_be_in_set", {"column": "fare"}, "value_set: field required"),
        (
            "expect_column_values_to_be_between",
            {"column": "fare", "min_value": 0, "mostly": 1.5},
            "mostly: ensure this value is less than or equal to 1",
        ),
    ],
)
def test_kwargs_the_gx_class_rejects(
    tmp_path: Path, expectation: str, kwargs: dict[str, Any], problem: str
) -> None:
    path = _write(tmp_path, [{"expectation": expectation, "kwargs": kwargs}])

    with pytest.raises(ConfigError) as err:
        load_expectations(path, SPEC)

    message = str(err.value)
    assert message.startswith(f"{path}: expectations[0] ({expectation}): the kwargs do not fit")
    assert problem in message
    assert "\n" not in message
    assert "accepts" in message and "fix 'kwargs'" in message


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({"expectation": "x"}, "expected a mapping with an 'expectations' list"),
        (
            [{"expectation": "expect_column_values_to_not_be_null", "column": "fare"}],
            r"expectations\[0\]: unknown keys \['column'\]",
        ),
        (
            [
                {
                    "expectation": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": "company", "severity": "warning"},
                }
            ],
            r"kwargs sets \['severity'\]; set severity and notes on the entry itself",
        ),
        (
            [
                {
                    "expectation": "expect_column_values_to_be_between",
                    "kwargs": {"column": "fare", "min_value": 10, "max_value": 1},
                }
            ],
            "min_value 10 is above max_value 1",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, entries: Any, match: str) -> None:
    path = tmp_path / "chicago_taxi.yaml"
    body = entries if isinstance(entries, dict) else {"expectations": entries}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")

    with pytest.raises(ConfigError, match=match):
        load_expectations(path, SPEC)


def test_repeating_a_generated_expectation_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "expectation": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "fare"},
                "severity": "warning",
            }
        ],
    )
    with pytest.raises(ConfigError, match=r"expectations\[0\] .* is generated from spec.quality"):
        plan_suite_with_file(SPEC, path)


def test_raise_for_critical_points_at_the_file_of_a_failed_expectation() -> None:
    source = "conf/expectations/chicago_taxi.yaml"
    summary = {
        "critical_failures": ["expect_column_values_to_not_be_null(column=company): …"],
        "results": [
            {"severity": "critical", "success": True, "source": SPEC_SOURCE},
            {"severity": "critical", "success": False, "source": source},
            {"severity": "warning", "success": False, "source": SPEC_SOURCE},
        ],
        "data_docs": "index.html",
    }
    with pytest.raises(DataQualityError) as err:
        raise_for_critical(summary)

    assert str(err.value).endswith(f"relax the expectation in {source}")
