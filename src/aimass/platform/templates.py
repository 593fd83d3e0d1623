"""The one way AI Mass renders HTML reports: Jinja2 templates shipped as package data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2


def environment(
    package: str, folder: str = "", *, filters: dict[str, Callable[..., Any]] | None = None
) -> jinja2.Environment:
    """Templates under ``folder`` of ``package``, found in a checkout, an editable install and a
    wheel alike. Autoescaped: data values never become markup. StrictUndefined: a name the
    template expects but is not given fails the render instead of leaving a blank."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filters or {})
    return env
