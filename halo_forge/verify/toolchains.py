"""Toolchains: gcc/g++, clang/clang++, rustc and python3, resolved and probed once.

A Toolchain knows the real binary to run inside the sandbox (rustup's and pyenv's shims need a
HOME that sandboxed runs do not have, so the binary behind them is used), the host directories
the sandbox must show read-only for it, and a version identity that goes into cache keys, so a
compiler upgrade invalidates cached verdicts and precompiled headers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from typing import Literal

import msgspec

from halo_forge.errors import HaloError
from halo_forge.verify.config import Compiler

Kind = Literal["cc", "rustc", "python"]

SOURCE_NAMES = {"c": "main.c", "cpp": "main.cpp", "rust": "main.rs", "python": "main.py"}
BINARY_NAME = "prog"

_INSTALL_HINTS = {
    "gcc": "apt-get install gcc", "g++": "apt-get install g++", "clang": "apt-get install clang",
    "clang++": "apt-get install clang", "rustc": "install Rust with rustup (https://rustup.rs)",
    "python3": "install Python 3",
}
# Directories a sandbox shows anyway; a toolchain living there needs no extra read-only path.
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/lib", "/etc/", "/opt/")

class Toolchain(msgspec.Struct, frozen=True, kw_only=True):
    language: str
    kind: Kind
    name: str  # as configured, e.g. "g++"
    path: str  # the real binary run in the sandbox
    flags: tuple[str, ...]
    link_flags: tuple[str, ...]
    identity: str  # version text + binary fingerprint: changes when the compiler does
    readonly_paths: tuple[str, ...] = ()

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES[self.language]

    @property
    def is_gcc(self) -> bool:
        return self.kind == "cc" and "clang" not in self.identity.lower()

    def compile_argv(self, *, rust_test: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
        """The compile command, run in the sample's working directory. Python has none: its
        one run compiles main.py first and reports a syntax error as a compile error
        (halo_forge/verify/pyjudge.py)."""
        if self.kind == "python":
            raise ValueError("python samples have no compile step: their run compiles main.py")
        if self.kind == "rustc":
            return [self.path, *self.flags, *(("--test",) if rust_test else ()), *extra,
                    "-o", BINARY_NAME, self.source_name]
        return [self.path, *self.flags, *extra, "-o", BINARY_NAME, self.source_name, *self.link_flags]

    def run_argv(self, workdir: os.PathLike | str, *, script: str | None = None) -> list[str]:
        """The command that runs the compiled program (or the Python source, or `script`)."""
        if self.kind == "python":
            if script is not None:
                return [self.path, *self.flags, "-c", script]
            return [self.path, *self.flags, self.source_name]
        return [os.path.join(os.fspath(workdir), BINARY_NAME)]


def _probe(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HaloError(f"cannot run {what} ({' '.join(argv)}): {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HaloError(f"{what} failed ({' '.join(argv)}): {detail[0]}")
    return done.stdout


def _fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _outside_system(path: str) -> bool:
    return not os.path.realpath(path).startswith(_SYSTEM_PREFIXES)


@functools.cache
def _resolve(language: str, command: str, flags: tuple[str, ...], link_flags: tuple[str, ...],
             mtime_key: str) -> Toolchain:
    found = shutil.which(command)
    if found is None:
        hint = _INSTALL_HINTS.get(os.path.basename(command), f"install {command}")
        raise HaloError(
            f"compiler {command!r} for {language} not found on PATH: {hint}, or choose another --verifier"
        )
    if language == "python":
        # A virtualenv's interpreter is run as its base interpreter: model code gets the
        # standard library only (not the venv's torch & co), and a venv under /tmp (a CI
        # clone, say) would be invisible inside the run's private /tmp anyway.
        if os.path.realpath(found) == os.path.realpath(sys.executable):
            # The interpreter running this: its answers are here, without a start of its own.
            executable = getattr(sys, "_base_executable", "") or sys.executable
            base_prefix, version = sys.base_prefix, sys.version.replace("\n", " ")
        else:
            script = ("import sys; print(getattr(sys, '_base_executable', '') or sys.executable); "
                      "print(sys.base_prefix); print(sys.version.replace(chr(10), ' '))")
            out = _probe([found, "-c", script], command)
            executable, base_prefix, version = (out.splitlines() + ["", "", ""])[:3]
        if not executable:
            raise HaloError(f"{command} did not report its executable")
        ro = (base_prefix,) if base_prefix and _outside_system(base_prefix + "/") else ()
        return Toolchain(language=language, kind="python", name=command, path=executable, flags=flags,
                         link_flags=link_flags, identity=f"python {version} {_fingerprint(executable)}",
                         readonly_paths=ro)
    if os.path.basename(command).startswith("rustc"):
        sysroot = _probe([found, "--print", "sysroot"], command).strip()
        real = os.path.join(sysroot, "bin", "rustc")
        if not os.access(real, os.X_OK):
            real = os.path.realpath(found)
        version = _probe([real, "-vV"], command).strip().replace("\n", " ")
        ro = (sysroot,) if _outside_system(sysroot + "/") else ()
        return Toolchain(language=language, kind="rustc", name=command, path=real, flags=flags,
                         link_flags=link_flags, identity=f"{version} {_fingerprint(real)}", readonly_paths=ro)
    # Invoked by the name found, not its realpath: clang++ is a link to clang, and the driver
    # decides from its own name whether to link the C++ runtime.
    real = os.path.realpath(found)
    version = _probe([found, "--version"], command).strip().splitlines()[0]
    ro = tuple(sorted({os.path.dirname(p) for p in (found, real) if _outside_system(p)}))
    return Toolchain(language=language, kind="cc", name=command, path=os.path.abspath(found), flags=flags,
                     link_flags=link_flags, identity=f"{version} {_fingerprint(real)}", readonly_paths=ro)


def resolve_toolchain(language: str, compiler: Compiler) -> Toolchain:
    """The probed toolchain for `compiler`; a HaloError naming the fix when it is missing.

    Probing runs each compiler once per process (and again when its binary changes)."""
    found = shutil.which(compiler.command)
    mtime_key = _fingerprint(found) if found else ""
    return _resolve(language, compiler.command, tuple(compiler.flags), tuple(compiler.link_flags), mtime_key)


def short_hash(*parts: str) -> str:
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()
