"""Nothing but runs/lifecycle.py changes a run's status: a write anywhere else in src/mlopen fails here,
naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import mlopen

SOURCE = Path(mlopen.__file__).parent
LIFECYCLE = SOURCE / "runs" / "lifecycle.py"
# Calls that write the fields given as keywords (a queryset's update, a manager's create or
# update_or_create); `filter(status=...)` only reads.
WRITING_CALLS = {"update", "update_or_create", "get_or_create", "create", "bulk_update"}


def status_writes(source: str) -> list[int]:
    """Lines of ``source`` that write a ``status`` field: ``.update(status=...)`` and the like,
    ``defaults={"status": ...}``, or ``run.status = ...`` (``self.status`` of an exception is not a run)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITING_CALLS:
            for keyword in node.keywords:
                if keyword.arg == "status":
                    lines.append(node.lineno)
                elif (
                    keyword.arg == "defaults"
                    and isinstance(keyword.value, ast.Dict)
                    and any(isinstance(key, ast.Constant) and key.value == "status" for key in keyword.value.keys)
                ):
                    lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "status"
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    lines.append(node.lineno)
    return sorted(set(lines))


def test_the_scan_finds_the_status_writes_of_lifecycle_itself():
    # Otherwise the test below would pass by finding nothing anywhere.
    assert len(status_writes(LIFECYCLE.read_text())) >= 4


def test_the_scan_catches_each_way_of_writing_a_status():
    source = """
Run.objects.filter(pk=1, status="queued").update(status="running")
Run.objects.update_or_create(pk=1, defaults={"status": "failed"})
run.status = "failed"
Run.objects.filter(status="running").update(log="only reads status")
self.status = 409
"""
    assert status_writes(source) == [2, 3, 4]


def test_no_module_but_lifecycle_writes_a_runs_status():
    writers = [
        f"{path.relative_to(SOURCE.parent)}:{line}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path != LIFECYCLE and "migrations" not in path.parts
        for line in status_writes(path.read_text())
    ]

    assert writers == [], f"Run.status is written outside runs/lifecycle.py: {', '.join(writers)}"
