"""The embedded broker: kombu's filesystem transport, with one fix.

kombu writes a message file in place (open, lock, write). A consumer polling the folder can move
and read the file between the open and the write, get an empty message and drop it, leaving the
run queued. Here the message is written under a hidden name first and renamed into place, so a
consumer only ever sees complete messages (rename is atomic within one filesystem).
"""

from __future__ import annotations

import os
import uuid

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

try:
    from time import monotonic
except ImportError:  # pragma: no cover
    from time import time as monotonic


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
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


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make "filesystem://" broker URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "mlopen.core.broker:Transport"
