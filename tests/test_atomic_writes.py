"""Files written through atomic.py: a reader sees the old file or the new one, and a write
that fails leaves the old file and no temp file beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from halo_forge import metrics
from halo_forge.atomic import AtomicFile, atomic_open, write_atomic

PNG = b"\x89PNG\r\n\x1a\n"
ROWS = [metrics.CycleMetrics(cycle=c, pass_rate=0.1 * c, compile_rate=0.2 * c) for c in (1, 2)]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path) -> None:
    path = tmp_path / "out.json"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half of the ne")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_the_metrics_plot_is_written_whole(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "metrics.png"
    assert metrics.plot(ROWS, path)
    assert path.read_bytes()[:8] == PNG and [p.name for p in tmp_path.iterdir()] == ["metrics.png"]


def test_a_plot_that_fails_keeps_the_last_one(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "metrics.png"
    metrics.plot(ROWS[:1], path)
    before = path.read_bytes()

    def savefig_then_die(self, fname, **kwargs):  # half a PNG, wherever it is pointed
        if hasattr(fname, "write"):
            fname.write(PNG + b"half")
        else:
            Path(fname).write_bytes(PNG + b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", savefig_then_die)
    with pytest.raises(OSError):
        metrics.plot(ROWS, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["metrics.png"]


def test_a_log_filled_as_results_arrive_appears_only_on_commit(tmp_path) -> None:
    path = tmp_path / "samples.jsonl"
    log = AtomicFile(path)
    log.write(b'{"id": "a"}\n')
    assert not path.exists()  # a reader never sees a run's log half-written
    log.commit()
    assert path.read_bytes() == b'{"id": "a"}\n'
    again = AtomicFile(path)
    again.write(b'{"id": "b"}\n')
    again.discard()  # a stopped run: the last finished log stays
    assert path.read_bytes() == b'{"id": "a"}\n' and [p.name for p in tmp_path.iterdir()] == [path.name]
