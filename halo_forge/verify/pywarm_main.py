"""The warm Python template: one interpreter per sandbox, started by the zygote before any run
(`python -I -S -c <this file's text>`), with the judge (pyjudge_main.py) and the plain runner
(pyrun_main.py) loaded and common standard-library modules imported. Each warm Python run's
program is a fork of it, so a run costs a fork rather than an interpreter start.

What it holds is what every run may see: the interpreter, the judge's and the runner's code,
stdlib modules, the seccomp filter. It never reads a run's stdin (the token and the tests stay
in the run's memfd, passed on unread), so nothing secret of any run is in the memory a later
run is forked from; and it serves the zygote alone (descriptor 3, a socket only the zygote
holds the other end of).

A request (zygote.cpp, serve_warm): the run's init by pidfd, its stdin, stdout, stderr and a
pipe to its init; the namespaces to join, ids, umask, cwd, argv, envp and rlimits. The
template forks; that child joins the init's namespaces (setns on the pidfd: user, mount, pid,
uts, ipc) and forks again, into the run's pid namespace: the grandchild is the run's program,
killed with the run's pid namespace. It takes the run's stdio, cwd, rlimits and ids and the
seccomp filter every run's process has, tells the init it is set up, closes that pipe and
runs the run's code here, as `python -I -S -c <code>` would have. The child stays outside the
run as the program's parent (a process that joined a pid namespace keeps its parent) and
hands the init what wait4 said of it: status, CPU and peak memory.
"""

import _socket
import builtins
import ctypes
import gc
import marshal
import os
import resource
import signal
import sys

_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_FAULT_EXIT = 87  # the judge's "could not set itself up": a sandbox error, never the sample's
# Imported once here instead of by each run: what the judge and the runner import, and what
# solutions commonly do.
_PRELOAD = ("_json", "json", "warnings", "traceback", "_sitebuiltins", "importlib", "collections", "functools",
            "itertools", "math", "re", "heapq", "bisect", "string", "typing", "fractions", "decimal")


def _take(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(_FAULT_EXIT)
        b += c
    return b


def _read_rest():
    parts = []
    while True:
        c = os.read(0, 1 << 20)
        if not c:
            return b"".join(parts)
        parts.append(c)


class _Fields:
    def __init__(self, b):
        self.b, self.i = b, 4  # past the frame's length

    def u(self, n):
        v = int.from_bytes(self.b[self.i:self.i + n], "little")
        self.i += n
        return v

    def s(self):
        n = self.u(4)
        v = self.b[self.i:self.i + n].decode("utf-8", "surrogateescape")
        self.i += n
        return v

    def ss(self):
        return [self.s() for _ in range(self.u(4))]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _seccomp(libc, filt):
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if filt:
        prog = _Prog(len(filt) // 8, filt)
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "seccomp")


def _enter(req, fds, filt, libc):
    """In the template's child: join the run, set it up, return its argv and envp (in the
    grandchild; the child itself exits)."""
    pidfd, fin, fout, ferr, wpid = fds
    f = _Fields(req)
    flags, uid, gid, set_ids, umask = f.u(4), f.u(4), f.u(4), f.u(1), f.u(4)
    cwd, argv, envp = f.s(), f.ss(), f.ss()
    limits = [(f.u(4), f.u(8), f.u(8)) for _ in range(f.u(4))]
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if libc.setns(pidfd, flags) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    pid = os.fork()
    if pid != 0:
        _watch(pid, wpid)
    os.dup2(fin, 0)
    os.dup2(fout, 1)
    os.dup2(ferr, 2)
    # Nothing of the template but the pipe to the init, closed once the pid is written.
    os.closerange(3, wpid)
    os.closerange(wpid + 1, 1 << 30)
    os.chdir(cwd)
    os.umask(umask)
    os.setsid()
    for what, soft, hard in limits:
        resource.setrlimit(what, (soft, hard))
    if set_ids:
        try:
            os.setgroups([])
        except PermissionError:
            pass  # an unprivileged user namespace has no groups to drop
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    # The id change cleared it; an exec'd interpreter of this uid would have it set.
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    _seccomp(libc, filt)
    os.write(wpid, b"R")  # set up: what fails from here on is the run's own
    os.close(wpid)
    return argv, envp


def _watch(pid, wpid):
    """The template's child, outside the run: the run's program is its child (a process that
    joined a pid namespace keeps its parent, and its orphans would go to this side's reaper,
    not the run's init), so it waits for it and hands the init what wait4 said."""
    try:
        os.closerange(0, wpid)
        os.closerange(wpid + 1, 1 << 30)
        while True:
            try:
                _, status, ru = os.wait4(pid, 0)
                break
            except InterruptedError:
                continue
        cpu_us = int((ru.ru_utime + ru.ru_stime) * 1e6)
        os.write(wpid, b"S" + status.to_bytes(4, "little", signed=True) + cpu_us.to_bytes(8, "little")
                 + ru.ru_maxrss.to_bytes(8, "little"))
    finally:
        os._exit(0)


def _serve():
    """The template's loop; returns only in a run's process, with what it runs."""
    filt = _take(int.from_bytes(_take(8), "little"))
    boot, judge, run_src, run = marshal.loads(_read_rest())
    judge_code, run_code = marshal.loads(judge[8:]), marshal.loads(run)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)  # descriptor 0 is never one a request brings
    os.close(null)
    libc = ctypes.CDLL(None, use_errno=True)
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    # Objects made so far stay out of the collector's work, so the runs' collections do not
    # write to (and copy) the template's pages.
    gc.collect()
    gc.freeze()
    # Its children (one per running warm run, each waiting for its run) are reaped by the kernel.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, 3)
    space = _socket.CMSG_SPACE(5 * 4)
    while True:
        try:
            req, anc, _, _ = sock.recvmsg(1 << 20, space)
        except InterruptedError:
            continue
        if not req:
            os._exit(0)  # the zygote is gone
        fds = []
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                        for i in range(0, len(data) - len(data) % 4, 4)]
        if len(fds) != 5:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                argv, envp = _enter(req, fds, filt, libc)
                break
            except BaseException as exc:
                try:
                    os.write(2, f"halo-forge warm python: {exc}\n".encode())
                finally:
                    os._exit(126)
        for fd in fds:
            os.close(fd)
    # A run's process, set up: the command is the cold run's, served from what is loaded.
    del req, anc, fds
    os.environ.clear()
    for e in envp:
        k, _, v = e.partition("=")
        os.environ[k] = v
    try:
        i = argv.index("-c")
    except ValueError:
        i = len(argv)
    src, rest = (argv[i + 1], argv[i + 2:]) if i + 1 < len(argv) else (None, [])
    if src == boot:
        _take(int.from_bytes(_take(8), "big"))  # the cold boot's own copy of the judge, unread
        code = judge_code
    elif src == run_src:
        code = run_code
    else:
        os.write(2, b"halo-forge warm python: not a command the template serves\n")
        os._exit(_FAULT_EXIT)
    # Decided at the template's start from its own stdout; a cold run's is a pipe's.
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    sys.argv[:] = ["-c", *rest]
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    return code, main.__dict__


_code, _scope = _serve()
exec(_code, _scope)
