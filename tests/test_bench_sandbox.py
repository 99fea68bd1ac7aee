"""bench/bench_sandbox.py runs end to end (a few runs: what it measures is not asserted here,
timings on a shared machine are the benchmark's business, not a test's)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _load():
    path = Path(__file__).resolve().parent.parent / "bench" / "bench_sandbox.py"
    spec = importlib.util.spec_from_file_location("bench_sandbox", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_sandbox_measures_every_launcher(capsys):
    out = _load().main(["--runs", "4", "--rounds", "2"])
    for key in ("bare", "sandbox", "sandbox_cold", "client", "sandbox_parallel", "bare_parallel"):
        assert out[key] > 0, key
    printed = capsys.readouterr().out
    assert "sandbox overhead per run over bare" in printed
    assert "the C++ client without the facade" in printed
