"""Training checkpoints that a kill cannot leave half-written for a resume to trip on.

transformers writes a checkpoint file by file into `checkpoint-N/` (weights, optimizer,
scheduler, RNG state, trainer_state.json last) and then deletes older ones. A kill, a full
disk or a power loss in between leaves a folder that looks like the newest checkpoint and
cannot be loaded. So a checkpoint counts only once it is certified: every file fsynced, then
a manifest of the files and their sizes written atomically. The older ones are deleted only
after that (`rotate`), so a complete checkpoint exists at every moment. A resume takes the
newest certified checkpoint and removes the uncertified ones after it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec

from halo_forge.atomic import fsync_dir, write_atomic

MANIFEST = "halo_checkpoint.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    step: int
    files: dict[str, int]  # path relative to the checkpoint -> size in bytes


def checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-N folders, newest (highest N) first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir()
             if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def certify(folder: Path) -> None:
    """Makes a fully written checkpoint durable and marks it complete."""
    files = _files(folder)
    for rel in files:
        fd = os.open(folder / rel, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for d in {(folder / rel).parent for rel in files}:
        fsync_dir(d)
    m = _NAME.match(folder.name)
    manifest = Manifest(step=int(m.group(1)) if m else -1, files=files)
    write_atomic(folder / MANIFEST, msgspec.json.encode(manifest))


def is_complete(folder: Path, *, legacy: bool = False) -> bool:
    """Certified, and every file it lists is there at its size. `legacy`: a run from before
    manifests, where trainer_state.json (written last) is the only sign of completion."""
    path = folder / MANIFEST
    if not path.exists():
        return legacy and (folder / "trainer_state.json").is_file()
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    for rel, size in manifest.files.items():
        try:
            if (folder / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def last_complete(run_dir: Path, *, log: Callable[[str], None] = lambda line: None,
                  remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint of a run; the incomplete ones newer than it are removed
    (so that neither the Trainer's resume nor its rotation ever picks one)."""
    found = checkpoints(run_dir)
    legacy = not any((p / MANIFEST).exists() for p in found)
    for folder in found:
        if is_complete(folder, legacy=legacy):
            if legacy and remove_incomplete:
                certify(folder)  # from here on it counts (and rotates) like any other
            return folder
        log(f"{folder}: incomplete checkpoint (the run stopped while writing it); "
            + ("removing it" if remove_incomplete else "skipping it"))
        if remove_incomplete:
            shutil.rmtree(folder, ignore_errors=True)
    return None


def rotate(run_dir: Path, *, keep: int | None) -> None:
    """Keeps the `keep` newest complete checkpoints and deletes every other one, torn ones
    included (None or 0: delete nothing)."""
    if not keep:
        return
    found = checkpoints(run_dir)
    kept = [p for p in found if is_complete(p)][:keep]
    for folder in found:
        if folder not in kept:
            shutil.rmtree(folder, ignore_errors=True)
