"""One running stack per e2e module: two modules can run side by side under xdist."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2ekit import running_stack

from aimass.platform.airflow_api import AirflowClient
from aimass.platform.settings import Settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, AirflowClient]]:
    with running_stack(tmp_path_factory.mktemp("e2e") / "var") as started:
        yield started
