"""A problem's checker or interactor made runnable once, then handed to every run that needs it.

A C/C++ judge program is compiled in the sandbox (it is the dataset's code: contained like a
sample's) with the judge's compile limits, and its binary kept in memory; a Python one is kept
as its source. Each checker or interactor run then gets a fresh workdir holding that binary
(or script) and the files the verifier writes - never the sample's workdir.

A judge program that does not compile is the problem's fault, not the sample's: every sample
of that problem gets an infrastructure verdict (`sandbox_error`, no reward, reported).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anyio
import msgspec

from halo_forge.records import JudgeProgram
from halo_forge.verify.toolchains import BINARY_NAME, Toolchain, resolve_toolchain

# The judge's own limits: generous beside a sample's (a checker may read a large output), but
# a checker that loops still ends, as a failed checker.
JUDGE_CPU_S = 10.0
JUDGE_WALL_S = 20.0
JUDGE_MEMORY_MB = 2048
JUDGE_NAME = "judge"  # the binary (or judge.py) in the judge's workdir
# Built judges kept in memory: a compiled testlib checker is a few MB, and a dataset may have
# thousands; RAFT meets a problem's samples together, so recent ones are what is asked for.
KEEP_BUILT = 128


class Built(msgspec.Struct, frozen=True, kw_only=True):
    """A runnable judge program, or why it is not."""

    files: dict[str, bytes] = {}
    executable: str = ""  # the file that must be made executable ("" for a script)
    argv: list[str] = []  # relative to the judge's workdir (the binary is joined in at run time)
    error: str = ""  # "" when built


def judge_limits(run_limits: Any) -> Any:
    """The checker's/interactor's limits: at least the sample's, and at least JUDGE_*."""
    return msgspec.structs.replace(
        run_limits, cpu_s=max(JUDGE_CPU_S, run_limits.cpu_s), wall_s=max(JUDGE_WALL_S, run_limits.wall_s),
        memory_mb=max(JUDGE_MEMORY_MB, run_limits.memory_mb),
    )


def judge_key(program: JudgeProgram) -> str:
    return hashlib.blake2b(msgspec.msgpack.encode(program), digest_size=12).hexdigest()


class JudgeBuilds:
    """Built judge programs by content, for one verifier (each compiled once, even when many
    samples of its problem ask at the same time)."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._built: OrderedDict[str, Built] = OrderedDict()
        self._locks: dict[str, anyio.Lock] = {}
        self.compiles = 0  # judge programs compiled (tests: each once while kept)

    def toolchain(self, program: JudgeProgram) -> Toolchain:
        # The gcc family and the configured interpreter whatever --verifier says: the judge is
        # the problem's, not the sample's.
        c = self._config
        compiler = {"c": c.gcc_c, "cpp": c.gcc_cpp, "python": c.python}[program.language]
        return resolve_toolchain(program.language, compiler)

    async def get(self, sandbox: Any, program: JudgeProgram, *, compile_limits: Any) -> Built:
        key = judge_key(program)
        hit = self._built.get(key)
        if hit is not None:
            self._built.move_to_end(key)
            return hit
        lock = self._locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                hit = self._built.get(key)
                if hit is None:
                    hit = await self._build(sandbox, program, compile_limits)
                    self.compiles += 1
                    self._built[key] = hit
                    while len(self._built) > KEEP_BUILT:
                        self._built.popitem(last=False)
        finally:
            if not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)
        return hit

    async def _build(self, sandbox: Any, program: JudgeProgram, compile_limits: Any) -> Built:
        try:
            tc = self.toolchain(program)
        except Exception as exc:  # noqa: BLE001 - a missing compiler is the judge's failure
            return Built(error=f"no toolchain for the {program.language} judge program: {exc}")
        for name in program.headers:
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts or not rel.parts or name == tc.source_name:
                return Built(error=f"judge program header name {name!r} must be a plain relative name")
        if tc.kind == "python":
            script = f"{JUDGE_NAME}.py"
            files = {script: program.source.encode(), **{k: v.encode() for k, v in program.headers.items()}}
            return Built(files=files, argv=[tc.path, *tc.flags, script])
        files = {tc.source_name: program.source, **program.headers}
        with sandbox.workdir(files) as wd:
            built = await sandbox.run(tc.compile_argv(), cwd=wd, limits=compile_limits)
            if built.status != "ok":
                why = built.error if built.status == "sandbox_error" else (
                    built.stderr or built.stdout).decode("utf-8", errors="replace").strip()[-600:]
                return Built(error=f"the judge program does not compile ({built.status}): {why}")
            try:
                binary = (wd / BINARY_NAME).read_bytes()
            except OSError as exc:
                return Built(error=f"the judge program's binary is missing after its compile: {exc}")
        return Built(files={JUDGE_NAME: binary}, executable=JUDGE_NAME, argv=[JUDGE_NAME])


def judge_argv(built: Built, workdir: os.PathLike, args: list[str]) -> list[str]:
    """The command that runs `built` in `workdir` with `args` (file names in that workdir)."""
    if built.executable:
        return [os.path.join(os.fspath(workdir), built.executable), *args]
    return [*built.argv, *args]


def make_executable(built: Built, workdir: Path) -> None:
    if built.executable:
        os.chmod(workdir / built.executable, 0o755)
