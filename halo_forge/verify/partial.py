"""The unfinished verdicts file of `halo-forge verify`, and resuming from it.

Verdicts go to `.OUT.KEY.partial` beside `--out`, one flushed line per verdict, and the file is
renamed to `--out` when every sample has one. KEY is a digest of the input file's bytes, the
options that decide a verdict and the halo-forge version, so:
- a rerun of the same command after a kill, Ctrl-C or SIGTERM keeps the verdicts already
  written and verifies only the rest (the same bytes under the same options give the same
  verdict, so nothing is trusted that a fresh run would not produce);
- a partial file of another input or other options is never resumed: it is removed once its
  writer is gone.
The writer holds an flock on its partial file for its whole life, so "its writer is gone" needs
no pid (the kernel drops the lock when the process dies, SIGKILL included), and a second
`verify` to the same `--out` while one runs is refused instead of racing it to the rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from halo_forge.atomic import fsync_dir
from halo_forge.errors import HaloError
from halo_forge.records import Verdict

# Options that do not change a verdict; every other VerifierConfig field is part of the key.
_NOT_IN_KEY = ("concurrency", "cache", "cache_path")


def resume_key(source: Path, config: msgspec.Struct) -> str:
    """Digest of what decides the verdicts: the input's bytes, the verdict options, the version."""
    from halo_forge import __version__

    options = {k: v for k, v in msgspec.to_builtins(config).items() if k not in _NOT_IN_KEY}
    h = hashlib.sha256()
    h.update(msgspec.json.encode([__version__, options]))
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def partial_path(out: Path, key: str) -> Path:
    return out.with_name(f".{out.name}.{key}.partial")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


class PartialVerdicts:
    """The locked partial file of one `verify` run: the verdicts it resumed, and appends."""

    def __init__(self, out: Path, key: str, ids: Sequence[str]) -> None:
        self.out = out
        self.path = partial_path(out, key)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise self._busy()
        self._file = os.fdopen(fd, "r+b")
        # Locked before looking at the others: of two writers starting at once, the later one
        # to look always finds the other's lock.
        try:
            self._sweep_others()
        except HaloError:
            if os.fstat(fd).st_size == 0:
                self.path.unlink(missing_ok=True)
            self.close()
            raise
        self.resumed: list[Verdict] = self._read(ids)

    def _busy(self) -> HaloError:
        return HaloError(f"verify --out {self.out}: another `halo-forge verify` is writing it "
                         "now; wait for it to finish or choose another --out")

    def _sweep_others(self) -> None:
        """Removes the partial files of other inputs or options whose writer is gone."""
        for other in self.out.parent.glob(f".{self.out.name}.*.partial"):
            if other == self.path:
                continue
            try:
                fd = os.open(other, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not _try_lock(fd):
                    raise self._busy()
                other.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def _read(self, ids: Sequence[str]) -> list[Verdict]:
        """The verdicts already in the file, which answer the input's first lines in order
        (`ids` is the input's ids in order): the file is cut after the last line that does, so
        a torn last line (a kill mid-write), or lines of another order, are verified again."""
        decoder = msgspec.json.Decoder(Verdict)
        kept: list[Verdict] = []
        good = 0
        self._file.seek(0)
        for line in self._file:
            if not line.endswith(b"\n") or len(kept) >= len(ids):
                break
            try:
                verdict = decoder.decode(line)
            except msgspec.DecodeError:
                break
            if verdict.id != ids[len(kept)]:
                break
            kept.append(verdict)
            good += len(line)
        self._file.truncate(good)
        self._file.seek(good)
        return kept

    def append(self, line: bytes) -> None:
        # Flushed per verdict: a SIGKILL loses at most the line being written.
        self._file.write(line)
        self._file.flush()

    def publish(self) -> None:
        """Renames the finished file to --out (durably) and releases it. Not through
        atomic.atomic_open: the partial file outlives its process (a rerun resumes it), is
        named by the run's options, and is checked to still be ours before the rename."""
        self._file.flush()
        os.fsync(self._file.fileno())
        # The rename goes by name: if the file was deleted under us and the name now holds
        # another run's partial file, renaming would publish that run's verdicts as ours.
        mine = os.fstat(self._file.fileno())
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            there = None
        if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            self.close()
            raise HaloError(f"verify --out {self.out}: {self.path} was removed while this run "
                            "wrote it, so its verdicts are lost; rerun the command")
        os.replace(self.path, self.out)
        fsync_dir(self.out.parent)
        self.close()

    def close(self) -> None:
        """Leaves the file for a rerun to resume (and releases the lock)."""
        with contextlib.suppress(OSError):
            self._file.close()
