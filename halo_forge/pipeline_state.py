"""Per-stage state files: OUTPUT/state/<stage>.json = the stage's config values, its hash,
its phase and, once finished, `done` and its result. Written atomically (temp, fsync, rename),
so after kill -9 a state file is the old one or the new one, never half of each.

A rerun skips every done stage whose config is unchanged; a stage that ran (or started) with
other values is refused with the changed keys named, and the two ways forward.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.atomic import write_atomic
from halo_forge.config import changed_keys, digest
from halo_forge.errors import HaloError


class StageState(msgspec.Struct, kw_only=True):
    stage: str
    config_hash: str
    config: dict[str, Any] = {}
    phase: str = ""  # how far an unfinished stage got (e.g. "verified", "trained")
    done: bool = False
    result: dict[str, Any] = {}
    updated_at: str = ""


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        self._decoder = msgspec.json.Decoder(StageState)

    def path(self, stage: str) -> Path:
        return self.root / f"{stage}.json"

    def load(self, stage: str) -> StageState | None:
        p = self.path(stage)
        if not p.exists():
            return None
        try:
            return self._decoder.decode(p.read_bytes())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise HaloError(f"{p}: unreadable stage state ({exc}); remove it to redo the "
                            "stage") from None

    def save(self, state: StageState) -> None:
        state.updated_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_atomic(self.path(state.stage), msgspec.json.format(msgspec.json.encode(state)))

    def begin(self, stage: str, values: dict[str, Any], *, label: str,
              force_hint: str) -> StageState:
        """The stage's state: the stored one when its config matches, a new one when there is
        none; a stored state with other values is an error naming the changed keys."""
        old = self.check(stage, values, label=label, force_hint=force_hint)
        return old or StageState(stage=stage, config_hash=digest(values), config=values)

    def check(self, stage: str, values: dict[str, Any], *, label: str,
              force_hint: str) -> StageState | None:
        """The stored state (None when there is none); an error when it ran with other values."""
        h = digest(values)
        old = self.load(stage)
        if old is not None and old.config_hash != h:
            keys = changed_keys(old.config, values)
            shown = ", ".join(
                f"{k} ({old.config.get(k, '<unset>')!r} -> {values.get(k, '<unset>')!r})"
                for k in keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            what = "finished" if old.done else "started"
            raise HaloError(
                f"{label} {what} with a different config: {shown}; to keep the earlier results "
                f"use a new output.dir (--output), or rerun with --force-stage {force_hint} to "
                f"redo it and every stage after it")
        return old

    def clear(self, stage: str) -> None:
        self.path(stage).unlink(missing_ok=True)

    def stages(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json"))
