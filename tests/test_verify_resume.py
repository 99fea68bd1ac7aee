"""`halo-forge verify` stopped part-way: SIGTERM/Ctrl-C keep the verdicts written so far for a
rerun of the same command, a SIGKILL'd run's file is resumed or swept by the next run, and two
writers never share one --out."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halo_forge.cli import main
from tests.util import write_jsonl

REPO = Path(__file__).resolve().parent.parent
SLOW = "import time\ntime.sleep(30)\nprint(4)\n"  # ends by the run's wall limit


def _rows(fast: int, *, slow: bool = True) -> list[dict]:
    rows = [{"id": f"fast{i}", "language": "python", "code": f"print({i})\n",
             "io_tests": [{"stdin": "", "stdout": f"{i}\n"}]} for i in range(fast)]
    if slow:
        rows.append({"id": "slow", "language": "python", "code": SLOW,
                     "io_tests": [{"stdin": "", "stdout": "4\n"}]})
    return rows


def _partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*.partial"))


def _verdicts(path: Path) -> dict[str, dict]:
    return {v["id"]: v for v in map(json.loads, path.read_text().splitlines())}


def _stopped_run(src: Path, out: Path, sig: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs verify in a child (one sample at a time, so the slow one comes last), sends `sig`
    once the fast samples' verdicts are on disk, and returns the child and its partial file."""
    proc = subprocess.Popen([sys.executable, "-m", "halo_forge", "verify", str(src), "--out",
                             str(out), "--concurrency", "1", "--no-pch"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fast = sum(1 for r in src.read_text().splitlines() if '"fast' in r)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = _partials(out)
        if found and found[0].read_bytes().count(b"\n") >= fast:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the fast verdicts never reached the partial file")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), found[0]


@pytest.mark.slow
def test_sigterm_keeps_verdicts_and_a_rerun_resumes_them(tmp_path, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(3))
    out = tmp_path / "v.jsonl"
    done, partial = _stopped_run(src, out, signal.SIGTERM)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "rerun the same command" in done.stderr
    assert not out.exists()
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    assert sorted(v["id"] for v in kept) == ["fast0", "fast1", "fast2"]
    # Mark one kept verdict, and tear a last line as a kill in mid-write would: the rerun must
    # keep the marked verdict as it is (not verify that sample again) and drop the torn line.
    kept[0]["wall_s"] = 12345.0
    partial.write_text("".join(json.dumps(v) + "\n" for v in kept) + '{"id": "slow", "sta')
    assert main(["verify", str(src), "--out", str(out), "--concurrency", "1", "--no-pch"]) == 0
    captured = capsys.readouterr()
    assert "resuming: 3 of 4" in captured.err and "3 resumed" in captured.out
    verdicts = _verdicts(out)
    assert sorted(verdicts) == ["fast0", "fast1", "fast2", "slow"]
    assert verdicts[kept[0]["id"]]["wall_s"] == 12345.0
    assert verdicts["slow"]["status"] == "timeout"
    assert _partials(out) == []


@pytest.mark.slow
def test_sigkill_leftover_is_resumed_by_the_same_command_and_swept_by_another(tmp_path, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(2))
    out = tmp_path / "v.jsonl"
    done, partial = _stopped_run(src, out, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL and partial.exists() and not out.exists()
    # Another input to the same --out: the dead run's file is not resumed, and is removed.
    other = write_jsonl(tmp_path / "other.jsonl", _rows(1, slow=False))
    assert main(["verify", str(other), "--out", str(out), "--no-pch"]) == 0
    assert sorted(_verdicts(out)) == ["fast0"] and _partials(out) == []
    assert "resuming" not in capsys.readouterr().err

    done, partial = _stopped_run(src, out, signal.SIGKILL)
    assert main(["verify", str(src), "--out", str(out), "--no-pch"]) == 0
    assert "resuming: 2 of 3" in capsys.readouterr().err
    assert sorted(_verdicts(out)) == ["fast0", "fast1", "slow"] and _partials(out) == []


@pytest.mark.slow
def test_a_partial_of_other_options_is_not_resumed(tmp_path, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(2))
    out = tmp_path / "v.jsonl"
    _, partial = _stopped_run(src, out, signal.SIGKILL)
    # Token comparison can judge a sample differently: the line-compare verdicts do not count.
    assert main(["verify", str(src), "--out", str(out), "--compare", "tokens", "--no-pch"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert not partial.exists() and _partials(out) == []


def test_a_live_writer_of_the_same_out_is_not_raced(tmp_path, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(1, slow=False))
    out = tmp_path / "v.jsonl"
    busy = tmp_path / ".v.jsonl.0123456789abcdef.partial"
    busy.write_text("")
    with open(busy) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running verify holds
        assert main(["verify", str(src), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "another `halo-forge verify` is writing it" in err and str(out) in err
        assert not out.exists() and _partials(out) == [busy]
    # Its writer gone, the file is an orphan: swept, and the run goes ahead.
    assert main(["verify", str(src), "--out", str(out)]) == 0
    assert sorted(_verdicts(out)) == ["fast0"] and _partials(out) == []


def test_interrupt_in_process_keeps_the_partial(tmp_path, capsys, monkeypatch) -> None:
    from halo_forge.verify import runner

    src = write_jsonl(tmp_path / "in.jsonl", _rows(2, slow=False))
    out = tmp_path / "v.jsonl"
    real = runner.Verifier.verify
    calls = []

    async def interrupt_second(self, sample):
        import anyio

        calls.append(sample.id)
        if len(calls) == 2:
            # The second is taken in while the first runs (a sample ahead of the slot): Ctrl-C
            # once the first's verdict is kept, while the second waits for its turn.
            with anyio.fail_after(30):
                while not any(p.read_text() for p in _partials(out)):
                    await anyio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
            await anyio.sleep(30)
        return await real(self, sample)

    monkeypatch.setattr(runner.Verifier, "verify", interrupt_second)
    assert main(["verify", str(src), "--out", str(out), "--concurrency", "1"]) == 130
    assert "rerun the same command" in capsys.readouterr().err
    [partial] = _partials(out)
    assert [json.loads(line)["id"] for line in partial.read_text().splitlines()] == ["fast0"]


def test_a_partial_file_removed_under_the_writer_is_not_published(tmp_path) -> None:
    from halo_forge.errors import HaloError
    from halo_forge.verify.partial import PartialVerdicts

    out = tmp_path / "v.jsonl"
    first = PartialVerdicts(out, "0123456789abcdef", {"a"})
    first.append(b'{"id": "a", "status": "passed", "reward": 1.0}\n')
    first.path.unlink()  # removed by hand while its writer runs
    second = PartialVerdicts(out, "0123456789abcdef", {"a"})  # another run takes the name
    second.append(b'{"id": "a", "status": "timeout", "reward": 0.5}\n')
    with pytest.raises(HaloError, match="was removed while this run wrote it"):
        first.publish()
    assert not out.exists() and second.path.exists()
    second.publish()
    assert _verdicts(out)["a"]["status"] == "timeout"
