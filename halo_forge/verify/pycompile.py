"""The host's compiler of sample Python: main.py and the test code compiled to bytecode in a
process of its own, so the run's judge loads bytecode instead of compiling (a compile in a
fresh fork of the warm template copies every page it writes, and cost a warm run about a third
of its CPU).

A process of its own, `python -I -S` of the run's own interpreter (bytecode is private to one
Python version): catching the compiler's warnings swaps the process-wide warnings state, which
in the verifier's process another thread's catch_warnings could cross (generation threads, a
training loop); and the model's code is compiled out of the verifier's memory. It answers each
request with the marshalled code, or nothing when the run must compile for itself: a syntax
error or any warning, which the run's compile reports as it always has, and code whose bytecode
is larger than _MAX_CODE. A compile may take no longer than the run's CPU limit (the run would
have spent it compiling); a failure of this process (gone, too slow) leaves that compile to the
run and the next sample to a new process, and after _MAX_FAILURES every compile to the runs.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time

# Flags that leave compile() as it is in a plain `python -I -S`: with others (-O, -X, -W) the
# run compiles for itself.
PLAIN_FLAGS = frozenset({"-I", "-S", "-E", "-s", "-B", "-u"})
_MAX_SOURCE = 256 << 10  # larger ones go to the run's compile, under its limits
# Folded constants make bytecode far larger than its source: 256 KiB of `'\U0001f600'*4096,`
# made 341 MB, which the verifier held twice over and sent down the run's stdin. A larger answer
# goes to the run's compile, under its memory limit.
_MAX_CODE = 16 * _MAX_SOURCE
_TIMEOUT_S = 10.0
# A compile that failed (too slow, too large, the process gone) stops the process; the next
# sample starts another, so one hostile sample does not leave every later compile to the runs,
# and after this many the runs compile for good (a stream of slow samples then costs the host
# nothing more).
_MAX_FAILURES = 3
# The process's address space: a hostile source's compile ends in a MemoryError here (the run
# then compiles it under its own memory limit) instead of taking a GB of the host's memory.
_MAX_MEMORY = 512 << 20

_SERVER = r"""
import marshal, os, resource, warnings
MAX_CODE = %d
resource.setrlimit(resource.RLIMIT_AS, (%d, %d))


def take(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(0)
        b += c
    return b


def compiled(source, name, k=16):
    # Compiled deeper in the stack than the run's own compile (the compiler's nesting limit
    # counts the frames below it): what compiles here compiles there.
    if k:
        return eval(DEEPER)
    return compile(source, name, "exec", dont_inherit=True, optimize=0)


DEEPER = compile("compiled(source, name, k - 1)", "<deeper>", "eval")
while True:
    name, _, source = take(int.from_bytes(take(4), "big")).partition(b"\0")
    out = b""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = compiled(source, name.decode())
        if not caught:
            out = marshal.dumps(code)
            if len(out) > MAX_CODE:
                out = b""
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        pass
    data = memoryview(len(out).to_bytes(4, "big") + out)
    while data:
        data = data[os.write(1, data):]
"""


class PythonCompiler:
    """`compiler(filename, source)`: the marshalled code of `source` (bytes, as the run would
    read them) for `python`, or b"" when the run must compile it. Started on first use;
    `timeout_s`: the longest a compile may take (the run's CPU limit; never over _TIMEOUT_S)."""

    def __init__(self, python: str, *, timeout_s: float = _TIMEOUT_S) -> None:
        self.python = python
        self.timeout_s = min(timeout_s, _TIMEOUT_S)
        self._proc: subprocess.Popen | None = None
        self._owner = os.getpid()
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __call__(self, filename: str, source: bytes) -> bytes:
        if self._failures >= _MAX_FAILURES or len(source) > _MAX_SOURCE or os.getpid() != self._owner:
            return b""
        with self._lock:
            try:
                if self._proc is None:
                    self._proc = subprocess.Popen([self.python, "-I", "-S", "-c", _SERVER % (_MAX_CODE, _MAX_MEMORY, _MAX_MEMORY)], stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
                request = filename.encode() + b"\0" + source
                self._write(len(request).to_bytes(4, "big") + request)
                deadline = time.monotonic() + self.timeout_s
                size = int.from_bytes(self._read(4, deadline), "big")
                if size > _MAX_CODE:
                    raise OSError("the python compiler's answer is larger than it may be")
                return self._read(size, deadline)
            except (OSError, ValueError, TimeoutError):
                self._failures += 1
                self._stop(kill=True)
                return b""
            except BaseException:  # Ctrl-C, a signal handler's exception: the rest of this answer
                self._failures += 1  # would be read as the next one's, another sample's code
                self._stop(kill=True)
                raise

    def _write(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._proc.stdin.fileno(), view):]

    def _read(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd, parts, got = self._proc.stdout.fileno(), [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the python compiler did not answer")
            chunk = os.read(fd, n - got)
            if not chunk:
                raise OSError("the python compiler exited")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def _stop(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None or os.getpid() != self._owner:
            return
        if kill:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()  # the server reads end of file and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
