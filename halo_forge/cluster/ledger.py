"""Who holds which verification: the dispatcher's bookkeeping, free of Ray (unit-tested alone).

Each verification has a ticket. A ticket is held by one worker at a time; only its holder's
verdict is taken, and taking it ends the ticket, so a verdict is delivered exactly once: a
late one from a worker thought dead (its tickets handed to another since) finds another
holder, or none, and is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable


class Ledger:
    def __init__(self) -> None:
        self._holder: dict[int, str] = {}

    def assign(self, worker: str, tickets: Iterable[int]) -> None:
        for ticket in tickets:
            self._holder[ticket] = worker

    def deliver(self, worker: str, ticket: int) -> bool:
        """True when `worker` holds `ticket` (the ticket is then done); False for a duplicate."""
        if self._holder.get(ticket) != worker:
            return False
        del self._holder[ticket]
        return True

    def release(self, ticket: int) -> None:
        """The ticket's caller left (cancelled): whatever comes back for it is dropped."""
        self._holder.pop(ticket, None)

    def lost(self, worker: str) -> list[int]:
        """The tickets `worker` still holds, in the order given, now held by no one (to be
        sent to another worker)."""
        tickets = [t for t, w in self._holder.items() if w == worker]
        for ticket in tickets:
            del self._holder[ticket]
        return tickets

    def held(self, worker: str) -> int:
        return sum(1 for w in self._holder.values() if w == worker)

    def __len__(self) -> int:
        return len(self._holder)


__all__ = ["Ledger"]
