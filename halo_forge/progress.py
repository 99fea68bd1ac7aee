"""Progress per stage: rich progress bars on a terminal, plain log lines otherwise (a log file,
`nohup`, CI), so an unattended run's log is readable on Monday. The one progress printer: the
pipeline's stages, `verify` and `benchmark run` all show theirs through it.

    with progress.task("cycle 2 verify", total=n, completed=resumed) as bar:
        bar.advance(1, status="12 passed")  # status: optional, shown after the count

A resumed stage passes what it kept as `completed`: the bar starts there (and ends at its total),
and rates count only the work done in this process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TextIO


class _Plain:
    """A task that prints a line at most every `every_s` seconds and at the end."""

    def __init__(self, name: str, total: int | None, out: Callable[[str], None],
                 every_s: float, completed: int = 0) -> None:
        self.name, self.total, self.done = name, total, completed
        self.status = ""
        self._out, self._every = out, every_s
        self._start = self._last = time.monotonic()

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        self.done += n
        if status is not None:
            self.status = status
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._out(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        status = f", {self.status}" if self.status else ""
        if self.total:
            pct = 100.0 * self.done / self.total
            return f"{self.name}: {self.done}/{self.total} ({pct:.0f}%){status} in {elapsed:.0f}s"
        return f"{self.name}: {self.done}{status} in {elapsed:.0f}s"

    def finish(self) -> None:
        self._out(self._line(time.monotonic()) + " - done")


class _Rich:
    def __init__(self, progress, task_id) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        if status is None:
            self._progress.advance(self._id, n)
        else:
            self._progress.update(self._id, advance=n, status=status)

    def finish(self) -> None:
        self._progress.update(self._id, completed=self._progress.tasks[self._id].total or 0)


class Progress:
    def __init__(self, mode: Literal["auto", "rich", "plain"] = "auto", *,
                 stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        self.mode = mode
        self.every_s = every_s
        self._rich = None
        if mode == "rich":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._console = Console(file=self.stream)
            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                      TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=self._console,
                                      transient=False)

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self._rich is not None:
            self._console.print(f"[{stamp}] {line}", highlight=False, markup=False)
        else:
            print(f"[{stamp}] {line}", file=self.stream, flush=True)

    @contextmanager
    def task(self, name: str, *, total: int | None = None,
             completed: int = 0) -> Iterator[_Plain | _Rich]:
        """A bar for `total` steps, `completed` of them done before it starts (a resume)."""
        if completed < 0 or (total is not None and completed > total):
            raise ValueError(f"progress task {name!r}: completed={completed} is outside "
                             f"0..{total}")
        if self._rich is None:
            bar = _Plain(name, total, self.log, self.every_s, completed)
            if completed:
                self.log(f"{name}: resumed at {completed}" + (f"/{total}" if total else ""))
            else:
                self.log(f"{name}: started" + (f" ({total})" if total else ""))
            yield bar
            bar.finish()
            return
        with self._rich:
            # Rich estimates speed from advances only, so a resumed start does not inflate it.
            task_id = self._rich.add_task(name, total=total, completed=completed, status="")
            bar = _Rich(self._rich, task_id)
            yield bar
            bar.finish()
