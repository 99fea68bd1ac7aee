"""Fault injection for crash tests: a run that dies at a named point, as a kill would.

`HALO_FAULT=point[@n]` makes the n-th arrival (default: the first) of this process at
`point(name)` send `HALO_FAULT_SIGNAL` (KILL, INT, TERM or STOP; default KILL) to the process
itself. KILL ends it there, as `kill -9` would; INT and TERM go through the run's own signal
handling and stop it at the next safe point, as Ctrl-C would; STOP freezes it there until a
test has changed the world under it (filled its disk, say) and sends SIGCONT. Unset (every real run), a point
costs one comparison.

The points a run passes, in order, are listed in tests/test_crash_matrix.py; a point's name
says where it is (`<stage>.<moment>`), never how the code around it is written.
"""

from __future__ import annotations

import os
import signal
import time

_SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM,
            "STOP": signal.SIGSTOP}


def _parse(spec: str) -> tuple[str, int]:
    name, _, nth = spec.partition("@")
    return name, int(nth) if nth else 1


_TARGET, _NTH = _parse(os.environ.get("HALO_FAULT", ""))
_SIGNAL = _SIGNALS[os.environ.get("HALO_FAULT_SIGNAL", "KILL").upper()]
_seen = 0


def point(name: str) -> None:
    """A place where a crash test may stop this process."""
    global _seen
    if not _TARGET or name != _TARGET:
        return
    _seen += 1
    if _seen != _NTH:
        return
    os.kill(os.getpid(), _SIGNAL)
    if _SIGNAL == signal.SIGKILL:  # delivery is asynchronous: never run past the point
        while True:
            time.sleep(1)
