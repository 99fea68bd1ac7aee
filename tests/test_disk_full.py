"""A full disk during verification and during training: the run says so in one line (the path
and the space), keeps what it wrote, and resumes to the end once space is freed.

The run's folder is on a small tmpfs. The run freezes itself at a fault point (SIGSTOP, see
halo_forge/faults.py), the test fills the tmpfs to the last byte, and lets it go on: the
next write fails as a real one would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from halo_forge.records import Problem, Sample, Verdict
from halo_forge.shards import ShardReader
from tests.util import subprocess_env

pytestmark = pytest.mark.slow

SPP = 4

CONFIG = """
[model]
tiny = true
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.25   # the recipe's split: the session's tiny model matches it
[sft]
enabled = false
save_steps = 1
batch_size = 2
[raft]
cycles = 1
samples_per_prompt = {spp}
reward_threshold = 0.0
max_per_prompt = 0
dedupe = false
max_steps = 3
[generation]
max_new_tokens = 32
[generation.engine]
backend = "transformers"
batch_size = 4
[verifier]
concurrency = 2
cache = false
pch = false
[benchmark]
enabled = false
[output]
dir = "{out}"
progress = "plain"
plot = false
"""


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _start(cfg: Path, fault: str) -> subprocess.Popen:
    env = subprocess_env(HALO_FAULT=fault, HALO_FAULT_SIGNAL="STOP")
    return subprocess.Popen([sys.executable, "-m", "halo_forge", "run", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_stopped(proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its fault point:\n"
                                 f"{proc.stdout.read().decode()[-3000:]}")
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run never reached its fault point")


def _fill(disk: Path) -> Path:
    """Writes a ballast file until the filesystem refuses another byte."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        chunk = b"\0" * (1 << 20)
        while chunk:
            try:
                f.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]
    assert shutil.disk_usage(disk).free < 4096
    return ballast


def _full_disk_run(cfg: Path, disk: Path, fault: str) -> str:
    proc = _start(cfg, fault)
    _wait_stopped(proc)
    ballast = _fill(disk)
    os.kill(proc.pid, signal.SIGCONT)
    text = proc.communicate(timeout=600)[0].decode()
    ballast.unlink()
    assert proc.returncode == 2, text[-4000:]
    last = text.strip().splitlines()[-1]
    assert "disk full" in last and str(disk) in last and "free" in last, last
    assert "Traceback" not in text, text[-4000:]
    return text


def test_disk_full_during_verification_and_training_then_resumed(tiny_model: Path,
                                                                  small_disk: Path):
    out = small_disk / "run"
    cfg = small_disk.parent / "pipeline.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out))
    shutil.copytree(tiny_model, out / "model")
    cycle = out / "raft" / "cycle_1"

    # Full while samples are being verified.
    _full_disk_run(cfg, small_disk, "raft.verdict@2")
    state = (out / "state" / "raft_cycle_1.json").read_text()
    assert '"phase": "generating"' in state  # the cycle's verification did not finish

    # Full while the cycle trains: its first checkpoint cannot be written.
    _full_disk_run(cfg, small_disk, "train.step@1")
    assert '"phase": "verified"' in (out / "state" / "raft_cycle_1.json").read_text()

    # Space is back: the same command finishes the run.
    done = subprocess.run([sys.executable, "-m", "halo_forge", "run", str(cfg)],
                          env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, done.stdout.decode()[-4000:]
    train = list(ShardReader(out / "data" / "train.shard", Problem))
    want = Counter(f"{p.id}/c1/s{i}" for p in train for i in range(SPP))
    assert Counter(s.id for s in ShardReader(cycle / "samples.shard", Sample)) == want
    assert Counter(v.id for v in ShardReader(cycle / "verdicts.shard", Verdict)) == want
    assert (out / "cycle_1_final" / "adapter_config.json").is_file()
