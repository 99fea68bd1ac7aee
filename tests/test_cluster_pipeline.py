"""A RAFT cycle of the real pipeline with `[cluster] address = "local"` (a Ray instance
started in-process, workers verifying) keeps exactly what the same run keeps verifying on this
machine. Generation is scripted (tests/raft_fake_run.py) and training is replaced by a stub:
what is compared is the kept set, which verification decides."""

from __future__ import annotations

import types
from pathlib import Path

import msgspec
import pytest

from halo_forge.records import Example
from halo_forge.shards import ShardReader
from tests.raft_fake_run import FakeBackend
from tests.sandbox_util import PYTHON

CONFIG = """
[model]
name = "fake-model"
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.3
[sft]
enabled = false
[raft]
cycles = 1
samples_per_prompt = 2
reward_threshold = 0.5
max_per_prompt = 1
seed = 3
eval = true            # held-out pass@1 each cycle: evaluate() on the same verifier
[verifier]
concurrency = 2
[verifier.python]
command = "{python}"
flags = ["-I"]
[benchmark]
enabled = false
[output]
dir = "{out}"
progress = "plain"
{cluster}
"""


def _run(tmp_path: Path, name: str, cluster: str, monkeypatch) -> list[dict]:
    from halo_forge import pipeline
    from halo_forge.cli.run import run_config
    from halo_forge.config import parse_config

    out = tmp_path / name
    text = CONFIG.format(python=PYTHON, out=out, cluster=cluster)
    config = parse_config(text)
    backend = FakeBackend(tmp_path / f"{name}.log")
    monkeypatch.setattr(pipeline.Pipeline, "_backend_for", lambda self, model, adapter: backend)

    async def no_training(self, label, *, output_dir, **kwargs):
        adapter = Path(output_dir) / "final_model"
        adapter.mkdir(parents=True)
        return types.SimpleNamespace(adapter_dir=str(adapter), global_step=1, train_loss=0.0)

    monkeypatch.setattr(pipeline.Pipeline, "_train", no_training)
    assert run_config(config, config_text=text) == 0
    kept = ShardReader(out / "raft" / "cycle_1" / "kept.shard", Example)
    metrics = msgspec.json.decode((out / "metrics.jsonl").read_bytes().splitlines()[0])
    return (sorted((msgspec.to_builtins(e) for e in kept), key=lambda e: e["id"]),
            {k: metrics[k] for k in ("pass_rate", "compile_rate", "kept", "eval_pass_at_1")})


@pytest.mark.slow
def test_a_cycle_on_a_local_ray_keeps_what_the_local_run_keeps(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HALO_FAKE_PASS", "1")  # the first sample of each prompt passes
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from halo_forge.cluster.verifier import RayVerifier

    started: list[int] = []
    start = RayVerifier._start_workers

    async def counted(self):
        await start(self)
        started.append(self.config.workers())

    monkeypatch.setattr(RayVerifier, "_start_workers", counted)
    here = _run(tmp_path, "here", "", monkeypatch)
    assert not started
    on_ray = _run(tmp_path, "ray", '[cluster]\naddress = "local"', monkeypatch)
    assert started  # the second run verified on Ray workers
    assert here[0] and on_ray == here
    assert here[1]["eval_pass_at_1"] > 0  # the held-out evaluation verified on Ray too
    import ray

    assert not ray.is_initialized()  # "local" shuts its Ray down at the end
