"""Kill -9 in the middle of a cycle's verification, rerun: the same verified ids, once each.

The run is real (`run_config` in a subprocess, the real sandboxed verifier, real shards and
state files); only generation is scripted (tests/raft_fake_run.py) so the kill lands while
samples are being verified.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from halo_forge.records import Sample, Verdict
from halo_forge.shards import ShardReader
from tests.util import shard_ids, subprocess_env

HERE = Path(__file__).resolve().parent
SPP = 4

CONFIG = """
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
samples_per_prompt = {spp}
reward_threshold = 1.0
buffer_batches = 2
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


def _run(cfg: Path, log: Path) -> subprocess.Popen:
    env = subprocess_env()
    return subprocess.Popen([sys.executable, str(HERE / "raft_fake_run.py"), str(cfg), str(log)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _expected_ids() -> set[str]:
    from halo_forge.data.registry import load_problems

    return {f"{p.id}/c1/s{i}" for p in load_problems("builtin") if p.language == "python"
            for i in range(SPP)}


@pytest.mark.slow
def test_sigkill_mid_verification_then_resume(tmp_path: Path):
    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out))
    cycle = out / "raft" / "cycle_1"
    expected = _expected_ids()

    first = _run(cfg, tmp_path / "gen1.log")
    deadline = time.monotonic() + 120
    verified: list[str] = []
    try:
        while time.monotonic() < deadline and first.poll() is None:
            verified = shard_ids(cycle / "verdicts.shard", Verdict, allow_partial=True)
            if len(verified) >= 6:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stdout.read().decode()[-2000:]
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(30)
    at_kill_samples = shard_ids(cycle / "samples.shard", Sample, allow_partial=True)
    at_kill_verdicts = shard_ids(cycle / "verdicts.shard", Verdict, allow_partial=True)
    assert 6 <= len(at_kill_verdicts) < len(expected), "the kill must land mid-verification"
    assert not (out / "state" / "raft_cycle_1.json").exists() or \
        b'"done": true' not in (out / "state" / "raft_cycle_1.json").read_bytes()

    second = _run(cfg, tmp_path / "gen2.log")
    output = second.communicate(timeout=300)[0].decode()
    assert second.returncode == 0, output[-3000:]

    final = shard_ids(cycle / "verdicts.shard", Verdict, allow_partial=True)
    assert set(final) == expected  # none lost
    assert len(final) == len(expected), Counter(final).most_common(3)  # none duplicated
    assert set(at_kill_verdicts) <= set(final)
    samples = shard_ids(cycle / "samples.shard", Sample, allow_partial=True)
    assert sorted(samples) == sorted(expected)
    # Durable samples were verified, not generated again.
    regenerated = set((tmp_path / "gen2.log").read_text().split())
    assert not regenerated & set(at_kill_samples)
    assert regenerated == expected - set(at_kill_samples)
    # Strict readers accept the finished shards, and the cycle recorded completion.
    assert len(list(ShardReader(cycle / "verdicts.shard", Verdict))) == len(expected)
    assert b'"done": true' in (out / "state" / "raft_cycle_1.json").read_bytes()
    assert "resuming" in output

    # An uninterrupted run of the same config ends with the same set.
    clean_cfg = tmp_path / "clean.toml"
    clean_cfg.write_text(CONFIG.format(spp=SPP, out=tmp_path / "clean"))
    clean = _run(clean_cfg, tmp_path / "gen3.log")
    assert clean.wait(300) == 0
    clean_ids = shard_ids(tmp_path / "clean/raft/cycle_1/verdicts.shard", Verdict,
                          allow_partial=True)
    assert sorted(clean_ids) == sorted(final)
