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
"""

from __future__ import annotations

import logging
import os
import uuid
from time import sleep

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

    def sleep(self, seconds: float) -> None:
        # Events since the last look are queued in the kernel, so a message that arrived between
        # that look and this call wakes us at once. Reading drains them all.
        self._inotify.read(timeout=max(0, int(seconds * 1000)))

    def close(self) -> None:
        self._inotify.close()


class Transport(filesystem.Transport):
    Channel = Channel

    _watch: FolderWatch | None = None
    _watch_failed = False

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

    def drain_events(self, connection, timeout=None):
        """kombu's loop (virtual.Transport.drain_events), sleeping on the folder watch when there is one."""
        watch = self._folder_watch()
        started = monotonic()
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                if interval is not None:
                    watch.sleep(interval) if watch is not None else sleep(interval)
            else:
                break

    def close_connection(self, connection):
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        super().close_connection(connection)


def install() -> None:
    """Make "filesystem://" broker URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "mlopen.core.broker:Transport"
