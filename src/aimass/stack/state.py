"""Private state of the embedded stack: per-install secrets files and the modes of what holds
secrets or databases.

Secrets are JSON objects made once per install and kept 0600; a value a newer AI Mass needs
is added to an older install's file, and nothing already there is changed. The folders that
hold databases, users, secrets or pid files are 0700 and their files 0600, so another local
account can read none of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from aimass.platform.settings import Settings

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Services and the commands the supervisor runs create their files private (0600/0700).
SERVICE_UMASK = 0o077


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from its first byte (a replaced file too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)
    path.chmod(PRIVATE_FILE)


def secrets_file(path: Path, wanted: Mapping[str, Callable[[], str]]) -> dict[str, str]:
    """The secrets in ``path``, with each missing key of ``wanted`` made and saved (0600)."""
    values = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    missing = {key: make() for key, make in wanted.items() if key not in values}
    if missing:
        values.update(missing)
        write_private(path, json.dumps(values))
    return values


def private_dirs(settings: Settings) -> list[Path]:
    """The folders whose content nobody else may read: Airflow's home, MLflow's store, the
    services' logs and pid files."""
    return [
        settings.airflow_home,
        settings.mlflow_dir,
        settings.logs_dir,
        settings.var_dir / "run",
    ]


def make_private(settings: Settings) -> None:
    """Create the private folders 0700, and set 0600 on the files directly inside them
    (databases, secrets, users, pid files), also those an older AI Mass left readable.

    What lies deeper (task logs, artifacts) is out of reach through its 0700 parent.
    """
    for folder in private_dirs(settings):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(PRIVATE_DIR)
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(PRIVATE_FILE)
