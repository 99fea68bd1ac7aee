"""One run per output folder: a second one is refused with who holds it, and the lock of a
dead run is taken over (halo_forge/run_lock.py, Pipeline.open)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from halo_forge.errors import HaloError
from halo_forge.run_lock import LOCK_FILE, RunLock
from tests.util import subprocess_env

HOLD = ("import sys, time; from pathlib import Path; from halo_forge.run_lock import RunLock; "
        "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)")


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                         env=subprocess_env())
    assert p.stdout.readline().strip() == b"held"
    return p


def test_second_lock_is_refused_naming_the_holder_and_a_dead_holders_is_taken(tmp_path: Path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(HaloError) as err:
            RunLock(tmp_path).acquire()
        msg = str(err.value)
        assert f"pid {holder.pid} on " in msg and "since" in msg and "\n" not in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file stays, and is taken over.
    assert (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):
        assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()


def test_a_second_pipeline_in_one_process_is_refused(tmp_path: Path):
    first = RunLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(HaloError, match="is in use by pid"):
            RunLock(tmp_path).acquire()
    finally:
        first.release()
    RunLock(tmp_path).acquire()


def test_run_on_a_held_folder_exits_2_and_changes_nothing(tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "pipeline.toml").write_text("# the running run's config\n")
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[model]\nname = "x"\n[output]\ndir = "{out}"\nprogress = "plain"\n')
    holder = _holder(out)
    try:
        got = subprocess.run([sys.executable, "-m", "halo_forge", "run", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                             env=subprocess_env())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    text = got.stdout.decode()
    assert got.returncode == 2, text
    assert f"pid {holder.pid}" in text and "Traceback" not in text
    assert (out / "pipeline.toml").read_text() == "# the running run's config\n"
    assert not (out / "state").exists() and not (out / "config.json").exists()
