"""The zygote's verdict logic, called directly: every way a run can end, without running one.

Each rule is paired with a control that differs in the one fact the rule reads, so a rule that
stopped firing, or fired on everything, fails here.
"""

from __future__ import annotations

import errno
import os
import signal

import pytest

from halo_forge import _sandbox
from halo_forge.sandbox import RUN_STATUSES, Limits

LIMITS = Limits(cpu_s=2.0, memory_mb=100)


def judge(report: str = "done", **kw):
    kw.setdefault("limits", LIMITS._as_tuple())
    status, code, sig, error = _sandbox.judge(report, **kw)
    assert status in RUN_STATUSES
    return status, code, sig, error


def test_exit_codes():
    assert judge(exit_code=0) == ("ok", 0, None, "")
    assert judge(exit_code=3) == ("runtime_error", 3, None, "")


@pytest.mark.parametrize(
    ("sig", "cpu_s", "status"),
    [
        (signal.SIGSEGV, 0.0, "runtime_error"),
        (signal.SIGXCPU, 0.0, "timeout"),  # the kernel's RLIMIT_CPU soft limit
        # SIGKILL at the hard CPU limit (a program that caught SIGXCPU) vs one killed early.
        (signal.SIGKILL, 1.96, "timeout"),
        (signal.SIGKILL, 0.5, "runtime_error"),
        (signal.SIGXFSZ, 0.0, "output_limit"),  # RLIMIT_FSIZE
    ],
)
def test_signals(sig, cpu_s, status):
    assert judge(signal=int(sig), cpu_s=cpu_s) == (status, None, int(sig), "")


def test_cpu_over_the_limit_is_a_timeout_even_after_a_clean_exit():
    # Several processes, each under RLIMIT_CPU, together over the run's budget.
    assert judge(exit_code=0, cpu_s=2.5)[0] == "timeout"
    assert judge(exit_code=0, cpu_s=1.0)[0] == "ok"
    # A file-size kill stays what it is, whatever CPU it used.
    assert judge(signal=int(signal.SIGXFSZ), cpu_s=2.5)[0] == "output_limit"


def test_compiler_driver_reporting_its_childs_cpu_limit_as_an_exit_code():
    assert judge(exit_code=1, err=b"g++: fatal error: Killed signal terminated program cc1plus\n"
                 b"CPU time limit exceeded")[0] == "timeout"
    assert judge(exit_code=1, cpu_s=1.92)[0] == "timeout"  # within 0.1 s of RLIMIT_CPU
    assert judge(exit_code=1, cpu_s=1.5, err=b"error: expected ';'")[0] == "runtime_error"


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"exit_code": 1, "peak_memory_kb": 90 * 1024}, "memory_limit"),  # >= 80% of memory_mb
        ({"exit_code": 1, "peak_memory_kb": 10 * 1024}, "runtime_error"),
        ({"exit_code": 1, "err": b"Traceback ...\nMemoryError\n"}, "memory_limit"),
        ({"signal": int(signal.SIGABRT), "err": b"what():  std::bad_alloc"}, "memory_limit"),
        ({"signal": int(signal.SIGABRT), "err": b"assertion failed"}, "runtime_error"),
        # Only a failed run is reclassified: a program that printed the word and exited 0 is fine.
        ({"exit_code": 0, "err": b"MemoryError handled"}, "ok"),
    ],
)
def test_out_of_memory(kw, status):
    assert judge(**kw)[0] == status


@pytest.mark.parametrize(
    ("kw", "full", "clean"),
    [
        ({"exit_code": 0}, "output_limit", "ok"),
        ({"exit_code": 1}, "output_limit", "runtime_error"),
        # A run that was already over another limit keeps that verdict.
        ({"signal": int(signal.SIGXCPU)}, "timeout", "timeout"),
    ],
)
def test_full_disk(kw, full, clean):
    assert judge(disk_full=True, **kw)[0] == full
    assert judge(disk_full=False, **kw)[0] == clean


@pytest.mark.parametrize(
    ("killed", "expected"),
    [
        ("wall", ("timeout", None, int(signal.SIGKILL), "")),
        ("output", ("output_limit", None, int(signal.SIGKILL), "")),
        ("cancel", ("sandbox_error", None, None, "cancelled")),
        ("shutdown", ("sandbox_error", None, None, "sandbox closed")),
    ],
)
def test_the_zygotes_own_kill_decides(killed, expected):
    # Whatever the program's last status was: the zygote killed it for a reason of its own.
    assert judge(exit_code=0, killed=killed) == expected
    assert judge("none", killed=killed) == expected


def test_a_failure_to_start_is_a_sandbox_error_never_the_programs():
    setup = judge("setup_failed", step="mount /tmp", errno=errno.EPERM, killed="wall")
    assert setup == ("sandbox_error", None, None, f"sandbox setup: mount /tmp: {os.strerror(errno.EPERM)}")
    rlimit = judge("exec_failed", step="RLIMIT_AS", errno=errno.EINVAL)
    assert rlimit[3] == f"starting the program: RLIMIT_AS: {os.strerror(errno.EINVAL)}"
    execve = judge("exec_failed", step="execve", errno=errno.ENOENT, exe="/usr/bin/nothing")
    assert execve[3] == f"execve /usr/bin/nothing: {os.strerror(errno.ENOENT)}"
    assert execve[0] == "sandbox_error"


def test_an_init_that_died_without_a_report():
    assert judge("none") == ("sandbox_error", None, None, "the run's init process died without a report")


@pytest.mark.parametrize(
    ("args", "kw", "message"),
    [
        (("finished",), {}, "report: unknown 'finished'"),
        (("done",), {"exit_code": 0, "killed": "oom"}, "killed: unknown 'oom'"),
        (("done",), {}, "exactly one of exit_code and signal"),
        (("done",), {"exit_code": 0, "signal": 9}, "exactly one of exit_code and signal"),
    ],
)
def test_bad_descriptions_are_refused(args, kw, message):
    with pytest.raises(ValueError, match=message):
        _sandbox.judge(*args, limits=LIMITS._as_tuple(), **kw)
