"""The verdict cache: identical work (same toolchain, flags, limits, source and tests) is done
once. RAFT samples repeat often (the same short program from many seeds), so this is the
cheapest speed-up the verifier has.

Entries live in memory for the run and, with a path, in a sqlite file that later runs reuse.
Concurrent identical samples wait for the first one instead of verifying it again.
sandbox_error verdicts are never stored: infrastructure failures are not facts about a program.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import msgspec

from halo_forge.records import Verdict

# Bump when the meaning of a stored verdict changes (statuses, reward rules of the runner).
CACHE_FORMAT = 1

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Verdict)


def cache_key(*parts: object) -> str:
    """A stable hash of msgspec-encodable parts (strings, Structs, lists)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(str(CACHE_FORMAT).encode())
    for part in parts:
        data = _encoder.encode(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class CacheStats(msgspec.Struct, kw_only=True):
    lookups: int = 0
    hits: int = 0  # served from memory, disk, or by waiting for an identical sample in flight

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class VerdictCache:
    """In-memory verdict cache with an optional sqlite file behind it."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._memory: dict[str, Verdict] = {}
        self._in_flight: dict[str, anyio.Event] = {}
        self.stats = CacheStats()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict BLOB NOT NULL)"
                )
            except sqlite3.DatabaseError as exc:
                from halo_forge.errors import HaloError

                raise HaloError(f"verdict cache {path}: {exc} (delete the file or pick another --cache)") from None

    def get(self, key: str) -> Verdict | None:
        verdict = self._memory.get(key)
        if verdict is None and self._db is not None:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
            if row is not None:
                try:
                    verdict = _decoder.decode(row[0])
                except msgspec.DecodeError:
                    verdict = None  # written by an incompatible version: verify again
                else:
                    self._memory[key] = verdict
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if verdict.status == "sandbox_error":
            return
        self._memory[key] = verdict
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts (key, verdict) VALUES (?, ?)", (key, _encoder.encode(verdict))
            )

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[Verdict]]) -> tuple[Verdict, bool]:
        """The verdict for `key` and whether it came from the cache. Only one task computes a
        given key at a time; the others wait for it."""
        self.stats.lookups += 1
        while True:
            verdict = self.get(key)
            if verdict is not None:
                self.stats.hits += 1
                return verdict, True
            event = self._in_flight.get(key)
            if event is None:
                break
            # When the first one stored nothing (sandbox_error, cancelled), the loop computes.
            await event.wait()
        event = self._in_flight[key] = anyio.Event()
        try:
            verdict = await compute()
            self.put(key, verdict)
            return verdict, False
        finally:
            del self._in_flight[key]
            event.set()

    def __len__(self) -> int:
        return len(self._memory)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
