"""Clean-job transforms on tiny DataFrames built in the test (jobs/clean/transforms.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aimass.data.spec import DatasetSpec

pytestmark = pytest.mark.unit

SPEC = DatasetSpec.from_dict(
    {
        "name": "tiny",
        "source": {"format": "csv", "path": "unused.csv"},
        "schema": {"fare": "double", "tips": "double", "hour": "long", "company": "string"},
        "label": {"name": "big_tipper", "expression": "tips > 0.2 * fare"},
        "features": {"numeric": ["fare"], "categorical": ["company", "hour"]},
        "rules": [
            {"name": "fare_not_negative", "expression": "fare >= 0"},
            {"name": "hour_in_day", "expression": "hour BETWEEN 0 AND 23"},
        ],
        "split": {"holdout_percent": 20},
    },
    origin="test",
)


def raw_df(spark: Any, rows: list[tuple[str | None, ...]]) -> Any:
    """Rows as the CSV reader gives them: 4 string fields + _corrupt_record."""
    from jobs.clean.transforms import raw_csv_schema

    return spark.createDataFrame(rows, schema=raw_csv_schema(SPEC))


def reasons(quarantine: Any) -> dict[str, str]:
    return {r["raw"]: r["reason"] for r in quarantine.collect()}


def test_parse_rows_types_columns_and_treats_empty_fields_as_null(spark: Any) -> None:
    from pyspark.sql import types as T

    from jobs.clean.transforms import parse_rows

    df = raw_df(spark, [("12.5", "3", " 7 ", "Flash Cab", None), ("", None, "8.0", "", None)])
    typed, quarantine = parse_rows(df, spec=SPEC)

    types = {f.name: f.dataType for f in typed.schema.fields}
    assert types["fare"] == T.DoubleType()
    assert types["hour"] == T.LongType()
    assert types["company"] == T.StringType()
    rows = sorted(typed.collect(), key=lambda r: r["hour"])
    assert (rows[0]["fare"], rows[0]["tips"], rows[0]["hour"], rows[0]["company"]) == (
        12.5,
        3.0,
        7,
        "Flash Cab",
    )
    # Empty fields are nulls, not errors; an integral "8.0" is a valid long.
    assert (rows[1]["fare"], rows[1]["tips"], rows[1]["hour"], rows[1]["company"]) == (
        None,
        None,
        8,
        None,
    )
    assert quarantine.count() == 0


def test_parse_rows_quarantines_malformed_rows_with_reasons(spark: Any) -> None:
    from jobs.clean.transforms import parse_rows

    df = raw_df(
        spark,
        [
            ("1.0", "2", "3", "ok", None),
            ("1.0", "2", None, None, "1.0,2"),  # wrong field count, as the reader marks it
            ("abc", "2", "3", "x", None),
            ("1.0", "2", "10.5", "x", None),
            ("1.0", "2", "3", "Caf\ufffd", None),  # invalid UTF-8 decoded by Spark
            ("1.0", "2", "3", 'Taxi "Q", Inc', None),
        ],
    )
    typed, quarantine = parse_rows(df, spec=SPEC)

    assert reasons(quarantine) == {
        "1.0,2": "malformed: wrong field count",
        "abc,2,3,x": "unparseable double in fare: 'abc'",
        "1.0,2,10.5,x": "unparseable long in hour: '10.5'",
        "1.0,2,3,Caf\ufffd": "malformed: bad encoding",
    }
    assert sorted(r["company"] for r in typed.collect()) == ['Taxi "Q", Inc', "ok"]
    # Good rows carry their raw line (quoted like CSV) for later quarantine steps.
    assert '1.0,2,3,"Taxi ""Q"", Inc"' in {r["raw"] for r in typed.collect()}


def test_read_raw_marks_wrong_field_count_but_not_quoted_commas(spark: Any, tmp_path: Path) -> None:
    from jobs.clean.inputs import read_raw
    from jobs.clean.transforms import parse_rows

    csv = tmp_path / "tiny.csv"
    csv.write_bytes(
        b'fare,tips,hour,company\n5,1,3,"Taxi, Inc"\n5,1\n5,1,3,x,extra\n5,1,3,Caf\xe9\n'
    )
    raw = read_raw(spark, str(csv), SPEC).cache()
    typed, quarantine = parse_rows(raw, spec=SPEC)

    assert reasons(quarantine) == {
        "5,1": "malformed: wrong field count",
        "5,1,3,x,extra": "malformed: wrong field count",
        "5,1,3,Caf\ufffd": "malformed: bad encoding",
    }
    assert [r["company"] for r in typed.collect()] == ["Taxi, Inc"]
    raw.unpersist()


def test_apply_rules_quarantines_rule_breakers_by_rule_name(spark: Any) -> None:
    from jobs.clean.transforms import apply_rules, parse_rows

    df = raw_df(
        spark,
        [
            ("10", "1", "3", "ok", None),
            ("-1", "0", "3", "neg", None),
            ("10", "1", "24", "late", None),
            ("-1", "0", "99", "both", None),  # the first broken rule names the reason
            ("10", "", "3", "no tips", None),  # null passes rules, but the label is null
        ],
    )
    typed, _ = parse_rows(df, spec=SPEC)
    ok, quarantine = apply_rules(typed, spec=SPEC)

    assert [r["company"] for r in ok.collect()] == ["ok"]
    assert reasons(quarantine) == {
        "-1,0,3,neg": "rule fare_not_negative",
        "10,1,24,late": "rule hour_in_day",
        "-1,0,99,both": "rule fare_not_negative",
        "10,,3,no tips": "null label big_tipper: tips > 0.2 * fare",
    }


def test_add_label_derives_int_zero_one_from_the_expression(spark: Any) -> None:
    from pyspark.sql import types as T

    from jobs.clean.transforms import add_label

    df = spark.createDataFrame([(10.0, 3.0), (10.0, 2.0), (10.0, 0.0)], "fare double, tips double")
    labelled = add_label(df, spec=SPEC)

    assert labelled.schema["big_tipper"].dataType == T.IntegerType()
    assert [r["big_tipper"] for r in labelled.orderBy("tips").collect()] == [0, 0, 1]


def test_add_split_is_deterministic_and_holds_out_the_spec_percent(spark: Any) -> None:
    from pyspark.sql import functions as F

    from jobs.clean.transforms import add_split

    rows = spark.range(4000).select(
        (F.col("id") * 0.5).alias("fare"),
        (F.col("id") % 7).cast("double").alias("tips"),
        (F.col("id") % 24).alias("hour"),
        F.concat(F.lit("c"), (F.col("id") % 13).cast("string")).alias("company"),
    )
    first = {tuple(r[:4]): r["split"] for r in add_split(rows, spec=SPEC).collect()}
    # Another partitioning and row order must not change any row's split.
    shuffled = rows.repartition(3).orderBy(F.rand(seed=1))
    second = {tuple(r[:4]): r["split"] for r in add_split(shuffled, spec=SPEC).collect()}

    assert first == second
    assert set(first.values()) == {"train", "holdout"}
    holdout = sum(v == "holdout" for v in first.values()) / len(first)
    assert 0.16 < holdout < 0.24


def test_clean_rows_conserves_rows_and_writes_the_contract_columns(spark: Any) -> None:
    from jobs.clean.transforms import clean_rows, clean_schema, quarantine_schema

    rows = [
        ("10", "3", "1", "a", None),
        ("10", "1", "2", "b", None),
        ("x", "1", "2", "c", None),
        ("-3", "1", "2", "d", None),
        ("10", None, None, None, "10"),
        ("", "1", "2", "e", None),  # fare null: rules pass, label null -> quarantine
    ]
    clean, quarantine = clean_rows(raw_df(spark, rows), spec=SPEC)

    assert clean.count() + quarantine.count() == len(rows)
    assert clean.count() == 2
    assert clean.schema.simpleString() == clean_schema(SPEC).simpleString()
    assert quarantine.schema.simpleString() == quarantine_schema().simpleString()
    labels = {r["company"]: r["big_tipper"] for r in clean.collect()}
    assert labels == {"a": 1, "b": 0}


def test_reason_kind_drops_the_offending_value(spark: Any) -> None:
    from pyspark.sql import functions as F

    from jobs.clean.transforms import reason_kind

    df = spark.createDataFrame(
        [("unparseable double in fare: 'a: 'b'",), ("rule fare_not_negative",)], "reason string"
    )
    kinds = [r[0] for r in df.select(reason_kind(F.col("reason"))).collect()]
    assert kinds == ["unparseable double in fare", "rule fare_not_negative"]


# -- duplicates -------------------------------------------------------------------------------

KEYED = DatasetSpec.from_dict(
    {
        "name": "tiny_keyed",
        "source": {"format": "csv", "path": "unused.csv"},
        "schema": {"fare": "double", "tips": "double", "hour": "long", "company": "string"},
        "label": {"name": "big_tipper", "expression": "tips > 0.2 * fare"},
        "features": {"numeric": ["fare"], "categorical": ["company", "hour"]},
        "dedupe_key": ["company", "hour"],
    },
    origin="test",
)
TYPED = "fare double, tips double, hour long, company string"


def _positioned(spark: Any, rows: list[tuple[Any, ...]]) -> Any:
    """Typed rows with a source position that follows the list order (file a, then b)."""
    from pyspark.sql import functions as F

    from jobs.clean.dedupe import POSITION_COLUMN, POSITION_TYPE

    frame = spark.createDataFrame([(*r, i) for i, r in enumerate(rows)], f"{TYPED}, row long")
    return frame.select(*KEYED.columns, F.col("row").cast(POSITION_TYPE).alias(POSITION_COLUMN))


def test_drop_duplicates_keeps_the_first_copy_and_counts_exact_and_key_duplicates(
    spark: Any,
) -> None:
    from jobs.clean.dedupe import drop_duplicates

    rows = [
        (9.0, 1.0, 3, "late"),  # key (late, 3) seen first here...
        (5.0, 1.0, 3, "a"),
        (5.0, 1.0, 3, "a"),  # exact copy of the row above
        (7.0, 2.0, 3, "late"),  # ...so this one is a key duplicate, whatever its values
        (5.0, 1.0, 3, "a"),  # another exact copy, in another file
        (1.0, 0.0, None, None),
        (2.0, 0.0, None, None),  # nulls in the key compare equal: key duplicate
    ]
    deduplicated = drop_duplicates(_positioned(spark, rows), spec=KEYED)
    kept = deduplicated.kept

    assert kept.columns == list(KEYED.columns)  # the position column is dropped
    assert sorted(tuple(r) for r in kept.collect()) == sorted(
        [(9.0, 1.0, 3, "late"), (5.0, 1.0, 3, "a"), (1.0, 0.0, None, None)], key=str
    )
    # Counted while the kept rows were computed (the collect above), by kind.
    assert deduplicated.counts() == {"exact": 2, "key": 2}


def test_drop_duplicates_keeps_the_earliest_copy_whatever_the_partitioning(spark: Any) -> None:
    from jobs.clean.dedupe import drop_duplicates

    rows = [(float(i), 1.0, i % 5, f"c{i % 3}") for i in range(60)]
    frame = _positioned(spark, rows)
    first = {tuple(r) for r in drop_duplicates(frame, spec=KEYED).kept.collect()}
    again = {tuple(r) for r in drop_duplicates(frame.repartition(4), spec=KEYED).kept.collect()}

    # 15 distinct (company, hour) keys; the first copy in file order has the smallest fare.
    assert first == again
    assert sorted(r[0] for r in first) == [float(i) for i in range(15)]


def test_drop_duplicates_without_a_key_drops_exact_copies_only(spark: Any) -> None:
    from jobs.clean.dedupe import drop_duplicates

    frame = spark.createDataFrame(
        [(5.0, 1.0, 3, "a"), (5.0, 1.0, 3, "a"), (6.0, 1.0, 3, "a")], TYPED
    )
    deduplicated = drop_duplicates(frame, spec=SPEC)

    assert sorted(r["fare"] for r in deduplicated.kept.collect()) == [5.0, 6.0]
    assert deduplicated.counts() == {"exact": 1, "key": 0}


def test_clean_rows_carries_the_source_position_for_drop_duplicates(
    spark: Any, tmp_path: Path
) -> None:
    from jobs.clean.dedupe import POSITION_COLUMN, drop_duplicates, with_source_position
    from jobs.clean.inputs import read_raw
    from jobs.clean.transforms import clean_rows

    (tmp_path / "a.csv").write_text("fare,tips,hour,company\n10,3,1,x\n10,3,1,x\n")
    (tmp_path / "b.csv").write_text("fare,tips,hour,company\n10,1,1,x\n")
    raw = with_source_position(read_raw(spark, str(tmp_path), KEYED)).cache()
    rows, _ = clean_rows(raw, spec=KEYED)
    assert POSITION_COLUMN in rows.columns
    deduplicated = drop_duplicates(rows, spec=KEYED)

    # a.csv comes first: its row is kept, its copy is exact, b.csv's row is a key duplicate.
    assert [(r["tips"], r["big_tipper"]) for r in deduplicated.kept.collect()] == [(3.0, 1)]
    assert deduplicated.counts() == {"exact": 1, "key": 1}
    raw.unpersist()


# -- parquet input ----------------------------------------------------------------------------


def test_parquet_as_raw_casts_by_name_and_quarantines_values_that_do_not_fit(
    spark: Any,
) -> None:
    from jobs.clean.transforms import parquet_as_raw, parse_rows

    frame = spark.createDataFrame(
        [("Flash", 12.5, "3", 7, 1), ("Zip", 1.0, "abc", 8, 1), ("Q", 2.0, "1", None, 1)],
        "company string, fare double, tips string, hour int, extra int",
    )
    raw = parquet_as_raw(frame, spec=SPEC)
    assert raw.columns == [*SPEC.columns, "_corrupt_record"]
    typed, quarantine = parse_rows(raw, spec=SPEC)

    assert reasons(quarantine) == {"1.0,abc,8,Zip": "unparseable double in tips: 'abc'"}
    assert sorted((r["company"], r["fare"], r["tips"], r["hour"]) for r in typed.collect()) == [
        ("Flash", 12.5, 3.0, 7),
        ("Q", 2.0, 1.0, None),
    ]


def test_parquet_as_raw_names_missing_columns(spark: Any) -> None:
    from aimass.platform.errors import ConfigError
    from jobs.clean.transforms import parquet_as_raw

    frame = spark.createDataFrame([(1.0, 2)], "fare double, hour long")
    with pytest.raises(ConfigError, match=r"lacks the columns \['tips', 'company'\]"):
        parquet_as_raw(frame, spec=SPEC)


PENGUIN_SCHEMA = {"species": "string", "bill": "double", "sex": "string"}


def _penguin_spec(
    label: dict[str, Any], features: dict[str, list[str]] | None = None
) -> DatasetSpec:
    return DatasetSpec.from_dict(
        {
            "name": "birds",
            "source": {"format": "csv", "path": "unused.csv", "null_values": ["NA"]},
            "schema": PENGUIN_SCHEMA,
            "label": label,
            "features": features or {"numeric": ["bill"], "categorical": ["sex"]},
        },
        origin="test",
    )


def _penguin_rows(spark: Any, spec: DatasetSpec, rows: list[tuple[str | None, ...]]) -> Any:
    from jobs.clean.transforms import raw_csv_schema

    return spark.createDataFrame([(*r, None) for r in rows], schema=raw_csv_schema(spec))


def test_multiclass_label_is_the_class_index_and_unknown_classes_are_quarantined(
    spark: Any,
) -> None:
    from pyspark.sql import types as T

    from jobs.clean.transforms import clean_rows, clean_schema

    spec = _penguin_spec(
        {"name": "kind", "column": "species", "task": "multiclass", "classes": ["Adelie", "Gentoo"]}
    )
    rows = [("Gentoo", "47.1", "male"), ("Adelie", "NA", "NA"), ("Emperor", "50", "female")]
    clean, quarantine = clean_rows(_penguin_rows(spark, spec, rows), spec=spec)

    assert clean_schema(spec)["kind"].dataType == T.IntegerType()
    got = {r["species"]: (r["kind"], r["bill"], r["sex"]) for r in clean.collect()}
    # "NA" is a null (source.null_values), not an unparseable double.
    assert got == {"Gentoo": (1, 47.1, "male"), "Adelie": (0, None, None)}
    assert reasons(quarantine) == {"Emperor,50,female": "unknown class kind: 'Emperor'"}


def test_regression_label_is_a_double_and_a_missing_value_is_a_null_label(spark: Any) -> None:
    from pyspark.sql import types as T

    from jobs.clean.transforms import clean_rows, clean_schema

    spec = _penguin_spec(
        {"name": "bill_mm", "column": "bill", "task": "regression"},
        {"categorical": ["species", "sex"]},
    )
    rows = [("Gentoo", "47.1", "male"), ("Adelie", "NA", "female")]
    clean, quarantine = clean_rows(_penguin_rows(spark, spec, rows), spec=spec)

    assert clean_schema(spec)["bill_mm"].dataType == T.DoubleType()
    assert [(r["species"], r["bill_mm"]) for r in clean.collect()] == [("Gentoo", 47.1)]
    assert reasons(quarantine) == {"Adelie,NA,female": "null label bill_mm: `bill`"}


def test_derived_columns_are_written_and_rules_may_use_them(spark: Any) -> None:
    from pyspark.sql import types as T

    from jobs.clean.transforms import clean_rows, clean_schema

    raw = SPEC.to_dict()
    raw["derived"] = {
        "tip_share": {
            "expression": "CASE WHEN fare > 0 THEN tips / fare END",
            "type": "double",
        },
        "tip_pct": {"expression": "round(tip_share * 100)", "type": "long"},
    }
    raw["rules"] = [*raw["rules"], {"name": "tip_below_fare", "expression": "tip_share <= 1"}]
    spec = DatasetSpec.from_dict(raw, origin="test")
    rows = [("10", "3", "1", "a", None), ("0", "1", "2", "b", None), ("10", "15", "2", "c", None)]
    clean, quarantine = clean_rows(raw_df(spark, rows), spec=spec)

    assert clean_schema(spec)["tip_pct"].dataType == T.LongType()
    assert clean.schema.simpleString() == clean_schema(spec).simpleString()
    got = {r["company"]: (r["tip_share"], r["tip_pct"]) for r in clean.collect()}
    # fare 0: the CASE gives null instead of a division by zero, and a null rule passes.
    assert got == {"a": (0.3, 30), "b": (None, None)}
    assert reasons(quarantine) == {"10,15,2,c": "rule tip_below_fare"}
