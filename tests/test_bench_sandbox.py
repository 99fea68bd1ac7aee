"""bench/bench_sandbox.py and bench/soak_sandbox.py run end to end (a few runs: what the
benchmark measures is not asserted here, timings on a shared machine are its business)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _load(name: str):
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_sandbox_measures_every_launcher(capsys):
    out = _load("bench_sandbox").main(["--runs", "4", "--rounds", "2"])
    for key in ("bare", "sandbox", "sandbox_cold", "client", "sandbox_parallel", "bare_parallel"):
        assert out[key] > 0, key
    printed = capsys.readouterr().out
    assert "sandbox overhead per run over bare" in printed
    assert "the C++ client without the facade" in printed


def test_soak_sandbox_runs_clean(capsys):
    # Runs' processes are killed from outside meanwhile: every answer must still be the run's
    # own, the zygote must live on, and no init but the spares may be left.
    assert _load("soak_sandbox").main(["--runs", "300", "--concurrency", "4"]) == 0
    assert "wrong answers: 0" in capsys.readouterr().out
