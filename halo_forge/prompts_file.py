"""Reading a prompts JSONL (one Problem per line) as people actually write them.

`data prepare --prompts` writes every field, but a file extracted by hand often holds only
`prompt` (the original tool's docs show exactly that). So: `id` may be left out (a stable id is
made from the prompt, the same on every read, so resumes and caches still match), `language`
may come from a default, and whatever is still missing is named all at once, with the fix,
instead of one field per attempt."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, get_args

import msgspec

from halo_forge.errors import HaloError
from halo_forge.records import Language, Problem

_LANGUAGES = get_args(Language)
_FIX = {
    "prompt": "the problem statement the model is asked",
    "language": f"one of {', '.join(_LANGUAGES)}, or give rows without one a default: "
                'raft train --language python, or [data] language = "python"',
}


def prompt_id(prompt: str) -> str:
    """The id of a row that has none: a digest of its prompt, stable across reads."""
    return "p-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]


def read_prompts(path: Path, *, language: str | None = None) -> list[Problem]:
    rows: list[tuple[int, dict[str, Any]]] = []
    missing: dict[str, list[int]] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise HaloError(f"{path}:{n}: not JSON ({exc}); expected one problem per "
                                "line, as `halo-forge data prepare --prompts` writes") from None
            if not isinstance(row, dict):
                raise HaloError(f"{path}:{n}: a JSON {type(row).__name__}, not an object with "
                                "a `prompt` field")
            if language is not None and not row.get("language"):
                row["language"] = language
            for field in ("prompt", "language"):
                if not row.get(field):
                    missing.setdefault(field, []).append(n)
            rows.append((n, row))
    if missing:
        parts = [f"`{field}` ({_FIX[field]}) on {_lines(numbers)}"
                 for field, numbers in missing.items()]
        first = min(n for numbers in missing.values() for n in numbers)
        raise HaloError(f"{path}:{first}: not a problem: missing {'; '.join(parts)}; each "
                        "line needs `prompt` and `language`, and may have `id`, `io_tests`, `test_code`, `reference`")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for n, row in rows:
        if not row.get("id"):
            base = prompt_id(str(row["prompt"]))
            # The same prompt twice gets a numbered id: ids must be unique, and stay stable.
            seen[base] = seen.get(base, 0) + 1
            row["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"
        try:
            problems.append(msgspec.convert(row, Problem))
        except (msgspec.ValidationError, ValueError) as exc:
            raise HaloError(f"{path}:{n}: not a problem ({exc}); expected the JSONL of "
                            "`halo-forge data prepare --prompts`") from None
    return problems


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
    return f"{len(numbers)} line{'s' if len(numbers) > 1 else ''} ({shown})"
