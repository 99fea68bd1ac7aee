"""JSON Lines output: written whole and atomically, or appended line by line for resumable runs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def encode_line(row: Any) -> bytes:
    return _encoder.encode(row) + b"\n"


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Writes every row to `path` via a temp file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for row in rows:
                f.write(encode_line(row))
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def complete_lines(path: str | os.PathLike[str]) -> list[bytes]:
    """The complete lines of a file that may end in a torn line (a writer killed mid-line);
    the torn tail is cut off the file so that appending continues on a line boundary."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        os.truncate(path, end)
    return [line for line in data[:end].split(b"\n") if line.strip()]
