"""Fixtures that run real control files through real child processes."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlopen_runner import Job, Outcome, execute, sandbox
from mlopen_runner.sandbox import sandbox_status

BUBBLEWRAP_WORKS = sandbox_status()["kind"] == "bubblewrap"


@dataclass
class Recorder:
    """Callbacks that remember everything and can ask to cancel after a delay."""

    cancel_after_s: float | None = None
    texts: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None

    def output(self, text: str) -> None:
        self.texts.append(text)

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def tick(self) -> bool:
        if self.cancel_after_s is None or time.monotonic() - self.started < self.cancel_after_s:
            return False
        self.cancel_requested_at = self.cancel_requested_at or time.monotonic()
        return True

    @property
    def log(self) -> str:
        return "".join(self.texts)


@dataclass
class Ran:
    outcome: Outcome
    recorder: Recorder
    job: Job
    finished_at: float

    @property
    def log(self) -> str:
        return self.recorder.log


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., str]:
    """Write a control file (and support files beside it); returns the control file's path."""

    def write(source: str, name: str = "control.py", files: dict[str, str] | None = None) -> str:
        folder = tmp_path / "pipeline"
        folder.mkdir(exist_ok=True)
        for file_name, text in (files or {}).items():
            (folder / file_name).write_text(textwrap.dedent(text))
        control = folder / name
        control.write_text(textwrap.dedent(source))
        return str(control)

    return write


@pytest.fixture
def run_job(tmp_path: Path) -> Callable[..., Ran]:
    """Execute a job in a fresh work folder; timeouts default short so a broken test cannot hang."""
    counter = iter(range(1000))

    def run(kind: str, control_path: str, cancel_after_s: float | None = None, **fields: Any) -> Ran:
        fields.setdefault("timeout_s", 30)
        job = Job(kind=kind, control_path=control_path, work_dir=str(tmp_path / f"work{next(counter)}"), **fields)
        recorder = Recorder(cancel_after_s)
        outcome = execute(job, recorder)
        return Ran(outcome, recorder, job, finished_at=time.monotonic())

    return run


@pytest.fixture
def data_file(tmp_path: Path) -> Callable[[str, str], dict[str, str]]:
    """A dataset file as Job.input describes it."""

    def make(text: str, name: str = "data.csv") -> dict[str, str]:
        path = tmp_path / "datasets" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return {"path": str(path), "name": f"datasets/{name}"}

    return make


@pytest.fixture
def requires_bubblewrap() -> None:
    if not BUBBLEWRAP_WORKS:
        pytest.skip(f"bubblewrap unavailable: {sandbox_status()['reason']}")


@pytest.fixture(params=["bubblewrap", "process"])
def sandbox_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test under each sandbox this machine offers."""
    if request.param == "bubblewrap":
        request.getfixturevalue("requires_bubblewrap")
    else:
        monkeypatch.setattr(sandbox, "_probe", lambda: sandbox._Probe("process", "chosen by the test"))
    return request.param
