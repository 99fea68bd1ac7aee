"""Atomic file writes: a reader (or a rerun after kill -9) sees the old file or the new one,
never half of one. Every stage records its outputs and its completion through here.

The writes that keep a protocol of their own say why where they are: the shard writer
(files that stay open and roll over, shards.py) and verify's partial file (resumable by a
rerun, verify/partial.py). Folders (a PCH, an adapter, the tiny model) and files another
program writes (a compiled guard object) are published by renaming the finished thing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Makes a rename inside `path` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A binary file that appears at `path` only on commit(): written to a temp file beside
    it, fsynced, renamed over `path`, directory fsynced; discard() leaves `path` as it was.
    For a writer that outlives one block (a log filled as results arrive); atomic_open is the
    block form."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.file: BinaryIO = open(self._tmp, "wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.file.close()
        self._tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only when the block ends without an exception."""
    out = AtomicFile(path)
    try:
        yield out.file
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)
