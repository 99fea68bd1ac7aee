"""Trainer rows -> VerifySample: the columns a dataset carries (io_tests, test_code, language,
checker, interactor, python_packages), as Python objects or as JSON text (parquet files and
verl's ground_truth often hold JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from halo_forge.errors import HaloError
from halo_forge.verify.types import VerifySample

# The dataset columns the verifier reads; any other column is the trainer's business.
TEST_FIELDS = ("language", "io_tests", "test_code", "checker", "interactor", "python_packages")


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    # verl hands parquet columns over as numpy arrays (of dicts, for a struct column).
    if not isinstance(value, str | bytes) and callable(getattr(value, "tolist", None)):
        return value.tolist()
    return value


def _decoded(value: Any, *, field: str, where: str) -> Any:
    if field in ("io_tests", "checker", "interactor") and isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise HaloError(f"{where}: `{field}` is text but not JSON ({exc.msg}); give a list "
                            "of {{\"stdin\", \"stdout\"}} objects or its JSON") from None
    return _plain(value)


def build_sample(sample_id: str, completion: str, fields: Mapping[str, Any], *, where: str) -> VerifySample:
    """The VerifySample for one completion and its row's test fields (None / empty = absent)."""
    row: dict[str, Any] = {"id": sample_id, "completion": completion}
    for field in TEST_FIELDS:
        value = fields.get(field)
        if value is None:
            continue
        value = _decoded(value, field=field, where=where)
        if value is not None and value != "":
            row[field] = value
    try:
        return msgspec.convert(row, VerifySample, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise HaloError(f"{where}: {exc} (the verifier's fields: {', '.join(TEST_FIELDS)})") from None


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or a conversational completion (a list of messages whose
    assistant turns are joined; content may be a string or a list of text parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, list | tuple):
        parts: list[str] = []
        for message in completion:
            if not isinstance(message, Mapping) or message.get("role", "assistant") != "assistant":
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content
                             if isinstance(p, Mapping) and p.get("type", "text") == "text")
        return "\n".join(parts)
    raise HaloError(f"a completion must be text or a list of chat messages, got {type(completion).__name__}")
