"""Who may do what to a run: the one place pages and the API ask.

- **See it** (its log, result, downloads): its owner and admins (``RunQuerySet.visible_to``), and
  whoever it is shared with.
- **Cancel or share it**: its owner and admins (``RunQuerySet.manageable_by`` for
  many, :func:`can_manage` for one).
"""

from __future__ import annotations

from mlopen.runs.models import Run


def can_manage(user, run: Run) -> bool:
    return user.is_authenticated and (user.is_superuser or run.owner_id == user.pk)
