"""Resume from anywhere: the CPU recipe (tiny model, SFT, two RAFT cycles with per-cycle
evaluation, benchmark) stopped at every phase boundary and inside every phase, by SIGKILL,
SIGINT and SIGTERM, rerun each time, and in the end exactly what an uninterrupted run keeps.

One output folder goes through the whole chain: each run is the same command with a fault
point armed (halo_forge/faults.py) and dies there; the next run resumes from what the last
one left and goes on to the next point. So every point is reached after a resume, and every
state a kill can leave is one a rerun must continue from.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from halo_forge.records import Problem, Sample, Verdict
from halo_forge.shards import ShardReader
from tests.util import subprocess_env

pytestmark = pytest.mark.slow

SPP = 2
CYCLES = 2

CONFIG = """
[model]
tiny = true
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.25
[sft]
max_steps = 4
save_steps = 2
batch_size = 2
logging_steps = 1
[raft]
cycles = {cycles}
samples_per_prompt = {spp}
reward_threshold = 0.0
keep_top_percent = 1.0
max_per_prompt = 0
dedupe = false
max_steps = 3
eval = true
eval_samples = 1
[generation]
max_new_tokens = 40
[generation.engine]
backend = "transformers"
batch_size = 4
[verifier]
concurrency = 2
[verifier.run_limits]
cpu_s = 2.0
wall_s = 5.0
[benchmark]
samples = 2
ks = [1, 2]
max_problems = 2
[output]
dir = "{out}"
progress = "plain"
plot = false
"""

# What a stop leaves: the exit status of the run, by signal.
_EXIT = {"KILL": -signal.SIGKILL, "INT": 128 + signal.SIGINT, "TERM": 128 + signal.SIGTERM}


def run(cfg: Path, fault: str = "", sig: str = "KILL", timeout: float = 600):
    env = subprocess_env(HALO_FAULT=fault, HALO_FAULT_SIGNAL=sig)
    return subprocess.run([sys.executable, "-m", "halo_forge", "run", str(cfg)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def ids(path: Path, kind) -> list[str]:
    return [r.id for r in ShardReader(path, kind)]


def chain(test_problems: int) -> list[tuple[str, str]]:
    """(fault point, signal) in the order a run reaches them. Points fired by SIGINT/SIGTERM
    stop at the next safe point, which is itself part of what is tested."""
    in_benchmark = test_problems * 1 + 2  # after cycle 2's evaluation: inside the benchmark
    return [
        ("data.written", "KILL"),
        ("train.step@1", "INT"),               # Ctrl-C inside SFT, before any checkpoint
        ("train.step@2", "KILL"),              # between steps
        ("train.checkpoint.torn", "KILL"),     # SFT checkpoint without trainer_state.json
        ("train.checkpoint.written", "KILL"),  # SFT checkpoint whole but not yet certified
        ("train.final_model", "KILL"),
        ("sft.trained", "KILL"),
        ("raft.cycle.generating", "TERM"),
        ("raft.verdict@3", "KILL"),            # inside generate + verify
        ("raft.cycle.verified", "INT"),        # the boundary that used to break every rerun
        ("raft.cycle.filtered", "KILL"),
        ("train.step@1", "TERM"),              # inside the cycle's training
        ("train.checkpoint.torn", "KILL"),
        ("raft.cycle.trained", "KILL"),
        ("raft.cycle.adapter_moved", "KILL"),
        ("raft.cycle.recorded_trained", "INT"),
        ("evaluate.verdict@2", "KILL"),        # inside the cycle's held-out evaluation
        ("raft.cycle.evaluated", "KILL"),
        ("raft.cycle.done", "TERM"),           # recorded done; stops inside cycle 2's generation
        ("raft.cycle.filtered", "KILL"),       # cycle 2
        ("train.checkpoint.written", "TERM"),
        (f"evaluate.verdict@{in_benchmark}", "KILL"),  # inside the benchmark
        ("benchmark.part_evaluated", "KILL"),  # held-out scored, recorded; the rest to do
        ("benchmark.part_evaluated", "INT"),   # the training split scored
        ("evaluate.verdict@1", "TERM"),        # inside the base model's part
        ("benchmark.evaluated", "KILL"),
    ]


def test_killed_at_every_phase_boundary_and_inside_every_phase_then_resumed(
        tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(CONFIG.format(cycles=CYCLES, spp=SPP, out=out))
    # The session's tiny model has the recipe's spec; a run reuses it (its build's own kill
    # safety is tests/test_tiny.py's).
    shutil.copytree(tiny_model, out / "model")

    first = run(cfg, "data.written")
    assert first.returncode == _EXIT["KILL"], first.stdout.decode()[-3000:]
    test_problems = len(list(ShardReader(out / "data" / "test.shard", Problem))) \
        if (out / "data" / "test.shard").exists() else 4
    log = []
    for fault, sig in chain(test_problems)[1:]:
        got = run(cfg, fault, sig)
        text = got.stdout.decode()
        log.append((fault, sig, got.returncode))
        (tmp_path / f"{len(log):02d}-{fault}-{sig}.log").write_text(text)
        assert got.returncode == _EXIT[sig], (fault, sig, log, text[-4000:])
        assert "Traceback" not in text, (fault, text[-4000:])
        if sig != "KILL":
            assert "rerun the same command to resume" in text, text[-2000:]

    final = run(cfg)
    text = final.stdout.decode()
    assert final.returncode == 0, (log, text[-5000:])
    assert "Traceback" not in text

    train = list(ShardReader(out / "data" / "train.shard", Problem))
    expected = {f"{p.id}/c{c}/s{i}" for p in train for i in range(SPP)
                for c in range(1, CYCLES + 1)}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == list(range(1, CYCLES + 1))
    for c, row in zip(range(1, CYCLES + 1), rows):
        cycle_dir = out / "raft" / f"cycle_{c}"
        want = {i for i in expected if f"/c{c}/" in i}
        samples = ids(cycle_dir / "samples.shard", Sample)
        verdicts = list(ShardReader(cycle_dir / "verdicts.shard", Verdict))
        # Every sample and verdict present exactly once.
        assert Counter(samples) == Counter(want), Counter(samples).most_common(2)
        assert Counter(v.id for v in verdicts) == Counter(want)
        # The metrics describe the shards.
        assert row["samples"] == row["verdicts"] == len(want)
        assert row["statuses"] == dict(Counter(v.status for v in verdicts))
        scored = [v for v in verdicts if v.status != "sandbox_error"]
        passed = sum(v.status == "passed" for v in scored)
        assert row["pass_rate"] == pytest.approx(passed / max(1, len(scored)))
        assert row["kept"] == len(_kept(cycle_dir))
        assert row["train_steps"] > 0 and row["eval_pass_at_1"] is not None
        assert (out / f"cycle_{c}_final" / "adapter_config.json").is_file()

    # The final adapter and the benchmark belong to the last cycle.
    state = json.loads((out / "state" / "benchmark.json").read_text())
    last = str(out / f"cycle_{CYCLES}_final")
    assert state["done"] and state["result"]["adapter"] == last
    assert f"final adapter: {last}" in text
    summary = json.loads((out / "benchmark" / "summary.json").read_text())
    assert summary["meta"]["adapter"] == last
    # Every part of the benchmark recorded once, each on its own model and split.
    result = state["result"]
    sft = json.loads((out / "state" / "sft.json").read_text())["result"]["adapter"]
    assert result["train_split"]["adapter"] == last
    assert result["train_split"]["problems"] == min(2, len(train))
    assert result["base"]["adapter"] == "" and result["sft"]["adapter"] == sft
    for part in ("train_split", "base", "sft"):
        meta = json.loads((out / "benchmark" / part / "summary.json").read_text())["meta"]
        assert meta["adapter"] == result[part]["adapter"]
    report = (out / "report.md").read_text()
    assert "| final adapter | training split |" in report and "| base model |" in report

    # Nothing half-written is left behind: no temp files, no uncertified checkpoint.
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".halo")]
    assert not leftovers, leftovers
    from halo_forge.checkpoints import checkpoints, is_complete

    for train_dir in (out / "sft", *(out / "raft").glob("cycle_*/train")):
        assert all(is_complete(p) for p in checkpoints(train_dir)), list(train_dir.iterdir())

    # A rerun of the finished run does nothing but report it.
    again = run(cfg)
    assert again.returncode == 0
    assert not re.search(r": training$", again.stdout.decode(), re.M)

    # Extending the finished run: one more cycle, and the benchmark is the new final adapter's.
    env = subprocess_env()
    more = subprocess.run([sys.executable, "-m", "halo_forge", "run", str(cfg), "--cycles",
                           str(CYCLES + 1)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    assert more.returncode == 0, more.stdout.decode()[-3000:]
    newest = str(out / f"cycle_{CYCLES + 1}_final")
    state = json.loads((out / "state" / "benchmark.json").read_text())
    assert state["result"]["adapter"] == newest
    summary = json.loads((out / "benchmark" / "summary.json").read_text())
    assert summary["meta"]["adapter"] == newest


def _kept(cycle_dir: Path) -> list:
    from halo_forge.records import Example

    return list(ShardReader(cycle_dir / "kept.shard", Example))
