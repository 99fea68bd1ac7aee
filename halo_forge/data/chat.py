"""Chat formatting: a problem and its solution as chat messages, rendered as training text.

With a tokenizer, its own chat template renders the messages (what the model saw in its
instruction tuning); without one, ChatML (`<|im_start|>role\\n...<|im_end|>`), the format of
Qwen and many other open models, is the default. The SFT stage and the generators use the
same functions, so a model is trained on exactly the text it is later prompted with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from halo_forge.errors import HaloError
from halo_forge.records import Message, Problem

DEFAULT_SYSTEM = (
    "You are an expert programmer. Answer with a single fenced code block that contains "
    "the complete solution."
)

# The fence tag written before a solution; the verifier's extractor reads these.
FENCE = {"c": "c", "cpp": "cpp", "rust": "rust", "python": "python"}
LANGUAGE_NAMES = {"c": "C", "cpp": "C++", "rust": "Rust", "python": "Python"}


def fenced(code: str, language: str) -> str:
    return f"```{FENCE[language]}\n{code.rstrip()}\n```"


def problem_messages(
    problem: Problem, *, system: str | None = DEFAULT_SYSTEM, with_answer: bool = True
) -> list[Message]:
    """The conversation for one problem: [system], user prompt, and the reference as answer."""
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=problem.prompt))
    if with_answer:
        if not problem.reference.strip():
            raise ValueError(f"problem {problem.id!r} has no reference solution to train on")
        messages.append(
            Message(role="assistant", content=fenced(problem.reference, problem.language))
        )
    return messages


def _as_dicts(messages: Sequence[Message | Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append({"role": m.role, "content": m.content})
        else:
            out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def render_chatml(
    messages: Sequence[Message | Mapping[str, Any]], *, add_generation_prompt: bool = False
) -> str:
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in _as_dicts(messages)]
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def apply_chat_template(
    messages: Sequence[Message | Mapping[str, Any]],
    *,
    tokenizer: Any = None,
    add_generation_prompt: bool = False,
) -> str:
    """Renders messages as text: the tokenizer's chat template if it has one, else ChatML."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return render_chatml(messages, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template(
        _as_dicts(messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )


def sft_text(
    problem: Problem, *, tokenizer: Any = None, system: str | None = DEFAULT_SYSTEM
) -> str:
    """One SFT example's text: the problem's conversation with its reference as the answer."""
    return apply_chat_template(problem_messages(problem, system=system), tokenizer=tokenizer)


def generation_prompt(
    problem: Problem, *, tokenizer: Any = None, system: str | None = DEFAULT_SYSTEM
) -> str:
    """The text a model continues to answer the problem (ends with the assistant turn)."""
    return apply_chat_template(
        problem_messages(problem, system=system, with_answer=False),
        tokenizer=tokenizer,
        add_generation_prompt=True,
    )


def load_tokenizer(name_or_path: str) -> Any:
    """A tokenizer from a local folder or the local Hugging Face cache (never the network)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise HaloError(f"--tokenizer needs transformers ({exc}); pip install transformers") from None
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for "not found"
        raise HaloError(
            f"cannot load tokenizer {name_or_path!r} from local files ({type(exc).__name__}); "
            "pass a local model folder, or omit --tokenizer for ChatML"
        ) from None
