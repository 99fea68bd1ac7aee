"""Helpers several test files share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def sh(script: str) -> list[str]:
    """argv running `script` under sh -c."""
    return ["sh", "-c", script]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One line per row: dicts as JSON, strings as they are (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def shard_ids(path: Path, kind: type, *, allow_partial: bool = False) -> list[str]:
    """The ids in a shard in file order; [] when the file is absent (a run killed before it)."""
    from halo_forge.shards import ShardReader

    if allow_partial and not path.exists():
        return []
    return [r.id for r in ShardReader(path, kind, allow_partial=allow_partial)]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a halo_forge child process run from this checkout, offline."""
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", **extra)


def modules_loaded_by(code: str) -> list[str]:
    """The halo_forge modules a fresh interpreter has loaded after running `code` (imports
    and calls, so lazy imports count): what a layer really pulls in, which the test process,
    with everything imported, cannot tell."""
    code += ("\nimport json, sys\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('halo_forge'))))")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


@pytest.fixture(autouse=True, scope="module", params=["cold", "warm"])
def python_path(request):
    """A module's tests on both Python paths (import it into the module): one
    interpreter start per run, and a fork of the warm template ([verifier] python_warm)."""
    import msgspec

    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier

    init = Verifier.__init__

    def forced(self, config=None, **kw):
        config = msgspec.structs.replace(config or VerifierConfig(),
                                         python_warm=request.param == "warm")
        init(self, config, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Verifier, "__init__", forced)
        yield request.param
