"""First start: the bootstrap admin and the demo pipelines and datasets."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from mlopen.core.roles import ensure_roles, set_role
from mlopen.core.tokens import install_token
from mlopen.datasets.models import Dataset
from mlopen.datasets.services import store_dataset
from mlopen.pipelines.models import Pipeline
from mlopen.pipelines.services import IncomingFile, PipelineRejected, UploadRequest, upload_pipeline
from mlopen.runs import first_run

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
# What each demo pipeline is tried with: a newcomer's first Start, with the defaults, gets a result.
DEMO_EXAMPLES = {
    "data_explorer": {"run": "housing.csv"},
    "iris_knn": {"run": "iris.csv"},
    "sentiment": {"train": "reviews_train.csv", "run": "reviews_new.txt"},
}


def ensure_admin(stdout=print) -> tuple[str, str] | None:
    """Create the admin from MLOPEN_ADMIN_USER / _PASSWORD / _TOKEN, or `admin` with a generated password.

    Returns (user, password) when the admin was created now, the password empty when it came from
    MLOPEN_ADMIN_PASSWORD: `mlopen serve` shows them once, in its welcome box, after the workers are up."""
    User = get_user_model()
    username = os.environ.get("MLOPEN_ADMIN_USER") or "admin"
    password = os.environ.get("MLOPEN_ADMIN_PASSWORD")
    token = os.environ.get("MLOPEN_ADMIN_TOKEN")
    created: tuple[str, str] | None = None
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        if user is None:
            if not os.environ.get("MLOPEN_ADMIN_USER") and User.objects.filter(is_superuser=True).exists():
                return None  # an admin already exists and none was asked for
            generated = password is None
            password = password or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            created = (username, password if generated else "")
        elif password and not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        if token:
            # Stored hashed like any other; the admin's other tokens are left alone.
            install_token(user, token, "MLOPEN_ADMIN_TOKEN")
    ensure_roles()
    set_role(user, "admin")
    return created


def load_demo(stdout=print) -> None:
    """Register each demo pipeline and dataset that is not there yet (by name)."""
    User = get_user_model()
    owner = User.objects.filter(is_superuser=True).order_by("pk").first()
    if owner is None:
        return
    registered = []
    for folder in sorted((DEMO_DIR / "pipelines").iterdir()):
        control = folder / "control.py"
        if not control.exists() or Pipeline.objects.filter(name=folder.name).exists():
            continue
        support = [
            IncomingFile.from_path(p)
            for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in ("control.py", "description.txt") and not p.name.startswith(".")
        ]
        description = (folder / "description.txt").read_text().strip() if (folder / "description.txt").exists() else ""
        control_file = IncomingFile.from_path(control)
        control_file.name = f"{folder.name}.py"
        try:
            version = upload_pipeline(
                UploadRequest(
                    control=control_file,
                    support_files=support,
                    name=folder.name,
                    description=description,
                    input_required=True,  # every demo pipeline reads its input
                ),
                owner,
            )
        except PipelineRejected as exc:
            stdout(f"demo pipeline {folder.name} was refused: {exc.message}")
            continue
        Pipeline.objects.filter(pk=version.pipeline_id).update(is_demo=True)
        registered.append(version.pipeline)
    datasets = []
    for path in sorted((DEMO_DIR / "data").iterdir()):
        if not path.is_file() or Dataset.objects.filter(is_demo=True, filename=path.name).exists():
            continue
        with open(path, "rb") as handle:
            dataset = store_dataset(
                owner=owner, name=path.name, filename=path.name, chunks=iter(lambda: handle.read(1024 * 1024), b"")
            )
        Dataset.objects.filter(pk=dataset.pk).update(is_demo=True)
        datasets.append(path.name)
    if registered or datasets:
        names = ", ".join([p.name for p in registered] + datasets)
        stdout(f"mlopen: registered the demo pipelines and datasets: {names}")
    _set_demo_examples(owner, registered)


def _set_demo_examples(owner, pipelines: list[Pipeline]) -> None:
    """The examples of the demo pipelines registered now (an admin may change them afterwards)."""
    for pipeline in pipelines:
        for kind, filename in DEMO_EXAMPLES.get(pipeline.name, {}).items():
            dataset = Dataset.objects.filter(is_demo=True, filename=filename).order_by("pk").first()
            if dataset is not None:
                first_run.set_example(owner, pipeline, kind, dataset.pk)
