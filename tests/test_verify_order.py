"""`halo-forge verify` writes verdicts in input order (line N answers line N) while samples
finish in any order, holding only a bounded window; its resume keeps only an in-order prefix."""

from __future__ import annotations

import json
import os
import signal

import anyio
import pytest

from halo_forge.cli import main
from halo_forge.verify.in_order import InOrder
from tests.util import write_jsonl


def _rows(n: int) -> list[dict]:
    return [{"id": f"s{i}", "language": "python", "code": f"print({i})\n",
             "io_tests": [{"stdin": "", "stdout": f"{i}\n"}]} for i in range(n)]


def _ids(path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_verdicts_come_out_in_input_order_when_the_first_finishes_last(tmp_path, monkeypatch):
    from halo_forge.verify import runner

    n = 4
    src = write_jsonl(tmp_path / "in.jsonl", _rows(n))
    out = tmp_path / "v.jsonl"
    real = runner.Verifier.verify
    finished: list[str] = []
    others_done = anyio.Event()

    async def first_finishes_last(self, sample):
        if sample.id == "s0":
            await others_done.wait()
        verdict = await real(self, sample)
        finished.append(sample.id)
        if len(finished) == n - 1:
            others_done.set()
        return verdict

    monkeypatch.setattr(runner.Verifier, "verify", first_finishes_last)
    assert main(["verify", str(src), "--out", str(out), "--concurrency", str(n), "--no-pch",
                 "--no-cache"]) == 0
    assert finished[-1] == "s0"  # the order they finished in...
    assert _ids(out) == [f"s{i}" for i in range(n)]  # ...is not the order written


def test_the_input_is_held_back_behind_the_oldest_unfinished_item():
    async def scenario() -> None:
        order: InOrder[int, str] = InOrder(window=3)
        let_in: list[int] = []

        async def consume() -> None:
            async for item in order.gate(range(10)):
                let_in.append(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert let_in == [0, 1, 2]
            assert order.put(2, "r2") == [] and order.put(1, "r1") == []
            await anyio.wait_all_tasks_blocked()
            assert let_in == [0, 1, 2]  # finished items behind the oldest make no room
            assert order.put(0, "r0") == ["r0", "r1", "r2"]
            await anyio.wait_all_tasks_blocked()
            assert let_in == [0, 1, 2, 3, 4, 5]
            for i in (5, 4, 3, 6, 7, 8, 9):
                order.put(i, f"r{i}")
                await anyio.wait_all_tasks_blocked()
        assert let_in == list(range(10)) and order.most_held <= 3

    anyio.run(scenario)


def test_a_window_below_one_is_refused():
    with pytest.raises(ValueError, match="window"):
        InOrder(window=0)


def test_resume_keeps_only_the_verdicts_that_answer_the_first_lines(tmp_path, capsys,
                                                                   monkeypatch):
    from halo_forge.verify import runner

    src = write_jsonl(tmp_path / "in.jsonl", _rows(3))
    out = tmp_path / "v.jsonl"
    real = runner.Verifier.verify
    calls: list[str] = []

    async def interrupt_second(self, sample):
        calls.append(sample.id)
        if len(calls) == 2:
            # Taken in while the first runs (a sample ahead of the slot): Ctrl-C once the
            # first's verdict is kept.
            with anyio.fail_after(30):
                while not any(p.read_text() for p in tmp_path.glob(".v.jsonl.*.partial")):
                    await anyio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
            await anyio.sleep(30)
        return await real(self, sample)

    monkeypatch.setattr(runner.Verifier, "verify", interrupt_second)
    argv = ["verify", str(src), "--out", str(out), "--concurrency", "1", "--no-pch",
            "--no-cache"]
    assert main(argv) == 130
    monkeypatch.setattr(runner.Verifier, "verify", real)
    [partial] = tmp_path.glob(".v.jsonl.*.partial")
    [kept] = [json.loads(line) for line in partial.read_text().splitlines()]
    assert kept["id"] == "s0"
    # A verdict out of input order (s2 before s1), marked: it must be verified again.
    stray = dict(kept, id="s2", wall_s=12345.0)
    partial.write_text(json.dumps(kept) + "\n" + json.dumps(stray) + "\n")
    capsys.readouterr()
    assert main(argv) == 0
    assert "resuming: 1 of 3" in capsys.readouterr().err
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["id"] for v in verdicts] == ["s0", "s1", "s2"]
    assert verdicts[2]["wall_s"] != 12345.0 and verdicts[2]["status"] == "passed"
