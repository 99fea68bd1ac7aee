"""Guard accounting: how many verdicts each reward-hacking defence capped, per RAFT cycle."""

from __future__ import annotations

import msgspec
import pytest

from halo_forge.generate.base import Batch, BatchStats, GenerationParams, make_sample
from halo_forge.metrics import CycleMetrics, guard_key, read_metrics, write_metrics
from halo_forge.raft import generate_and_verify
from halo_forge.records import Problem, Verdict


@pytest.mark.parametrize("reason,key", [
    ("stub: empty main", "stub"),
    ("stub: function 'f' has an empty body", "stub"),
    ("test tampering: redefines assert: twice", "test tampering"),
    ("exited before its tests finished", "exited before its tests finished"),
])
def test_guard_key_is_the_text_before_the_first_colon(reason, key):
    assert guard_key(reason) == key


# Per sample index, the guard the scripted verifier reports ("" = an honest verdict).
GUARDS = ["", "stub: empty main", "stub: function 'f' has an empty body",
          "exited before its tests finished"]


class _Backend:
    def __init__(self) -> None:
        self.generated = 0

    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        for p in problems:
            out = [make_sample(p, cycle=cycle, index=i, completion="```python\nprint(1)\n```",
                               prompt_tokens=1, completion_tokens=1,
                               params=GenerationParams(model="fake"))
                   for i in range(samples_per_prompt)]
            self.generated += len(out)
            yield Batch(out, BatchStats(samples=len(out), completion_tokens=len(out), wall_s=0.1))


class _Verifier:
    async def verify(self, sample):
        guard = GUARDS[int(sample.id.rsplit("/s", 1)[1])]  # ids are "<problem>/c<cycle>/s<index>"
        return Verdict(id=sample.id, status="wrong_answer" if guard else "passed",
                       reward=0.5 if guard else 1.0, compiled=True, guard=guard)


@pytest.mark.anyio
async def test_cycle_counts_each_guard_once_by_key_also_after_a_resume(tmp_path):
    problems = [Problem(id=pid, language="python", prompt="print 1") for pid in ("a", "b")]

    async def cycle(backend):
        return await generate_and_verify(problems=problems, backend=backend, verifier=_Verifier(),
                                         cycle=1, cycle_dir=tmp_path, samples_per_prompt=4,
                                         settings=None, concurrency=2)

    first = await cycle(_Backend())
    assert first.guards == {"stub": 4, "exited before its tests finished": 2}
    # Rerun on the same shards: everything comes back from disk, counted once.
    backend = _Backend()
    again = await cycle(backend)
    assert backend.generated == 0 and again.resumed_verdicts == 8
    assert again.guards == first.guards


def test_metrics_rows_carry_guards_and_old_rows_still_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path, [CycleMetrics(cycle=1, guards={"stub": 3})])
    old = msgspec.json.encode({"cycle": 2, "samples": 4})  # written before the field existed
    path.write_bytes(path.read_bytes() + old + b"\n")
    rows = read_metrics(path)
    assert [r.guards for r in rows] == [{"stub": 3}, {}]


PIPELINE = """
[model]
name = "fake-model"
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.0
[sft]
enabled = false
[raft]
cycles = 1
samples_per_prompt = 2
reward_threshold = 1.0
[verifier]
concurrency = 2
[verifier.run_limits]
cpu_s = 2.0
wall_s = 5.0
[benchmark]
enabled = false
[output]
dir = "{out}"
progress = "plain"
"""


class _StubBackend:
    """Sample 0 of each prompt is a stub (the verifier's stub guard fires), sample 1 an honest
    wrong answer."""

    name = "fake"
    model = "fake-model"
    adapter = ""

    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        for p in problems:
            code = ["pass\n", f"print({p.id!r})\n"]
            out = [make_sample(p, cycle=cycle, index=i, completion=f"```python\n{code[i]}```",
                               prompt_tokens=1, completion_tokens=1,
                               params=GenerationParams(model=self.model))
                   for i in range(samples_per_prompt)]
            yield Batch(out, BatchStats(samples=len(out), completion_tokens=len(out), wall_s=0.1))

    def load_adapter(self, path):
        self.adapter = path or ""

    def sleep(self):
        pass

    def wake_up(self):
        pass

    def close(self):
        pass


def test_pipeline_writes_guard_counts_to_metrics(tmp_path, monkeypatch):
    from halo_forge import pipeline
    from halo_forge.cli.run import run_config
    from halo_forge.config import load_config
    from halo_forge.data.registry import load_problems

    cfg = tmp_path / "p.toml"
    cfg.write_text(PIPELINE.format(out=tmp_path / "run"))
    config, text = load_config(str(cfg))
    backend = _StubBackend()
    monkeypatch.setattr(pipeline.Pipeline, "_backend_for", lambda self, model, adapter: backend)
    assert run_config(config, config_text=text) == 0
    [row] = read_metrics(tmp_path / "run" / "metrics.jsonl")
    prompts = sum(p.language == "python" for p in load_problems("builtin"))
    assert row.guards == {"stub": prompts}
    assert row.filter_removed["guarded"] == prompts
