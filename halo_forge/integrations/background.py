"""One Verifier per process, alive across a trainer's reward calls, on an event loop of its own.

Trainers call reward functions synchronously from their training loop (or, TRL, from an asyncio
loop of their own). Starting a sandbox per call would throw away what makes the verifier fast
(the warm Python template, precompiled headers, the verdict cache), and running the verifier on
the caller's loop would tie its sandbox to a loop the trainer may close or block. So the
Verifier lives on a private loop in a daemon thread; callers hand it a batch and wait on a
concurrent future, which an async caller awaits without blocking its own loop.

Under accelerate (or torchrun) each rank is a process of its own and gets its own sandbox; the
engine starts lazily on first use and restarts after a fork (the child inherits the thread's
memory, not the thread), so a reward object built before workers fork still works in each.
Nothing here talks to the other ranks: a rank never waits on another one's sandbox.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Sequence

from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.types import VerifySample

log = logging.getLogger(__name__)


class BackgroundVerifier:
    """`verify(samples)` (blocking) or `await averify(samples)`: verdicts in input order, the
    batch verified concurrently (config.concurrency, default the cores)."""

    def __init__(self, config: VerifierConfig | None = None) -> None:
        self.config = config or VerifierConfig()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._verifier = None
        atexit.register(self.close)

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                return self._loop
            # A forked child holds a copy of a loop whose thread does not exist here: drop it
            # (never close it: its sandbox's processes belong to the parent).
            self._loop = self._thread = self._verifier = None
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="halo-forge-verifier", daemon=True)
            thread.start()
            from halo_forge.verify.runner import Verifier

            verifier = Verifier(self.config)
            try:
                asyncio.run_coroutine_threadsafe(verifier.__aenter__(), loop).result()
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=5)
                raise
            self._loop, self._thread, self._verifier, self._pid = loop, thread, verifier, os.getpid()
            return loop

    async def _verify(self, samples: Sequence[VerifySample]) -> list[Verdict]:
        from halo_forge.verify.runner import verify_indexed

        out: list[Verdict | None] = [None] * len(samples)
        async with verify_indexed(list(samples), verifier=self._verifier,
                                  concurrency=self.config.concurrency) as pairs:
            async for index, verdict in pairs:
                out[index] = verdict
        return [v for v in out if v is not None]

    def submit(self, samples: Sequence[VerifySample]) -> concurrent.futures.Future[list[Verdict]]:
        loop = self._ensure()
        return asyncio.run_coroutine_threadsafe(self._verify(samples), loop)

    def verify(self, samples: Sequence[VerifySample]) -> list[Verdict]:
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundVerifier.verify called from its own loop: await averify")
        return self.submit(samples).result()

    async def averify(self, samples: Sequence[VerifySample]) -> list[Verdict]:
        """For a caller on an event loop: its loop keeps running while the batch is verified."""
        return await asyncio.wrap_future(self.submit(samples))

    def close(self) -> None:
        with self._lock:
            loop, thread, verifier = self._loop, self._thread, self._verifier
            mine = self._pid == os.getpid()
            self._loop = self._thread = self._verifier = None
        if loop is None or not mine:
            return
        try:
            asyncio.run_coroutine_threadsafe(verifier.aclose(), loop).result(timeout=30)
        except Exception as exc:  # closing at exit must never mask the run's own outcome
            log.warning("closing the verifier: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    def __getstate__(self) -> dict:
        # Ray / multiprocessing ship the object to workers: the config travels, the loop does not.
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])


_DEFAULT: dict[int, BackgroundVerifier] = {}
_DEFAULT_LOCK = threading.Lock()


def default_verifier() -> BackgroundVerifier:
    """The process's shared engine with the default VerifierConfig (verl's module functions)."""
    with _DEFAULT_LOCK:
        engine = _DEFAULT.get(os.getpid())
        if engine is None:
            engine = _DEFAULT[os.getpid()] = BackgroundVerifier()
        return engine
