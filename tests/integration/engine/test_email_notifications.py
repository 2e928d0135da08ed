"""E-mail with a real worker: a run that ends sends its owner the message they chose, from the
worker (Django's file backend writes each message to a folder this test reads), never inline.
"Failures only" ignores a success; a pipeline's own choice wins over the default."""

from __future__ import annotations

import email
import email.header
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

MAIL_DIR = Path(tempfile.mkdtemp(prefix="mlopen-test-mail-"))
WORKER_ENV = {"EMAIL_URL": f"file://{MAIL_DIR}", "MLOPEN_BASE_URL": "https://mlopen.example"}

QUICK = """
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        return {"columns": ["n"], "data": [[1]]}
    """
BROKEN = """
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        raise ValueError("the data has no column named n")
    """


@pytest.fixture(scope="module", autouse=True)
def mailbox_removed_at_the_end():
    yield
    shutil.rmtree(MAIL_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def empty_mailbox(api):
    for path in MAIL_DIR.iterdir():
        path.unlink()
    api.user.email = "root@example.org"
    api.user.save(update_fields=["email"])


def _messages(count: int, timeout: float = 30.0, settle: float = 0.0) -> list[email.message.Message]:
    """The messages the worker wrote, once there are ``count`` (then ``settle`` more seconds for any
    that should not come)."""
    deadline = time.monotonic() + timeout
    while len(_written()) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(settle)
    return [email.message_from_bytes(raw) for raw in _written()]


def _written() -> list[bytes]:
    """The messages written whole, oldest first. Django's file backend creates a message's file
    before it writes into it, and ends each message with a line of 79 dashes: a file read before
    that line is still being written (a CI run once read one empty)."""
    separator = b"\n" + b"-" * 79 + b"\n"
    written = []
    for path in sorted(MAIL_DIR.iterdir(), key=lambda p: p.stat().st_mtime):
        content = path.read_bytes()
        if separator in content:
            written.append(content.split(separator)[0])
    return written


def _subject(message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def test_a_finished_run_sends_its_owner_an_email_from_the_worker(
    api, pipeline_from, submit, module_worker, wait_for_run
):
    from mlopen.notifications.preferences import set_preference

    set_preference(api.user, email="all")
    pipeline_from("quick", QUICK)
    run = submit("quick")
    wait_for_run(run["id"])

    (message,) = _messages(1)
    assert _subject(message) == f"✓ run #{run['id']} succeeded: quick (run)"
    assert message["To"] == "root@example.org"
    body = message.get_payload(decode=True).decode()
    assert f"https://mlopen.example/runs/{run['id']}/" in body
    assert "https://mlopen.example/account/notifications/" in body
    assert "mlopen.send_run_email" in module_worker.log_text()  # sent by the worker's task


def test_failures_only_skips_a_success_and_tells_a_failure(api, pipeline_from, submit, module_worker, wait_for_run):
    from mlopen.notifications.preferences import set_preference

    set_preference(api.user, email="failures")
    pipeline_from("quick", QUICK)
    pipeline_from("broken", BROKEN)
    wait_for_run(submit("quick")["id"])
    failed = submit("broken")
    assert wait_for_run(failed["id"]).status == "failed"

    messages = _messages(1, settle=2.0)
    assert [_subject(m) for m in messages] == [f"✗ run #{failed['id']} failed: broken (run)"]
    assert "the data has no column named n" in messages[0].get_payload(decode=True).decode()


def test_a_pipelines_own_choice_beats_the_default(api, pipeline_from, submit, module_worker, wait_for_run):
    from mlopen.notifications.preferences import set_preference

    quick = pipeline_from("quick", QUICK)
    pipeline_from("other", QUICK)
    set_preference(api.user, email="off")
    set_preference(api.user, pipeline=quick["id"], email="all")
    wait_for_run(submit("other")["id"])
    chosen = submit("quick")
    wait_for_run(chosen["id"])

    messages = _messages(1, settle=2.0)
    assert [_subject(m) for m in messages] == [f"✓ run #{chosen['id']} succeeded: quick (run)"]
