"""Hostile programs and compiler bombs, compiled and run through the sandbox.

Each test asserts the status, a generous bound on how long the run took to end, and that no
process is left behind. Each protection has a test that fails without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import anyio
import pytest

from halo_forge.sandbox import Limits, RunResult, Sandbox

try:
    from tests.sandbox_util import assert_nothing_left, loopback_listener
except ImportError:
    from sandbox_util import assert_nothing_left, loopback_listener

pytestmark = pytest.mark.anyio

COMPILE = Limits(cpu_s=20, wall_s=40, memory_mb=2048)
DEFAULT = Limits()
BOMB = Limits(cpu_s=3, wall_s=8, memory_mb=512, output_bytes=256 << 10)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(max_concurrency=2) as s:
        yield s


def rustc() -> str | None:
    if not shutil.which("rustc"):
        return None
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=False).stdout.strip()
    real = os.path.join(sysroot, "bin", "rustc")
    return real if os.path.exists(real) else shutil.which("rustc")


async def build_and_run(sb: Sandbox, src: str, *, lang: str = "c", limits: Limits = DEFAULT,
                        args: tuple[str, ...] = (), stdin: bytes = b"") -> tuple[RunResult, float]:
    name = {"c": "p.c", "cpp": "p.cpp"}[lang]
    cc = {"c": ["gcc", "-O1", "-pthread"], "cpp": ["g++", "-O1", "-pthread"]}[lang]
    with sb.workdir({name: src}) as wd:
        built = await sb.run([*cc, name, "-o", "p"], cwd=wd, limits=COMPILE)
        assert built.status == "ok", built.stderr.decode()
        t0 = time.monotonic()
        r = await sb.run(["./p", *args], cwd=wd, limits=limits, stdin=stdin)
        return r, time.monotonic() - t0


SYSCALLS_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
static void show(const char* name, long rc) { printf("%s %s\n", name, rc < 0 ? strerrorname_np(errno) : "ALLOWED"); }
int main(void) {
    show("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    show("socket_inet6", socket(AF_INET6, SOCK_DGRAM, 0));
    show("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
    show("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
    show("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
    int sv[2];
    show("socketpair_unix", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    show("socketpair_inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    show("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
    show("unshare_user", unshare(CLONE_NEWUSER));
    show("unshare_net", unshare(CLONE_NEWNET));
    show("mount", mount("none", "/tmp", "tmpfs", 0, 0));
    show("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    show("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -2));
    union bpf_attr a; memset(&a, 0, sizeof a);
    show("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a));
    show("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    struct io_uring_params p; memset(&p, 0, sizeof p);
    show("io_uring_setup", syscall(SYS_io_uring_setup, 4, &p));
    show("userfaultfd", syscall(SYS_userfaultfd, 0));
    show("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    show("clone3", syscall(SYS_clone3, 0, 0));
    show("getpid", getpid());
    return 0;
}
"""


async def test_seccomp_denies_dangerous_syscalls(sb):
    r, took = await build_and_run(sb, SYSCALLS_C)
    assert r.status == "ok", r
    got = dict(line.split() for line in r.stdout.decode().splitlines())
    allowed = {"socketpair_unix", "getpid"}  # socket_unix: tests/test_sandbox_socket.py
    for name, verdict in got.items():
        if name in allowed:
            assert verdict == "ALLOWED", name
        else:
            assert verdict != "ALLOWED", (name, verdict)
    assert got["socket_inet"] == "EACCES" and got["io_uring_setup"] == "ENOSYS"
    assert took < 10
    assert_nothing_left(sb)


I386_C = r"""
#include <stdio.h>
int main(void) {
    long ret;
    /* getpid through the i386 ABI: seccomp's arch check must kill this */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
    printf("survived %ld\n", ret);
    return 0;
}
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="i386 ABI exists only on x86_64")
async def test_foreign_arch_syscall_is_killed(sb):
    r, _ = await build_and_run(sb, I386_C)
    assert r.status == "runtime_error" and r.signal == signal.SIGSYS, r
    assert b"survived" not in r.stdout


CONNECT_C = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char** argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 2; }
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(s, (struct sockaddr*)&a, sizeof a) < 0) { perror("connect"); return 3; }
    write(s, "leak", 4);
    puts("connected");
    return 0;
}
"""


async def test_socket_to_loopback_listener_receives_nothing(sb):
    with loopback_listener() as (port, accepted):
        r, _ = await build_and_run(sb, CONNECT_C, args=(str(port),))
    assert r.status == "runtime_error" and r.exit_code == 2, r
    assert b"connected" not in r.stdout
    assert accepted == []


async def test_segfault(sb):
    r, _ = await build_and_run(sb, "int main(void){ volatile int* p = 0; *p = 1; return 0; }")
    assert (r.status, r.signal, r.exit_code) == ("runtime_error", signal.SIGSEGV, None)


async def test_fork_bomb(sb):
    src = "#include <unistd.h>\nint main(void){ for(;;) fork(); }"
    r, took = await build_and_run(sb, src, limits=Limits(processes=32, cpu_s=2, wall_s=3))
    assert r.status == "timeout", r
    assert took < 15
    assert_nothing_left(sb)


async def test_fork_bomb_cannot_exceed_its_process_limit(sb):
    src = r"""
#include <stdio.h>
#include <unistd.h>
int main(void){ int n = 0; for (int i = 0; i < 1000; ++i) { pid_t p = fork(); if (p == 0) { pause(); _exit(0); } if (p < 0) break; ++n; } printf("%d\n", n); return 0; }
"""
    r, took = await build_and_run(sb, src, limits=Limits(processes=20, wall_s=10))
    assert r.status == "ok", r
    assert int(r.stdout) < 20  # the limit counts this run's processes only
    assert took < 10
    assert_nothing_left(sb)


async def test_memory_hog(sb):
    src = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void){ for(;;){ char* p = malloc(16 << 20); if (!p) { fprintf(stderr, "out of memory\n"); return 1; } memset(p, 1, 16 << 20); } }
"""
    r, took = await build_and_run(sb, src, limits=Limits(memory_mb=256, wall_s=20))
    assert r.status == "memory_limit", r
    assert r.peak_memory_kb < 300 * 1024
    assert took < 15


async def test_huge_single_allocation(sb):
    src = "#include <vector>\nint main(){ std::vector<char> v(std::size_t(64) << 30); return v[5]; }"
    r, _ = await build_and_run(sb, src, lang="cpp", limits=Limits(memory_mb=256))
    assert r.status == "memory_limit", r


THREADS_CPP = r"""
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <vector>
int main(int argc, char** argv) {
    int want = atoi(argv[1]), made = 0;
    std::vector<std::thread> ts;
    try {
        for (; made < want; ++made) ts.emplace_back([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });
    } catch (const std::system_error& e) { std::fprintf(stderr, "stopped at %d: %s\n", made, e.what()); }
    for (auto& t : ts) t.join();
    std::printf("%d\n", made);
    return made == want ? 0 : 1;
}
"""


async def test_threads_work_within_limits(sb):
    r, _ = await build_and_run(sb, THREADS_CPP, lang="cpp", args=("48",), limits=Limits(memory_mb=1024))
    assert r.status == "ok" and r.stdout == b"48\n", r


async def test_many_threads_are_bounded(sb):
    r, took = await build_and_run(sb, THREADS_CPP, lang="cpp", args=("5000",),
                                  limits=Limits(processes=64, memory_mb=1024))
    assert r.status == "runtime_error", r
    assert int(r.stdout) < 64
    assert took < 10
    assert_nothing_left(sb)


async def test_reads_no_environment_secret(sb, monkeypatch):
    monkeypatch.setenv("HALO_API_KEY", "sk-very-secret")
    src = '#include <stdio.h>\n#include <stdlib.h>\nextern char** environ;\nint main(void){ for (char** e = environ; *e; ++e) puts(*e); return getenv("HALO_API_KEY") != 0; }'
    r, _ = await build_and_run(sb, src)
    assert r.status == "ok" and b"sk-very-secret" not in r.stdout


# -- compiler bombs ----------------------------------------------------------------------------


async def compile_only(sb: Sandbox, argv: list[str], files: dict[str, str], limits: Limits = BOMB):
    with sb.workdir(files) as wd:
        t0 = time.monotonic()
        r = await sb.run(argv, cwd=wd, limits=limits)
        return r, time.monotonic() - t0


async def test_c_include_dev_zero(sb):
    r, took = await compile_only(sb, ["gcc", "-c", "bomb.c"], {"bomb.c": '#include "/dev/zero"\n'})
    assert r.status in ("timeout", "memory_limit"), r
    assert took < 15
    assert_nothing_left(sb)


async def test_c_include_of_unreadable_or_hidden_files_fails(sb, tmp_path):
    secret = tmp_path / "secret.h"
    secret.write_text("int leaked = 424242;\n")
    r, _ = await compile_only(sb, ["gcc", "-E", "x.c"], {"x.c": f'#include "{secret}"\n#include "/etc/shadow"\n'},
                              limits=COMPILE)
    assert r.status == "runtime_error", r
    assert b"424242" not in r.stdout + r.stderr


async def test_cpp_template_recursion_bomb(sb):
    src = """
template <class T, int N> struct X {
    typedef X<X<T, N - 1>, N - 1> A;
    typedef X<T*, N - 1> B;
    static const long v = A::v + B::v;
};
template <class T> struct X<T, 0> { static const long v = 1; };
long r = X<int, 40>::v;
"""
    r, took = await compile_only(sb, ["g++", "-c", "bomb.cpp"], {"bomb.cpp": src})
    assert r.status in ("timeout", "memory_limit"), r
    assert took < 15
    assert_nothing_left(sb)


async def test_cpp_error_flood(sb):
    src = ('#define A {int a = "";}\n#define B A A A A A A A A A A\n#define C B B B B B B B B B B\n'
           "#define D C C C C C C C C C C\n#define E D D D D D D D D D D\nvoid f() { E E E E E E E E E E }\n")
    r, took = await compile_only(sb, ["g++", "-c", "-fmax-errors=0", "flood.cpp"], {"flood.cpp": src})
    assert r.status in ("output_limit", "timeout"), r
    if r.status == "output_limit":
        assert r.stderr_truncated and len(r.stderr) == BOMB.output_bytes
    assert took < 15


@pytest.mark.skipif(rustc() is None, reason="rustc not installed")
async def test_rust_include_bytes_dev_zero(sb):
    src = 'static B: &[u8] = include_bytes!("/dev/zero");\nfn main() { println!("{}", B.len()); }\n'
    r, took = await compile_only(sb, [rustc(), "bomb.rs"], {"bomb.rs": src})
    assert r.status in ("timeout", "memory_limit"), r
    assert took < 15
    assert_nothing_left(sb)


@pytest.mark.skipif(rustc() is None, reason="rustc not installed")
async def test_rust_include_str_outside_fails(sb, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("rust-secret-9876")
    src = (f'const S: &str = include_str!("{secret}");\nconst P: &str = include_str!("/etc/shadow");\n'
           'fn main() { println!("{}{}", S, P); }\n')
    r, _ = await compile_only(sb, [rustc(), "leak.rs"], {"leak.rs": src}, limits=COMPILE)
    assert r.status == "runtime_error", r
    assert b"rust-secret-9876" not in r.stdout + r.stderr


@pytest.mark.skipif(rustc() is None, reason="rustc not installed")
async def test_rust_macro_expansion_bomb(sb):
    src = "macro_rules! m { ($($t:tt)*) => { m!($($t)* $($t)*); } }\nm!(x);\nfn main() {}\n"
    r, took = await compile_only(sb, [rustc(), "bomb.rs"], {"bomb.rs": src})
    assert r.status in ("timeout", "memory_limit", "output_limit"), r
    assert took < 15
    assert_nothing_left(sb)


@pytest.mark.skipif(rustc() is None, reason="rustc not installed")
async def test_rust_env_macro_sees_no_secret(sb, monkeypatch):
    monkeypatch.setenv("HALO_RUST_SECRET", "rs-secret-1234")
    src = 'fn main() { println!("{:?}", option_env!("HALO_RUST_SECRET")); }\n'
    with sb.workdir({"m.rs": src}) as wd:
        built = await sb.run([rustc(), "m.rs", "-o", "m"], cwd=wd, limits=COMPILE)
        assert built.status == "ok", built.stderr.decode()
        r = await sb.run(["./m"], cwd=wd)
    assert r.stdout == b"None\n"


async def test_concurrent_bombs_do_not_disturb_a_good_run(sb):
    out: dict[str, RunResult] = {}

    async def bomb():
        out["bomb"], _ = await compile_only(sb, ["gcc", "-c", "b.c"], {"b.c": '#include "/dev/zero"\n'})

    async def good():
        out["good"], _ = await build_and_run(sb, '#include <stdio.h>\nint main(void){ puts("fine"); return 0; }')

    async with anyio.create_task_group() as tg:
        tg.start_soon(bomb)
        tg.start_soon(good)
    assert out["good"].status == "ok" and out["good"].stdout == b"fine\n"
    assert out["bomb"].status in ("timeout", "memory_limit")


IPC_PROBE = r"""
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
static int made = 0;
static void check(const char* what, int r) {
    if (r >= 0) made = 1;
    printf("%s %s\n", what, r >= 0 ? "CREATED" : strerror(errno));
}
int main(int argc, char** argv) {
    key_t host_key = (key_t)strtol(argv[1], 0, 0);
    check("shmget", shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600));
    check("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    check("semget", semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    check("mq_open", (int)mq_open("/halo-forge-probe", O_CREAT | O_RDWR, 0600, NULL));
    /* The caller's segment (shmget itself is denied, so look at the namespace's table). */
    FILE* f = fopen("/proc/sysvipc/shm", "r");
    char line[512];
    int seen = 0, rows = 0;
    while (f && fgets(line, sizeof line, f)) {
        long k;
        if (sscanf(line, "%ld", &k) == 1) { ++rows; if ((key_t)k == host_key) seen = 1; }
    }
    printf("host_shm %s rows=%d\n", !f ? "unreadable" : seen ? "VISIBLE" : "hidden", rows);
    return made || seen || !f;
}
"""


async def test_run_cannot_create_or_see_ipc_objects(sb):
    # Runs share one IPC namespace (cheaper than one per run); what keeps them apart is that
    # none of them can create a SysV or POSIX message-queue object in it.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x48460000 + os.getpid() % 0xFFFF
    host_id = libc.shmget(key, 4096, 0o1000 | 0o600)  # IPC_CREAT
    assert host_id >= 0, os.strerror(ctypes.get_errno())
    try:
        r, _ = await build_and_run(sb, IPC_PROBE, args=(hex(key),))
    finally:
        libc.shmctl(host_id, 0, None)  # IPC_RMID
    lines = r.stdout.decode().splitlines()
    assert [ln.split()[0] for ln in lines] == ["shmget", "msgget", "semget", "mq_open", "host_shm"], r
    assert not any("CREATED" in ln for ln in lines), lines
    assert lines[-1] == "host_shm hidden rows=0", lines
    assert r.status == "ok", r
    assert_nothing_left(sb)
