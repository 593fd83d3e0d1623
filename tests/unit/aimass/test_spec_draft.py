"""`aimass spec init`: a spec drafted from a file, that loads and fits its own data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from aimass.data.sample_data import fetch_sample
from aimass.data.spec import DatasetSpec
from aimass.data.spec_check import check
from aimass.data.spec_draft import draft
from aimass.platform.errors import ConfigError
from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit


def _rows(n: int) -> str:
    lines = ["order_id;day;shop;code;qty;price;paid"]
    for i in range(n):
        lines.append(
            f"{1000 + i};2024-01-{1 + i % 28:02d};{['north', 'south', 'east'][i % 3]};"
            f"c{i};{i % 7 if i % 10 else '?'};{2.5 + i};{'yes' if i % 4 == 0 else 'no'}"
        )
    return "\n".join(lines) + "\n"


def test_types_task_features_quality_and_split_are_inferred(tmp_path: Path) -> None:
    path = tmp_path / "Orders 2024.csv"
    path.write_text(_rows(60), encoding="utf-8")
    drafted = draft(path, label="paid")
    raw = yaml.safe_load(drafted.text)
    spec = DatasetSpec.from_dict(raw)
    assert spec == drafted.spec and spec.name == "orders_2024"
    assert raw["source"]["delimiter"] == ";" and raw["source"]["null_values"] == ["?"]
    assert dict(spec.schema) == {
        "order_id": "long",
        "day": "string",
        "shop": "string",
        "code": "string",
        "qty": "long",
        "price": "double",
        "paid": "string",
    }
    # Two string values: binary, the rarer value the positive class.
    assert spec.task == "binary" and spec.label_expression == "paid = 'yes'"
    assert spec.numeric_features == ("qty", "price") and spec.categorical_features == ("shop",)
    assert "# left out: order_id: looks like an id (by its name)" in drafted.text
    assert "# left out: code: looks like an id (all 60 values distinct)" in drafted.text
    assert "# left out: day: a date" in drafted.text
    assert spec.split.by == "time" and spec.split.column == "day"
    assert "qty" not in spec.quality.not_null and "price" in spec.quality.not_null
    ranges = {r.column: (r.min, r.max) for r in spec.quality.ranges}
    assert ranges["qty"] == (0, 7) and ranges["price"][0] == 0.0 and ranges["price"][1] > 61.5


def test_the_task_follows_the_label_or_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "a,b,grade,score\n" + "".join(f"{i},{'xy'[i % 2]},{i % 4},{i * 1.5}\n" for i in range(40))
    )
    multi = draft(path, label="grade").spec
    assert multi.task == "multiclass" and multi.label_classes == ("0", "1", "2", "3")
    assert draft(path, label="score").spec.task == "regression"
    assert draft(path, label="grade", task="regression").spec.task == "regression"
    binary = draft(path, label="b").spec
    assert binary.task == "binary" and binary.label_expression in ("b = 'x'", "b = 'y'")
    with pytest.raises(ConfigError, match="binary needs two"):
        draft(path, label="grade", task="binary")
    with pytest.raises(ConfigError, match="'nope' is not a column"):
        draft(path, label="nope")


def test_a_file_without_a_header_and_a_parquet_file(tmp_path: Path) -> None:
    csv_path = tmp_path / "adult.data"
    csv_path.write_text(
        "".join(
            f"{30 + i}, {'ab'[i % 2]}x , {'>50K' if i % 3 == 0 else '<=50K'}\n" for i in range(9)
        )
    )
    spec = draft(csv_path, label="column_3").spec
    assert not spec.header and spec.columns == ("column_1", "column_2", "column_3")
    assert spec.label_expression == "column_3 = '>50K'"
    table = pa.table({"x": [1.5, 2.5, None, 4.0], "kind": ["a", "b", "a", "b"], "y": [1, 0, 1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    spec = draft(tmp_path / "t.parquet", label="y").spec
    assert spec.source_format == "parquet" and spec.label_column == "y"
    assert dict(spec.schema) == {"x": "double", "kind": "string", "y": "long"}


def test_the_cli_writes_the_draft_checks_it_and_keeps_an_existing_file(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(_rows(60), encoding="utf-8")
    out = tmp_path / "conf" / "orders.yaml"
    cmd = [
        sys.executable,
        "-m",
        "aimass.cli",
        "spec",
        "init",
        str(path),
        "--label",
        "paid",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}" in proc.stdout and "OK: the spec is valid and the rows fit" in proc.stdout
    DatasetSpec.from_dict(yaml.safe_load(out.read_text()))
    out.write_text("# mine\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "exists; pass --force" in proc.stdout
    assert out.read_text() == "# mine\n"
    proc = subprocess.run([*cmd, "--force"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.read_text().startswith("# Drafted")


@pytest.fixture(scope="module")
def samples() -> Path:
    """The sample data in the repo's var dir, fetched when missing (as `make setup` does)."""
    var = REPO_ROOT / "var"
    fetch_sample(var)
    return var


SHIPPED = sorted(p.stem for p in (REPO_ROOT / "conf" / "datasets").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_draft_of_each_shipped_sample_loads_and_fits_it(
    name: str, samples: Path, settings: Settings
) -> None:
    shipped = yaml.safe_load((REPO_ROOT / "conf" / "datasets" / f"{name}.yaml").read_text())
    source = Path(shipped["source"]["path"].replace("{var_dir}", str(samples)))
    label = shipped["label"].get("column") or next(iter(shipped["schema"]))
    drafted = draft(source, label=label, name=f"draft_{name}")
    report = check(drafted.spec, "draft", settings, data=str(source))
    assert report.ok, report.render()
