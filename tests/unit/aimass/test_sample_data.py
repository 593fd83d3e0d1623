from __future__ import annotations

import csv
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from aimass.data.sample_data import SAMPLES, Sample, check_wheel, raw_dir
from aimass.data.spec import expr, load_spec
from aimass.platform.settings import REPO_ROOT

pytestmark = pytest.mark.unit

SPECS = REPO_ROOT / "conf" / "datasets"
SEATTLE_CSV = raw_dir(REPO_ROOT / "var", "seattle_weather") / "seattle-weather.csv"


def _wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data.csv", "a,b\n1,2\n")
    return wheel


def test_a_wheel_with_the_pinned_digest_is_taken(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    check_wheel(Sample("pkg", "1.0", digest, {"pkg/data.csv": "data.csv"}), wheel)


def test_a_wheel_with_another_digest_is_refused_naming_both(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match=f"has sha256 {digest}, expected {'0' * 64}"):
        check_wheel(Sample("pkg", "1.0", "0" * 64, {"pkg/data.csv": "data.csv"}), wheel)


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_every_sample_is_pinned_and_read_by_a_shipped_spec(dataset: str) -> None:
    sample = SAMPLES[dataset]
    assert re.fullmatch(r"\d+(\.\d+)+", sample.version)
    assert re.fullmatch(r"[0-9a-f]{64}", sample.sha256)
    paths = {load_spec(p).source_path for p in SPECS.glob("*.yaml")}
    files = {f"{{var_dir}}/data/raw/{dataset}/{name}" for name in sample.files.values()}
    assert paths & files, f"no spec in {SPECS} reads {sorted(files)}"


def _seattle_rows() -> list[dict[str, str]]:
    if not SEATTLE_CSV.exists():
        pytest.skip(f"{SEATTLE_CSV} is missing: run `make setup`")
    with open(SEATTLE_CSV, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_seattle_sample_has_the_spec_columns_and_every_day_of_2012_to_2015() -> None:
    spec = load_spec(SPECS / "seattle_weather.yaml")
    rows = _seattle_rows()
    assert tuple(rows[0]) == spec.columns
    assert len(rows) == 1461 == len({r["date"] for r in rows})
    assert {r["weather"] for r in rows} == {"drizzle", "rain", "sun", "snow", "fog"}


def test_the_seattle_dates_are_dates_the_feature_language_reads() -> None:
    bad = [r["date"] for r in _seattle_rows() if not re.match(expr.DATE_PATTERN, r["date"])]
    assert not bad, f"{len(bad)} dates the feature language cannot read, e.g. {bad[:3]}"
