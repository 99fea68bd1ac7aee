"""A small lexer for C, C++ and Rust source: enough to change operators and literals while
leaving strings, comments and preprocessor lines alone (the test-strength audit's mutants and
probes). It never fails: what it does not recognise becomes a one-character operator token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Longest first, so that `<<=` is one token and not `<`, `<=`.
_OPERATORS = sorted(
    """<<= >>= ... ..= -> => :: << >> <= >= == != && || ++ -- += -= *= /= %= &= |= ^= ..""".split(),
    key=len, reverse=True,
)
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F_']+[a-zA-Z0-9_]*|0[bB][01_']+[a-zA-Z0-9_]*"
    r"|(?:\d[\d_']*)?\.?\d[\d_']*(?:[eE][+-]?\d+)?[a-zA-Z0-9_]*"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RUST_RAW = re.compile(r'b?r(#*)"')
_CPP_RAW = re.compile(r'(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')
_CHAR = re.compile(r"""b?'(?:\\(?:x[0-9a-fA-F]{1,2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^'\\\n])'""")


@dataclass(frozen=True)
class Token:
    kind: str  # ws comment string char pp number ident op
    text: str
    start: int
    line: int

    @property
    def code(self) -> bool:
        """Part of the program's meaning (not layout, comments or preprocessor lines)."""
        return self.kind not in ("ws", "comment", "pp")


def _string_end(src: str, i: int) -> int:
    """Index after the closing quote of the ordinary string literal opening at src[i]."""
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j + 1
        if c == "\n" and not src.startswith("\\\n", j - 1):
            return j  # unterminated: stop at the line's end
        j += 1
    return len(src)


def tokenize(src: str, *, language: str) -> list[Token]:
    out: list[Token] = []
    i, line, n = 0, 1, len(src)
    at_line_start = True
    rust = language == "rust"
    while i < n:
        c = src[i]
        start = i
        if c in " \t\r\n\f\v":
            while i < n and src[i] in " \t\r\n\f\v":
                i += 1
            kind = "ws"
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            kind = "comment"
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if rust and src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            kind = "comment"
        elif c == "#" and at_line_start and not rust:
            # A directive runs to the end of the line, continuations included.
            while i < n and src[i] != "\n":
                i += 2 if src.startswith("\\\n", i) else 1
            kind = "pp"
        elif rust and (m := _RUST_RAW.match(src, i)) and (c in "rb"):
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            i = n if j < 0 else j + len(close)
            kind = "string"
        elif not rust and (m := _CPP_RAW.match(src, i)):
            close = ")" + m.group(1) + '"'
            j = src.find(close, m.end())
            i = n if j < 0 else j + len(close)
            kind = "string"
        elif c == '"' or (c in "uULb" and src.startswith('"', i + 1)) or src.startswith('u8"', i):
            q = src.index('"', i)
            i = _string_end(src, q)
            kind = "string"
        elif (c == "'" or (c == "b" and src.startswith("'", i + 1))) and (m := _CHAR.match(src, i)):
            i = m.end()
            kind = "char"
        elif c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER.match(src, i)
            i = m.end() if m and m.end() > i else i + 1
            # `0..n` in Rust: a range, not the float `0.`
            kind = "number"
        elif (m := _IDENT.match(src, i)):
            i = m.end()
            kind = "ident"
        else:
            op = next((o for o in _OPERATORS if src.startswith(o, i)), c)
            i += len(op)
            kind = "op"
        text = src[start:i]
        if kind == "number" and rust and ".." in text:  # `0..n` lexed greedily: split it
            head = text[:text.index("..")]
            i = start + len(head)
            text = head
        out.append(Token(kind, text, start, line))
        line += text.count("\n")
        if kind == "ws":
            at_line_start = at_line_start or "\n" in text
        elif kind != "comment":
            at_line_start = kind == "pp"
    return out


def significant(tokens: list[Token]) -> list[int]:
    """Indexes of the tokens that carry code (not whitespace, comments, directives)."""
    return [k for k, t in enumerate(tokens) if t.code]


def matching(tokens: list[Token], k: int) -> int:
    """Index of the bracket closing tokens[k] (`(`, `[` or `{`), or -1."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opening = tokens[k].text
    closing = pairs[opening]
    depth = 0
    for j in range(k, len(tokens)):
        t = tokens[j]
        if t.kind != "op":
            continue
        if t.text == opening:
            depth += 1
        elif t.text == closing:
            depth -= 1
            if depth == 0:
                return j
    return -1


def int_value(text: str) -> int | None:
    """The value of a decimal integer literal (suffixes such as LL or u32 allowed), else None."""
    m = re.fullmatch(r"(\d[\d_']*)([a-zA-Z][a-zA-Z0-9]*)?", text)
    if not m or (m.group(1).startswith("0") and len(m.group(1)) > 1):
        return None  # octal or not an integer: left alone
    return int(m.group(1).replace("_", "").replace("'", ""))


def int_suffix(text: str) -> str:
    m = re.fullmatch(r"\d[\d_']*([a-zA-Z][a-zA-Z0-9]*)?", text)
    return (m.group(1) or "") if m else ""
