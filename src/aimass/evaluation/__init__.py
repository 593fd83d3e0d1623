"""The evaluation center: holdout metrics, the gate and its reports."""
