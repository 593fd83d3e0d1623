from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import TAXI_SPEC, write_partition

from aimass.data import drift
from aimass.data.spec import DatasetSpec, DriftSpec, load_spec
from aimass.platform.errors import ConfigError

pytestmark = pytest.mark.unit

SPEC = DatasetSpec(
    name="trips",
    description="synthetic trips for drift tests",
    source_format="csv",
    source_path="unused.csv",
    header=True,
    schema=(
        ("fare", "double"),
        ("trip_miles", "double"),
        ("trip_start_hour", "long"),
        ("company", "string"),
        ("tips", "double"),
    ),
    label_name="big_tipper",
    label_expression="tips > 0.2 * fare",
    task="binary",
    numeric_features=("fare", "trip_miles"),
    categorical_features=("company", "trip_start_hour"),
)
COMPANIES = ["Flash Cab", "Taxi Affiliation", "Yellow Cab", "Blue Ribbon", "Choice Taxi"]
ROWS = 5000


def _trips(seed: int, rows: int = ROWS) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    fare = rng.lognormal(mean=2.3, sigma=0.5, size=rows)
    return {
        "fare": fare,
        "trip_miles": rng.gamma(shape=2.0, scale=1.5, size=rows),
        "trip_start_hour": rng.integers(0, 24, size=rows),
        "company": rng.choice(COMPANIES, p=[0.3, 0.3, 0.2, 0.1, 0.1], size=rows).astype(object),
        "tips": fare * rng.uniform(0, 0.4, size=rows),
        "split": np.where(rng.uniform(size=rows) < 0.2, "holdout", "train"),
    }


_TYPES = {
    "fare": pa.float64(),
    "trip_miles": pa.float64(),
    "trip_start_hour": pa.int64(),
    "company": pa.string(),
    "tips": pa.float64(),
    "split": pa.string(),
}


def _write(out: Path, cols: dict[str, Any], types: dict[str, pa.DataType] | None = None) -> Path:
    """A clean partition of two Parquet files (plus the _SUCCESS marker, which is skipped)."""
    types = {**_TYPES, **(types or {})}
    arrays = {name: pa.array(values, type=types[name]) for name, values in cols.items()}
    if "fare" in cols and "tips" in cols:
        label = np.asarray(cols["tips"]) > 0.2 * np.asarray(cols["fare"])
        arrays["big_tipper"] = pa.array(label.astype(np.int32))
    table = pa.table(arrays)
    out.mkdir(parents=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), out / "part-00000.parquet")
    pq.write_table(table.slice(half), out / "part-00001.parquet")
    (out / "_SUCCESS").write_text("")
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    part = _write(tmp_path_factory.mktemp("ref") / "ds=2024-01-01", _trips(seed=0))
    return drift.profile_partition(part, SPEC)


def _report(
    reference: dict[str, Any], out: Path, cols: dict[str, Any], spec: DriftSpec | None = None, **kw
) -> drift.DriftReport:
    current = drift.profile_partition(_write(out, cols, **kw), SPEC, edges_from=reference)
    return drift.compare(reference, current, spec or SPEC.drift)


def _feature(report: drift.DriftReport, name: str) -> drift.FeatureDrift:
    return next(f for f in report.features if f.feature == name)


def test_profile_is_strict_json_with_quantile_bins(reference: dict[str, Any]) -> None:
    assert reference["rows"] == ROWS
    assert reference["schema"]["fare"] == "double"
    assert reference["schema"]["trip_start_hour"] == "int64"
    fare = reference["numeric"]["fare"]
    assert fare["edges"][0] == "-inf" and fare["edges"][-1] == "inf"
    assert len(fare["counts"]) == SPEC.drift.bins
    # Quantile edges: every bin holds about a tenth of the rows.
    assert sum(fare["counts"]) == ROWS
    assert all(abs(c - ROWS / 10) <= 1 for c in fare["counts"])
    company = reference["categorical"]["company"]
    assert set(company["values"]) == set(COMPANIES) and company["other"] == 0
    assert set(reference["categorical"]["trip_start_hour"]["values"]) == {str(h) for h in range(24)}
    assert json.loads(json.dumps(reference, allow_nan=False)) == reference


def test_quantile_edges_are_deduplicated() -> None:
    values = np.array([1.0] * 85 + [2.0] * 10 + [3.0] * 5)
    edges = drift.quantile_edges(values, bins=10)
    assert edges.tolist() == [-math.inf, 1.0, 2.0, math.inf]
    assert drift.quantile_edges(np.array([np.nan, np.inf]), bins=10).tolist() == [
        -math.inf,
        math.inf,
    ]


def test_split_selects_rows(tmp_path: Path) -> None:
    cols = _trips(seed=3, rows=1000)
    part = _write(tmp_path / "p", cols)
    holdout = drift.profile_partition(part, SPEC, split="holdout")
    assert holdout["rows"] == int(np.sum(cols["split"] == "holdout"))
    with pytest.raises(ConfigError, match="'test' is unknown"):
        drift.profile_partition(part, SPEC, split="test")


def test_missing_partition_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        drift.profile_partition(tmp_path / "nope", SPEC)


def test_psi_matches_the_formula() -> None:
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert drift.psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(expected)
    assert drift.psi(np.array([3, 7]), np.array([30, 70])) == pytest.approx(0.0)


def test_batch_against_itself_is_ok(reference: dict[str, Any]) -> None:
    part = Path(reference["partition"])
    current = drift.profile_partition(part, SPEC, edges_from=reference)
    report = drift.compare(reference, current, SPEC.drift)
    assert report.status == "ok" and report.action == "none"
    assert {f.feature for f in report.features} == {
        *SPEC.numeric_features,
        *SPEC.categorical_features,
    }
    for f in report.features:
        assert f.severity == "ok"
        assert f.psi == pytest.approx(0.0, abs=1e-9)
        assert f.new_category_count == f.vanished_category_count == 0
    assert report.schema_changes == ()
    assert report.critical_features == report.warning_features == []


def test_fresh_sample_of_the_same_distribution_is_ok(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    report = _report(reference, tmp_path / "cur", _trips(seed=1))
    assert report.status == "ok", report.summary()
    assert all(0 < (f.psi or 0) < SPEC.drift.psi_warning for f in report.features)


def test_tripled_fare_is_critical_and_only_fare(reference: dict[str, Any], tmp_path: Path) -> None:
    cols = _trips(seed=1)
    cols["fare"] = cols["fare"] * 3
    report = _report(reference, tmp_path / "cur", cols)
    fare = _feature(report, "fare")
    assert fare.psi is not None and fare.psi > SPEC.drift.psi_critical
    assert fare.severity == "critical"
    assert report.critical_features == ["fare"]
    assert report.warning_features == []
    assert report.status == "critical"
    assert "fare" in report.summary() and "critical" in report.summary()


def test_moderate_shift_is_a_warning(reference: dict[str, Any], tmp_path: Path) -> None:
    cols = _trips(seed=1)
    # Shift log(fare) by 0.4 sigma: PSI of a normal mean shift of d sigma is about d^2 = 0.16.
    cols["fare"] = cols["fare"] * math.exp(0.4 * 0.5)
    report = _report(reference, tmp_path / "cur", cols)
    fare = _feature(report, "fare")
    assert fare.psi is not None
    assert SPEC.drift.psi_warning <= fare.psi < SPEC.drift.psi_critical
    assert report.warning_features == ["fare"] and report.critical_features == []
    assert report.status == "warning" and report.action == "none"


def test_new_and_vanished_categories_are_reported(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    cols = _trips(seed=1)
    company = cols["company"]
    company[company == "Flash Cab"] = "Sun Taxi"
    report = _report(reference, tmp_path / "cur", cols)
    found = _feature(report, "company")
    assert found.new_categories == ("Sun Taxi",)
    assert found.vanished_categories == ("Flash Cab",)
    assert found.severity == "critical"  # 30% of the mass moved to an unseen value
    assert _feature(report, "trip_start_hour").new_category_count == 0
    assert "new=1 vanished=1" in report.summary()


def test_null_share_jump_is_reported(reference: dict[str, Any], tmp_path: Path) -> None:
    cols = _trips(seed=1)
    miles = cols["trip_miles"].astype(object)
    miles[: ROWS // 4] = None  # nulls, taken from the distribution's whole range
    cols["trip_miles"] = miles
    report = _report(reference, tmp_path / "cur", cols)
    nulls = next(n for n in report.nulls if n.column == "trip_miles")
    assert nulls.reference == 0.0 and nulls.current == pytest.approx(0.25)
    assert nulls.severity == "critical"
    found = _feature(report, "trip_miles")
    assert found.severity == "critical" and found.null_share_current == pytest.approx(0.25)
    assert any("null share" in r for r in found.reasons)
    assert report.critical_features == ["trip_miles"]


def test_small_null_share_change_is_ok(reference: dict[str, Any], tmp_path: Path) -> None:
    cols = _trips(seed=1)
    fare = cols["fare"].copy()
    fare[:250] = np.nan  # 5% NaN counts as null, below the allowed change of 10%
    cols["fare"] = fare
    report = _report(reference, tmp_path / "cur", cols)
    assert _feature(report, "fare").null_share_current == pytest.approx(0.05)
    assert report.status == "ok", report.summary()


def test_removed_column_and_type_change_show_in_schema_diff(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    cols = _trips(seed=1)
    del cols["trip_miles"]
    cols["trip_start_hour"] = cols["trip_start_hour"].astype(np.float64)
    cols["extra"] = np.zeros(ROWS)
    report = _report(
        reference,
        tmp_path / "cur",
        cols,
        types={"trip_start_hour": pa.float64(), "extra": pa.float64()},
    )
    changes = {(s.column, s.change): s for s in report.schema_changes}
    assert set(changes) == {
        ("trip_miles", "removed"),
        ("trip_start_hour", "type_changed"),
        ("extra", "added"),
    }
    retyped = changes[("trip_start_hour", "type_changed")]
    assert (retyped.reference_type, retyped.current_type) == ("int64", "double")
    assert retyped.severity == "critical"
    assert changes[("extra", "added")].severity == "warning"
    # The removed feature cannot be profiled, so it is critical itself.
    assert "trip_miles" in report.critical_features
    assert report.status == "critical"
    # Hours as doubles still compare as the same categories ("3.0" -> "3").
    assert _feature(report, "trip_start_hour").new_category_count == 0


@pytest.mark.parametrize("on_critical", ["fail", "flag"])
def test_on_critical_sets_the_action(
    reference: dict[str, Any], tmp_path: Path, on_critical: str
) -> None:
    cols = _trips(seed=1)
    cols["fare"] = cols["fare"] * 3
    report = _report(reference, tmp_path / "cur", cols, DriftSpec(on_critical=on_critical))
    assert report.status == "critical"
    assert report.action == on_critical
    assert report.to_dict()["action"] == on_critical


def test_compare_refuses_a_profile_binned_with_other_edges(reference: dict[str, Any]) -> None:
    own_edges = drift.profile_partition(Path(reference["partition"]), SPEC, split="holdout")
    with pytest.raises(ConfigError, match="edges_from=reference"):
        drift.compare(reference, own_edges, SPEC.drift)


def test_reports_are_written(reference: dict[str, Any], tmp_path: Path) -> None:
    cols = _trips(seed=1)
    cols["fare"] = cols["fare"] * 3
    report = _report(reference, tmp_path / "cur", cols)
    paths = drift.write_report(report, tmp_path / "reports")
    assert set(paths) == {"json", "html"}
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["status"] == "critical" and data["critical_features"] == ["fare"]
    assert [f["feature"] for f in data["features"]] == [f.feature for f in report.features]
    assert data["thresholds"]["psi_critical"] == SPEC.drift.psi_critical
    page = paths["html"].read_text(encoding="utf-8")
    for name in (*SPEC.numeric_features, *SPEC.categorical_features):
        assert f">{name}<" in page
    assert "<tr class='critical'><td><a href='#f-fare'>fare</a>" in page
    assert "<style>" in page and "<link" not in page and "<script" not in page
    summary = drift.xcom_summary(report, paths)
    assert summary["status"] == "critical" and summary["action"] == "flag"
    assert summary["critical_features"] == ["fare"]
    assert summary["report_html"] == str(paths["html"])
    json.dumps(summary)


def test_saved_profile_round_trips(reference: dict[str, Any], tmp_path: Path) -> None:
    path = drift.save_profile(reference, tmp_path / "reference_profile.json")
    assert drift.load_profile(path) == reference
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a drift profile"):
        drift.load_profile(tmp_path / "bad.json")


def test_taxi_train_vs_holdout_is_ok(taxi_csv: Path, tmp_path: Path) -> None:
    spec = load_spec(TAXI_SPEC)
    part = write_partition(taxi_csv, tmp_path / "clean", spec)
    reference = drift.profile_partition(part, spec, split="train")
    current = drift.profile_partition(part, spec, split="holdout", edges_from=reference)
    assert reference["rows"] + current["rows"] == drift.profile_partition(part, spec)["rows"]
    report = drift.compare(reference, current, spec.drift)
    assert report.status == "ok", report.summary()
    assert {f.feature for f in report.features} == set(spec.features)
    assert all(f.psi is not None and f.psi < spec.drift.psi_warning for f in report.features)
    # And the holdout with tripled fares is caught on the real data too.
    table = pq.read_table(part)
    table = table.set_column(
        table.schema.get_field_index("fare"), "fare", pa.compute.multiply(table["fare"], 3.0)
    )
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    pq.write_table(table, shifted / "part-00000.parquet")
    current = drift.profile_partition(shifted, spec, split="holdout", edges_from=reference)
    assert drift.compare(reference, current, spec.drift).critical_features == ["fare"]
