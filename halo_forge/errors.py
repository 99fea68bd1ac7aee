"""The exceptions users see, and the one policy for picking them out of exception groups.

Anything the user can fix (a bad flag, a typo in pipeline.toml, a corrupt shard, a missing
compiler) is raised as `HaloError` with a one-line message that names the thing and how to
fix it. The CLI prints it without a traceback; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup


class HaloError(Exception):
    """A user-facing error: the message is one line and says what to do."""


class Interrupted(Exception):
    """A stop was requested (SIGINT/SIGTERM) and the run stopped at a safe point."""


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside a (nested) exception group, depth first in raise order."""
    out: list[BaseException] = []
    stack = [error]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            out.append(item)
    return out


def first_error(error: BaseException) -> BaseException:
    """The one exception to show for `error`, which may be a (nested) exception group.

    Concurrent tasks fail together: one sample's missing compiler fails every sample in
    flight, and a stop makes the other tasks fail in passing. So a stop explains everything
    (the first Interrupted), then a user's error (the first HaloError: one line, not a group
    of the same line); a lone exception is itself; anything else is the group, tracebacks
    and all, because it is a bug."""
    found = leaves(error)
    for kind in (Interrupted, HaloError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0] if len(found) == 1 else error
