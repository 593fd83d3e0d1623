"""Splits by hash, time and group, and the spec's CSV dialect, in the clean job's transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError

pytestmark = pytest.mark.unit


def _spec(split: dict[str, Any], **source: Any) -> DatasetSpec:
    return DatasetSpec.from_dict(
        {
            "name": "days",
            "source": {"format": "csv", **source},
            "schema": {"day": "string", "seconds": "long", "station": "string", "x": "double"},
            "label": {"name": "y", "expression": "x > 0"},
            "features": {"numeric": ["x"], "categorical": ["station"]},
            "split": split,
        },
        origin="test",
    )


def _days(spark: Any, n: int = 200) -> Any:
    import datetime as dt

    start = dt.date(2015, 1, 1)
    rows = []
    for i in range(n):
        day = start + dt.timedelta(days=i)
        seconds = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
        rows.append((day.strftime("%Y/%m/%d"), seconds, f"s{i % 7}", float(i)))
    rows.append((None, None, "s0", 1.0))  # no time: trains
    return spark.createDataFrame(rows, "day string, seconds long, station string, x double")


def _by_split(df: Any, column: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"train": [], "holdout": []}
    for row in df.collect():
        out[row["split"]].append(row[column])
    return out


def test_a_time_split_holds_out_the_latest_share_and_trains_on_rows_without_a_time(
    spark: Any,
) -> None:
    from jobs.clean.transforms import add_split

    spec = _spec({"by": "time", "column": "day", "holdout_percent": 20})
    parts = _by_split(add_split(_days(spark), spec=spec), "day")
    assert None in parts["train"]
    train = [d for d in parts["train"] if d is not None]
    assert max(train) < min(parts["holdout"])  # no day on both sides, the future held out
    assert 35 <= len(parts["holdout"]) <= 45


def test_a_time_split_with_a_cutoff_on_unix_seconds(spark: Any) -> None:
    from jobs.clean.transforms import add_split

    spec = _spec({"by": "time", "column": "seconds", "cutoff": "2015-06-01"})
    parts = _by_split(add_split(_days(spark), spec=spec), "day")
    assert min(parts["holdout"]) == "2015/06/01" and max(parts["holdout"]) == "2015/07/19"
    assert max(d for d in parts["train"] if d is not None) == "2015/05/31"


def test_a_group_split_keeps_every_key_on_one_side(spark: Any) -> None:
    from jobs.clean.transforms import add_split

    spec = _spec({"by": "group", "key": ["station"], "holdout_percent": 30})
    parts = _by_split(add_split(_days(spark), spec=spec), "station")
    assert set(parts["train"]).isdisjoint(parts["holdout"])
    assert parts["holdout"] and parts["train"]
    again = _by_split(add_split(_days(spark).repartition(3), spec=spec), "station")
    assert set(again["holdout"]) == set(parts["holdout"])


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"by": "random"}, "split.by"),
        ({"by": "time"}, "split.column"),
        ({"by": "time", "column": "x"}, "must be a schema column of type string"),
        ({"by": "time", "column": "day", "cutoff": "June"}, "is not a date"),
        ({"by": "group"}, "split.key"),
        ({"by": "group", "key": ["nope"]}, "'nope' (in split.key)"),
    ],
)
def test_a_split_that_cannot_work_is_refused_by_the_spec(
    split: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(split)


def test_the_spec_sets_the_delimiter_quote_trimming_null_tokens_and_case(
    spark: Any, tmp_path: Path
) -> None:
    from jobs.clean.inputs import read_raw
    from jobs.clean.transforms import parse_rows

    spec = _spec(
        {"by": "hash"}, delimiter=";", quote="'", null_values=["?"], case={"station": "upper"}
    )
    path = tmp_path / "days.txt"
    path.write_text(
        "day;seconds;station;x\n"
        " 2015/01/01 ;\t10 ;'north; east';  1.5\n"
        "2015/01/02;?;' ? ';?\n"
        "2015/01/03;8.0;'it''s';2\n",
        encoding="utf-8",
    )
    raw = read_raw(spark, str(path), spec).cache()
    typed, quarantine = parse_rows(raw, spec=spec)
    rows = sorted(typed.select("day", "seconds", "station", "x").collect())
    assert quarantine.count() == 0
    assert [tuple(r) for r in rows] == [
        ("2015/01/01", 10, "NORTH; EAST", 1.5),
        ("2015/01/02", None, None, None),
        ("2015/01/03", 8, "IT'S", 2.0),
    ]
    with pytest.raises(ConfigError, match="must differ"):
        _spec({"by": "hash"}, delimiter=";", quote=";")
