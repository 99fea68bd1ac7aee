"""The runner: compile once per sample in a sandboxed working directory, run every test
against that binary, and turn what happened into a Verdict.

`verify_stream` (an async context manager giving an async iterator) yields verdicts as they
finish, with a bounded number of samples in flight (up to twice the sandbox's slots, which
default to the machine's cores: the next samples' host side is done while runs go), pulling
samples from its input only as slots free up. `verify_many` is the synchronous convenience.

Status mapping: the sandbox's `ok`/`runtime_error`/`timeout`/`memory_limit`/`output_limit`
carry over; a compiler that exits non-zero is `compile_error`; a test whose output differs
(or whose checks fail) is `wrong_answer`; `sandbox_error` means the infrastructure failed,
never the program, and such verdicts are never cached or scored as bad samples.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import signal as _signal
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from halo_forge.errors import HaloError, first_error
from halo_forge.records import JudgeProgram, Verdict
from halo_forge.sandbox import RunResult
from halo_forge.verify import checker as checkers
from halo_forge.verify import interactive, native, pyjudge
from halo_forge.verify.cache import VerdictCache, cache_key
from halo_forge.verify.compare import outputs_match
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.extract import extract_code, guess_language, why_no_code
from halo_forge.verify.guards import static_guard
from halo_forge.verify.judge_build import JudgeBuilds, judge_key, judge_limits
from halo_forge.verify.pch import PchCache, wants_pch
from halo_forge.verify.pycompile import PLAIN_FLAGS, PythonCompiler
from halo_forge.verify.pyjudge import JUDGE_VERSION, python_test_run, read_verdict
from halo_forge.verify.rewards import Outcome, reward
from halo_forge.verify.toolchains import Toolchain, resolve_toolchain
from halo_forge.verify.types import SampleIOTest, VerifySample

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from halo_forge.sandbox import Sandbox

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)

_RUST_RUNNING = re.compile(rb"^running (\d+) tests?$", re.MULTILINE)
# In every cache key: bumped when a status is added or changes meaning, so that a cache written
# before cannot hand back a verdict the verifier no longer gives (2: "ran" for untested runs).
_VERDICT_FORMAT = 2
_RUST_RESULT = re.compile(rb"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed", re.MULTILINE)


def _tail(text: bytes | str, limit: int) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _limits(step: Any) -> Any:
    from halo_forge.sandbox import Limits

    return Limits(**msgspec.structs.asdict(step))


def _under_tmp(path: os.PathLike | str) -> bool:
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


class _Prepared(msgspec.Struct, kw_only=True):
    """Everything about a sample that is known before anything runs."""

    sample_id: str
    language: str
    toolchain: Toolchain
    program: str  # solution + appended test code: what gets compiled
    solution: str
    io_tests: list[SampleIOTest]
    test_code: str
    rust_test: bool  # test_code holds #[test] functions: build with `rustc --test`
    guard: str
    # The problem's own judge of its io_tests (checker.py, interactive.py), if it has one.
    checker: JudgeProgram | None = None
    interactor: JudgeProgram | None = None
    native: bool = False  # C/C++/Rust test code under halo_forge/verify/native.py's defences
    native_disabled: frozenset[str] = frozenset()  # native.DEFENCES switched off (tests only)
    python_packages: bool = False  # Python: site-packages visible (else the standard library only)


class _TestResult(msgspec.Struct, kw_only=True):
    status: str  # "passed" or a failing status
    detail: str = ""
    passed: int = 0  # a Rust harness reports several tests in one run
    total: int = 1
    guard: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    warnings: str = ""  # Python: its run compiles main.py, and these are the compiler's warnings


class Verifier:
    """Verifies samples against one config; holds the sandbox, the verdict cache and the PCHs.

    Use as `async with Verifier(config) as v: verdict = await v.verify(sample)`."""

    # The pre-judge Python harness, forgeable from inside the solution: only bench_verify's
    # baseline for the cost of the defences sets it.
    legacy_python_harness = False

    def __init__(self, config: VerifierConfig | None = None, *, sandbox: Any = None,
                 cache: VerdictCache | None = None) -> None:
        self.config = config or VerifierConfig()
        self._sandbox = sandbox
        self._own_sandbox = sandbox is None
        self._closed = False
        self._own_cache = cache is None
        if cache is None and self.config.cache:
            cache = VerdictCache(self.config.cache_path)
        self.cache = cache
        self.pch = PchCache(self.config.cache_dir) if self.config.pch else None
        if self.pch is not None and _under_tmp(self.pch.root):
            # Sandboxed compiles see a private /tmp, so a PCH there would never be read.
            log.warning("precompiled headers off: cache_dir %s is under /tmp, which sandboxed "
                        "compiles cannot see; choose another cache_dir", self.config.cache_dir)
            self.pch = None
        # C/C++/Rust test code: judged under native.py's defences (bench_verify turns them off
        # to measure their cost against the judge before them).
        self.native_defences = True
        # One defence at a time off (names from native.DEFENCES): tests prove each one needed.
        self.native_disabled: frozenset[str] = frozenset()
        self.guards = native.GuardCache(self.config.cache_dir)
        self.judges = JudgeBuilds(self.config)
        # checker.DEFENCES switched off (tests only).
        self.judge_disabled: frozenset[str] = frozenset()
        self._warm: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._py_compilers: dict[str, PythonCompiler] = {}  # by interpreter (pycompile.py)
        self._compile_limits = _limits(self.config.compile_limits)
        self._run_limits = _limits(self.config.run_limits)

    # -- lifecycle ----------------------------------------------------------------------

    def readonly_paths(self) -> list[str]:
        """Host directories the sandbox must show read-only: toolchains outside the system
        directories (rustup, pyenv) and the PCH cache. A missing compiler is skipped here
        and reported when a sample needs it."""
        paths: set[str] = set()
        for language in self.config.languages:
            try:
                tc = resolve_toolchain(language, self.config.compiler(language))
            except HaloError:
                continue
            paths.update(tc.readonly_paths)
        if self.pch is not None:
            self.pch.root.mkdir(parents=True, exist_ok=True)
            paths.add(str(self.pch.root))
        return sorted(paths)

    async def __aenter__(self) -> Verifier:  # noqa: PYI034
        if self.config.verifier != "auto":  # an explicit choice must work: fail before any sample
            for language in self.config.languages:
                resolve_toolchain(language, self.config.compiler(language))
        self._closed = False
        self.sandbox  # noqa: B018 - start it now, so that a broken sandbox fails before any sample
        return self

    @property
    def sandbox(self) -> Sandbox:
        """The Sandbox every run goes through (shared with other users of the same pool, e.g.
        the benchmark); started here on first use when the verifier owns it."""
        if self._closed:
            raise RuntimeError("Verifier.sandbox used after the verifier was closed")
        if self._sandbox is None:
            from halo_forge.sandbox import Sandbox

            self._sandbox = Sandbox(max_concurrency=self.config.workers(), readonly_paths=self.readonly_paths())
        return self._sandbox

    @property
    def run_slots(self) -> int | None:
        """How many runs its sandbox holds at a time (None: a caller's sandbox that does not
        say, and may have no queue of its own)."""
        return getattr(self._sandbox, "max_concurrency", None)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        compilers, self._py_compilers = self._py_compilers, {}
        for compiler in compilers.values():
            compiler.close()
        if self._own_sandbox and self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            await sandbox.aclose()
        if self._own_cache and self.cache is not None:
            self.cache.close()

    # -- one sample ---------------------------------------------------------------------

    def prepare(self, sample: VerifySample) -> _Prepared | Verdict:
        """Extraction, language, toolchain, static guards: a _Prepared, or the final verdict
        when there is nothing to run (`no_code`)."""
        config = self.config
        handled = config.languages
        language = sample.language
        if language is not None and language not in handled:
            raise HaloError(
                f"sample {sample.id!r} is {language} but --verifier {config.verifier} handles "
                f"{', '.join(handled)}: use --verifier auto"
            )
        requested = language or (handled[0] if len(handled) == 1 else None)
        if sample.code is not None:
            code = sample.code if sample.code.strip() else ""
            language = requested or (guess_language(code) if code else None)
        else:
            found = extract_code(sample.completion or "", language=requested)
            code, language = (found.code, found.language) if found else ("", None)
        why = ""
        if not code:
            why = (why_no_code(sample.completion or "", language=requested)
                   if sample.code is None else "no code found in the completion")
        elif language is None:
            why = "cannot tell the code's language: set the sample's `language`"
        elif language not in handled:
            why = f"the code is {language}; --verifier {config.verifier} runs {', '.join(handled)}"
        if why:
            return Verdict(id=sample.id, status="no_code", reward=reward(Outcome(has_code=False), config.ladder),
                           output=why, language=language)
        assert language is not None
        toolchain = resolve_toolchain(language, config.compiler(language))
        test_code = sample.test_code or ""
        # Python's test code goes to its judge on a pipe, never into the run's files.
        appended = test_code and language != "python"
        program = code if not appended else code.rstrip("\n") + "\n\n" + test_code.rstrip("\n") + "\n"
        native_guard = ""
        use_native = self.native_defences and native.handles(language, test_code)
        if use_native:
            program, native_guard = native.compose(code, test_code, language=language,
                                                   disabled=self.native_disabled)
        return _Prepared(
            sample_id=sample.id, language=language, toolchain=toolchain, program=program, solution=code,
            checker=sample.checker, interactor=sample.interactor,
            io_tests=list(sample.io_tests), test_code=test_code,
            rust_test=language == "rust" and bool(re.search(r"#\[\s*test\s*\]", test_code)),
            guard=static_guard(code, language=language, has_test_code=bool(test_code)) or native_guard,
            native=use_native, native_disabled=self.native_disabled if use_native else frozenset(),
            python_packages=language == "python" and (config.python_packages or sample.python_packages),
        )

    def key(self, p: _Prepared) -> str:
        c = self.config
        return cache_key(
            p.toolchain.identity, p.toolchain.flags, p.toolchain.link_flags, p.language, p.program,
            [(t.stdin, t.stdout) for t in p.io_tests], p.rust_test, c.compile_limits, c.run_limits,
            c.compare, c.float_tolerance, c.max_timeouts, c.ladder, c.output_tail,
            p.test_code, JUDGE_VERSION, p.native, native.NATIVE_JUDGE_VERSION, _judges_key(p, self.judge_disabled),
            sorted(p.native_disabled), _VERDICT_FORMAT, p.python_packages, pyjudge.judge_fingerprint(),
        )

    async def verify(self, sample: VerifySample) -> Verdict:
        prepared = self.prepare(sample)
        if isinstance(prepared, Verdict):
            return prepared
        if self.cache is None:
            return await self._execute(prepared)
        verdict, hit = await self.cache.get_or_compute(self.key(prepared), lambda: self._execute(prepared))
        if verdict.id != sample.id or hit:
            verdict = msgspec.structs.replace(verdict, id=sample.id, cached=hit)
        return verdict

    async def _execute(self, p: _Prepared) -> Verdict:
        if self._sandbox is None:
            raise RuntimeError("Verifier used outside `async with`")
        config, tc = self.config, p.toolchain
        limit = config.output_tail
        extra: tuple[str, ...] = ()
        if self.pch is not None and tc.is_gcc and p.language == "cpp" and wants_pch(p.program):
            include = await self.pch.include_dir(tc)
            if include is not None:
                extra = ("-I", str(include))

        def verdict(status: str, *, compiled: bool, outcome: Outcome, output: str, wall: float, cpu: float,
                    compile_s: float = 0.0, warnings: bool = False, guard: str = "",
                    passed: int = 0, total: int = 0) -> Verdict:
            return Verdict(
                id=p.sample_id, status=status, compiled=compiled, warnings=warnings, guard=guard,
                reward=0.0 if status == "sandbox_error" else reward(outcome, config.ladder),
                tests_passed=passed, tests_total=total, wall_s=round(wall, 4), cpu_s=round(cpu, 4),
                compile_s=round(compile_s, 4), output=_tail(output, limit), language=p.language,
            )

        refused = ""
        files: dict[str, bytes | str] = {tc.source_name: p.program}
        if p.native:  # source on stdin: no file holds the tests
            files = {native.GUARD_NAME: await self.guards.object_bytes(tc)}
        with self._sandbox.workdir(files) as workdir:
            if tc.kind == "python":  # no compile step: its first run compiles main.py
                built = _NOTHING_BUILT
            elif p.native:
                built, refused = await native.build(self._sandbox, tc, p.program, workdir,
                                                    limits=self._compile_limits, extra=extra,
                                                    rust_test=p.rust_test, guard_object=files[native.GUARD_NAME],
                                                    disabled=p.native_disabled)
            else:
                built = await self._sandbox.run(tc.compile_argv(rust_test=p.rust_test, extra=extra),
                                                cwd=workdir, limits=self._compile_limits)
            wall, cpu = built.wall_s, built.cpu_s
            if built.status != "ok":
                if built.status == "sandbox_error":
                    status, output = "sandbox_error", f"sandbox: {built.error}"
                else:
                    status = "compile_error" if built.status == "runtime_error" else built.status
                    output = built.stderr or built.stdout
                    if built.status != "runtime_error":
                        output = f"compiler stopped: {built.status}\n" + _tail(output, limit)
                return verdict(status, compiled=False, outcome=Outcome(has_code=True), output=output,
                               wall=wall, cpu=cpu, compile_s=built.wall_s)
            warnings = b"warning" in built.stderr.lower()
            compile_log = built.stderr.decode("utf-8", errors="replace")

            if refused:
                results = [_TestResult(status="wrong_answer", guard=refused, detail="not run")]
            else:
                results = await self._run_tests(p, workdir)
            wall += sum(r.wall_s for r in results)
            cpu += sum(r.cpu_s for r in results)
            if results and results[0].status == "compile_error":
                return verdict("compile_error", compiled=False, outcome=Outcome(has_code=True),
                               output=results[0].detail, wall=wall, cpu=cpu, compile_s=results[0].wall_s)
            if any(r.warnings for r in results):
                warnings = True
                compile_log = next(r.warnings for r in results if r.warnings)
            failed = next((r for r in results if r.status != "passed"), None)
            if any(r.status == "sandbox_error" for r in results):
                err = next(r for r in results if r.status == "sandbox_error")
                return verdict("sandbox_error", compiled=True, outcome=Outcome(has_code=True, compiled=True),
                               output=err.detail, wall=wall, cpu=cpu, compile_s=built.wall_s, warnings=warnings)
            guard = p.guard or next((r.guard for r in results if r.guard), "")
            has_tests = bool(p.io_tests or p.test_code)
            passed = sum(r.passed for r in results) if has_tests else 0
            total = sum(r.total for r in results) if has_tests else 0
            status = failed.status if failed is not None else "passed" if has_tests else "ran"
            if guard and status in ("passed", "ran"):
                status, passed = "wrong_answer", 0  # never reported as a pass
            output = failed.detail if failed is not None else (compile_log if warnings else "")
            if guard:
                output = f"guard: {guard}\n{output}"
            outcome = Outcome(has_code=True, compiled=True, warnings=warnings,
                              ran_ok=not has_tests and failed is None, tests_passed=passed,
                              tests_total=total, guarded=bool(guard))
            return verdict(status, compiled=True, outcome=outcome, output=output, wall=wall, cpu=cpu,
                           compile_s=built.wall_s, warnings=warnings, guard=guard, passed=passed, total=total)

    async def _run_tests(self, p: _Prepared, workdir: os.PathLike) -> list[_TestResult]:
        if (p.checker is not None or p.interactor is not None) and p.io_tests and not p.test_code:
            return await self._judged_tests(p, workdir)
        results: list[_TestResult] = []
        tc = p.toolchain
        if p.test_code:
            results.append(await self._run_test_code(p, workdir))
        elif not p.io_tests:  # no tests at all: it must run and exit 0
            run = await self._sandbox.run(self._program_argv(p, workdir), cwd=workdir, limits=self._run_limits,
                                          warm=self._python_warm(p))
            results.append(self._plain(run, total=0, python=tc.kind == "python"))
        timeouts = sum(r.status == "timeout" for r in results)
        for index, test in enumerate(p.io_tests):
            if timeouts >= self.config.max_timeouts:
                results.append(_TestResult(status="timeout", detail=f"test {index}: not run after {timeouts} timeout(s)"))
                continue
            run = await self._sandbox.run(self._program_argv(p, workdir), cwd=workdir, stdin=test.stdin.encode(),
                                          limits=self._run_limits, warm=self._python_warm(p))
            result = self._plain(run, total=1, python=tc.kind == "python")
            if result.status == "compile_error":  # the same source for every test: none will run
                return [result]
            if result.status == "passed" and not outputs_match(
                run.stdout, test.stdout, mode=self.config.compare, float_tolerance=self.config.float_tolerance
            ):
                got = run.stdout.decode("utf-8", errors="replace")
                result = _TestResult(status="wrong_answer", wall_s=run.wall_s, cpu_s=run.cpu_s,
                                     detail=f"test {index}: expected {test.stdout[:200]!r}, got {got[:200]!r}")
            elif result.status != "passed":
                result.detail = f"test {index}: {result.detail}"
            timeouts += result.status == "timeout"
            results.append(result)
        return results

    def _py_compiler(self, tc: Toolchain) -> PythonCompiler | None:
        """The host's compiler of sample Python for `tc`'s interpreter; None where the run's
        flags could change what compile() makes."""
        if not PLAIN_FLAGS.issuperset(tc.flags):
            return None
        compiler = self._py_compilers.get(tc.path)
        if compiler is None:
            # No longer than the run may take: the run would have spent that time compiling.
            compiler = self._py_compilers[tc.path] = PythonCompiler(tc.path, timeout_s=self._run_limits.cpu_s)
        return compiler

    def _python_warm(self, p: _Prepared) -> bool:
        """May this Python run be a fork of the sandbox's warm template (pywarm_main.py)?
        Started on the first one; site-packages runs start cold (site would run in the
        template, for every run)."""
        tc = p.toolchain
        if tc.kind != "python" or not self.config.python_warm or p.python_packages or self.legacy_python_harness:
            return False
        key = (tc.path, tuple(tc.flags))
        warm = self._warm.get(key)
        if warm is None:
            try:
                data = pyjudge.warm_data(tc.path)
            except HaloError:
                data = None
            start = getattr(self._sandbox, "start_template", None)  # a caller's own sandbox may lack it
            warm = self._warm[key] = data is not None and start is not None and start(
                pyjudge.warm_argv(tc.path, tc.flags), data)
        return warm

    @staticmethod
    def _program_argv(p: _Prepared, workdir: os.PathLike) -> list[str]:
        tc = p.toolchain
        if tc.kind == "python":
            return pyjudge.run_argv(tc.path, tc.flags, site=p.python_packages)
        return tc.run_argv(workdir)

    def _plain(self, run: Any, *, total: int, python: bool = False) -> _TestResult:
        """A run judged by its status alone (output compared by the caller); `python`: the
        run compiled main.py first, and may have stopped there."""
        base: dict[str, Any] = {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "total": total}
        if python:
            if pyjudge.compile_failed(run):
                return _TestResult(status="compile_error", detail=run.stderr.decode("utf-8", errors="replace"), **base)
            base["warnings"] = pyjudge.compile_warnings(run.stderr)
        if run.status == "ok":
            return _TestResult(status="passed", passed=total, **base)
        if run.status == "sandbox_error":
            return _TestResult(status="sandbox_error", detail=f"sandbox: {run.error}", **base)
        return _TestResult(status=run.status, detail=_describe(run), **base)

    async def _judged_tests(self, p: _Prepared, workdir: os.PathLike) -> list[_TestResult]:
        """io_tests judged by the problem's checker or interactor (checker.py, interactive.py):
        a judge that fails ends the sample as `sandbox_error`, never as the sample's fault."""
        program = p.checker or p.interactor
        assert program is not None
        built = await self.judges.get(self._sandbox, program, compile_limits=self._compile_limits)
        limits = judge_limits(self._run_limits)
        naive = "own_workdir" in self.judge_disabled
        python = p.toolchain.kind == "python"
        results: list[_TestResult] = []
        timeouts = 0
        for index, test in enumerate(p.io_tests):
            if timeouts >= self.config.max_timeouts:
                results.append(_TestResult(status="timeout", detail=f"test {index}: not run after {timeouts} timeout(s)"))
                continue
            if p.interactor is not None:
                judged = await interactive.interact(
                    self._sandbox, program, built, solution_argv=self._program_argv(p, workdir),
                    solution_workdir=workdir, stdin=test.stdin, expected=test.stdout,
                    run_limits=self._run_limits, judge_limits=limits, exposed=naive)
                if python and judged.program_run is not None and pyjudge.compile_failed(judged.program_run):
                    return [self._plain(judged.program_run, total=1, python=True)]
                result = _TestResult(status=judged.status, detail=judged.detail, wall_s=judged.wall_s,
                                     cpu_s=judged.cpu_s, passed=int(judged.status == "passed"))
            else:
                if naive:  # the judge before checker.py: one folder per test, answer inside
                    (Path(workdir) / checkers.INPUT).write_text(test.stdin)
                    (Path(workdir) / checkers.ANSWER).write_text(test.stdout)
                run = await self._sandbox.run(self._program_argv(p, workdir), cwd=workdir,
                                              stdin=test.stdin.encode(), limits=self._run_limits)
                result = self._plain(run, total=1, python=python)
                if result.status == "compile_error":  # the same source for every test: none will run
                    return [result]
                if result.status == "passed":
                    judged = await checkers.check(self._sandbox, program, built, stdin=test.stdin,
                                                  expected=test.stdout, actual=run.stdout, limits=limits,
                                                  sample_workdir=Path(workdir) if naive else None)
                    result = _TestResult(status=judged.status, detail=judged.detail, wall_s=run.wall_s,
                                         cpu_s=run.cpu_s, passed=int(judged.status == "passed"),
                                         warnings=result.warnings)
            if result.status != "passed":
                result.detail = f"test {index}: {result.detail}"
            timeouts += result.status == "timeout"
            results.append(result)
            if result.status == "sandbox_error":  # the judge failed: the rest would too
                break
        return results

    async def _run_test_code(self, p: _Prepared, workdir: os.PathLike) -> _TestResult:
        tc = p.toolchain
        if tc.kind == "python":  # the judge: halo_forge/verify/pyjudge.py
            compiler = self._py_compiler(tc)
            make = functools.partial(python_test_run, tc.path, tc.flags, p.test_code, solution=p.program,
                                     compiler=compiler, legacy=self.legacy_python_harness,
                                     site=p.python_packages)
            # The host's compile may take up to the run's CPU limit (a hostile sample's): on a
            # thread of its own, so the event loop goes on with every other sample meanwhile.
            argv, stdin, token = make() if compiler is None else await anyio.to_thread.run_sync(make)
            run = await self._sandbox.run(argv, cwd=workdir, stdin=stdin, limits=self._run_limits,
                                          warm=self._python_warm(p))
            result = self._plain(run, total=1, python=True)
            judged = read_verdict(run, token)
            if result.status == "compile_error":
                return result
            if judged.status is not None:
                result.status, result.guard = judged.status, judged.guard
                result.passed = int(judged.status == "passed")
                result.detail = judged.detail or result.detail
            return result
        run = await self._sandbox.run(
            [*tc.run_argv(workdir), *(("--test-threads=1",) if p.rust_test else ())],
            cwd=workdir, limits=self._run_limits,
        )
        if p.rust_test:
            return self._rust_harness(run, p)
        result = self._plain(run, total=1)
        if p.native and run.status == "runtime_error" and run.exit_code == native.EARLY_EXIT_STATUS:
            result.status, result.guard = "wrong_answer", native.EARLY_GUARD
            return result
        # A C/C++/Rust test main reports failure by a non-zero exit or a failed assert().
        if run.status == "runtime_error" and (
            run.signal is None or (run.signal == _signal.SIGABRT and b"ssertion" in run.stderr)
        ):
            result.status = "wrong_answer"
        return result

    def _rust_harness(self, run: Any, p: _Prepared) -> _TestResult:
        """Counts from libtest's own summary line; an exit 0 without one means the program
        ended before the harness did."""
        if run.status == "sandbox_error":
            return _TestResult(status="sandbox_error", detail=f"sandbox: {run.error}")
        base = {"wall_s": run.wall_s, "cpu_s": run.cpu_s}
        expected = len(re.findall(r"#\[\s*test\s*\]", p.test_code))
        running = _RUST_RUNNING.findall(run.stdout)
        summary = _RUST_RESULT.findall(run.stdout)
        total = max(int(running[0]) if running else 0, expected, 1)
        if run.status in ("timeout", "memory_limit", "output_limit"):
            return _TestResult(status=run.status, total=total, detail=_describe(run), **base)
        if p.native and run.status == "runtime_error" and run.exit_code == native.EARLY_EXIT_STATUS:
            return _TestResult(status="wrong_answer", total=total, guard=native.EARLY_GUARD,
                               detail=_describe(run), **base)
        if p.native and "rust_summary" not in p.native_disabled and (len(summary) > 1 or len(running) > 1):
            # libtest prints one of each; more were printed by the solution to fake counts.
            return _TestResult(status="wrong_answer", total=total, guard="forged the test harness' summary",
                               detail=_describe(run), **base)
        if not summary:
            guard = "exited before its tests finished" if run.status == "ok" else ""
            status = "wrong_answer" if run.status == "ok" else "runtime_error"
            return _TestResult(status=status, total=total, guard=guard, detail=_describe(run), **base)
        verdict, passed, failed = summary[-1]
        passed_n = int(passed)
        total = max(total, passed_n + int(failed))
        if verdict == b"ok" and run.status == "ok" and passed_n == total:
            return _TestResult(status="passed", passed=passed_n, total=total, **base)
        return _TestResult(status="wrong_answer", passed=min(passed_n, total), total=total,
                           detail=_describe(run), **base)


# Python's stand-in for a compile step that succeeded at once (its run compiles main.py).
_NOTHING_BUILT = RunResult(status="ok", exit_code=0, signal=None, cpu_s=0.0, wall_s=0.0, peak_memory_kb=0,
                           stdout=b"", stderr=b"")


def _judges_key(p: _Prepared, disabled: frozenset[str]) -> str:
    """The problem's judge program in the cache key (with the defences switched off in tests)."""
    parts = [f"{name}:{judge_key(prog)}" for name, prog in (("checker", p.checker), ("interactor", p.interactor))
             if prog is not None]
    return ";".join(parts + sorted(disabled)) if parts else ""


def _describe(run: Any) -> str:
    how = f"exit code {run.exit_code}" if run.signal is None else f"signal {run.signal}"
    if run.status == "timeout":
        how = f"timed out ({run.cpu_s:.2f} s cpu, {run.wall_s:.2f} s wall)"
    elif run.status in ("memory_limit", "output_limit"):
        how = run.status.replace("_", " ")
    stream = run.stderr.strip() or run.stdout
    return f"{run.status}: {how}\n{_tail(stream, 1500)}".strip()


# -- streaming API --------------------------------------------------------------------------

async def _aiter(samples: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(samples, AsyncIterable):
        async for item in samples:
            yield item
    else:
        for item in samples:
            yield item


def _as_sample(item: Any) -> VerifySample:
    if isinstance(item, VerifySample):
        return item
    if isinstance(item, Mapping):
        return msgspec.convert(item, VerifySample)
    return msgspec.convert(item, VerifySample, from_attributes=True)


@asynccontextmanager
async def verify_indexed(
    samples: Iterable[Any] | AsyncIterable[Any],
    *,
    verifier: Verifier,
    concurrency: int | None = None,
) -> AsyncIterator[MemoryObjectReceiveStream[tuple[int, Verdict]]]:
    """A stream of (input index, verdict) pairs as they finish; the engine under verify_stream.

        async with verify_indexed(samples, verifier=verifier) as pairs:
            async for index, verdict in pairs: ...

    A context manager, not a generator: its task group is entered and left by the caller's
    task and nothing yields from inside it. Leaving the block early cancels what is in flight
    (the sandbox kills those runs).

    At most `concurrency` (default the config's) samples run at a time. Where the verifier's
    sandbox holds no more runs than that, as many samples again are taken in ahead of a free
    slot: their host side (extraction, static guards, Python's compile, the workdir) is done
    while the runs go, and their runs wait in the sandbox's queue, whose wall clock starts only
    when a run starts. With in-flight equal to the slots, a core waited on the host between
    runs (a sixth of the machine idle on 2 cores, HumanEval in Python). A verifier whose sandbox
    holds more runs, or does not say, gets `concurrency` samples at a time and no more."""
    workers = concurrency or verifier.config.workers()
    slots = getattr(verifier, "run_slots", None)
    in_flight = 2 * workers if slots is not None and slots <= workers else workers
    send, receive = anyio.create_memory_object_stream[tuple[int, Verdict]](workers)

    async def one(index: int, sample: VerifySample, out: Any, limiter: anyio.CapacityLimiter, token: object) -> None:
        try:
            async with out:
                try:
                    verdict = await verifier.verify(sample)
                except HaloError:
                    raise
                except Exception as exc:  # a verifier bug must not end a days-long run
                    log.exception("verifying %s failed", sample.id)
                    verdict = Verdict(id=sample.id, status="sandbox_error", reward=0.0,
                                      output=f"internal error: {type(exc).__name__}: {exc}",
                                      language=sample.language)
                await out.send((index, verdict))
        finally:
            limiter.release_on_behalf_of(token)

    async def feed() -> None:
        limiter = anyio.CapacityLimiter(in_flight)
        items = _aiter(samples)
        async with send, anyio.create_task_group() as tg:
            index = 0
            while True:
                # Take a slot before pulling the next sample: the input is read no faster
                # than samples are verified.
                token = object()
                await limiter.acquire_on_behalf_of(token)
                try:
                    item = await anext(items)
                    sample = _as_sample(item)
                except BaseException:
                    limiter.release_on_behalf_of(token)
                    if isinstance(sys.exc_info()[1], StopAsyncIteration):
                        break
                    raise
                tg.start_soon(one, index, sample, send.clone(), limiter, token)
                index += 1

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            with receive:
                try:
                    yield receive
                finally:
                    # Cancel before the receiver closes, so that no verifier still sending
                    # fails on a closed stream when the caller leaves early.
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def _sized(config: VerifierConfig | None, concurrency: int | None) -> VerifierConfig | None:
    """The config whose own sandbox holds `concurrency` runs at a time, where the config leaves
    it to the cores (a smaller `concurrency` would otherwise leave the sandbox's slots above
    it, and verify_indexed would take in no samples ahead of them)."""
    if not concurrency or (config is not None and config.concurrency is not None):
        return config
    return msgspec.structs.replace(config or VerifierConfig(), concurrency=concurrency)


@asynccontextmanager
async def verify_stream(
    samples: Iterable[Any] | AsyncIterable[Any],
    *,
    config: VerifierConfig | None = None,
    sandbox: Any = None,
    cache: VerdictCache | None = None,
    concurrency: int | None = None,
) -> AsyncIterator[AsyncIterator[Verdict]]:
    """`async with verify_stream(samples) as verdicts: async for v in verdicts: ...`: verdicts
    for `samples` (VerifySample, or dicts in the contract's shape) as they finish. At most
    `concurrency` samples (default config.concurrency, else the cores) run at a time and up to
    twice that many are in flight (verify_indexed), and the input is read only as slots free up,
    so memory stays bounded. A context manager, not an
    async generator: the verifying tasks live in the block's task group, which anyio forbids
    a generator to yield from; leaving the block early cancels what is still in flight."""
    if sandbox is None:
        config = _sized(config, concurrency)
    async with (
        Verifier(config, sandbox=sandbox, cache=cache) as verifier,
        verify_indexed(samples, verifier=verifier, concurrency=concurrency) as pairs,
    ):
        async def verdicts() -> AsyncIterator[Verdict]:
            async for _, verdict in pairs:
                yield verdict

        yield verdicts()


def verify_many(
    samples: Iterable[Any],
    *,
    config: VerifierConfig | None = None,
    cache: VerdictCache | None = None,
    concurrency: int | None = None,
) -> list[Verdict]:
    """Verify samples and return their verdicts in input order (runs its own event loop)."""
    items = list(samples)
    config = _sized(config, concurrency)

    async def collect() -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(items)
        async with (
            Verifier(config, cache=cache) as verifier,
            verify_indexed(items, verifier=verifier, concurrency=concurrency) as pairs,
        ):
            async for index, verdict in pairs:
                out[index] = verdict
        return [v for v in out if v is not None]

    return anyio.run(collect)
