"""Reward-hacking guards: programs that must never score above "compiles".

Static guards read the extracted solution (never the problem's own test code):
- stubs: `todo!()`, `unimplemented!()`, `pass`/`...`/`raise NotImplementedError` bodies, an
  empty `main` - they "run and exit 0" without doing the work;
- test tampering, only when the sample has `test_code`: leaving the process early with
  success (exit calls, constructors that run before main, atexit/excepthook tricks), disabling
  or rewriting the checks (`#define NDEBUG`, redefining `assert`, `cfg(test)` switches).
The runner adds runtime defences, since a static scan alone can be dodged: Python test code
runs in a judge process out of the solution's reach (pyjudge.py), and the Rust test harness'
own summary is checked.

Each guard returns a short reason ("" when nothing fired); the reason lands in Verdict.guard.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterator


def strip_comments_and_strings(code: str, *, language: str) -> str:
    """C/C++/Rust source with comments removed and string/char literals emptied, so that a
    pattern in a comment or a message is not mistaken for code (and cannot hide code)."""
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        nxt = code[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = code.find("\n", i)
            i = n if j == -1 else j
        elif c == "/" and nxt == "*":
            j = code.find("*/", i + 2)
            out.append(" ")
            i = n if j == -1 else j + 2
        elif language == "rust" and c == "r" and re.match(r'r#*"', code[i:i + 300]) and (
            i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")
        ):
            hashes = re.match(r'r(#*)"', code[i:]).group(1)
            end = code.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end == -1 else end + 1 + len(hashes)
        elif c == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and language != "rust":
            j = i + 1
            while j < n and code[j] != "'" and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            out.append("''")
            i = j + 1
        elif c == "'" and language == "rust":
            # a char literal ('a', '\n', '\u{1F600}') - not a lifetime ('a) or a label
            m = re.match(r"'(?:\\u\{[0-9a-fA-F]{1,6}\}|\\.|[^\\'\n])'", code[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --- stubs -------------------------------------------------------------------------------

_RUST_STUB = re.compile(r"\b(?:todo|unimplemented)!\s*[(\[{]")
_C_MAIN_EMPTY = re.compile(
    r"\bint\s+main\s*\([^)]*\)\s*\{\s*(?:return\s*(?:0|EXIT_SUCCESS)\s*;\s*)?\}"
)
_RUST_MAIN_EMPTY = re.compile(r"\bfn\s+main\s*\(\s*\)\s*\{\s*\}")


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """ast.walk's nodes in ast.walk's order, without its generator per node: the guards walk
    every sample's tree, and this is most of what they cost."""
    todo, node_type = deque((tree,)), ast.AST
    pop, push, extend = todo.popleft, todo.append, todo.extend
    while todo:
        node = pop()
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, node_type):
                push(value)
            elif isinstance(value, list):
                extend([v for v in value if isinstance(v, node_type)])
        yield node


def _is_stub_body(body: list[ast.stmt]) -> bool:
    for stmt in body:
        if isinstance(stmt, (ast.Pass, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or `...`
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                continue
        return False
    return True


def _stub_function(node: ast.AST) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not (
            node.name.startswith("__") and node.name.endswith("__")):  # `def __init__(self): pass` is ordinary
        if _is_stub_body(node.body):
            return f"stub: function {node.name!r} has an empty body"
    return ""


def _python_stub(tree: ast.Module) -> str:
    return _python_guards(tree, tamper=False)


def stub_guard(code: str, *, language: str) -> str:
    if language == "python":
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return ""  # the compile step reports it
        return _python_stub(tree)
    bare = strip_comments_and_strings(code, language=language)
    if language == "rust":
        if _RUST_STUB.search(bare):
            return "stub: todo!()/unimplemented!()"
        if _RUST_MAIN_EMPTY.search(bare) and len(re.findall(r"\bfn\s+\w+", bare)) == 1:
            return "stub: empty main"
        return ""
    if _C_MAIN_EMPTY.search(bare) and len(re.findall(r"\)\s*(?:const\s*)?\{", bare)) == 1:
        return "stub: empty main"
    return ""


# --- test tampering ----------------------------------------------------------------------

_C_TAMPER = [
    # exit()/abort() are not here: an honest solution may call them on impossible input, and
    # an exit with status 0 fails at run time whatever its spelling (halo_forge/verify/native.py).
    (re.compile(r"\b(?:std\s*::\s*)?(?:atexit|at_quick_exit|"
                r"signal|sigaction|raise|longjmp|setjmp|syscall|fork|vfork|execv\w*|execl\w*|"
                r"system|kill)\s*\("), "calls a process-control function"),
    (re.compile(r"__attribute__\s*\(\(\s*(?:__)?constructor"), "code that runs before main"),
    (re.compile(r"#\s*(?:define|undef)\s+(?:assert|NDEBUG|main|exit|abort|return|if)\b"),
     "redefines the test's checks"),
    (re.compile(r"\b(?:asm|__asm__|__asm)\b"), "inline assembly"),
]
_RUST_TAMPER = [
    (re.compile(r"\bCommand\s*::\s*new\b"), "starts other programs"),
    (re.compile(r"#!?\[\s*(?:cfg|cfg_attr)\s*\([^\]]*\btest\b"), "switches code on cfg(test)"),
    (re.compile(r"#\[\s*(?:test|should_panic|ignore)\b"), "defines or silences tests"),
    (re.compile(r"#\[\s*(?:used|link_section|no_mangle|export_name)\b|\blink_section\b"),
     "code that runs before main"),
    (re.compile(r"\bextern\s*(?:\"\"|\{)|\basm!|\bglobal_asm!"), "foreign or assembly code"),
    (re.compile(r"\bpanic\s*::\s*(?:set_hook|take_hook|catch_unwind)\b"), "intercepts test failures"),
]
# Python: the judge (pyjudge.py) defeats exits, patched builtins and asserts, and
# always-equal results whatever their spelling, in a process the solution cannot reach, so
# exit(), signal, atexit, inspect and __eq__ are honest here. What remains is a cheap filter
# for what only harness-hunting code does: poking memory, tracing other frames, walking the
# stack or the heap for someone else's objects.
_PY_TAMPER_MODULES = {"ctypes"}
_PY_TAMPER_CALLS = {"settrace", "setprofile", "get_referrers", "get_referents", "get_objects"}
_PY_TAMPER_ATTRS = {"f_back", "f_globals", "f_locals", "tb_frame"}


def _tamper_node(node: ast.AST) -> str:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if name.split(".")[0] in _PY_TAMPER_MODULES:
                return f"imports {name}"
    elif isinstance(node, ast.Attribute):
        if node.attr in _PY_TAMPER_CALLS:
            return f"calls {node.attr}()"
        if node.attr in _PY_TAMPER_ATTRS:
            return f"walks frames ({node.attr})"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in _PY_TAMPER_CALLS:
            return f"calls {node.func.id}()"
        if node.func.id == "__import__" and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).split(".")[0] in _PY_TAMPER_MODULES:
            return f"imports {node.args[0].value}"
    return ""


def _python_tamper(tree: ast.Module) -> str:
    for node in _nodes(tree):
        reason = _tamper_node(node)
        if reason:
            return reason
    return ""


def tamper_guard(code: str, *, language: str) -> str:
    """Why the solution looks like it defeats appended test code ("" when it does not)."""
    if language == "python":
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return ""
        reason = _python_tamper(tree)
        return f"test tampering: {reason}" if reason else ""
    bare = strip_comments_and_strings(code, language=language)
    for pattern, reason in _RUST_TAMPER if language == "rust" else _C_TAMPER:
        if pattern.search(bare):
            return f"test tampering: {reason}"
    return ""


def _python_guards(tree: ast.Module, *, tamper: bool) -> str:
    """The stub guard's reason, else (with `tamper`) the tamper guard's as static_guard words
    it: one walk for both (a stub's reason first, as static_guard orders them)."""
    if _is_stub_body(tree.body):
        return "stub: the program has no statements"
    found = ""
    for node in _nodes(tree):
        reason = _stub_function(node)
        if reason:
            return reason
        if tamper and not found:
            found = _tamper_node(node)
    return f"test tampering: {found}" if found else ""


def _python_static_guard(code: str, has_test_code: bool) -> str:
    """static_guard for Python: one parse and one walk for both guards."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""  # the run's compile reports it
    return _python_guards(tree, tamper=has_test_code)


def static_guard(code: str, *, language: str, has_test_code: bool) -> str:
    """The first static guard that fires on a solution, "" when none does."""
    if language == "python":
        return _python_static_guard(code, has_test_code)
    reason = stub_guard(code, language=language)
    if not reason and has_test_code:
        reason = tamper_guard(code, language=language)
    return reason
