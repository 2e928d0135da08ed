"""Who may do what to a dataset: the one place pages and the API ask.

- **See it and use it in a run**: its owner, admins, whoever it is shared with (everyone or one of
  their groups), and everyone for a demo dataset (``DatasetQuerySet.visible_to``).
- **Share or delete it**: its owner and admins (``DatasetQuerySet.manageable_by`` for many,
  :func:`can_manage` for one): a demo dataset is visible to everyone but theirs to remove.
"""

from __future__ import annotations

from mlopen.datasets.models import Dataset


def can_manage(user, dataset: Dataset) -> bool:
    return user.is_authenticated and (user.is_superuser or dataset.owner_id == user.pk)
