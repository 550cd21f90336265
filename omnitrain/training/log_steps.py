"""Whether this step's metrics get written: what is only read by the loggers (and the
progress bar, which shows the last logged value) is logged on those steps only, as each
``LightningModule.log`` call costs host time and some need every rank."""

from __future__ import annotations

from typing import Any


def will_log(trainer: Any) -> bool:
    """Lightning's own rule for the current (or coming) step; True without a Trainer."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))
