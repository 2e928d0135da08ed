"""InputFile: the dataset object handed to pipelines as `input` and for file params.

It behaves like the Django FieldFile the original mlopen handed out, because pipelines call
`input.open("r")` then iterate, `readlines()`, `read()`, or `pandas.read_csv(input)`.
Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

_CHUNK_SIZE = 64 * 1024
# Where the original served uploads from (its MEDIA_URL); `url` names the file under it.
MEDIA_URL = "/user_data/"


class InputFile:
    def __init__(self, path: str, name: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.name = name or os.path.basename(path)
        self._file: IO[str] | IO[bytes] | None = None
        self._closed = False  # by close(); a file never opened is not closed: reading opens it

    def __repr__(self) -> str:
        return f"<InputFile {self.name}>"

    def __str__(self) -> str:
        # FieldFile's: pipelines build paths with os.path.join("mlopenapp/data/user_data/", str(input)).
        return self.name

    def __bool__(self) -> bool:
        # As FieldFile: a file with a name is true, even an empty one (len() is its size).
        return bool(self.name)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        # FieldFile compares by name, with another file or with a string.
        return self.name == getattr(other, "name", other)

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def size(self) -> int:
        return os.path.getsize(self.path)

    @property
    def url(self) -> str:
        return MEDIA_URL + self.name

    @property
    def file(self) -> IO[str] | IO[bytes]:
        """The open file underneath (opened in binary mode if it is not yet), as FieldFile.file."""
        return self._opened()

    @property
    def mode(self) -> str:
        # pandas reads `mode` to decide whether to wrap the object in a text decoder.
        return self._file.mode if self._file else "rb"

    @property
    def closed(self) -> bool:
        # pandas 2 (the default runtime's) wraps a binary handle in io.TextIOWrapper, which refuses
        # one that says it is closed: a file not opened yet is open for reading, as it opens on use.
        return self._closed if self._file is None else self._file.closed

    def open(self, mode: str = "rb") -> InputFile:
        """(Re)open from the start; returns self, as FieldFile.open does."""
        self.close()
        encoding = None if "b" in mode else "utf-8"
        self._file = open(self.path, mode, encoding=encoding)
        self._closed = False
        return self

    def extract(self, destination: str | None = None) -> str:
        """Extract a zip dataset into a folder (checked entry by entry); return the folder's path."""
        from mlopen_runner.archives import extract_zip  # noqa: PLC0415 - zipfile only when asked: ~6 ms off every child's start

        target = destination or os.path.join(os.getcwd(), "extracted", os.path.splitext(os.path.basename(self.name))[0])
        return extract_zip(self.path, target)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._closed = True

    def flush(self) -> None:
        """Nothing to write (io.TextIOWrapper flushes its buffer when pandas 2 is done with it)."""

    def read(self, size: int = -1) -> str | bytes:
        return self._opened().read(size)

    def readline(self, size: int = -1) -> str | bytes:
        return self._opened().readline(size)

    def readlines(self, hint: int = -1) -> list[str] | list[bytes]:
        return self._opened().readlines(hint)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._opened().seek(offset, whence)

    def tell(self) -> int:
        return self._opened().tell()

    def chunks(self, chunk_size: int = _CHUNK_SIZE) -> Iterator[str | bytes]:
        """The whole file from the start, in pieces (FieldFile.chunks)."""
        self.seek(0)
        while chunk := self.read(chunk_size):
            yield chunk

    def multiple_chunks(self, chunk_size: int | None = None) -> bool:
        """Whether chunks() would give more than one piece (FieldFile.multiple_chunks)."""
        return self.size > (chunk_size or _CHUNK_SIZE)

    def __iter__(self) -> Iterator[str | bytes]:
        return iter(self._opened())

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # FieldFile answers these too, and io.TextIOWrapper(input) needs them.
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def _opened(self) -> IO[str] | IO[bytes]:
        # Like FieldFile, reading an unopened file opens it in binary mode.
        if self._file is None or self._file.closed:
            self.open("rb")
        assert self._file is not None  # open() set it
        return self._file
