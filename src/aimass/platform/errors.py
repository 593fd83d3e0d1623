"""Project exceptions. Every message names the bad value and says how to fix it."""

from __future__ import annotations


class AimassError(Exception):
    """Base class for errors raised by AI Mass."""


class ConfigError(AimassError):
    """A setting, dataset spec or run parameter is invalid."""


class DataQualityError(AimassError):
    """A critical data-quality expectation failed."""


class GateRejected(AimassError):
    """The evaluation gate rejected the candidate model."""


class ServingError(AimassError):
    """The model server could not load or answer for a model version."""


class StageError(AimassError):
    """A pipeline stage (a subprocess or job) failed."""
