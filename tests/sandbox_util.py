"""Helpers shared by the sandbox tests: leftovers checks and small hostile C programs."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# The interpreter a sandboxed run can start: a virtualenv's own bin/python may live under
# /tmp (a CI clone), which every run replaces with a tmpfs of its own; the interpreter the
# venv was made from is what the verifier runs too (verify/toolchains.py).
PYTHON = getattr(sys, "_base_executable", "") or sys.executable


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def is_spare(init: int) -> bool:
    """An init prepared for a future run: its one child, the program's process, still waits
    for the run (named hf-spare until it execs)."""
    try:
        kids = children(init)
    except OSError:
        return False
    return len(kids) == 1 and comm(kids[0]) == "hf-spare"


def zygote_children(pid: int, *, spares: bool = False) -> list[int]:
    """Live children of the zygote that are (or were) a run's init; empty when no run is in
    flight. The inits it keeps prepared for future runs count only with `spares`."""
    kids = children(pid)
    return kids if spares else [k for k in kids if not is_spare(k)]


def comm(pid: int) -> str:
    """A process's name, or '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def processes_with_arg(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (a run's leftover daemons)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd and b"pytest" not in cmd:
            found.append(int(entry.name))
    return found


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == uid:
                    found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def assert_nothing_left(sb, *, marker: str | None = None, timeout: float = 5.0) -> None:
    """No run's process survives: the zygote has no children, no leftover carries `marker`."""
    deadline = time.monotonic() + timeout
    while True:
        kids = zygote_children(sb.zygote_pid)
        stray = processes_with_arg(marker) if marker else []
        if not kids and not stray:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: zygote children {kids}, processes {stray}")
        time.sleep(0.05)


@contextlib.contextmanager
def loopback_listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on 127.0.0.1 that records every connection it accepts: (port, accepted).
    A sandboxed run must leave `accepted` empty."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        srv.close()
