"""Reward integrity for C, C++ and Rust samples with `test_code`: the judge outside the
solution's reach, whatever the solution's spelling.

A solution that earns reward without solving the problem is amplified by RAFT, so each defence
here works on what the compiler and linker see, not on how the solution is written:

- Compile-time reads: the program is compiled from the compiler's stdin, in an empty working
  directory. No file holds the tests while the solution compiles (`#include __FILE__`,
  `include_str!(file!())` find nothing) or while it runs (the run sees only the binary).
- Macros (C/C++): directives cannot be produced by macro expansion, so every name the
  solution's text could `#define` or `#undef` is found by a scan that follows the
  preprocessor's own phases (line splices, trigraphs, digraphs, comments inside directives);
  all of them are #undef'd between the solution and the tests, NDEBUG included, and
  <assert.h> is read again. Pragma state (optimize, pack) is reset there too.
- Leaving early (C/C++/Rust): the binary is linked with `-Wl,--wrap` for every libc entry that
  ends or replaces the process (exit, _exit, _Exit, quick_exit, pthread_exit, thrd_exit,
  syscall, the exec family) and for dlsym/dlopen (which would hand out the unwrapped ones).
  A wrapper object, compiled once per toolchain, turns any of them with status 0 into exit
  status EARLY_EXIT_STATUS; non-zero statuses go through unchanged, so an honest abort()/exit(1)
  on impossible input costs nothing when the tests never reach it. Returning from the test's
  `main` is the only way to exit 0. It also checks that the process entry is the test's `main`
  (asm labels or `#pragma redefine_extname` cannot swap it) and that main runs once.
- Raw syscalls (C/C++): the program is compiled to assembly first; inline assembly (always
  between #APP/#NO_APP in GCC's output), references to the wrapper's `__real_`/`__wrap_`
  names, data placed in executable sections and executable stacks are refused there.
  Rust: `-F unsafe_code` (asm!, extern functions, no_mangle/link_section all need it).
- Rust test code is rewritten (it is ours, not the model's): std macros are called by absolute
  path (a solution's `macro_rules! assert_eq` cannot shadow them), a check after the solution
  fails the build when the solution shadows a prelude name or primitive type the tests see
  through `use super::*`, and every `assert_eq!(x, LITERAL)` also asserts `x != LITERAL'`
  (a different literal), so an always-equal PartialEq fails.
- C++ test code gets the same probe: `EXPR == LITERAL` and `EXPR != LITERAL` go through a
  helper that also compares EXPR with a different literal (EXPR is evaluated once).

Each defence has a name in DEFENCES; `disabled` (from `Verifier.native_disabled`, tests and
bench only) switches single ones off, so that each is shown to be what stops its attack.

What one process cannot stop: a solution that reads its own memory (the test's constants are
compiled into it) or parses libc's symbol table by hand to find the unwrapped exit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import anyio
import msgspec

from halo_forge.errors import HaloError
from halo_forge.verify.toolchains import BINARY_NAME, Toolchain, short_hash

log = logging.getLogger(__name__)

# Goes into the verdict-cache key: bump whenever what these defences accept or refuse changes.
NATIVE_JUDGE_VERSION = 1
EARLY_EXIT_STATUS = 87
EARLY_GUARD = "exited before its tests finished"
ASM_NAME = "halo_main.s"  # the C/C++ compile's assembly, read here, removed before the run
GUARD_NAME = "halo_guard.o"

# Each defence by name, so that tests (and bench) can switch off exactly one and show the attack
# it alone stops: `Verifier.native_disabled`, passed down as `disabled`. Empty outside them.
DEFENCES = {
    "no_files": "compile from stdin in an empty workdir; only the binary stays for the run",
    "undef": "#undef of every name the solution defines, before the tests",
    "exit_wrap": "link-time --wrap of the exits (status 0), exec, dlsym, and the main-entry check",
    "asm_scan": "the assembly scan: inline asm, __real_/__wrap_, executable data or stack",
    "cpp_probes": "C++ `EXPR == LITERAL` also compared with a different literal",
    "rust_probes": "Rust `assert_eq!(EXPR, LITERAL)` also asserts EXPR != a different literal",
    "rust_macro_paths": "std macros in Rust tests called by absolute path",
    "rust_prelude": "the check that the prelude names and primitives the tests see are std's",
    "rust_summary": "a second libtest summary (or `running` line) fails the run",
    "rust_unsafe": "rustc -F unsafe_code",
}


def check_disabled(disabled: frozenset[str]) -> frozenset[str]:
    unknown = sorted(set(disabled) - DEFENCES.keys())
    if unknown:
        raise HaloError(f"unknown native defence {', '.join(unknown)}: choose from {', '.join(DEFENCES)}")
    return frozenset(disabled)

_ENDS_PROCESS = ("exit", "_exit", "_Exit", "quick_exit", "pthread_exit", "thrd_exit")
_EXEC = ("execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve", "execveat")
WRAPPED = (*_ENDS_PROCESS, *_EXEC, "syscall", "dlsym", "dlvsym", "dlopen", "dlmopen",
           "mprotect", "pkey_mprotect", "mmap", "mmap64", "__libc_start_main")

# The wrapper object. Trusted code, built by the trusted compiler outside the sandbox.
GUARD_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define EARLY @EARLY@
typedef int (*halo_main_fn)(int, char **, char **);
extern void __real_exit(int) __attribute__((noreturn));
extern void __real__exit(int) __attribute__((noreturn));
extern void __real__Exit(int) __attribute__((noreturn));
extern void __real_quick_exit(int) __attribute__((noreturn));
extern long __real_syscall(long, ...);
extern void *__real_dlsym(void *, const char *);
extern void *__real_dlvsym(void *, const char *, const char *);
extern int __real_mprotect(void *, size_t, int);
extern int __real_pkey_mprotect(void *, size_t, int, int);
extern void *__real_mmap(void *, size_t, int, int, int, off_t);
extern void *__real_mmap64(void *, size_t, int, int, int, off_t);
extern int __real___libc_start_main(halo_main_fn, int, char **, void (*)(void), void (*)(void),
                                    void (*)(void), void *);
/* Defined after the test code of C/C++ programs (its address is the test's own main). */
extern halo_main_fn halo_test_entry __attribute__((weak));

static void early(const char *how) __attribute__((noreturn));
static void early(const char *how) {
    static const char a[] = "\nhalo-forge: the program ended the process (";
    static const char b[] = ") before its tests finished\n";
    (void)!write(2, a, sizeof a - 1);
    (void)!write(2, how, strlen(how));
    (void)!write(2, b, sizeof b - 1);
    __real__exit(EARLY);
}

void __wrap_exit(int s) { if (s == 0) early("exit"); __real_exit(s); }
void __wrap__exit(int s) { if (s == 0) early("_exit"); __real__exit(s); }
void __wrap__Exit(int s) { if (s == 0) early("_Exit"); __real__Exit(s); }
void __wrap_quick_exit(int s) { if (s == 0) early("quick_exit"); __real_quick_exit(s); }
void __wrap_pthread_exit(void *r) { (void)r; early("pthread_exit"); }
void __wrap_thrd_exit(int r) { (void)r; early("thrd_exit"); }

#define DENY_EXEC(name, ...) int __wrap_##name(__VA_ARGS__) { early(#name); }
DENY_EXEC(execve, const char *p, char *const a[], char *const e[])
DENY_EXEC(execv, const char *p, char *const a[])
DENY_EXEC(execvp, const char *p, char *const a[])
DENY_EXEC(execvpe, const char *p, char *const a[], char *const e[])
DENY_EXEC(execl, const char *p, const char *a, ...)
DENY_EXEC(execlp, const char *p, const char *a, ...)
DENY_EXEC(execle, const char *p, const char *a, ...)
DENY_EXEC(fexecve, int fd, char *const a[], char *const e[])
DENY_EXEC(execveat, int fd, const char *p, char *const a[], char *const e[], int f)

/* New executable memory is how raw syscall bytes would run without inline assembly. */
static int refuse_exec(int prot) { if (prot & PROT_EXEC) { errno = EPERM; return 1; } return 0; }
int __wrap_mprotect(void *a, size_t n, int p) { return refuse_exec(p) ? -1 : __real_mprotect(a, n, p); }
int __wrap_pkey_mprotect(void *a, size_t n, int p, int k) {
    return refuse_exec(p) ? -1 : __real_pkey_mprotect(a, n, p, k);
}
void *__wrap_mmap(void *a, size_t n, int p, int f, int fd, off_t o) {
    return refuse_exec(p) ? MAP_FAILED : __real_mmap(a, n, p, f, fd, o);
}
void *__wrap_mmap64(void *a, size_t n, int p, int f, int fd, off_t o) {
    return refuse_exec(p) ? MAP_FAILED : __real_mmap64(a, n, p, f, fd, o);
}

long __wrap_syscall(long n, ...) {
    va_list ap;
    long a[6];
    va_start(ap, n);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_exit || n == SYS_exit_group || n == SYS_execve || n == SYS_execveat) early("syscall");
    if ((n == SYS_mprotect || n == SYS_mmap || n == SYS_pkey_mprotect) && refuse_exec((int)a[2])) return -1;
    return __real_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static int denied(const char *name) {
    static const char *const names[] = {@NAMES@, 0};
    if (name == 0 || strncmp(name, "__real_", 7) == 0 || strncmp(name, "__wrap_", 7) == 0) return 1;
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}
void *__wrap_dlsym(void *h, const char *name) { return denied(name) ? 0 : __real_dlsym(h, name); }
void *__wrap_dlvsym(void *h, const char *name, const char *v) {
    return denied(name) ? 0 : __real_dlvsym(h, name, v);
}
void *__wrap_dlopen(const char *f, int m) { (void)f; (void)m; return 0; }
void *__wrap_dlmopen(long ns, const char *f, int m) { (void)ns; (void)f; (void)m; return 0; }

int __wrap___libc_start_main(halo_main_fn main, int argc, char **argv, void (*init)(void),
                             void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
    static int started;
    if (started++) early("__libc_start_main");
    if (&halo_test_entry != 0 && halo_test_entry != main) early("a main other than the test's");
    return __real___libc_start_main(main, argc, argv, init, fini, rtld_fini, stack_end);
}
"""


def guard_source() -> str:
    names = ", ".join(f'"{n}"' for n in WRAPPED)
    return GUARD_SOURCE.replace("@EARLY@", str(EARLY_EXIT_STATUS)).replace("@NAMES@", names)


def wrap_flags() -> str:
    return "-Wl,--wrap=" + ",--wrap=".join(WRAPPED) + ",-z,noexecstack"


def handles(language: str, test_code: str) -> bool:
    return bool(test_code) and language in ("c", "cpp", "rust")


# -- the wrapper object, built once per toolchain -------------------------------------------

class GuardCache:
    """Builds and finds the wrapper object under `root` (process-safe: built in a private
    directory, renamed into place). C/C++ toolchains build it with their own driver; rustc
    links with `cc`, so Rust's is built with `cc`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / "native"
        self._failed: dict[str, str] = {}
        self._bytes: dict[str, bytes] = {}
        self._lock: anyio.Lock | None = None

    async def object_bytes(self, tc: Toolchain) -> bytes:
        """The object's bytes (written into each workdir: sandboxed links see no cache dir)."""
        key = str(self.path(tc))
        data = self._bytes.get(key)
        if data is None:
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:
                data = self._bytes.get(key)
                if data is None:
                    path = await anyio.to_thread.run_sync(self.get, tc)
                    data = self._bytes[key] = path.read_bytes()
        return data

    def _compiler(self, tc: Toolchain) -> str:
        if tc.kind == "cc":
            return tc.path
        return shutil.which("cc") or shutil.which("gcc") or "cc"

    def path(self, tc: Toolchain) -> Path:
        cc = self._compiler(tc)
        digest = hashlib.blake2b(guard_source().encode(), digest_size=6).hexdigest()
        return self.root / f"{short_hash(cc, tc.identity if tc.kind == 'cc' else '')}-{digest}" / "halo_guard.o"

    def get(self, tc: Toolchain) -> Path:
        """The object's path, built first if needed; RuntimeError naming why it cannot be."""
        target = self.path(tc)
        if target.is_file():
            return target
        key = str(target)
        if key in self._failed:
            raise RuntimeError(self._failed[key])
        cc = self._compiler(tc)
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent.parent) as tmp:
            src = Path(tmp, "halo_guard.c")
            src.write_text(guard_source())
            obj = Path(tmp, "halo_guard.o")
            argv = [cc, "-x", "c", "-std=gnu11", "-O2", "-fPIC", "-w", "-c", str(src), "-o", str(obj)]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                done = None
                why = str(exc)
            if done is None or done.returncode != 0:
                why = why if done is None else (done.stderr.strip().splitlines() or ["no output"])[-1]
                self._failed[key] = f"cannot build the exit-guard object with {cc}: {why}"
                raise RuntimeError(self._failed[key])
            os.chmod(obj, 0o644)
            target.parent.mkdir(exist_ok=True)
            os.replace(obj, target)
        return target


# -- C / C++: what the solution's directives can name ---------------------------------------

_TRIGRAPHS = {"=": "#", "/": "\\", "'": "^", "(": "[", ")": "]", "!": "|", "<": "{", ">": "}", "-": "~"}
_SPLICE = re.compile(r"\\[ \t\f\v]*\r?\n")
_GAP = r"(?:\s|/\*.*?\*/)*"
_DIRECTIVE = re.compile(r"(?:#|%:)" + _GAP + r"(define|undef|include|include_next|import|embed|line)\b"
                        + _GAP + r"([A-Za-z_$\x80-\U0010ffff][\w$]*|<[^>\n]*>?|\"[^\"\n]*\"?|.)?",
                        re.DOTALL)


def _variants(code: str) -> list[str]:
    """The text as the preprocessor may see it: with and without trigraphs (ISO modes honour
    them, GNU modes do not), line splices removed."""
    tri = re.sub(r"\?\?([=/'()!<>\-])", lambda m: _TRIGRAPHS[m.group(1)], code)
    return [_SPLICE.sub("", text) for text in {code, tri}]


def scan_directives(code: str) -> tuple[set[str], str]:
    """(every name the solution could #define or #undef, why its includes are refused or "").

    Over-approximates on purpose: a `#define` inside a string or a comment also counts (an
    extra #undef is harmless), while no real directive can be missed: directives are never
    produced by macro expansion, and every spelling of one (splices, trigraphs, digraphs,
    comments between its tokens) is tried."""
    names: set[str] = set()
    why = ""
    for text in _variants(code):
        for m in _DIRECTIVE.finditer(text):
            kind, arg = m.group(1), m.group(2) or ""
            if kind in ("define", "undef"):
                if arg[:1].isalpha() or arg[:1] in "_$" or ord(arg[:1] or "a") >= 0x80:
                    names.add(arg)
            elif kind == "line":
                continue  # harmless here: names are found by text, not by location
            elif not why:
                why = _include_problem(kind, arg)
    return names, why


def _include_problem(kind: str, arg: str) -> str:
    if kind in ("import", "embed"):
        return f"#{kind} reads files at compile time"
    if not (arg.startswith("<") and arg.endswith(">")):
        # Only the standard headers exist for a solution; a quoted or computed include could
        # name the compiler's own input or a file the run can write.
        return f"#{kind} of {arg or 'a computed name'}: only <system> headers may be included"
    header = arg[1:-1].strip()
    if header.startswith("/") or ".." in header.split("/") or header.startswith("proc"):
        return f"#{kind} {arg}: only <system> headers may be included"
    return ""


def barrier(names: set[str], *, language: str, undef: bool = True) -> str:
    """What stands between the solution and the tests in one translation unit."""
    lines = ["", "", "/* halo-forge: nothing the solution defined reaches the tests */"]
    for name in sorted(names | {"NDEBUG", "assert"}) if undef else ():
        lines.append(f"#undef {name}")
    lines += ["#include <assert.h>", "#pragma GCC reset_options", "#pragma pack()"]
    return "\n".join(lines) + "\n"


# -- C++: always-equal probes ---------------------------------------------------------------

_CPP_PROBE_HELPERS = r"""
namespace halo_probe {
#if __cplusplus >= 201703L
// No headers: a barrier that parsed <string> or <type_traits> cost C++ samples ~35% more CPU.
template <class T> struct kind { static constexpr int v = 0; };
#define HALO_KIND(t, k) template <> struct kind<t> { static constexpr int v = k; };
HALO_KIND(bool, 1) HALO_KIND(char, 2) HALO_KIND(signed char, 2) HALO_KIND(unsigned char, 2)
HALO_KIND(short, 2) HALO_KIND(unsigned short, 2) HALO_KIND(int, 2) HALO_KIND(unsigned, 2)
HALO_KIND(long, 2) HALO_KIND(unsigned long, 2) HALO_KIND(long long, 2) HALO_KIND(unsigned long long, 2)
HALO_KIND(wchar_t, 2) HALO_KIND(char16_t, 2) HALO_KIND(char32_t, 2)
HALO_KIND(float, 3) HALO_KIND(double, 3) HALO_KIND(long double, 3)
#undef HALO_KIND
template <unsigned long N> struct kind<char[N]> { static constexpr int v = 4; };
template <unsigned long N> struct kind<const char[N]> { static constexpr int v = 4; };
// Calls f with a literal of the same type that differs from v; false when there is none.
template <class T, class F> bool with_other(const T& v, F f) {
    if constexpr (kind<T>::v == 1) { return f(!v); }
    else if constexpr (kind<T>::v == 2) { return f(static_cast<T>(v ^ 1)); }
    else if constexpr (kind<T>::v == 3) { return f(v == 0 ? T(1) : v * 2); }
    else if constexpr (kind<T>::v == 4) {
        // The last character flipped: a probe the solution cannot tell from the real string.
        char t[sizeof(T) > 1 ? sizeof(T) : 2] = {};
        unsigned long n = __builtin_strlen(v);
        __builtin_memcpy(t, v, n);
        if (n == 0) t[0] = 1; else t[n - 1] = static_cast<char>(t[n - 1] ^ 1);
        const char* p = t;
        return f(p);
    } else { return false; }
}
[[noreturn]] inline void fail() {
    __builtin_printf("\nhalo-forge: a comparison said equal to two different values\n");
    __builtin_abort();
}
template <class A, class B> bool eq(const A& a, const B& b) {
    bool r = (a == b);
    if (r && with_other(b, [&](const auto& o) { return a == o; })) fail();
    return r;
}
template <class A, class B> bool ne(const A& a, const B& b) {
    bool r = (a != b);
    if (!r && with_other(b, [&](const auto& o) { return !(a != o); })) fail();
    return r;
}
template <class A, class B> bool leq(const A& a, const B& b) {
    bool r = (a == b);
    if (r && with_other(a, [&](const auto& o) { return o == b; })) fail();
    return r;
}
template <class A, class B> bool lne(const A& a, const B& b) {
    bool r = (a != b);
    if (!r && with_other(a, [&](const auto& o) { return !(o != b); })) fail();
    return r;
}
#else
template <class A, class B> bool eq(const A& a, const B& b) { return a == b; }
template <class A, class B> bool ne(const A& a, const B& b) { return a != b; }
template <class A, class B> bool leq(const A& a, const B& b) { return a == b; }
template <class A, class B> bool lne(const A& a, const B& b) { return a != b; }
#endif
}  // namespace halo_probe
"""

_CPP_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*"(?:\s*"(?:\\.|[^"\\\n])*")*)
  | (?P<chr>(?:u8|u|U|L)?'(?:\\.|[^'\\\n])+')
  | (?P<num>(?:\d|\.\d)(?:[\w.']|[eEpP][+-])*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>::|->|\+\+|--|<<=|>>=|<=>|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!=<>]=?|[()\[\]{},;?:.~#])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
# Tokens that end an operand of == / != (operators binding less tightly, or punctuation).
_LOOSER = {"&&", "||", "&", "|", "^", "?", ":", ",", ";", "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=",
           "^=", "<<=", ">>=", "==", "!=", "return", "{", "}", "<=>"}
_OPEN, _CLOSE = ("(", "[", "{"), (")", "]", "}")


def _is_literal(tok: tuple[str, str, int, int]) -> bool:
    return tok[0] in ("str", "chr", "num") or (tok[0] == "id" and tok[1] in ("true", "false"))


def _extent(toks: list[tuple[str, str, int, int]], i: int, step: int) -> int:
    """Index of the last token of the operand that starts at toks[i] (walking by step)."""
    depth, j, last = 0, i, i - step
    while 0 <= j < len(toks):
        text = toks[j][1]
        if text in (_OPEN if step < 0 else _CLOSE):
            if depth == 0:
                break
            depth -= 1
        elif text in (_CLOSE if step < 0 else _OPEN):
            depth += 1
        elif depth == 0 and text in _LOOSER:
            break
        last = j
        j += step
    return last


def cpp_probe_tests(test_code: str) -> str:
    """The C++ test code with `EXPR == LIT`, `EXPR != LIT` (and LIT first) routed through
    halo_probe, which also compares EXPR with a different literal. Only comparisons whose
    literal operand is a single literal token are rewritten; directives are left alone."""
    toks = [(m.lastgroup or "", m.group(), m.start(), m.end()) for m in _CPP_TOKEN.finditer(test_code)]
    directive_lines = {i for i, line in enumerate(test_code.split("\n")) if line.lstrip().startswith("#")}
    toks = [t for t in toks if t[0] != "ws" and test_code.count("\n", 0, t[2]) not in directive_lines]
    edits: list[tuple[int, int, str]] = []
    taken = -1
    for i, (kind, text, s, e) in enumerate(toks):
        if kind != "op" or text not in ("==", "!=") or i == 0 or i + 1 >= len(toks):
            continue
        name = "eq" if text == "==" else "ne"
        after = toks[i + 2][1] if i + 2 < len(toks) else ";"
        before = toks[i - 2][1] if i >= 2 else ";"
        right = i + 2 if toks[i + 1][1] == "-" and i + 2 < len(toks) and toks[i + 2][0] == "num" else i + 1
        after = toks[right + 1][1] if right + 1 < len(toks) else ";"
        if toks[right][1] == "0":
            continue  # also the null pointer constant: through a template it would stop being one
        if _is_literal(toks[right]) and (after in _LOOSER or after in _CLOSE):
            first, last, fn = _extent(toks, i - 1, -1), right, name
        elif _is_literal(toks[i - 1]) and (before in _LOOSER or before in _OPEN):
            first, last, fn = i - 1, _extent(toks, i + 1, 1), "l" + name
        else:
            continue
        if first >= i or last <= i or toks[first][2] <= taken:
            continue
        edits += [(toks[first][2], toks[first][2], f"halo_probe::{fn}("), (s, e, ","),
                  (toks[last][3], toks[last][3], ")")]
        taken = toks[last][3]
    out = test_code
    for s, e, text in sorted(edits, reverse=True):
        out = out[:s] + text + out[e:]
    return out


def compose_c(solution: str, test_code: str, *, language: str,
              disabled: frozenset[str] = frozenset()) -> tuple[str, str]:
    """(the program to compile, why the solution is refused or "")."""
    names, why = scan_directives(solution)
    tests = test_code
    if language == "cpp" and "cpp_probes" not in disabled:
        tests = _CPP_PROBE_HELPERS + cpp_probe_tests(test_code)
    entry = ("\n/* halo-forge: the test's own main, checked against the process entry */\n"
             "typedef int (*halo_main_fn)(int, char **, char **);\n"
             + ('extern "C" { ' if language == "cpp" else "")
             + "halo_main_fn halo_test_entry = (halo_main_fn)(void (*)(void))main;"
             + (" }" if language == "cpp" else "") + "\n")
    program = (solution.rstrip("\n") + "\n" + barrier(names, language=language, undef="undef" not in disabled)
               + "#line 1 \"tests\"\n" + tests.rstrip("\n") + "\n" + entry)
    return program, why


# -- C / C++: what the compiler produced -----------------------------------------------------

def check_assembly(asm: str) -> str:
    """Why the compiled solution is refused, from GCC's assembly output ("" when it is not)."""
    if re.search(r"^\s*#APP\b", asm, re.MULTILINE):
        return "inline assembly"
    if re.search(r"(?<![\w.$])__(?:real|wrap)_\w+", re.sub(r"^\s*\.(?:string|ascii|asciz)\b.*$", "", asm,
                                                          flags=re.MULTILINE)):
        return "reaches past the exit guard (__real_/__wrap_ symbols)"
    if re.search(r"\.note\.GNU-stack\s*,\s*\"[^\"]*x", asm):
        return "asks for an executable stack"
    executable = False
    for line in asm.splitlines():
        s = line.strip()
        if s.startswith((".text", ".data", ".bss", ".section", ".pushsection", ".previous", ".popsection")):
            if s.startswith(".text"):
                executable = True
            elif s.startswith((".data", ".bss")):
                executable = False
            elif s.startswith((".section", ".pushsection")):
                m = re.match(r"\.(?:push)?section\s+\"?([^\s,\"]+)\"?\s*(?:,\s*\"([^\"]*)\")?", s)
                if m:
                    name, flags = m.group(1), m.group(2)
                    executable = "x" in flags if flags is not None else name.startswith((".text", ".init", ".fini"))
        elif executable and re.match(r"\.type\s+[^,]+,\s*@object", s):
            return "puts data in an executable section"
    return ""


# -- Rust ---------------------------------------------------------------------------------

_RUST_STD_MACROS = (
    "assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne", "panic",
    "vec", "format", "matches", "unreachable", "println", "print", "eprintln", "eprint", "write", "writeln",
    "concat", "stringify", "todo", "unimplemented", "dbg",
)
_PRELUDE_TYPES = ("Vec", "String", "Option", "Result", "Box")
_PRIMITIVES = ("bool", "char", "str", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64",
               "u128", "usize", "f32", "f64")
_RUST_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>b?r(?P<h>\#*)".*?"(?P=h)|b?"(?:\\.|[^"\\])*")
  | (?P<chr>b?'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])')
  | (?P<id>[A-Za-z_]\w*)
  | (?P<num>\d[\w.]*)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def rust_prelude_check(test_code: str) -> str:
    """Crate-root code after the solution: fails to compile when a name the tests see through
    `use super::*` is not the std one any more."""
    lines = ["", "#[allow(dead_code, unused_imports, unused_variables, non_camel_case_types)]",
             "mod halo_forge_prelude_check {", "    use super::*;", "    fn same() {"]
    for prim in _PRIMITIVES:
        if prim == "str":
            lines.append("        let _: fn(&'static ::core::primitive::str) -> &'static str = |x| x;")
        else:
            lines.append(f"        let _: fn(::core::primitive::{prim}) -> {prim} = |x| x;")
    lines += [
        "        let _: ::std::vec::Vec<u8> = Vec::<u8>::new();",
        "        let _: ::std::string::String = String::new();",
        "        let _: ::core::option::Option<u8> = Some(1u8);",
        "        let _: ::core::option::Option<u8> = None;",
        "        let _: ::core::result::Result<u8, u8> = Ok(1u8);",
        "        let _: ::core::result::Result<u8, u8> = Err(1u8);",
        "        let _: ::std::boxed::Box<u8> = Box::new(1u8);",
        "        let _: ::core::option::Option<::core::option::Option<u8>> = None::<Option<u8>>;",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _rust_other(kind: str, text: str) -> str | None:
    """A literal of the same type that differs from `text`, or None."""
    if kind == "num":
        m = re.fullmatch(r"(\d[\d_]*)((?:[iu](?:8|16|32|64|128|size))?)", text)
        if m:
            return f"({int(m.group(1).replace('_', '')) ^ 1}{m.group(2)})"
        return None
    if kind == "id" and text in ("true", "false"):
        return "false" if text == "true" else "true"
    if kind == "str" and text.startswith('"'):
        return text[:-1] + '\\u{1}"'
    if kind == "chr" and text.startswith("'"):
        return "'b'" if text != "'b'" else "'c'"
    return None


def rust_rewrite_tests(test_code: str, *, paths: bool = True, probes: bool = True) -> str:
    """The Rust test code with std macros called by absolute path and each
    `assert_eq!(EXPR, LITERAL)` (either order) also asserting EXPR != another literal."""
    tokens = [(m.lastgroup or "", m.group()) for m in _RUST_TOKEN.finditer(test_code)]
    out: list[str] = []
    i, n = 0, len(tokens)
    probe = 0
    while i < n:
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < n else ""
        prev = next((t for k, t in reversed([(k, t) for k, t in tokens[:i][-3:]]) if k != "ws"), "")
        if kind == "id" and nxt == "!" and text in _RUST_STD_MACROS and prev not in (":", "::"):
            if text == "assert_eq" and probes:
                rewritten = _probe_assert_eq(tokens, i, prefix="::std::" if paths else "")
                if rewritten is not None:
                    probe += 1
                    new_text, i = rewritten
                    out.append(new_text)
                    continue
            out.append(f"::std::{text}" if paths else text)
            i += 1
            continue
        out.append(text)
        i += 1
    return "".join(out)


def _probe_assert_eq(tokens: list[tuple[str, str]], i: int, *, prefix: str = "::std::") -> tuple[str, int] | None:
    """`assert_eq!(A, B ...)` at tokens[i] rewritten with a probe; (text, index after it)."""
    j = i + 2
    while j < len(tokens) and tokens[j][0] == "ws":
        j += 1
    if j >= len(tokens) or tokens[j][1] not in "([":
        return None
    close = ")" if tokens[j][1] == "(" else "]"
    depth, args, cur = 0, [], []
    k = j + 1
    while k < len(tokens):
        kind, text = tokens[k]
        if kind == "other" and text in "([{":
            depth += 1
        elif kind == "other" and text in ")]}":
            if depth == 0:
                break
            depth -= 1
        if depth == 0 and kind == "other" and text == ",":
            args.append(cur)
            cur = []
        else:
            cur.append(tokens[k])
        k += 1
    if k >= len(tokens) or tokens[k][1] != close:
        return None
    args.append(cur)
    end = k + 1
    if end < len(tokens) and tokens[end][1] == ";":
        end += 1
    significant = [[t for t in a if t[0] != "ws"] for a in args]
    if len(args) < 2 or not significant[0] or not significant[1]:
        return None
    left, right = ("".join(t for _, t in a).strip() for a in args[:2])
    rest = "".join("," + "".join(t for _, t in a) for a in args[2:])
    lit_side = None
    for side in (1, 0):
        sig = significant[side]
        if len(sig) == 1 and _rust_other(*sig[0]) is not None:
            lit_side = side
            break
    if lit_side is None:
        return None
    other = _rust_other(*significant[lit_side][0])
    expr = left if lit_side == 1 else right
    lit = right if lit_side == 1 else left
    cmp = f"*__halo_v == {other}" if lit_side == 1 else f"{other} == *__halo_v"
    text = (f"{{ let __halo_v = &({expr}); "
            f"{prefix}assert!(!({cmp}), \"halo-forge: a value compared equal to two different literals\"); "
            f"{prefix}assert_eq!(" + ("*__halo_v, " + lit if lit_side == 1 else lit + ", *__halo_v")
            + f"{rest}); }}")
    return text, end


def compose_rust(solution: str, test_code: str, *, disabled: frozenset[str] = frozenset()) -> str:
    check = rust_prelude_check(test_code) if "rust_prelude" not in disabled else ""
    tests = rust_rewrite_tests(test_code, paths="rust_macro_paths" not in disabled,
                               probes="rust_probes" not in disabled)
    return solution.rstrip("\n") + "\n" + check + tests.rstrip("\n") + "\n"


def compose(solution: str, test_code: str, *, language: str,
            disabled: frozenset[str] = frozenset()) -> tuple[str, str]:
    """(the program compiled for a C/C++/Rust sample with test code, why it is refused or "")."""
    disabled = check_disabled(disabled)
    if language == "rust":
        return compose_rust(solution, test_code, disabled=disabled), ""
    return compose_c(solution, test_code, language=language, disabled=disabled)


# -- argv ---------------------------------------------------------------------------------

def c_lang_flag(language: str) -> str:
    return "c++" if language == "cpp" else "c"


def cc_compile_argv(tc: Toolchain, *, extra: tuple[str, ...] = (), source: str = "-") -> list[str]:
    """Source from stdin to assembly: no file holds the tests while the solution compiles."""
    return [tc.path, *tc.flags, *extra, "-x", c_lang_flag(tc.language), source, "-S", "-o", ASM_NAME]


def cc_link_argv(tc: Toolchain, *, wrap: bool = True) -> list[str]:
    guard = ["-x", "none", GUARD_NAME, "-o", BINARY_NAME] if wrap else ["-o", BINARY_NAME]
    return [tc.path, "-x", "assembler", ASM_NAME, *guard, *tc.link_flags, *([wrap_flags()] if wrap else [])]


def rust_argv(tc: Toolchain, *, rust_test: bool, disabled: frozenset[str] = frozenset()) -> list[str]:
    links = ["-C", f"link-arg={GUARD_NAME}", "-C", f"link-arg={wrap_flags()}"] if "exit_wrap" not in disabled else []
    unsafe = ["-F", "unsafe_code"] if "rust_unsafe" not in disabled else []
    source = tc.source_name if "no_files" in disabled else "-"
    return [tc.path, *tc.flags, *(("--test",) if rust_test else ()), *unsafe, *links,
            "-o", BINARY_NAME, source]


# -- the build ------------------------------------------------------------------------------

async def build(sandbox: Any, tc: Toolchain, program: str, workdir: Path, *, limits: Any,
                extra: tuple[str, ...], rust_test: bool, guard_object: bytes,
                disabled: frozenset[str] = frozenset()) -> tuple[Any, str]:
    """Compiles and links `program` in `workdir` (which holds the wrapper object only) and
    leaves nothing there but the binary. (the compile's RunResult, why it is refused or "")."""
    disabled = check_disabled(disabled)
    source, name = program.encode(), "-"
    if "no_files" in disabled:  # the judge before native.py: the program is a file beside the run
        (workdir / tc.source_name).write_bytes(source)
        source, name = b"", tc.source_name

    def clean() -> None:
        if "no_files" not in disabled:
            _clean(workdir)

    if tc.kind == "rustc":
        built = await sandbox.run(rust_argv(tc, rust_test=rust_test, disabled=disabled), cwd=workdir,
                                  stdin=source, limits=limits)
        clean()
        return built, ""
    compiled = await sandbox.run(cc_compile_argv(tc, extra=extra, source=name),
                                 cwd=workdir, stdin=source, limits=limits)
    if compiled.status != "ok":
        clean()
        return compiled, ""
    try:
        asm = (workdir / ASM_NAME).read_text(errors="replace")
    except OSError:
        asm = ""
    refused = check_assembly(asm) if "asm_scan" not in disabled else ""
    if refused:
        clean()
        return compiled, refused
    (workdir / GUARD_NAME).write_bytes(guard_object)  # the compile run may have replaced it
    linked = await sandbox.run(cc_link_argv(tc, wrap="exit_wrap" not in disabled), cwd=workdir, limits=limits)
    clean()
    both = msgspec.structs.replace(
        linked, wall_s=compiled.wall_s + linked.wall_s, cpu_s=compiled.cpu_s + linked.cpu_s,
        stderr=compiled.stderr + linked.stderr,
    )
    return both, ""


def _clean(workdir: Path) -> None:
    """Only the binary stays for the run: the assembly holds the tests' expected values."""
    for entry in workdir.iterdir():
        if entry.name != BINARY_NAME:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
