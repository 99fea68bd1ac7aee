"""One run per output folder: an exclusive lock that says who holds it.

Two runs on one folder would append to the same shards and train into the same checkpoints.
The lock is an flock on OUTPUT/.lock, so the kernel releases it however its holder dies: a
stale lock of a dead process is simply taken over, and there is no pid to guess about. The
file's text (pid, host, since when, the command) is only for the message the second run
prints. flock is per open file description, so a second Pipeline in the same process is
refused too.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path

import msgspec

from halo_forge.errors import HaloError

LOCK_FILE = ".lock"


class Holder(msgspec.Struct):
    pid: int
    host: str
    since: str
    command: str = ""


class RunLock:
    """`with RunLock(folder):` holds the folder for this process, or raises HaloError."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (f"pid {holder.pid} on {holder.host} since {holder.since}"
                   if holder else "another process")
            raise HaloError(f"{self.path.parent} is in use by {who} (a run holds its lock "
                            f"{self.path}); wait for that run to end or stop it, or choose "
                            "another output.dir (--output)") from None
        holder = Holder(pid=os.getpid(), host=socket.gethostname(),
                        since=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        command=" ".join(sys.argv)[:500])
        os.ftruncate(fd, 0)
        os.pwrite(fd, msgspec.json.encode(holder) + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: unlinking it would let a third run lock a new inode while a
            # second one still waits on the old.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> Holder | None:
    try:
        return msgspec.json.decode(os.pread(fd, 4096, 0).strip() or b"null",
                                   type=Holder | None)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
