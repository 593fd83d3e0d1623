"""The console's action parameters are checked as the trigger forms check them."""

from __future__ import annotations

import pytest

from aimass.console.actions import _typed, rollback_conf
from aimass.platform.errors import ConfigError
from aimass.stages.params import EPOCHS, FORCE_DEPLOY, LEARNING_RATE, WORKERS

pytestmark = pytest.mark.unit


def test_a_rollback_needs_a_reason_and_a_loaded_version() -> None:
    conf = rollback_conf("chicago_taxi", "1", "  v2 answers worse, INC-7  ", [1, 2])
    assert conf == {"dataset": "chicago_taxi", "version": 1, "reason": "v2 answers worse, INC-7"}
    with pytest.raises(ConfigError, match="at least 10 characters"):
        rollback_conf("chicago_taxi", "1", "oops", [1, 2])
    with pytest.raises(
        ConfigError, match=r"not loaded by the model server; choose one of \[1, 2\]"
    ):
        rollback_conf("chicago_taxi", "3", "v2 answers worse, INC-7", [1, 2])
    with pytest.raises(ConfigError, match="not a serving version number"):
        rollback_conf("chicago_taxi", "two", "v2 answers worse, INC-7", [1, 2])


def test_form_values_take_the_params_json_types() -> None:
    assert _typed(EPOCHS, "") is EPOCHS.default
    assert _typed(EPOCHS, " 7 ") == 7
    assert _typed(LEARNING_RATE, "0.001") == pytest.approx(0.001)
    assert _typed(FORCE_DEPLOY, "true") is True and _typed(FORCE_DEPLOY, "false") is False
    with pytest.raises(ConfigError, match="must be a whole number, not '7.5'"):
        _typed(EPOCHS, "7.5")
    with pytest.raises(ConfigError, match="must be a number"):
        _typed(LEARNING_RATE, "fast")
    # workers takes a number or "auto": the text goes on to validate_params, which checks it.
    assert _typed(WORKERS, "2") == 2 and _typed(WORKERS, " auto ") == "auto"
