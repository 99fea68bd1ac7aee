"""Named unix sockets: a run may not reach a listener by a socket's name.

The system folders a run sees (/etc, /opt, /usr, readonly_paths) are mounted read-only, but a
unix socket on a read-only mount stays connectable, and abstract names live in the network
namespace all of one sandbox's runs share. Each hostile test here starts a listener (on the
host, in a folder the run sees, or in another run) that records anything reaching it, and has
an honest control beside it (socketpair, a pipe) that keeps working.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from halo_forge.sandbox import Limits, Sandbox

try:
    from tests.sandbox_util import assert_nothing_left
except ImportError:
    from sandbox_util import assert_nothing_left

pytestmark = pytest.mark.anyio

COMPILE = Limits(cpu_s=20, wall_s=40, memory_mb=2048)
RUN = Limits(cpu_s=5, wall_s=15)


def _shown_parent() -> str:
    # Not under /tmp (each run has its own) and short: a socket's path has ~107 bytes.
    for d in ("/var/tmp", str(Path.home())):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    raise RuntimeError("no writable folder outside /tmp for the test's sockets")


@pytest.fixture(scope="module")
def shown_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="hf-sock-", dir=_shown_parent()))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def system_dir() -> Iterator[Path | None]:
    """A folder inside /opt, which every run sees without being asked; None where this
    user cannot write there (the readonly_paths folder still covers the channel)."""
    if not (os.path.isdir("/opt") and os.access("/opt", os.W_OK)):
        yield None
        return
    d = Path(tempfile.mkdtemp(prefix=".hf-sock-", dir="/opt"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _python():
    """The interpreter as the verifier runs it: its real path (a venv's bin/ may sit where
    runs cannot see, e.g. under /tmp) and the folders it needs shown."""
    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.toolchains import resolve_toolchain

    return resolve_toolchain("python", VerifierConfig().compiler("python"))


@pytest.fixture(scope="module")
def sb(shown_dir):
    shown = [str(shown_dir), *_python().readonly_paths]
    with Sandbox(max_concurrency=2, readonly_paths=shown) as s:
        yield s


class Listeners:
    """Host listeners on one folder, recording what reaches them: a stream socket, a
    datagram socket and a seqpacket socket by path, and a stream socket by abstract name."""

    def __init__(self, folder: Path) -> None:
        tag = secrets.token_hex(4)
        self.stream_path = str(folder / f"s-{tag}")
        self.dgram_path = str(folder / f"d-{tag}")
        self.seq_path = str(folder / f"q-{tag}")
        self.abstract = f"hf-test-{tag}"
        self.reached: list[str] = []
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Listeners:
        for kind, addr, typ in (("stream", self.stream_path, socket.SOCK_STREAM),
                                ("seqpacket", self.seq_path, socket.SOCK_SEQPACKET),
                                ("abstract", "\0" + self.abstract, socket.SOCK_STREAM)):
            s = socket.socket(socket.AF_UNIX, typ)
            s.bind(addr)
            s.listen(8)
            self._serve(kind, s, accept=True)
        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        d.bind(self.dgram_path)
        self._serve("dgram", d, accept=False)
        for p in (self.stream_path, self.dgram_path, self.seq_path):
            os.chmod(p, 0o777)  # any run uid may connect: only the sandbox stands in the way
        return self

    def _serve(self, kind: str, s: socket.socket, *, accept: bool) -> None:
        s.settimeout(0.1)
        self._socks.append(s)

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if accept:
                        self._socks.append(s.accept()[0])
                    else:
                        s.recv(4096)
                    self.reached.append(kind)
                except OSError:
                    pass

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self._threads.append(t)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        for s in self._socks:
            s.close()
        for p in (self.stream_path, self.dgram_path, self.seq_path):
            with contextlib.suppress(OSError):
                os.unlink(p)

    def argv(self) -> list[str]:
        return [self.stream_path, self.dgram_path, self.seq_path, self.abstract]


# Every way to a named socket the C library offers: a socket of each type connected or sent
# to by name, and the sockets socketpair() makes (connected already) re-aimed at a name with
# connect() or sendto(). Prints one "<attempt> <errno name | REACHED>" line each, then the
# honest controls ("<control> ok").
CLIENT_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t addr(struct sockaddr_un* a, const char* name, int abstract) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return offsetof(struct sockaddr_un, sun_path) + n + 1;  /* the NUL, or the leading 0 */
}
static void show(const char* what, int rc) { printf("%s %s\n", what, rc < 0 ? strerrorname_np(errno) : "REACHED"); }

static int connect_to(int type, const char* name, int abstract) {
    struct sockaddr_un a; socklen_t n = addr(&a, name, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0) return -1;
    int rc = connect(s, (struct sockaddr*)&a, n);
    if (rc == 0 && write(s, "leak", 4) < 0) rc = -1;
    return rc;
}
static int send_to(int s, const char* name) {
    struct sockaddr_un a; socklen_t n = addr(&a, name, 0);
    return sendto(s, "leak", 4, 0, (struct sockaddr*)&a, n) == 4 ? 0 : -1;
}
static int sendmsg_to(int s, const char* name) {
    struct sockaddr_un a; socklen_t n = addr(&a, name, 0);
    struct iovec v = {"leak", 4};
    struct msghdr m = {0};
    m.msg_name = &a; m.msg_namelen = n; m.msg_iov = &v; m.msg_iovlen = 1;
    return sendmsg(s, &m, 0) == 4 ? 0 : -1;
}
static int pair_then(int type, int how, const char* name) {
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv) < 0) return -1;
    if (how == 0) {
        struct sockaddr_un a; socklen_t n = addr(&a, name, 0);
        if (connect(sv[0], (struct sockaddr*)&a, n) < 0) return -1;
        return write(sv[0], "leak", 4) == 4 ? 0 : -1;
    }
    /* the peer must not count as reaching the listener: close it first */
    close(sv[1]);
    return how == 1 ? send_to(sv[0], name) : sendmsg_to(sv[0], name);
}

int main(int argc, char** argv) {
    const char *stream = argv[1], *dgram = argv[2], *seq = argv[3], *abstract = argv[4];
    show("connect_stream", connect_to(SOCK_STREAM, stream, 0));
    show("connect_seqpacket", connect_to(SOCK_SEQPACKET, seq, 0));
    show("connect_dgram", connect_to(SOCK_DGRAM, dgram, 0));
    show("connect_abstract", connect_to(SOCK_STREAM, abstract, 1));
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("sendto_dgram", d < 0 ? -1 : send_to(d, dgram));
    show("pair_dgram_connect", pair_then(SOCK_DGRAM, 0, dgram));
    show("pair_dgram_sendto", pair_then(SOCK_DGRAM, 1, dgram));
    show("pair_dgram_sendmsg", pair_then(SOCK_DGRAM, 2, dgram));
    show("pair_stream_sendto", pair_then(SOCK_STREAM, 1, dgram));
    show("pair_seqpacket_sendmsg", pair_then(SOCK_SEQPACKET, 2, dgram));
    show("pair_stream_connect", pair_then(SOCK_STREAM, 0, stream));

    /* honest controls */
    char buf[8] = {0};
    int sv[2], p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0 && write(sv[0], "ping", 4) == 4
        && read(sv[1], buf, 4) == 4 && memcmp(buf, "ping", 4) == 0) puts("socketpair_stream ok");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0 && write(sv[1], "pong", 4) == 4
        && read(sv[0], buf, 8) == 4 && memcmp(buf, "pong", 4) == 0) puts("socketpair_seqpacket ok");
    if (pipe(p) == 0 && write(p[1], "pipe", 4) == 4 && read(p[0], buf, 4) == 4 && memcmp(buf, "pipe", 4) == 0)
        puts("pipe ok");
    return 0;
}
"""

ATTEMPTS = {"connect_stream", "connect_seqpacket", "connect_dgram", "connect_abstract", "sendto_dgram",
            "pair_dgram_connect", "pair_dgram_sendto", "pair_dgram_sendmsg", "pair_stream_sendto",
            "pair_seqpacket_sendmsg", "pair_stream_connect"}
CONTROLS = {"socketpair_stream", "socketpair_seqpacket", "pipe"}


def parse(stdout: bytes) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.decode().splitlines())


async def build(sb: Sandbox, wd: Path, src: str, name: str = "p") -> None:
    (wd / f"{name}.c").write_text(src)
    built = await sb.run(["gcc", "-O1", f"{name}.c", "-o", name], cwd=wd, limits=COMPILE)
    assert built.status == "ok", built.stderr.decode()


async def test_c_program_reaches_no_named_unix_socket(sb, shown_dir, system_dir):
    folders = [shown_dir] + ([system_dir] if system_dir else [])
    with sb.workdir() as wd:
        await build(sb, wd, CLIENT_C)
        for folder in folders:
            with Listeners(folder) as ls:
                r = await sb.run(["./p", *ls.argv()], cwd=wd, limits=RUN)
            assert r.status == "ok", r
            got = parse(r.stdout)
            assert ls.reached == [], (folder, ls.reached, got)
            for attempt in ATTEMPTS:
                assert got[attempt] != "REACHED", (folder, attempt, got)
            for control in CONTROLS:
                assert got.get(control) == "ok", (control, got)
    assert_nothing_left(sb)


PY_CLIENT = r"""
import os, socket, sys
stream, dgram, seq, abstract = sys.argv[1:5]
def attempt(name, fn):
    try:
        fn()
        print(name, "REACHED")
    except OSError as e:
        print(name, type(e).__name__)
def connect(addr, typ=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, typ)
    s.connect(addr)
    s.send(b"leak")
attempt("connect_stream", lambda: connect(stream))
attempt("connect_seqpacket", lambda: connect(seq, socket.SOCK_SEQPACKET))
attempt("connect_abstract", lambda: connect("\0" + abstract))
attempt("sendto_dgram", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"leak", dgram))
def pair_sendto():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.close()
    a.sendto(b"leak", dgram)
attempt("pair_dgram_sendto", pair_sendto)
a, b = socket.socketpair()
a.sendall(b"ping")
assert b.recv(4) == b"ping"
print("socketpair ok")
r, w = os.pipe()
os.write(w, b"pipe")
assert os.read(r, 4) == b"pipe"
print("pipe ok")
"""


async def test_python_program_reaches_no_named_unix_socket(sb, shown_dir):
    with sb.workdir({"client.py": PY_CLIENT}) as wd, Listeners(shown_dir) as ls:
        python = _python().run_argv(wd)[0]
        r = await sb.run([python, "-I", "client.py", *ls.argv()], cwd=wd, limits=RUN)
    assert r.status == "ok", (r, r.stderr.decode())
    got = parse(r.stdout)
    assert ls.reached == [], (ls.reached, got)
    assert set(got) == {"connect_stream", "connect_seqpacket", "connect_abstract", "sendto_dgram",
                        "pair_dgram_sendto", "socketpair", "pipe"}, got
    for name, verdict in got.items():
        assert verdict == ("ok" if name in ("socketpair", "pipe") else "PermissionError"), (name, got)
    assert_nothing_left(sb)


# One run listens on an abstract name (runs share one network namespace, so abstract names
# are shared too), another tries to connect to it: a channel between runs of the same sandbox.
LISTEN_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char** argv) {
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    size_t n = strlen(argv[1]);
    memcpy(a.sun_path + 1, argv[1], n);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || bind(s, (struct sockaddr*)&a, len) < 0 || listen(s, 1) < 0) {
        printf("listen %s\n", strerrorname_np(errno));
        return 0;
    }
    puts("listening");
    fflush(stdout);
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 4000) == 1 && accept(s, 0, 0) >= 0) puts("accepted");
    return 0;
}
"""

CONNECT_ABSTRACT_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char** argv) {
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    size_t n = strlen(argv[1]);
    memcpy(a.sun_path + 1, argv[1], n);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    int err = 0;
    /* the listener may start after this run: keep trying for ~3 s */
    for (int i = 0; i < 60; ++i) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0) { err = errno; break; }
        if (connect(s, (struct sockaddr*)&a, len) == 0) { puts("connect REACHED"); return 0; }
        err = errno;
        close(s);
        usleep(50000);
    }
    printf("connect %s\n", strerrorname_np(err));
    return 0;
}
"""


async def test_runs_share_no_abstract_unix_socket(sb):
    name = f"hf-xrun-{secrets.token_hex(4)}"
    results = {}
    with sb.workdir() as wd:
        await build(sb, wd, LISTEN_C, "listen")
        await build(sb, wd, CONNECT_ABSTRACT_C, "connect")

        async def run(key: str, exe: str) -> None:
            results[key] = await sb.run([exe, name], cwd=wd, limits=RUN)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "listen", "./listen")
            tg.start_soon(run, "connect", "./connect")
    listen, connect = results["listen"], results["connect"]
    assert listen.status == "ok" and connect.status == "ok", (listen, connect)
    assert b"accepted" not in listen.stdout, listen.stdout
    got = parse(connect.stdout)
    assert got["connect"] != "REACHED", got
    assert_nothing_left(sb)


def test_check_names_the_protection(sb):
    # Reported on its own line: where seccomp is unavailable it says the channel is open.
    prot = sb.protections()
    assert "no_named_unix_sockets" in prot
    assert (prot["no_named_unix_sockets"] is None) == (prot["seccomp"] is None), prot
