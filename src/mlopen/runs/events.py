"""What the run layer tells the apps above it, without importing them (docs/ARCHITECTURE.md).

``run_finished`` is sent once for each run that ended (succeeded, failed or cancelled), by every
way a run ends (``lifecycle._announce``), after its status was committed. Receivers get
``run_id``; one that fails is logged and never breaks the run's own path (``send_robust``).
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

run_finished = Signal()


def send_run_finished(run_id: int) -> None:
    for receiver, outcome in run_finished.send_robust(sender=None, run_id=run_id):
        if isinstance(outcome, Exception):
            log.error("run %s finished, but %r failed: %r", run_id, receiver, outcome, exc_info=outcome)
