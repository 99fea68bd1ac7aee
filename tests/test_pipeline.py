"""The whole run's bookkeeping: skip what is done, refuse a changed config by name, stop on
SIGTERM at a safe point with nothing left running, then resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from halo_forge.records import Verdict
from halo_forge.shards import ShardReader
from tests.test_pipeline_resume import CONFIG, SPP, _expected_ids, _run
from tests.util import descendants, shard_ids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_rerun_skips_done_and_changed_config_is_named(tmp_path: Path):
    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out))
    p = _run(cfg, tmp_path / "gen1.log")
    text = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, text[-3000:]
    assert (out / "metrics.jsonl").read_text().count("\n") == 1
    for stage in ("data", "sft", "raft_cycle_1", "benchmark"):
        assert b'"done": true' in (out / "state" / f"{stage}.json").read_bytes()

    again = _run(cfg, tmp_path / "gen2.log")
    assert again.wait(300) == 0
    assert not (tmp_path / "gen2.log").exists()  # nothing generated again

    cfg.write_text(CONFIG.format(spp=SPP, out=out).replace("[raft]\n", "[raft]\nlr_decay = 0.5\n"))
    changed = _run(cfg, tmp_path / "gen3.log")
    msg = changed.communicate(timeout=120)[0].decode()
    assert changed.returncode == 2
    assert "raft cycle 1 finished with a different config: raft.lr_decay" in msg
    assert "--force-stage raft" in msg and "new output.dir" in msg
    # The refused values were never written: the folder still describes its own shards.
    assert "lr_decay" not in (out / "pipeline.toml").read_text()
    assert '"lr_decay": 0.5' not in (out / "config.json").read_text()

    # A neutral key (how many cycles) is not a conflict: one more cycle runs.
    cfg.write_text(CONFIG.format(spp=SPP, out=out).replace("cycles = 1", "cycles = 2"))
    more = _run(cfg, tmp_path / "gen4.log")
    text = more.communicate(timeout=300)[0].decode()
    assert more.returncode == 0, text[-3000:]
    assert (out / "metrics.jsonl").read_text().count("\n") == 2
    generated = (tmp_path / "gen4.log").read_text().split()
    assert generated and all("/c2/" in i for i in generated)


@pytest.mark.slow
def test_sigterm_stops_at_safe_point_and_leaves_nothing_running(tmp_path: Path):
    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out))
    verdicts = out / "raft" / "cycle_1" / "verdicts.shard"
    p = _run(cfg, tmp_path / "gen1.log")
    deadline = time.monotonic() + 120
    while (time.monotonic() < deadline and p.poll() is None
           and len(shard_ids(verdicts, Verdict, allow_partial=True)) < 4):
        time.sleep(0.05)
    children = descendants(p.pid)
    assert children, "the sandbox runs in child processes"
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    text = p.communicate(timeout=60)[0].decode()
    assert time.monotonic() - sent < 30
    assert p.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert text.count("interrupted; rerun the same command to resume") == 1
    time.sleep(1.0)
    assert not [c for c in children if _alive(c)]
    # The stopped cycle's verdicts are a readable, complete-frame prefix; the rerun finishes.
    partial = shard_ids(verdicts, Verdict, allow_partial=True)
    assert 0 < len(partial) < len(_expected_ids())
    rerun = _run(cfg, tmp_path / "gen2.log")
    text = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, text[-3000:]
    final = [v.id for v in ShardReader(verdicts, Verdict)]
    assert sorted(final) == sorted(_expected_ids())


def test_a_second_stop_leaves_even_when_a_worker_thread_is_stuck(tmp_path: Path):
    """The second SIGTERM means now: a generate() stuck in a worker thread (no cancellation
    reaches it) holds the process only for a short grace, and the rerun resumes."""
    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out))
    log = tmp_path / "gen1.log"
    env_stuck = {**os.environ, "HALO_FAKE_STUCK": "1"}
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, str(Path(__file__).parent / "raft_fake_run.py"),
                          str(cfg), str(log)], env={**_run_env(), **env_stuck},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None and not (
            log.exists() and len(log.read_text().split()) >= 4):
        time.sleep(0.05)
    time.sleep(0.5)  # inside the stuck second batch
    children = descendants(p.pid)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    # The hour-long call is still running: without the grace exit this would time out.
    text = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "leaving without it" in text and "rerun the same command to resume" in text
    assert "Traceback" not in text
    time.sleep(1.0)
    assert not [c for c in children if _alive(c)], "the sandbox went with the run"
    rerun = _run(cfg, tmp_path / "gen2.log")
    text = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, text[-3000:]
    final = [v.id for v in ShardReader(out / "raft" / "cycle_1" / "verdicts.shard", Verdict)]
    assert sorted(final) == sorted(_expected_ids())


def _run_env() -> dict[str, str]:
    from tests.util import subprocess_env

    return subprocess_env()
