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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only when the block ends without an exception:
    written to a temp file beside it, fsynced, renamed over `path`, directory fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)
