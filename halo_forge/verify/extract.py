"""Code extraction: from a model's raw completion to the source the verifier compiles.

Rules (issue 4): fenced blocks with or without a language tag, the tag never leaking into the
source; when there are several, the block in the requested language wins, then the longest;
unfenced code is taken only when the whole completion is code; `<think>...</think>` reasoning
is ignored. Everything here is a pure function of the text.
"""

from __future__ import annotations

import ast
import re

import msgspec

from halo_forge.verify.types import normalize_language

# Tags that mark a block as something other than a program (sample output, a shell session).
_NOT_CODE_TAGS = frozenset(
    {"text", "txt", "plaintext", "output", "console", "shell", "sh", "bash", "zsh", "json",
     "yaml", "toml", "xml", "html", "markdown", "md", "diff", "input", "stdin", "stdout", "log"}
)

_THINK_PAIR = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_INFO_WORD = re.compile(r"[A-Za-z0-9_+#.-]+")


class CodeBlock(msgspec.Struct, frozen=True, kw_only=True):
    tag: str  # the fence's info word, lower-cased ("" when untagged)
    language: str | None  # canonical language of the tag, None when it names none
    code: str
    closed: bool = True  # False when the completion ended inside the block (truncated output)


class Extraction(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    language: str | None  # None when neither the request, the fence nor the code says
    source: str  # "fenced" | "unfenced" | "given"


def strip_reasoning(text: str) -> str:
    """Drop `<think>` reasoning: closed pairs, a lone `</think>` (the chat template opened the
    block in the prompt) and an unfinished `<think>` (the model never reached its answer)."""
    text = _THINK_PAIR.sub("", text)
    close = text.lower().rfind("</think>")
    if close != -1:
        text = text[close + len("</think>"):]
    opened = text.lower().find("<think>")
    if opened != -1:
        text = text[:opened]
    return text


def _info_tag(info: str) -> str:
    # "cpp", "c++ title=x", "{.python}", "rust:src/main.rs" -> the first word
    match = _INFO_WORD.search(info.replace(":", " ").replace("{", " ").lstrip(" ."))
    return match.group(0).lower().lstrip(".") if match else ""


def _dedent(lines: list[str], indent: str) -> list[str]:
    # A fence indented inside a list item indents its whole block by the same amount.
    if not indent:
        return lines
    return [line[len(indent):] if line.startswith(indent) else line.lstrip(" \t") for line in lines]


def find_blocks(text: str) -> list[CodeBlock]:
    """Every fenced block of `text` (CommonMark-style: ``` or ~~~, closed by a fence of the same
    character at least as long; a block left open at the end runs to the end)."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if opened is None:
            i += 1
            continue
        fence = opened.group("fence")
        closing = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j])
            j += 1
        tag = _info_tag(opened.group("info"))
        code = "\n".join(_dedent(body, opened.group("indent")))
        if code.strip():
            blocks.append(CodeBlock(tag=tag, language=normalize_language(tag), code=code + "\n",
                                    closed=j < len(lines)))
        i = j + 1
    return blocks


def choose_block(blocks: list[CodeBlock], language: str | None) -> CodeBlock | None:
    """The block to verify: the requested language's longest, else the longest untagged one.
    Without a requested language, the longest block tagged with any language we run wins."""
    def longest(candidates: list[CodeBlock]) -> CodeBlock | None:
        return max(candidates, key=lambda b: len(b.code.strip())) if candidates else None

    untagged = [b for b in blocks if b.tag == "" or (b.language is None and b.tag not in _NOT_CODE_TAGS
                                                     and guess_language(b.code) is not None)]
    if language is not None:
        chosen = longest([b for b in blocks if b.language == language]) or longest(untagged)
        if chosen is None and language == "cpp":
            chosen = longest([b for b in blocks if b.language == "c"])  # C is (nearly) C++
        return chosen
    return longest([b for b in blocks if b.language is not None]) or longest(untagged)


_C_FAMILY_SIGNS = re.compile(r"^\s*#\s*include\b|\bint\s+main\s*\(|^\s*#\s*define\b", re.MULTILINE)
_CPP_SIGNS = re.compile(
    r"#\s*include\s*<(?:bits/stdc\+\+\.h|iostream|vector|string|algorithm|map|set|unordered_map|"
    r"unordered_set|queue|stack|deque|sstream|iomanip|numeric|utility|array|bitset|cmath|cstdio|"
    r"cstring|cstdlib|climits|functional|memory|tuple|fstream|chrono|random|list|cassert)>"
    r"|\bstd::|\busing\s+namespace\b|\bcout\b|\bcin\b|\btemplate\s*<|\bclass\s+\w+|\bnullptr\b"
    r"|\bnamespace\s+\w+\s*\{"
)
_RUST_SIGNS = re.compile(r"\bfn\s+\w+\s*(?:<[^>]*>)?\s*\(")
_RUST_STRONG = re.compile(r"\blet\s+(?:mut\s+)?\w+|\bprintln!|\buse\s+std::|\bimpl\b|->\s*[\w&(\[]|\bmut\b")
_PY_SIGNS = re.compile(r"^\s*(?:def\s+\w+\s*\(|class\s+\w+\s*[:(]|import\s+\w+|from\s+[\w.]+\s+import\b)", re.MULTILINE)


def guess_language(code: str) -> str | None:
    """A best guess at the language of unlabelled code, None when it does not look like any."""
    if _RUST_SIGNS.search(code) and _RUST_STRONG.search(code) and "#include" not in code:
        return "rust"
    c_like = _C_FAMILY_SIGNS.search(code) or re.search(r"^\s*[\w:<>*&\s]+\s\**\w+\s*\([^;{]*\)\s*\{", code, re.MULTILINE)
    if c_like and (not _PY_SIGNS.search(code) or "#include" in code):
        return "cpp" if _CPP_SIGNS.search(code) else "c"
    if _PY_SIGNS.search(code) or re.search(r"^\s*print\s*\(", code, re.MULTILINE):
        return "python"
    return None


_CODE_LINE = re.compile(
    r"""[;{}(),\[\]]\s*(?://.*)?$      # ends like a statement or a block
      |^\s*(?:\#|//|/\*|\*|})           # preprocessor, comments, closing braces
      |^\s*(?:fn|let|use|impl|struct|enum|mod|pub|match|if|else|for|while|loop|return|
              int|long|char|void|double|float|auto|const|static|unsigned|typedef|using|
              template|class|namespace|bool|size_t|std::)\b
    """,
    re.VERBOSE,
)
_MAX_PARSE_CHARS = 200_000  # a heuristic on unfenced text; bigger inputs are not "just code"


def looks_like_code(text: str, language: str | None) -> bool:
    """Whether a whole unfenced completion is code in `language` (prose around code is not)."""
    text = text.strip()
    if not text or len(text) > _MAX_PARSE_CHARS:
        return False
    if language == "python":
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
        # "Hello" or "42" parse as expressions; a program has at least one real statement or call.
        return any(
            not isinstance(node, ast.Expr) or isinstance(node.value, ast.Call) for node in tree.body
        )
    lines = [line for line in text.splitlines() if line.strip()]
    code_lines = sum(1 for line in lines if _CODE_LINE.search(line))
    if code_lines < 0.7 * len(lines):
        return False
    if language == "rust":
        return bool(_RUST_SIGNS.search(text))
    return bool(_C_FAMILY_SIGNS.search(text) or re.search(r"\)\s*\{", text))


def extract_code(completion: str, *, language: str | None = None) -> Extraction | None:
    """The code to verify in a raw completion, or None when there is none (status `no_code`).

    `language` is the language the problem asked for (None when unknown)."""
    text = strip_reasoning(completion)
    blocks = find_blocks(text)
    if blocks:
        block = choose_block(blocks, language)
        if block is None:
            return None
        lang = language or block.language or guess_language(block.code)
        return Extraction(code=block.code, language=lang, source="fenced")
    if re.search(r"^[ \t]*(```|~~~)", text, re.MULTILINE):
        return None  # only empty fences: the model wrote no code
    lang = language or guess_language(text)
    if lang is None or not looks_like_code(text, lang):
        return None
    return Extraction(code=text.strip() + "\n", language=lang, source="unfenced")


def why_no_code(completion: str, *, language: str | None = None) -> str:
    """Why extract_code found nothing, for the verdict's output: when the completion holds code
    in another language than the one wanted, say both (the model answered in the wrong
    language, which "no code found" hides)."""
    text = strip_reasoning(completion)
    blocks = find_blocks(text)
    found = {b.language or (guess_language(b.code) if b.tag not in _NOT_CODE_TAGS else None)
             for b in blocks}
    if not blocks:
        guess = guess_language(text)
        if guess is not None and looks_like_code(text, guess):
            found.add(guess)
    found.discard(None)
    if language is not None and found and language not in found:
        return (f"no {language} code found in the completion: it holds "
                f"{', '.join(sorted(found))} code, and the problem wants {language}")
    return "no code found in the completion"
