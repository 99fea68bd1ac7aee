"""JSON Lines output: written whole and atomically, or appended line by line for resumable runs."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.atomic import atomic_open
from halo_forge.errors import HaloError

_encoder = msgspec.json.Encoder()


def read_jsonl(path: str | os.PathLike[str], type: Any = dict, *,
               what: str = "a JSON object") -> Iterator[tuple[int, Any]]:
    """(line number, row decoded as `type`) for each non-blank line of a JSON Lines file
    (`.gz` too). Anything unreadable is a HaloError naming the file and the line, so a user can
    fix line 4,812 of a 10,000-line file without a traceback."""
    path = Path(path)
    decoder = msgspec.json.Decoder(type)
    try:
        handle = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise HaloError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield n, decoder.decode(line)
                except msgspec.ValidationError as exc:
                    raise HaloError(f"{path}:{n}: not {what} ({exc})") from None
                except msgspec.DecodeError as exc:
                    raise HaloError(f"{path}:{n}: not valid JSON ({exc}); each line must be "
                                    f"{what}") from None
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise HaloError(f"{path}: unreadable ({exc}); expected JSON Lines") from None


def encode_line(row: Any) -> bytes:
    return _encoder.encode(row) + b"\n"


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Writes every row to `path` via a temp file and a rename: readers never see half a file."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(encode_line(row))
            n += 1
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
