"""`halo-forge data audit DATASET`: are a dataset's tests strong enough to reject wrong programs?

RAFT trains on whatever the verifier rewards, so a problem whose tests accept a wrong program
teaches the model that program. For each problem with a reference solution the audit:

1. verifies the reference with the real verifier; one that does not pass is reported as
   `reference_failed` (and nothing else is judged on that problem);
2. verifies up to `max_mutants` wrong programs derived from it (halo_forge/data/mutants.py) with
   the same verifier; a mutant that does not compile is `invalid`, one that fails is `killed`;
3. for each mutant the tests accept, looks for an input on which it behaves differently from
   the reference (halo_forge/data/probes.py): the inputs are made from the tests' own, and an
   input counts only when the reference exits cleanly on it and prints the same output on two
   runs. Outputs are compared the verifier's way (its `compare` mode and float tolerance), so
   a mutant that only adds trailing spaces is no difference.

A problem is `weak` when some accepted mutant was seen to differ from the reference: that mutant
is a wrong program the tests reward, named with its changed line and the input that shows it.
An accepted mutant that never differed may be an equivalent mutant (a correct program written
differently, e.g. `<` to `<=` where equality cannot happen): it is listed under `unproven` and
never makes a problem weak. A problem whose test inputs the audit cannot vary (no input at all,
no literal call arguments) can only be `strong`; the count of unproven mutants says how much
that verdict rests on.

Results are cached per dataset in `<verifier cache_dir>/audit/<dataset>.json` (by default
~/.cache/halo-forge/audit/), one entry per problem keyed by a fingerprint of its reference,
tests and the audit's settings: a rerun audits only what changed, `data prepare --audit` reuses
it, and `data prepare --list` shows each dataset's weak share from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec

from halo_forge.data.check import verify_sample
from halo_forge.data.mutants import Mutant, mutants_for
from halo_forge.data.probes import CallProbe, call_probe, io_inputs
from halo_forge.errors import HaloError, first_error
from halo_forge.records import Problem
from halo_forge.verify.compare import outputs_match
from halo_forge.verify.config import VerifierConfig

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)

# Bumped when mutants, probes or the meaning of a result change: older cached entries are redone.
AUDIT_VERSION = 3
DEFAULT_MUTANTS = 24
DEFAULT_INPUTS = 24

Status = Literal["strong", "weak", "reference_failed", "no_reference", "not_audited"]


class Finding(msgspec.Struct, kw_only=True):
    """A mutant the tests accepted."""

    kind: str
    name: str
    diff: str
    witness: str = ""  # the input (stdin, or a call) where it differs from the reference
    expected: str = ""  # the reference's output there
    got: str = ""  # the mutant's


class ProblemAudit(msgspec.Struct, kw_only=True):
    id: str
    status: Status
    fingerprint: str = ""
    detail: str = ""  # why the reference failed, or why the problem was not audited
    mutants: int = 0
    killed: int = 0
    invalid: int = 0  # did not compile, or the sandbox failed on them
    inputs: int = 0  # inputs the reference was observed on (made up, valid, deterministic)
    weak_by: list[Finding] = []  # accepted and seen to differ: wrong programs the tests reward
    unproven: list[Finding] = []  # accepted, never seen to differ: possibly equivalent
    # The sandbox failed on the reference: no verdict on the problem, and none is cached.
    sandbox_failed: bool = False

    def line(self) -> str:
        if self.status == "weak":
            f = self.weak_by[0]
            more = f" (+{len(self.weak_by) - 1} more)" if len(self.weak_by) > 1 else ""
            witness = f"; differs on {_short(f.witness)}: expected {_short(f.expected)}, got {_short(f.got)}"
            return f"WEAK    {self.id}: accepts {f.kind} mutant {f.name}{more}: {f.diff}{witness}"
        if self.status == "reference_failed":
            return f"BROKEN  {self.id}: the reference fails its own tests ({self.detail})"
        if self.status in ("no_reference", "not_audited"):
            return f"SKIPPED {self.id}: {self.detail}"
        note = f", {len(self.unproven)} accepted but never seen to differ" if self.unproven else ""
        return f"ok      {self.id}: {self.killed}/{self.mutants} mutants rejected{note}"


class AuditSummary(msgspec.Struct, kw_only=True):
    dataset: str
    audited: int = 0  # strong + weak
    weak: int = 0
    reference_failed: int = 0
    skipped: int = 0  # no reference, or not audited
    updated: float = 0.0

    @property
    def weak_share(self) -> float | None:
        return self.weak / self.audited if self.audited else None

    def text(self) -> str:
        share = f"{self.weak}/{self.audited} weak ({100 * self.weak / self.audited:.0f}%)" if self.audited \
            else "nothing audited"
        extra = [f"{self.reference_failed} references failing"] if self.reference_failed else []
        extra += [f"{self.skipped} skipped"] if self.skipped else []
        return share + (f"; {', '.join(extra)}" if extra else "")


class AuditFile(msgspec.Struct, kw_only=True):
    """What `<cache_dir>/audit/<dataset>.json` holds."""

    dataset: str
    version: int = AUDIT_VERSION
    updated: float = 0.0
    problems: dict[str, ProblemAudit] = {}


def _short(text: str, limit: int = 60) -> str:
    shown = json.dumps(text)
    return shown if len(shown) <= limit else shown[:limit - 4] + '..."'


def fingerprint(problem: Problem, *, max_mutants: int, inputs: int, config: VerifierConfig) -> str:
    parts = [str(AUDIT_VERSION), problem.language, problem.reference, problem.test_code,
             json.dumps([[t.stdin, t.stdout] for t in problem.io_tests]), str(max_mutants),
             str(inputs), config.compare, repr(config.float_tolerance), config.verifier]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=12).hexdigest()


# --- the cache ----------------------------------------------------------------------------------

def cache_path(dataset: str, config: VerifierConfig | None = None) -> Path:
    config = config or VerifierConfig()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset) or "dataset"
    return Path(config.cache_dir) / "audit" / f"{safe}.json"


def read_cache(dataset: str, config: VerifierConfig | None = None) -> AuditFile | None:
    path = cache_path(dataset, config)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HaloError(f"audit cache {path}: cannot read it ({exc.strerror}); delete it to start over") from None
    try:
        cached = msgspec.json.decode(data, type=AuditFile)
    except (msgspec.ValidationError, msgspec.DecodeError):
        log.warning("audit cache %s is unreadable; it will be rewritten", path)
        return None
    return cached if cached.version == AUDIT_VERSION else None


def write_cache(cached: AuditFile, config: VerifierConfig | None = None) -> Path:
    from halo_forge.atomic import write_atomic

    path = cache_path(cached.dataset, config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, msgspec.json.format(msgspec.json.encode(cached)))
    except OSError as exc:
        raise HaloError(f"audit cache {path}: cannot write it ({exc.strerror}); set [verifier] "
                        "cache_dir to a writable folder") from None
    return path


def summarize(dataset: str, results: Sequence[ProblemAudit], updated: float = 0.0) -> AuditSummary:
    s = AuditSummary(dataset=dataset, updated=updated)
    for r in results:
        if r.status in ("strong", "weak"):
            s.audited += 1
            s.weak += r.status == "weak"
        elif r.status == "reference_failed":
            s.reference_failed += 1
        else:
            s.skipped += 1
    return s


def cached_summary(dataset: str, config: VerifierConfig | None = None) -> AuditSummary | None:
    """The weak share from the last audit of `dataset`, without running anything."""
    try:
        cached = read_cache(dataset, config)
    except HaloError:
        return None
    if cached is None or not cached.problems:
        return None
    return summarize(dataset, list(cached.problems.values()), cached.updated)


# --- observing a program -----------------------------------------------------------------------

class _Observer:
    """Runs a program (the reference, or a mutant) on the audit's inputs in the sandbox and
    returns what it printed per input; a failed run is `<status>`."""

    def __init__(self, verifier: Any, problem: Problem, *, inputs: int) -> None:
        self.v = verifier
        self.problem = problem
        self.probe: CallProbe | None = None
        self.stdins: list[str] = []
        if problem.test_code:
            self.probe = call_probe(problem, count=inputs, seed=problem.id)
        elif problem.io_tests:
            self.stdins = io_inputs(problem.io_tests, count=inputs, seed=problem.id)

    @property
    def labels(self) -> list[str]:
        return self.probe.calls if self.probe is not None else self.stdins

    async def observe(self, code: str, *, stop: Callable[[int, str], bool] | None = None) -> dict[int, str]:
        from halo_forge.verify.toolchains import resolve_toolchain

        language = self.problem.language
        tc = resolve_toolchain(language, self.v.config.compiler(language))
        program = self.probe.program(code, language) if self.probe is not None else code
        sandbox = self.v.sandbox
        with sandbox.workdir({tc.source_name: program}) as workdir:
            if tc.kind != "python":
                built = await sandbox.run(tc.compile_argv(), cwd=workdir, limits=self.v._compile_limits)
                if built.status != "ok":
                    return {}
            if self.probe is not None:
                return await self._calls(tc, workdir, stop)
            out: dict[int, str] = {}
            for i, stdin in enumerate(self.stdins):
                run = await sandbox.run(tc.run_argv(workdir), cwd=workdir, stdin=stdin.encode(),
                                        limits=self.v._run_limits)
                out[i] = run.stdout.decode("utf-8", errors="replace") if run.status == "ok" \
                    else f"<{run.status}>"
                if stop is not None and stop(i, out[i]):
                    break
            return out

    async def _calls(self, tc: Any, workdir: Any, stop: Callable[[int, str], bool] | None) -> dict[int, str]:
        assert self.probe is not None
        total = len(self.probe.calls)
        out: dict[int, str] = {}
        start, restarts = 0, 0
        while start < total and restarts < 4:
            argv = [*tc.run_argv(workdir), str(start)]
            run = await self.v.sandbox.run(argv, cwd=workdir, limits=self.v._run_limits)
            last = start - 1
            for line in run.stdout.decode("utf-8", errors="replace").splitlines():
                index, sep, value = line.partition("\t")
                if sep and index.isdigit() and start <= int(index) < total:
                    out[int(index)] = value
                    last = max(last, int(index))
            if stop is not None and any(stop(i, out[i]) for i in range(start, last + 1) if i in out):
                break
            if run.status == "ok" and last >= total - 1:
                break
            # The call after the last one printed crashed or hung the program: note it, go on.
            if last + 1 < total and last + 1 not in out:
                out[last + 1] = f"<{run.status}>" if run.status != "ok" else "<no output>"
            start, restarts = last + 2, restarts + 1
        return out


def _failed(observation: str) -> bool:
    return observation.startswith("<") or observation.startswith("raised ") \
        or observation in ("threw", "panicked")


# --- the audit -----------------------------------------------------------------------------------

async def audit_problem(verifier: Any, problem: Problem, *, max_mutants: int = DEFAULT_MUTANTS,
                        inputs: int = DEFAULT_INPUTS, seed: int = 0) -> ProblemAudit:
    config = verifier.config
    fp = fingerprint(problem, max_mutants=max_mutants, inputs=inputs, config=config)
    result = ProblemAudit(id=problem.id, status="strong", fingerprint=fp)
    if not problem.reference.strip():
        result.status, result.detail = "no_reference", "no reference solution to derive mutants from"
        return result
    if not (problem.io_tests or problem.test_code):
        result.status, result.detail = "not_audited", "the problem has no tests"
        return result
    if getattr(problem, "checker", None) is not None or getattr(problem, "interactor", None) is not None:
        # Several outputs are right (or there is a dialogue): a mutant printing something other
        # than the reference proves nothing, so the audit would only ever say "strong".
        result.status = "not_audited"
        result.detail = "judged by its own checker or interactor: outputs cannot be compared"
        return result
    if problem.language not in config.languages:
        result.status = "not_audited"
        result.detail = f"--verifier {config.verifier} does not run {problem.language}"
        return result
    ref = await verifier.verify(_sample(problem, problem.reference, "reference"))
    if ref.status == "sandbox_error":  # the infrastructure's failure, never the reference's
        result.status, result.sandbox_failed = "not_audited", True
        result.detail = f"the sandbox failed ({ref.output.strip()[:160]}); run the audit again"
        return result
    if ref.status != "passed":
        first = (ref.output or "").strip().splitlines()[:1]
        result.status = "reference_failed"
        result.detail = ref.status + (f": {first[0][:160]}" if first else "")
        return result
    mutants = mutants_for(problem, limit=max_mutants, seed=seed)
    result.mutants = len(mutants)
    accepted: list[Mutant] = []
    for n, mutant in enumerate(mutants):
        verdict = await verifier.verify(_sample(problem, mutant.code, f"m{n}"))
        if verdict.status == "passed":
            accepted.append(mutant)
        elif verdict.status in ("compile_error", "sandbox_error", "no_code"):
            result.invalid += 1
        else:
            result.killed += 1
    if not accepted:
        return result
    observer = _Observer(verifier, problem, inputs=inputs)
    first = await observer.observe(problem.reference)
    second = await observer.observe(problem.reference)
    # Trusted inputs: the reference ran cleanly and printed the same thing twice.
    valid = {i: out for i, out in first.items() if second.get(i) == out and not _failed(out)}
    result.inputs = len(valid)
    labels = observer.labels

    def differs(i: int, got: str) -> bool:
        want = valid.get(i)
        if want is None or got in ("<timeout>", "<no output>"):
            return False  # slow is not wrong here; the tests' own time limit judges that
        if observer.probe is None and not got.startswith("<"):
            return not outputs_match(got, want, mode=config.compare, float_tolerance=config.float_tolerance)
        return got != want

    for mutant in accepted:
        finding = Finding(kind=mutant.kind, name=mutant.name, diff=mutant.diff)
        seen = await observer.observe(mutant.code, stop=differs) if valid else {}
        hit = next((i for i in sorted(seen) if differs(i, seen[i])), None)
        if hit is None:
            result.unproven.append(finding)
            continue
        finding.witness, finding.expected, finding.got = labels[hit], valid[hit], seen[hit]
        result.weak_by.append(finding)
    result.status = "weak" if result.weak_by else "strong"
    return result


def _sample(problem: Problem, code: str, tag: str) -> Any:
    from halo_forge.verify.types import VerifySample

    return msgspec.convert(verify_sample(problem, code, sample_id=f"{problem.id}#{tag}"), VerifySample)


async def _audit_all(problems: Sequence[Problem], *, config: VerifierConfig, max_mutants: int,
                     inputs: int, seed: int, on_result: Callable[[ProblemAudit], None]) -> list[ProblemAudit]:
    from halo_forge.verify.runner import Verifier

    results: list[ProblemAudit | None] = [None] * len(problems)
    limiter = anyio.CapacityLimiter(config.workers())

    async with Verifier(config) as verifier:
        async def one(k: int, problem: Problem) -> None:
            async with limiter:
                results[k] = await audit_problem(verifier, problem, max_mutants=max_mutants,
                                                 inputs=inputs, seed=seed)
            on_result(results[k])

        try:
            async with anyio.create_task_group() as tg:
                for k, problem in enumerate(problems):
                    tg.start_soon(one, k, problem)
        except BaseExceptionGroup as group:  # a missing compiler: one line, not a group of them
            raise first_error(group) from None
    return [r for r in results if r is not None]


def audit(problems: Sequence[Problem], *, dataset: str, config: VerifierConfig | None = None,
          max_mutants: int = DEFAULT_MUTANTS, inputs: int = DEFAULT_INPUTS, seed: int = 0,
          use_cache: bool = True, on_result: Callable[[ProblemAudit], None] | None = None,
          ) -> list[ProblemAudit]:
    """Audit `problems` (in order), reusing and updating the dataset's cached results."""
    if max_mutants < 1:
        raise HaloError(f"--mutants must be at least 1, got {max_mutants}")
    if inputs < 1:
        raise HaloError(f"--inputs must be at least 1, got {inputs}")
    config = config or VerifierConfig()
    cached = (read_cache(dataset, config) if use_cache else None) or AuditFile(dataset=dataset)
    done: dict[int, ProblemAudit] = {}
    todo: list[tuple[int, Problem]] = []
    for k, p in enumerate(problems):
        hit = cached.problems.get(p.id)
        if hit is not None and hit.fingerprint == fingerprint(p, max_mutants=max_mutants, inputs=inputs,
                                                              config=config):
            done[k] = hit
        else:
            todo.append((k, p))
    for k in sorted(done):
        if on_result is not None:
            on_result(done[k])
    if todo:
        last_write = time.monotonic()

        def finished(r: ProblemAudit) -> None:
            nonlocal last_write
            if on_result is not None:
                on_result(r)
            if use_cache and not r.sandbox_failed:
                # Saved as it goes: an audit stopped after an hour keeps that hour's results.
                cached.problems[r.id] = r
                if time.monotonic() - last_write > 30:
                    cached.updated = time.time()
                    write_cache(cached, config)
                    last_write = time.monotonic()

        fresh = anyio.run(lambda: _audit_all([p for _, p in todo], config=config, max_mutants=max_mutants,
                                             inputs=inputs, seed=seed, on_result=finished))
        for (k, _), r in zip(todo, fresh):
            done[k] = r
        if use_cache:
            cached.updated = time.time()
            write_cache(cached, config)
    return [done[k] for k in range(len(problems))]


def weak_ids(results: Sequence[ProblemAudit]) -> set[str]:
    return {r.id for r in results if r.status == "weak"}


def paths_key(paths: Sequence[str | os.PathLike]) -> str:
    """A cache name for a local dataset: the first file's name and a hash of every path."""
    real = [os.path.realpath(p) for p in paths]
    stem = Path(real[0]).name.split(".")[0] if real else "local"
    return f"{stem}-{hashlib.blake2b(chr(0).join(real).encode(), digest_size=4).hexdigest()}"
