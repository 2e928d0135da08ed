"""The embedded broker: kombu's filesystem transport, with one fix and one speed-up.

The fix: kombu writes a message file in place (open, lock, write). A consumer polling the folder
can move and read the file between the open and the write, get an empty message and drop it,
leaving the run queued. Here the message is written under a hidden name first and renamed into
place, so a consumer only ever sees complete messages (rename is atomic within one filesystem).

The speed-up: kombu's consumer sleeps `polling_interval` between empty looks at the folder, so a
run waits for the next look (half the interval on average, 50 ms at the default). On Linux the
consumer here sleeps on an inotify watch of the folder instead, and wakes as soon as a message is
renamed into it; the interval stays as the fallback (a folder shared over NFS gets no events for
files written by other hosts, so those are still found by polling).

One waker: every watching consumer wakes for every new file, and each then listed the folder to
look for a message only one of them can take, which cost a second worker more CPU than it saved.
Here the idle consumers of one set of queues take turns instead (:class:`ListenerTurn`, an
``flock`` on a file in the folder): the one holding the turn lists the folder; the others only try
to take the turn when they wake. Whoever takes a message passes the turn on before running it, and
touches a file in the folder so that a waiting consumer wakes and takes the turn.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import uuid
from time import sleep

from celery.worker import state as worker_state
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport.virtual.base import Empty
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

try:
    import inotify_simple
except ImportError:  # not Linux: poll only
    inotify_simple = None

from time import monotonic

log = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot keeps the half-written file out of the consumer's queue match.
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb", buffering=0) as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.rename(temporary, final)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class FolderWatch:
    """Sleeps until a file is renamed (or written) into ``folder``, or the timeout passes."""

    def __init__(self, folder: str) -> None:
        self._inotify = inotify_simple.INotify()
        self._inotify.add_watch(folder, inotify_simple.flags.MOVED_TO | inotify_simple.flags.CLOSE_WRITE)

    def sleep(self, seconds: float) -> set[str]:
        """The names of the files that arrived (none: the time passed)."""
        # Events since the last look are queued in the kernel, so a message that arrived between
        # that look and this call wakes us at once. Reading drains them all.
        return {event.name for event in self._inotify.read(timeout=max(0, int(seconds * 1000)))}

    def close(self) -> None:
        self._inotify.close()


TURN_PASSED = ".turn-passed"  # touched when a turn is passed on; hidden, so never taken for a message


class ListenerTurn:
    """Which of the idle consumers of one set of queues lists the folder: the one holding an
    exclusive ``flock`` on ``.listening-<queues>.lock`` there. The kernel drops the lock of a process
    that dies; consumers of other queues have their own turn, since they look for other messages."""

    def __init__(self, folder: str, queues: list[str]) -> None:
        key = hashlib.sha256("\n".join(sorted(set(queues))).encode()).hexdigest()[:16]
        self._fd = os.open(os.path.join(folder, f".listening-{key}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._passed = os.path.join(folder, TURN_PASSED)
        self.held = False

    def take(self) -> bool:
        """Whether this consumer holds the turn (taking it if it is free)."""
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
        return True

    def pass_on(self) -> None:
        """Give the turn up and wake the waiting consumers, one of which takes it."""
        if self.held:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.held = False
        try:
            os.close(os.open(self._passed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
        except OSError:  # the waiting consumers still find the turn free at their next look
            pass

    def close(self) -> None:
        os.close(self._fd)  # releases the lock with it
        self.held = False


def _shutdown_asked() -> bool:
    # The flags hold the exit code, 0 (EX_OK) included: set means neither None nor False, as
    # celery.worker.state.maybe_shutdown reads them.
    flags = (worker_state.should_stop, worker_state.should_terminate)
    return any(flag is not None and flag is not False for flag in flags)


class Transport(filesystem.Transport):
    Channel = Channel

    _watch: FolderWatch | None = None
    _watch_failed = False
    _turn: ListenerTurn | None = None
    _turn_queues: tuple[str, ...] = ()

    def _folder_watch(self) -> FolderWatch | None:
        if self._watch is None and not self._watch_failed and inotify_simple is not None:
            folder = self.client.transport_options.get("data_folder_in")
            try:
                os.makedirs(folder, exist_ok=True)  # kombu creates it only on the first message
                self._watch = FolderWatch(folder)
            except (OSError, TypeError) as exc:  # no folder yet, out of watches, not supported
                self._watch_failed = True
                log.warning("folder broker: cannot watch %s (%s); polling it instead", folder, exc)
        return self._watch

    def _listener_turn(self) -> ListenerTurn | None:
        """The turn of this consumer's set of queues (none without a folder watch: then every
        consumer polls, as kombu's do)."""
        queues = tuple(sorted({queue for channel in self.channels for queue in channel._active_queues}))
        if self._turn is not None and self._turn_queues != queues:  # consuming other queues now
            self._turn.close()
            self._turn = None
        if self._turn is None and queues and self._watch is not None:
            try:
                self._turn = ListenerTurn(self.client.transport_options.get("data_folder_in"), list(queues))
                self._turn_queues = queues
            except OSError as exc:
                log.warning("folder broker: cannot take turns listening (%s); every consumer looks", exc)
        return self._turn

    def drain_events(self, connection, timeout=None):
        """kombu's loop (virtual.Transport.drain_events), sleeping on the folder watch when there is
        one, and listing the folder only in this consumer's turn."""
        watch = self._folder_watch()
        turn = self._listener_turn()
        started = monotonic()
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        look = True
        while True:
            if _shutdown_asked():
                # Celery's signal handler only sets a flag, which its loop reads when this returns:
                # without this look, a worker told to stop slept out the loop's 2 s timeout first,
                # and could take another run meanwhile.
                raise TimeoutError()
            holding = turn is None or turn.held
            if turn is None or turn.take():
                look = look or not holding  # a turn just taken: look, whatever woke us
                if look:
                    try:
                        self.cycle.get(self._deliver_in_turn if turn is not None else self._deliver, timeout=timeout)
                    except Empty:
                        pass
                    else:
                        break
            if timeout is not None and monotonic() - started >= timeout:
                raise TimeoutError()
            if interval is None:
                continue
            if watch is None:
                sleep(interval)
                continue
            arrived = watch.sleep(interval)
            # A turn passed on between others is no news for the consumer holding the turn (or
            # holding it now); nothing arrived at all is the polling fallback: look.
            look = not arrived or not arrived <= {TURN_PASSED}

    def _deliver_in_turn(self, message, queue):
        self._turn.pass_on()  # before the task runs: an idle consumer looks for the next message meanwhile
        self._deliver(message, queue)

    def close_connection(self, connection):
        if self._turn is not None:
            self._turn.close()
            self._turn = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        super().close_connection(connection)


def install() -> None:
    """Make "filesystem://" broker URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "mlopen.core.broker:Transport"
