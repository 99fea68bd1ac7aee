"""bench/bench_sandbox.py and bench/soak_sandbox.py run end to end (a few runs: what the
benchmark measures is not asserted here, timings on a shared machine are its business)."""

from __future__ import annotations

import importlib.util
import statistics
from collections import defaultdict
from pathlib import Path

import pytest


def _load(name: str):
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_sandbox_measures_every_launcher(capsys, monkeypatch):
    bench = _load("bench_sandbox")
    timed: dict[str, list[tuple[object, int, float]]] = defaultdict(list)

    def recording(name, measure):
        def wrapper(*args):
            took = measure(*args)
            # (the sandbox measured, runs asked for, wall seconds they took)
            timed[name].append((args[0] if len(args) > 1 else None, args[-1], took[0]))
            return took
        return wrapper

    for name in ("bare", "sandbox_serial", "client_serial"):
        monkeypatch.setattr(bench, name, recording(name, getattr(bench, name)))
    out = bench.main(["--runs", "4", "--rounds", "2"])
    per, rounds = 2, 2
    # Each launcher is measured once per round on `per` runs (warm-ups aside), and what the
    # bench reports is the mean over the rounds of seconds per run.
    warm, cold = (who for who, _, _ in timed["sandbox_serial"][:2])  # warmed up in this order
    for key, name, who in (("bare", "bare", None), ("sandbox", "sandbox_serial", warm),
                           ("sandbox_cold", "sandbox_serial", cold),
                           ("client", "client_serial", warm)):
        rows = [w for sb, n, w in timed[name] if sb is who and n == per]
        assert len(rows) == rounds, key
        assert out[key] == pytest.approx(statistics.fmean(w / per for w in rows)), key
    assert warm is not cold
    printed = capsys.readouterr().out
    assert "sandbox overhead per run over bare" in printed
    assert "the C++ client without the facade" in printed


@pytest.mark.slow
def test_soak_sandbox_runs_clean(capsys):
    # Runs' processes are killed from outside meanwhile: every answer must still be the run's
    # own, the zygote must live on, and no init but the spares may be left.
    assert _load("soak_sandbox").main(["--runs", "300", "--concurrency", "4"]) == 0
    assert "wrong answers: 0" in capsys.readouterr().out
