"""Operating-system failures a user can fix, named as such instead of shown as a traceback.

A full disk surfaces in many spellings: OSError ENOSPC from our own writes, a RuntimeError
from torch's zip writer ("PytorchStreamWriter failed writing file ...: file write failed"),
a safetensors error carrying "os error 28". So the test is the errno where there is one, and
otherwise a write failure seen while the run's filesystem has (almost) no space left: that
asks the disk, not the message's wording.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from halo_forge.errors import HaloError

_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_WRITE_FAILED = ("no space left", "file write failed", "os error 28", "storagefull",
                 "write failed", "unexpected pos")
LOW_SPACE = 16 << 20  # below this, a failed write is the disk's fault


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(path: Path) -> int:
    for candidate in (path, *path.absolute().parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def largest_checkpoint(folder: Path) -> int:
    """The size of the biggest checkpoint-N folder under `folder`: what one more save needs."""
    sizes = [0]
    if folder.is_dir():
        for ckpt in folder.rglob("checkpoint-*"):
            if ckpt.is_dir():
                sizes.append(sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()))
    return max(sizes)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= (1 << 20) else f"{n / 1024:.0f} KB"


def user_error(exc: BaseException, folder: Path) -> HaloError | None:
    """A one-line HaloError when `exc` is a full disk or an unwritable place under the run's
    `folder`; None when it is something else (a bug keeps its traceback)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _FULL:
            return disk_full(Path(e.filename) if e.filename else folder, folder)
        if isinstance(e, OSError) and e.errno in _READ_ONLY and e.filename:
            return HaloError(f"cannot write {e.filename}: {e.strerror}; make it writable or "
                             "choose another output.dir (--output), then rerun to resume")
    for e in _chain(exc):
        text = str(e).lower()
        if isinstance(e, (RuntimeError, OSError)) or "safetensor" in type(e).__name__.lower():
            if any(w in text for w in _WRITE_FAILED) and free_bytes(folder) < LOW_SPACE:
                return disk_full(folder, folder)
    return None


def disk_full(path: Path, folder: Path) -> HaloError:
    free = free_bytes(path)
    need = max(largest_checkpoint(folder), 64 << 20)
    where = path if path != folder else folder
    return HaloError(f"disk full: writing {where} failed, {_mb(free)} free on its filesystem "
                     f"(the next save needs about {_mb(need)}); free space and rerun the same "
                     "command to resume")

