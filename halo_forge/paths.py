"""Output paths checked before any work: a stage that verifies or trains for an hour and then
cannot write its result (the path is a folder, the input itself, read-only, under /proc, below a
file) has wasted the hour, so every command that writes checks its outputs first.

The checks ask the file system rather than reading the spelling: they create and remove a
probe where the output will be written (beside a file, which is where atomic writes put their
temp file), so a read-only mount, a permission, procfs or sysfs, a symlink or `..` all give the
same answer the real write would get. A failed check is one HaloError naming the path and what
to do.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from halo_forge.errors import HaloError

_PROBE = ".halo-forge-probe-"


def check_output_dir(path: str | os.PathLike[str], *, what: str) -> Path:
    """The folder `path` exists or can be created, and files can be created in it.

    `what` names the setting in messages ("--output", "output.dir"). Creates nothing that
    stays: a missing folder is left for the stage to create."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise HaloError(f"{what} {path}: is a file, not a folder; choose a folder path")
    _probe(_nearest_dir(p, what, path), what, path, folder=True)
    return p


def check_output_file(path: str | os.PathLike[str], *, what: str,
                      input_paths: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """The file `path` can be written (created, or replaced by a rename beside it) and is none
    of `input_paths` (by identity: a symlink or a hard link to an input is that input)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise HaloError(f"{what} {path}: is a folder; name a file, e.g. "
                        f"{os.path.join(str(path), 'out.jsonl')}")
    for source in input_paths:
        if _same_file(p, Path(source).expanduser()):
            raise HaloError(f"{what} {path}: is the input {source}; writing it would replace "
                            "the input, so choose another file")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):  # the folder checks below name the cause
        st = None
    except OSError as exc:
        raise HaloError(f"{what} {path}: cannot be written ({exc.strerror}); choose another "
                        "path") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        # A device, pipe or socket: the rename that publishes the output would replace the
        # node itself (as root, /dev/null).
        raise HaloError(f"{what} {path}: is not a regular file; choose a file path")
    _probe(_nearest_dir(p.parent, what, path), what, path, folder=False)
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def _nearest_dir(p: Path, what: str, shown: object) -> Path:
    """The deepest existing ancestor of `p` (p itself when it exists); a file on the way is the
    error."""
    for candidate in (p, *p.absolute().parents):
        if candidate.is_dir():
            return candidate
        if candidate.exists() or candidate.is_symlink():
            raise HaloError(f"{what} {shown}: {candidate} is a file, so nothing can be created "
                            "under it; choose another path")
    return Path("/")


def _probe(directory: Path, what: str, shown: object, *, folder: bool) -> None:
    try:
        if folder:
            os.rmdir(tempfile.mkdtemp(prefix=_PROBE, dir=directory))
        else:
            fd, name = tempfile.mkstemp(prefix=_PROBE, dir=directory)
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HaloError(f"{what} {shown}: cannot create files in {directory} ({reason}); "
                        "choose a writable place") from None
