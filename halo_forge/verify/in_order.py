"""Results that finish in any order, handed on in input order with bounded memory.

`verify` runs samples concurrently, so verdicts finish out of order; its output must still be
in input order (line N answers line N). A reorder buffer alone grows without bound behind one
slow sample (a 10 s timeout while thousands of fast ones finish), so the input is also held
back: no item is let in more than `window` places ahead of the oldest one not yet handed on.
The oldest is always in flight, so holding back never stalls the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")
R = TypeVar("R")


class InOrder(Generic[T, R]):
    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._held: dict[int, R] = {}
        self._next = 0  # index of the oldest result not yet handed on
        self._let_in = 0
        self._room = anyio.Event()
        self.most_held = 0  # the largest number of results waiting at once (for tests)

    async def gate(self, items: Iterable[T]) -> AsyncIterator[T]:
        """`items`, each let in only while it is less than `window` places ahead."""
        for item in items:
            while self._let_in - self._next >= self.window:
                await self._room.wait()
                self._room = anyio.Event()
            self._let_in += 1
            yield item

    def put(self, index: int, result: R) -> list[R]:
        """Takes the result of item `index`; returns the results now due, in order."""
        self._held[index] = result
        self.most_held = max(self.most_held, len(self._held))
        due = []
        while self._next in self._held:
            due.append(self._held.pop(self._next))
            self._next += 1
        if due:
            self._room.set()
        return due
