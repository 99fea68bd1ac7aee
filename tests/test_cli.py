"""The top-level CLI: bad usage is one line naming the fix, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from halo_forge.cli import main


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["verfy"], "did you mean 'verify'?"),
        (["data", "prepare", "--datset", "mbpp"], "did you mean '--dataset'?"),
        (["sft", "trian"], "did you mean 'train'?"),
    ],
)
def test_typos_get_a_one_line_hint(argv, hint, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("halo-forge: error: ") and hint in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_module_entry_point_reports_errors_without_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "halo_forge", "verify", "missing.jsonl",
                           "--out", "x.jsonl"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("halo-forge: error: ") and "missing.jsonl" in done.stderr
    assert "Traceback" not in done.stderr
