"""Fetch the Chicago Taxi sample CSVs from the tfx wheel on PyPI (never installs tfx)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

TFX_VERSION = "1.21.0"
# member inside the wheel -> file name under <var>/data/raw/chicago_taxi/
SAMPLE_FILES = {
    "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv": "data.csv",
    "tfx/components/testdata/external/csv/data.csv": "external_data.csv",
    "tfx/components/testdata/external/csv/data2.csv": "external_data2.csv",
}


def raw_dir(var_dir: Path) -> Path:
    return var_dir / "data" / "raw" / "chicago_taxi"


def fetch_sample(var_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Download the tfx wheel once and extract the taxi CSVs into the var dir.

    Returns the extracted files by name. A second call finds them and downloads nothing.
    """
    target = raw_dir(var_dir)
    wanted = {name: target / name for name in SAMPLE_FILES.values()}
    if not force and all(p.exists() and p.stat().st_size > 0 for p in wanted.values()):
        log.info("sample data already present in %s", target)
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aimass-tfx-") as tmp:
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
            tmp,
            f"tfx=={TFX_VERSION}",
        ]
        log.info(
            "downloading tfx %s wheel from PyPI (sample data only; tfx is not installed)",
            TFX_VERSION,
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}\n"
                "Check that PyPI is reachable (or a pip index/proxy is configured), then re-run `make setup`."
            )
        wheels = list(Path(tmp).glob("tfx-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download succeeded but no tfx wheel was found in {tmp}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, name in SAMPLE_FILES.items():
                partial = wanted[name].with_suffix(".part")
                with zf.open(member) as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                partial.replace(wanted[name])
                log.info("extracted %s -> %s", member, wanted[name])
    return wanted
