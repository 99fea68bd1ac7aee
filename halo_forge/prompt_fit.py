"""Prompts that cannot fit the engine's context are dropped when data is loaded, not found by
the engine: vLLM rejects a whole generate() call for one over-long prompt, and a resumed run
would replay the same window and fail again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halo_forge.data.chat import generation_prompt
from halo_forge.records import Problem


def context_length(model: str, engine: Any) -> int | None:
    """The tokens one sequence may hold: the engine's max_model_len when set, else the model's
    max_position_embeddings from its local config.json (None when neither is known)."""
    limit = getattr(engine, "max_model_len", None)
    if limit:
        return int(limit)
    path = Path(model) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = raw.get("max_position_embeddings") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def fit_prompts(problems: Sequence[Problem], *, tokenizer: Any, system: str | None,
                max_new_tokens: int, limit: int) -> tuple[list[Problem], list[tuple[str, int]]]:
    """(the problems whose prompt plus max_new_tokens fits in `limit` tokens, [(id, prompt
    tokens)] of those that do not). Lengths are counted as generation sends them: the chat
    template's text without added special tokens."""
    kept: list[Problem] = []
    dropped: list[tuple[str, int]] = []
    for p in problems:
        text = generation_prompt(p, tokenizer=tokenizer, system=system)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n + max_new_tokens <= limit:
            kept.append(p)
        else:
            dropped.append((p.id, n))
    return kept, dropped


def describe_dropped(dropped: Sequence[tuple[str, int]], *, max_new_tokens: int,
                     limit: int) -> str:
    longest = max(n for _, n in dropped)
    names = ", ".join(pid for pid, _ in dropped[:5]) + (" ..." if len(dropped) > 5 else "")
    return (f"dropped {len(dropped)} prompt(s) that cannot fit {max_new_tokens} new tokens in "
            f"the {limit}-token context (longest prompt {longest} tokens): {names}; raise "
            "[generation.engine] max_model_len or lower [generation] max_new_tokens to keep "
            "them")
