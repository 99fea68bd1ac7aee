"""first_error: the one policy for the exception that a (nested) exception group shows."""

from __future__ import annotations

import sys

from halo_forge.errors import HaloError, Interrupted, first_error, leaves

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


def test_a_plain_exception_is_itself() -> None:
    error = KeyError("x")
    assert first_error(error) is error


def test_a_users_error_comes_out_of_nested_groups_as_one_line() -> None:
    missing = HaloError("no gcc: apt-get install gcc")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [missing, HaloError("no gcc")])])
    assert first_error(group) is missing


def test_a_stop_explains_the_errors_beside_it() -> None:
    stop = Interrupted("SIGINT")
    group = ExceptionGroup("tasks", [HaloError("the server went away"), RuntimeError("closed"),
                                     ExceptionGroup("inner", [stop])])
    assert first_error(group) is stop


def test_a_users_error_wins_over_what_it_caused() -> None:
    halo = HaloError("disk full")
    group = ExceptionGroup("tasks", [OSError("broken pipe"), halo])
    assert first_error(group) is halo


def test_a_lone_bug_is_unwrapped_and_several_bugs_keep_their_group() -> None:
    bug = ZeroDivisionError("oops")
    assert first_error(ExceptionGroup("one", [ExceptionGroup("inner", [bug])])) is bug
    several = ExceptionGroup("two", [ValueError("a"), TypeError("b")])
    assert first_error(several) is several  # every traceback stays visible


def test_leaves_are_in_raise_order() -> None:
    a, b, c = ValueError("a"), KeyError("b"), TypeError("c")
    group = BaseExceptionGroup("g", [a, BaseExceptionGroup("h", [b, KeyboardInterrupt()]), c])
    assert [type(e) for e in leaves(group)] == [ValueError, KeyError, KeyboardInterrupt, TypeError]
    assert leaves(a) == [a]
