"""Async facade over the C++ sandbox (`halo_forge._sandbox`).

`await sandbox.run(argv, cwd=...)` runs a compiler or a compiled program contained (rlimits,
wall clock, output caps, seccomp, user/pid/mount/ipc namespaces, one shared empty network
namespace) and returns a `RunResult`. The runs themselves live in a small zygote process
owned by the extension; this module only sends requests and waits on one file descriptor for
completions, so hundreds of runs can be in flight with no Python thread per run.

    async with Sandbox(max_concurrency=8) as sb:
        with sb.workdir({"main.c": src}) as wd:
            r = await sb.run(["gcc", "main.c", "-o", "main"], cwd=wd)
            if r.status == "ok":
                r = await sb.run(["./main"], cwd=wd, stdin=b"1 2\\n")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import anyio
import msgspec

from halo_forge.errors import HaloError

__all__ = ["RUN_STATUSES", "Limits", "RunResult", "Sandbox", "SandboxUnavailable"]

log = logging.getLogger(__name__)

# How one process run ended; the verifier turns these into a Verdict's records.STATUSES.
RUN_STATUSES = ("ok", "runtime_error", "timeout", "memory_limit", "output_limit", "sandbox_error")

# Directories always visible (read-only) inside a run; anything else must be asked for.
_SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_warned_protections: set[str] = set()


class SandboxUnavailable(HaloError):
    """The sandbox cannot start at all (extension missing, zygote failed to start)."""


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cpu_s: float = 5.0  # RLIMIT_CPU per process; CPU of the whole run above it -> "timeout"
    wall_s: float = 10.0  # enforced by the zygote's own clock
    memory_mb: int = 1024  # address space / data
    output_bytes: int = 1 << 20  # cap per stream (stdout, stderr); exceeding -> "output_limit"
    file_size_mb: int = 64  # RLIMIT_FSIZE: one file's size
    processes: int = 64  # per run (each run has its own user namespace), not per user
    open_files: int = 256
    stack_mb: int = 8  # also every thread's stack (glibc); capped at memory_mb / 4
    # Disk the run may fill: the workdir and /tmp share a tmpfs of this size. Filling it ->
    # "output_limit", and the workdir keeps what it held before the run.
    disk_mb: int = 256

    def __post_init__(self) -> None:
        if self.cpu_s <= 0 or self.wall_s <= 0:
            raise ValueError("Limits: cpu_s and wall_s must be positive")
        for name in ("memory_mb", "output_bytes", "file_size_mb", "processes", "open_files", "stack_mb", "disk_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits: {name} must be at least 1")
        if self.open_files < 4:
            raise ValueError("Limits: open_files must be at least 4 (stdio plus one)")

    def _as_tuple(self) -> tuple:
        return (
            float(self.cpu_s), float(self.wall_s), int(self.memory_mb), int(self.output_bytes),
            int(self.file_size_mb), int(self.processes), int(self.open_files), int(self.stack_mb),
            int(self.disk_mb),
        )


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # one of RUN_STATUSES
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    cpu_s: float
    wall_s: float
    peak_memory_kb: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str = ""  # why, when status == "sandbox_error" (infrastructure, never the program)


class _Launch(msgspec.Struct, frozen=True):
    """What starting one program takes, beside its argv: the host path to execve, the PATH
    it gets, and the host directories it must see read-only."""

    exe: str
    path: str
    rustup_home: str | None
    ro_paths: list[str]


def _sandbox_error(error: str) -> RunResult:
    return RunResult(
        status="sandbox_error", exit_code=None, signal=None, cpu_s=0.0, wall_s=0.0,
        peak_memory_kb=0, stdout=b"", stderr=b"", error=error,
    )


def _load_extension():
    try:
        from halo_forge import _sandbox
    except ImportError as exc:
        raise SandboxUnavailable(
            f"the sandbox extension halo_forge._sandbox is not built ({exc}); "
            "reinstall with `pip install -e .`"
        ) from exc
    return _sandbox


def _zygote_path(ext) -> str:
    exe = os.path.join(os.path.dirname(ext.__file__), "halo-forge-zygote")
    if not os.access(exe, os.X_OK):
        raise SandboxUnavailable(
            f"the sandbox's zygote executable {exe} is missing; reinstall with `pip install -e .`"
        )
    return exe


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _toolchain_dirs(exe: str) -> list[str]:
    """Host directories a program needs to be visible: for each hop of its symlink chain,
    its directory, or the prefix above it when that is a `bin/` (libraries live beside it)."""
    dirs: list[str] = []
    seen: set[str] = set()
    path = os.path.abspath(exe)
    for _ in range(40):
        d = os.path.dirname(path)
        if os.path.basename(d) in ("bin", "sbin"):
            d = os.path.dirname(d)
        d = os.path.realpath(d)
        if d not in seen:
            seen.add(d)
            dirs.append(d)
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return dirs


def _remove_tree(path: Path | str, _depth: int = 0) -> None:
    """rm -rf that also copes with directories a run made unreadable or unwritable."""

    def fix(_func, p, _exc):
        if _depth > 64:
            return
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
        if os.path.isdir(p) and not os.path.islink(p):
            with contextlib.suppress(OSError):
                os.chmod(p, stat.S_IRWXU)
            _remove_tree(p, _depth + 1)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    # What nearly every run leaves is a flat directory of files: removed without rmtree's
    # descriptor walk (a third of a millisecond per workdir); anything else falls through.
    if _depth == 0:
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        raise IsADirectoryError(entry.path)
                    os.unlink(entry.path)
            os.rmdir(path)
            return
        except OSError:
            pass
    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix)
    else:
        shutil.rmtree(path, onerror=fix)


class Sandbox:
    """A pool of contained runs. Usable from many anyio tasks at once, in one event loop at a
    time (a later loop may take over once the earlier one is done)."""

    def __init__(self, *, max_concurrency: int | None = None, readonly_paths: Sequence[str] = (),
                 prepared: int | None = None):
        """`prepared`: how many runs' namespaces, mounts and seccomp filters the sandbox keeps
        set up ahead of the runs that will use them (each still serves one run only); default
        min(max_concurrency, 2). 0 sets each one up when its run arrives."""
        ext = _load_extension()
        zygote = _zygote_path(ext)
        self._max = int(max_concurrency or os.cpu_count() or 1)
        if self._max < 1:
            raise HaloError(f"Sandbox: max_concurrency must be at least 1, got {max_concurrency}")
        spares = min(self._max, 2) if prepared is None else int(prepared)
        if spares < 0:
            raise HaloError(f"Sandbox: prepared must be 0 or more, got {prepared}")
        self._readonly: list[str] = []
        for p in readonly_paths:
            real = os.path.realpath(p)
            if not os.path.isdir(real):
                raise HaloError(f"sandbox: readonly path {p!r} is not a directory; fix readonly_paths")
            if real == "/":
                raise HaloError("sandbox: refusing to show '/' read-only; name the toolchain directories")
            if real == "/tmp" or real.startswith("/tmp/"):
                # Each run gets a private /tmp, mounted over the host's: a path under it would
                # silently vanish inside the run.
                raise HaloError(f"sandbox: readonly path {p!r} is under /tmp, which every run "
                                "replaces with its own; move it out of /tmp")
            self._readonly.append(real)
        # Private to the caller (0700): runs see only their own workdir, never its siblings.
        # Resolved: runs compare their cwd with it (a TMPDIR behind a symlink must still match).
        self._base = Path(tempfile.mkdtemp(prefix="halo-forge-sandbox-")).resolve()
        (self._base / ".root").mkdir()
        try:
            self._client = ext.Client(zygote, str(self._base), self._max, spares)
        except (OSError, RuntimeError) as exc:
            _remove_tree(self._base)
            raise SandboxUnavailable(f"the sandbox could not start: {exc}") from exc
        self._protections = {name: (reason or None) for name, reason in self._client.protections()}
        for name, reason in self._protections.items():
            if reason and name not in _warned_protections:
                _warned_protections.add(name)
                log.warning("sandbox protection %s is off: %s", name, reason)
        self._fd = self._client.fileno()
        self._next_id = 1
        self._template: list[str] | None = None  # the warm Python template's command, once started
        self._results: dict[int, RunResult | None] = {}
        self._abandoned: set[int] = set()
        self._reading = False
        # One event per waiting run: a batch of results wakes its owners only (hundreds of
        # runs wait at once; waking all of them per batch cost more CPU than the runs).
        self._wakers: dict[int, anyio.Event | asyncio.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # holds the zygote's fd as a reader
        self._dead = ""
        self._closed = False
        # Per-run path work adds up at thousands of runs a minute: the workdirs we made are
        # canonical already, and a program outside them keeps its real path and rustup home.
        self._workdirs: set[str] = set()
        self._launches: dict[tuple[str, str], _Launch] = {}
        self._limits_cache: dict[Limits, tuple] = {}

    # -- context management ------------------------------------------------------------------

    def __enter__(self) -> Sandbox:  # noqa: PYI034 - py3.10 has no typing.Self
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> Sandbox:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stops every run, reaps the zygote and removes every workdir."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        self._client.close()
        # Runs still waiting (close() from another task) end as sandbox errors.
        for waker in list(self._wakers.values()):
            _wake(waker)
        _remove_tree(self._base)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    # -- introspection -----------------------------------------------------------------------

    def protections(self) -> dict[str, str | None]:
        """Protection name -> None when active, else why it is not."""
        return dict(self._protections)

    @property
    def zygote_pid(self) -> int:
        return int(self._client.zygote_pid)

    @property
    def max_concurrency(self) -> int:
        """How many runs go at once; the zygote queues the rest (their wall clock starts when
        they start)."""
        return self._max

    # -- workdirs ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def workdir(self, files: Mapping[str, bytes | str] = {}) -> Iterator[Path]:
        """A private, empty working directory holding `files`; deleted on exit, whatever
        the runs left in it."""
        if self._closed:
            raise HaloError("sandbox: workdir() after close()")
        path = Path(tempfile.mkdtemp(dir=self._base, prefix="w"))
        self._workdirs.add(str(path))
        try:
            uid = self._client.run_uid if self._client.chown_workdirs else None
            if uid is not None:
                # Concurrent runs use different uids of one group: the workdir belongs to the
                # group, and new files inherit it (setgid directory).
                os.chown(path, uid, self._client.run_gid)
                os.chmod(path, 0o2770)
            for name, data in files.items():
                rel = Path(name)
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    raise HaloError(f"sandbox: workdir file name {name!r} must be relative, without '..'")
                target = path / rel
                for parent in reversed(target.relative_to(path).parents[:-1]):
                    d = path / parent
                    if not d.exists():
                        d.mkdir()
                        if uid is not None:
                            os.chown(d, uid, self._client.run_gid)
                            os.chmod(d, 0o2770)
                target.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
            yield path
        finally:
            self._workdirs.discard(str(path))
            _remove_tree(path)

    # -- runs --------------------------------------------------------------------------------

    def _resolve(self, argv0: str, cwd: Path, path_env: str) -> str | None:
        if "/" in argv0:
            p = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
            return p if os.path.exists(p) else None
        return shutil.which(argv0, path=path_env)

    @staticmethod
    def _rustup_home(exe: str, argv0: str) -> str | None:
        if os.path.basename(os.path.realpath(exe)) != "rustup" or os.path.basename(argv0) == "rustup":
            return None
        home = os.path.realpath(os.environ.get("RUSTUP_HOME") or os.path.expanduser("~/.rustup"))
        return home if os.path.isdir(home) else None

    def _launch(self, argv0: str, cwd: Path, host_path: str) -> _Launch | None:
        """How to start `argv0` from `cwd`, or None when it does not exist. Remembered for a
        program outside the workdirs (a toolchain: the per-run path work, a PATH search and
        a symlink walk, would cost more than the launch itself); worked out afresh for one
        inside a workdir (a run may have built it, or deleted it, since)."""
        key = (argv0, host_path)
        cacheable = "/" not in argv0 or os.path.isabs(argv0)
        if cacheable:
            hit = self._launches.get(key)
            if hit is not None:
                return hit
        exe = self._resolve(argv0, cwd, host_path)
        if exe is None:
            return None
        base = [str(self._base)]
        abs_exe = os.path.abspath(exe)
        exe_dir = os.path.dirname(abs_exe)
        real_exe = os.path.realpath(exe)
        rustup_home = self._rustup_home(exe, argv0)
        ro: list[str] = list(self._readonly)
        if rustup_home:
            # A rustup proxy (~/.cargo/bin/rustc) finds its toolchains through RUSTUP_HOME,
            # which would otherwise default to HOME, the workdir.
            ro.append(rustup_home)
        inside = _under(real_exe, base)
        if not inside:
            ro += [d for d in _toolchain_dirs(exe)
                   if not _under(d, _SYSTEM_DIRS) and not _under(d, base) and d != "/" and d not in ro]
        launch = _Launch(
            exe=exe,
            path=(exe_dir + ":" if not _under(exe_dir, base) else "") + _DEFAULT_PATH,
            rustup_home=rustup_home,
            ro_paths=ro,
        )
        if cacheable and not inside and not _under(abs_exe, base):
            self._launches[key] = launch
        return launch

    def _limits_tuple(self, limits: Limits) -> tuple:
        t = self._limits_cache.get(limits)
        if t is None:
            if len(self._limits_cache) >= 256:  # limits made per run (scaled timeouts) stay cheap
                self._limits_cache.clear()
            t = self._limits_cache[limits] = limits._as_tuple()
        return t

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        stdin: bytes = b"",
        limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
        env: Mapping[str, str] | None = None,
        warm: bool = False,
    ) -> RunResult:
        """Runs `argv` in `cwd` (a path from `workdir()`), contained; never raises for what
        the program does. Setup failures come back as status "sandbox_error". `warm`: a
        Python judge or runner command the warm template (start_template) may serve by fork;
        without one it runs as given."""
        job = self._submit(argv, cwd=cwd, stdin=stdin, limits=limits, env=env, warm=warm)
        if isinstance(job, RunResult):
            return job
        return await self._result(job)

    def start_template(self, argv: Sequence[str], data: bytes) -> bool:
        """Starts the warm Python template (verify/pywarm_main.py: `argv`, `data` on its stdin)
        in the zygote, before any run it serves; False when the interpreter is not found. The
        zygote starts it only where each run has its own pid and mount namespaces (else warm
        runs start cold)."""
        argv = [str(a) for a in argv]
        if self._template is not None:
            return self._template == argv  # one per sandbox: a run it serves must be its command's
        if self._closed or self._dead:
            return False
        host_path = os.environ.get("PATH", _DEFAULT_PATH)
        launch = self._launch(argv[0], self._base, host_path)
        if launch is None:
            return False
        env = [f"PATH={launch.path}", "LANG=C.UTF-8"]
        try:
            self._client.start_template(launch.exe, argv, env, bytes(data), launch.ro_paths)
        except (OSError, RuntimeError):
            return False
        self._template = argv
        return True

    async def run_pair(
        self,
        first: Sequence[str],
        second: Sequence[str],
        *,
        cwd: tuple[Path, Path],
        limits: tuple[Limits, Limits] = (Limits(), Limits()),  # noqa: B008 - frozen
        env: tuple[Mapping[str, str] | None, Mapping[str, str] | None] = (None, None),
    ) -> tuple[RunResult, RunResult]:
        """Runs two programs wired stdin<->stdout (an interactive problem's solution and its
        interactor): each is a run of its own - own workdir (two different ones), namespaces,
        uid, limits and wall clock - and the two pipes between them are all they share.
        Neither stdout is captured (it is the other's input); stderr is. Both start together,
        whatever the concurrency limit."""
        if cwd[0] == cwd[1] or Path(cwd[0]).resolve() == Path(cwd[1]).resolve():
            return _sandbox_error("a pair needs two workdirs"), _sandbox_error("a pair needs two workdirs")
        a = self._submit(first, cwd=cwd[0], stdin=b"", limits=limits[0], env=env[0], peer=self._next_id + 1)
        if isinstance(a, RunResult):
            return a, a
        b = self._submit(second, cwd=cwd[1], stdin=b"", limits=limits[1], env=env[1], peer=a)
        if isinstance(b, RunResult):
            self._abandoned.add(a)
            self._results.pop(a, None)
            self._client.cancel(a)
            return b, b
        done: dict[int, RunResult] = {}

        async def wait(job: int) -> None:
            done[job] = await self._result(job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, a)
            tg.start_soon(wait, b)
        return done[a], done[b]

    def _submit(self, argv: Sequence[str], *, cwd: Path, stdin: bytes, limits: Limits,
                env: Mapping[str, str] | None, peer: int = 0, warm: bool = False) -> int | RunResult:
        """Sends one run to the zygote: its job id, or the sandbox error that stopped it."""
        if self._closed:
            return _sandbox_error("the sandbox is closed")
        if self._dead:
            return _sandbox_error(self._dead)
        argv = [str(a) for a in argv]
        if not argv:
            return _sandbox_error("empty argv")
        cwd_s = str(cwd)
        if cwd_s not in self._workdirs:
            cwd = Path(cwd).resolve()
            if cwd.parent != self._base:
                return _sandbox_error(f"cwd {cwd} is not a workdir of this sandbox (use Sandbox.workdir())")
            cwd_s = str(cwd)
        host_path = os.environ.get("PATH", _DEFAULT_PATH)
        launch = self._launch(argv[0], Path(cwd_s), host_path)
        if launch is None:
            return _sandbox_error(f"{argv[0]!r} not found (PATH={host_path})")
        environment = {"PATH": launch.path, "LANG": "C.UTF-8", "HOME": cwd_s, "TMPDIR": cwd_s}
        if launch.rustup_home:
            environment["RUSTUP_HOME"] = launch.rustup_home
        for k, v in (env or {}).items():
            if not k or "=" in k or "\0" in k or "\0" in str(v):
                return _sandbox_error(f"bad environment variable name or value: {k!r}")
            environment[k] = str(v)
        envp = [f"{k}={v}" for k, v in environment.items()]
        job = self._next_id
        self._next_id += 1
        self._results[job] = None
        try:
            self._client.submit(job, launch.exe, argv, envp, cwd_s, bytes(stdin), launch.ro_paths,
                                self._limits_tuple(limits), peer, warm)
        except (OSError, RuntimeError) as exc:
            del self._results[job]
            return _sandbox_error(f"submitting the run: {exc}")
        return job

    async def _result(self, job: int) -> RunResult:
        """Waits for a submitted run's result; cancelling the wait kills the run."""
        try:
            loop = _asyncio_loop()
            if loop is not None:
                await self._wait_on_loop(job, loop)
            else:
                await self._wait_generic(job)
            result = self._results[job]
            if result is None:
                return _sandbox_error(self._dead or "the sandbox was closed before the run ended")
            return result
        except BaseException:
            if self._results.get(job) is None and not self._dead:
                self._abandoned.add(job)
                self._client.cancel(job)
            raise
        finally:
            self._results.pop(job, None)
            self._wakers.pop(job, None)

    # -- results: one persistent reader on asyncio, a reading task elsewhere ----------------

    async def _wait_on_loop(self, job: int, loop) -> None:
        # On asyncio the zygote's descriptor stays registered with the loop for as long as the
        # loop runs: a callback takes each batch of results and resolves its runs' futures.
        # (anyio.wait_readable registers and unregisters the descriptor per wait: two epoll_ctl
        # calls and a future per run, which cost as much as the rest of run() together.)
        if self._loop is not loop:
            self._attach(loop)
        if self._results[job] is not None or self._dead or self._closed:
            return
        fut = self._wakers[job] = loop.create_future()
        await fut

    def _attach(self, loop) -> None:
        old, self._loop = self._loop, loop
        if old is not None and not old.is_closed():
            with contextlib.suppress(Exception):
                old.remove_reader(self._fd)
        loop.add_reader(self._fd, self._on_readable)

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        if not self._drain():
            self._detach()

    async def _wait_generic(self, job: int) -> None:
        while self._results[job] is None and not self._dead and not self._closed:
            if not self._reading:
                await self._read_until(job)
            else:
                waker = self._wakers[job] = anyio.Event()
                await waker.wait()

    async def _read_until(self, job: int) -> None:
        # One task at a time reads the zygote's fd (anyio allows one waiter per fd): the run
        # whose turn it is, until its own result is in. It wakes each run it delivers for, and
        # on leaving (done, failed or cancelled) wakes one still waiting to read in its place.
        self._reading = True
        try:
            while self._results.get(job) is None and not self._dead and not self._closed:
                await anyio.wait_readable(self._fd)
                self._drain()
        finally:
            self._reading = False
            for other, waker in self._wakers.items():
                if other != job and not waker.is_set():
                    waker.set()
                    break

    def _drain(self) -> bool:
        """Delivers every result the zygote has sent; False once it is gone (then every
        waiting run is woken to find out)."""
        alive, batch = self._client.take()
        for item in batch:
            self._deliver(item)
        if not alive and not self._closed:
            self._dead = "the sandbox zygote exited unexpectedly"
            for waker in self._wakers.values():
                _wake(waker)
        return alive

    def _deliver(self, item: tuple) -> None:
        (job, status, code, sig, cpu, wall, peak, out, err, out_trunc, err_trunc, error) = item
        if job in self._abandoned:
            self._abandoned.discard(job)
            return
        if job not in self._results:
            return
        self._results[job] = RunResult(
            status=status, exit_code=code, signal=sig, cpu_s=cpu, wall_s=wall,
            peak_memory_kb=peak, stdout=out, stderr=err, stdout_truncated=out_trunc,
            stderr_truncated=err_trunc, error=error,
        )
        waker = self._wakers.get(job)
        if waker is not None:
            _wake(waker)


def _wake(waker) -> None:
    """Resolves a waiting run's asyncio future or sets its anyio Event (either, once)."""
    if isinstance(waker, anyio.Event):
        waker.set()
    elif not waker.done():
        waker.set_result(None)


def _asyncio_loop():
    """The running asyncio loop, or None under another anyio backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
