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
template sets where its next child goes to the init's pid namespace (setns on the pidfd, which
moves no process), forks once, and sets it back to its own at once: the fork is the run's
program, in the run's pid namespace and killed with it. The fork joins the init's other
namespaces (user, mount, uts, ipc), takes the run's stdio, cwd, rlimits and ids and the
seccomp filter every run's process has, tells the init it is set up, closes that pipe and
runs the run's code here, as `python -I -S -c <code>` would have. The template stays outside
the run as the program's parent (a process in a child pid namespace keeps a parent outside
it, which it cannot name) and hands the init what wait4 said of it: status, CPU and peak
memory. One fork per run: the judge's module is loaded here too, so a run's judge only calls
its main().
"""

import _socket
import builtins
import ctypes
import gc
import marshal
import os
import resource
import select
import sys

_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_CLONE_NEWPID = 0x20000000
_FAULT_EXIT = 87  # the judge's "could not set itself up": a sandbox error, never the sample's
# Imported once here instead of by each run: what the judge and the runner import, and what
# solutions commonly do.
_PRELOAD = ("_json", "json", "warnings", "traceback", "_sitebuiltins", "importlib", "collections", "functools",
            "itertools", "math", "re", "heapq", "bisect", "string", "typing", "fractions", "decimal")


_JUDGE_MAIN = compile("_main()", "<python judge>", "exec")


def _take(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(_FAULT_EXIT)
        b += c
    return b


def _skip(n):
    """Past n bytes of stdin without reading them (a run's stdin is a memfd)."""
    try:
        os.lseek(0, n, os.SEEK_CUR)
    except OSError:
        _take(n)


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


class _Libc:
    """What a run's process calls in libc, made once in the template: a ctypes function made
    in the fork would allocate and write all over the template's pages (copy-on-write faults,
    every run), and so would the seccomp program's structure."""

    def __init__(self, filt):
        libc = ctypes.CDLL(None, use_errno=True)
        self.setns, self.prctl, self.get_errno = libc.setns, libc.prctl, ctypes.get_errno
        self.filt = filt  # kept alive: the program points into it
        self.prog = ctypes.byref(_Prog(len(filt) // 8, filt)) if filt else None


def _seccomp(libc):
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(libc.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prog is not None and libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, libc.prog, 0, 0) != 0:
        raise OSError(libc.get_errno(), "seccomp")


def _enter(req, fds, libc, direct):
    """In the template's fork: join the run, set it up, return its argv and envp (in the run's
    program). `direct`: the fork was made in the run's pid namespace and is the program;
    otherwise it joins all the run's namespaces and forks the program, and stays outside the
    run as its parent (_watch)."""
    pidfd, fin, fout, ferr, wpid = fds
    f = _Fields(req)
    flags, uid, gid, set_ids, umask = f.u(4), f.u(4), f.u(4), f.u(1), f.u(4)
    cwd, argv, envp = f.s(), f.ss(), f.ss()
    limits = [(f.u(4), f.u(8), f.u(8)) for _ in range(f.u(4))]
    # Direct: the pid namespace was the fork's (the template's setns); the others are this
    # process's.
    if libc.setns(pidfd, flags & ~_CLONE_NEWPID if direct else flags) != 0:
        raise OSError(libc.get_errno(), "setns")
    if not direct:
        pid = os.fork()
        if pid != 0:
            _watch(pid, wpid)
    os.dup2(fin, 0)
    os.dup2(fout, 1)
    os.dup2(ferr, 2)
    # Nothing of the template but the pipe to the init, closed once it is set up.
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
    _seccomp(libc)
    os.write(wpid, b"R")  # set up: what fails from here on is the run's own
    os.close(wpid)
    return argv, envp


def _watch(pid, wpid):
    """The template's fork on the two-fork path, outside the run: it waits for the run's
    program (its child) and hands the init what wait4 said (_reap)."""
    try:
        os.closerange(0, wpid)
        os.closerange(wpid + 1, 1 << 30)
        _reap(pid, wpid)
    finally:
        os._exit(0)


def _fork_into(pidfd, own, libc):
    """A fork made in the pid namespace of the init behind `pidfd`: setns on a pid namespace
    changes only where this process's next children go, and it is set back to `own` (a pidfd
    of this process) at once, so no later fork can land in this run. 0 in the fork."""
    if libc.setns(pidfd, _CLONE_NEWPID) != 0:
        raise OSError(libc.get_errno(), "setns pid")
    pid = -1
    try:
        pid = os.fork()
    finally:
        # (Not in the fork: its own namespace is the run's, and the template's is no
        # namespace it could join.)
        if pid != 0 and libc.setns(own, _CLONE_NEWPID) != 0:
            os._exit(_FAULT_EXIT)  # the template cannot tell where its next fork would go
    return pid


def _reap(pid, wpid):
    """The run's program ended (it is this process's child: a process that joined a pid
    namespace keeps its parent): hand its init what wait4 said, status, CPU and peak memory."""
    try:
        _, status, ru = os.wait4(pid, 0)
    except ChildProcessError:
        if wpid is not None:
            os.close(wpid)
        return
    if wpid is None:
        return  # a fork of the two-fork path: it wrote the record itself
    cpu_us = int((ru.ru_utime + ru.ru_stime) * 1e6)
    try:
        os.write(wpid, b"S" + status.to_bytes(4, "little", signed=True) + cpu_us.to_bytes(8, "little")
                 + ru.ru_maxrss.to_bytes(8, "little"))
    except OSError:
        pass  # the init is gone (the run was killed): nobody waits for the record
    os.close(wpid)


_FILLED = []  # the blocks _fill_pools took, kept for the template's life


def _fill_pools():
    """Takes every free block of the small-object allocator's partly used pools (from its own
    statistics), so that a run's new objects go to fresh pools of its own instead of into pages
    it shares with the template: 7% fewer copy-on-write faults per run."""
    out = os.memfd_create("mallocstats")
    saved = os.dup(2)
    os.dup2(out, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = os.pread(out, 1 << 20, 0)
    os.close(out)
    for line in text.decode().splitlines():
        f = line.split()
        if len(f) == 5 and f[0].isdigit():  # class, size, pools, blocks used, blocks free
            size, free = int(f[1]), int(f[4])
            if size >= 48:  # a bytes object of n bytes takes n + 33
                _FILLED.extend(bytes(size - 33) for _ in range(free))
            elif size == 32:
                _FILLED.extend(float(i) for i in range(free))


def _serve():
    """The template's loop; returns only in a run's process, with what it runs."""
    filt = _take(int.from_bytes(_take(8), "little"))
    boot, judge, run_src, run = marshal.loads(_read_rest())
    run_code = marshal.loads(run)
    # The judge's module runs here once (its functions, classes, codec and libc's prctl made
    # before any run); each run's process calls its main(), as the cold boot's exec would.
    judge_scope = {"__name__": "_halo_judge", "__builtins__": builtins}
    exec(marshal.loads(judge[8:]), judge_scope)
    judge_scope["prepare"]()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)  # descriptor 0 is never one a request brings
    os.close(null)
    libc = _Libc(filt)
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    # Objects made so far stay out of the collector's work, so the runs' collections do not
    # write to (and copy) the template's pages.
    gc.collect()
    _fill_pools()
    gc.freeze()
    own = os.pidfd_open(os.getpid())
    own_env = dict(os.environ)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, 3)
    space = _socket.CMSG_SPACE(5 * 4)
    poller = select.poll()
    poller.register(3, select.POLLIN)
    running = {}  # pidfd of a run's program (or its watcher) -> (its pid, the pipe to its init or None)
    direct = True  # one fork per run, straight into the run's pid namespace (_fork_into)
    while True:
        try:
            ready = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in ready:
            if fd == 3:
                continue
            pid, wpid = running.pop(fd)
            poller.unregister(fd)
            os.close(fd)
            _reap(pid, wpid)
        if not any(fd == 3 for fd, _ in ready):
            continue
        try:
            req, anc, _, _ = sock.recvmsg(1 << 20, space)
        except (InterruptedError, BlockingIOError):
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
        pid = -1
        try:
            pid = _fork_into(fds[0], own, libc) if direct else os.fork()
        except PermissionError:
            # Joining a pid namespace alone takes CAP_SYS_ADMIN in this process's own user
            # namespace, which an unprivileged sandbox's template lacks: from now on its fork
            # joins all the run's namespaces at once and forks the program (two forks).
            direct = False
            try:
                pid = os.fork()
            except OSError as exc:
                os.write(2, f"halo-forge warm python: {exc}\n".encode())
        except OSError as exc:
            os.write(2, f"halo-forge warm python: {exc}\n".encode())
        if pid == 0:
            try:
                sock.close()
                argv, envp = _enter(req, fds, libc, direct)
                break
            except BaseException as exc:
                try:
                    os.write(2, f"halo-forge warm python: {exc}\n".encode())
                finally:
                    os._exit(126)
        for fd in fds[:4]:
            os.close(fd)
        if pid < 0:
            os.close(fds[4])  # the init reads end of file: the sandbox's failure
            continue
        try:
            watch = os.pidfd_open(pid)
        except OSError:
            _reap(pid, fds[4] if direct else None)  # cannot watch it: wait here (a kernel with pidfds can)
            if not direct:
                os.close(fds[4])
            continue
        running[watch] = (pid, fds[4] if direct else None)
        if not direct:
            os.close(fds[4])  # its fork holds it, and writes the record
        poller.register(watch, select.POLLIN)
    # A run's process, set up: the command is the cold run's, served from what is loaded.
    del req, anc, fds, running, poller
    # Only what differs from the template's own (PATH and LANG are the same): clearing and
    # refilling os.environ ran enough Python to cost a run ~0.4 ms in copy-on-write faults.
    want = dict(e.partition("=")[::2] for e in envp)
    for k in own_env.keys() - want.keys():
        del os.environ[k]
    for k, v in want.items():
        if own_env.get(k) != v:
            os.environ[k] = v
    try:
        i = argv.index("-c")
    except ValueError:
        i = len(argv)
    src, rest = (argv[i + 1], argv[i + 2:]) if i + 1 < len(argv) else (None, [])
    if src == boot:
        _skip(int.from_bytes(_take(8), "big"))  # the cold boot's own copy of the judge, unread
        code = _JUDGE_MAIN
        main_scope = {"__builtins__": builtins, "_main": judge_scope["main"]}
    elif src == run_src:
        code = run_code
    else:
        os.write(2, b"halo-forge warm python: not a command the template serves\n")
        os._exit(_FAULT_EXIT)
    # Decided at the template's start from its own stdout; a cold run's is a pipe's.
    tty = os.isatty(1)
    if sys.stdout.line_buffering != tty:
        sys.stdout.reconfigure(line_buffering=tty)
    sys.argv[:] = ["-c", *rest]
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    if code is _JUDGE_MAIN:
        return code, main_scope
    return code, main.__dict__


def _exit_status(code):
    """The exit status of an uncaught SystemExit, as the interpreter's: None is 0, an int is
    itself, anything else is printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _run(code, scope):
    """Runs the run's code and ends its process as the interpreter's exit would, less the
    teardown of every module: the template's pages would be written only to be freed, which
    cost a run more than everything else it did. Threads are waited for, atexit callbacks run,
    the program's own objects are released (files it left open are flushed by their close)
    and stdout and stderr flushed; then the process ends."""
    status = 0
    try:
        exec(code, scope)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        status = 1
        if isinstance(exc, KeyboardInterrupt):
            status = -2  # the interpreter ends itself with SIGINT then
    del scope
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit

    atexit._run_exitfuncs()
    program = sys.modules.get("__main__")
    if program is not None:
        program.__dict__.clear()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            if stream is sys.stdout and status == 0:
                status = 120  # the interpreter's status when it cannot flush stdout
    if status == -2:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    os._exit(status)


_run(*_serve())
