"""Wrong programs derived from a reference solution: the mutants of the test-strength audit
(halo_forge/data/audit.py).

Each mutant changes one thing a model commonly gets wrong: a flipped comparison, an off-by-one
bound or constant, a swapped operator or connective, a dropped statement, a function that
returns a constant the tests expect, or a program that prints the first test's expected output
verbatim. Python is mutated through its syntax tree (`ast`), so a change never lands in a string
or a comment and never depends on how the code is laid out; C, C++ and Rust through a lexer
(halo_forge/data/tokens.py) that skips strings, character literals, comments and preprocessor
lines. A mutant may still be a correct program (an equivalent mutant): the audit only counts
one that it has seen behave differently from the reference.
"""

from __future__ import annotations

import ast
import copy
import difflib
import json
import random
from collections.abc import Callable, Iterator

import msgspec

from halo_forge.data.tokens import Token, int_suffix, int_value, matching, significant, tokenize
from halo_forge.records import Problem


class Mutant(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # compare, boundary, off_by_one, arith, logic, drop, constant, sample_output
    name: str  # what was changed, in words
    code: str
    diff: str = ""  # the changed line, "line N: `old` -> `new`"


KINDS = ("sample_output", "constant", "compare", "boundary", "off_by_one", "arith", "logic", "drop")


def diff_line(before: str, after: str, *, line: int | None = None) -> str:
    """The first changed line as `line N: `old` -> `new`` (N: `line` when given, the line in
    the reference a Python mutant's change came from; `before` is then the unparsed tree)."""
    a, b = before.splitlines(), after.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        old = " ".join(s.strip() for s in a[i1:i2]) or "(nothing)"
        new = " ".join(s.strip() for s in b[j1:j2]) or "(nothing)"
        return f"line {line or i1 + 1}: `{old[:120]}` -> `{new[:120]}`"
    return ""


# --- whole-program mutants -------------------------------------------------------------------

def _c_string(text: str) -> str:
    out = []
    for ch in text.encode("utf-8"):
        c = chr(ch)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif 32 <= ch < 127:
            out.append(c)
        else:
            out.append(f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def _rust_string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif 32 <= ord(c) < 127:
            out.append(c)
        else:
            out.append(f"\\u{{{ord(c):x}}}")
    return '"' + "".join(out) + '"'


def printer(language: str, text: str) -> str:
    """A whole program that prints `text` and ignores its input."""
    if language == "python":
        return f"import sys\nsys.stdout.write({json.dumps(text)})\n"
    if language == "rust":
        return f'fn main() {{\n    print!("{{}}", {_rust_string(text)});\n}}\n'
    header = "#include <stdio.h>" if language == "c" else "#include <cstdio>"
    return f"{header}\nint main(void) {{\n    fputs({_c_string(text)}, stdout);\n    return 0;\n}}\n"


def output_mutants(problem: Problem) -> list[Mutant]:
    """Programs that print an expected output whatever the input: the first test's (the sample
    output a model can copy from the statement), then the other most common ones."""
    outs = [t.stdout for t in problem.io_tests]
    if not outs:
        return []
    by_count = sorted(dict.fromkeys(outs), key=lambda o: -outs.count(o))
    ordered = [outs[0]] + [o for o in by_count if o != outs[0]]
    mutants = []
    for n, text in enumerate(ordered[:3]):
        shown = text.strip().replace("\n", "\\n")[:60]
        mutants.append(Mutant(
            kind="sample_output" if n == 0 else "constant",
            name=("prints the first test's expected output verbatim" if n == 0 else
                  "prints a constant output") + f" ({shown!r})",
            code=printer(problem.language, text),
            diff=f"whole program -> prints {shown!r}",
        ))
    return mutants


# --- Python: through the syntax tree ---------------------------------------------------------

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
         ast.IsNot: ast.Is}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_ARITH = {ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.Add, ast.FloorDiv),
          ast.FloorDiv: (ast.Mult, ast.Mod), ast.Div: (ast.Mult,), ast.Mod: (ast.FloorDiv,),
          ast.Pow: (ast.Mult,)}
_SKIP_DROP = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
              ast.Global, ast.Nonlocal, ast.Pass)

# One edit: (kind, description, function applying it to the node found at the same position
# in a fresh copy of the tree).
Edit = tuple[str, str, Callable[[ast.AST], ast.AST | None]]


def _py_edits(node: ast.AST, parent_field: tuple[ast.AST, str] | None) -> Iterator[Edit]:
    if isinstance(node, ast.Compare):
        for k, op in enumerate(node.ops):
            for table, kind in ((_FLIP, "compare"), (_BOUNDARY, "boundary")):
                new = table.get(type(op))
                if new is None:
                    continue

                def apply(n, k=k, new=new):
                    n.ops[k] = new()
                    return n
                yield kind, f"`{_op_text(op)}` -> `{_op_text(new())}`", apply
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        for new in _ARITH.get(type(node.op), ()):
            def apply(n, new=new):
                n.op = new()
                return n
            yield "arith", f"`{_op_text(node.op)}` -> `{_op_text(new())}`", apply
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And

        def apply(n, new=new):
            n.op = new()
            return n
        yield "logic", f"`{_op_text(node.op)}` -> `{_op_text(new())}`", apply
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "logic", "`not` dropped", lambda n: n.operand
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "logic", f"`{node.value}` -> `{not node.value}`", \
            lambda n: ast.copy_location(ast.Constant(value=not n.value), n)
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        for delta in (1, -1):
            value = node.value + delta
            if value < 0 and node.value >= 0 and parent_field and isinstance(parent_field[0], ast.Slice):
                continue  # xs[-1:] means something else entirely

            def apply(n, value=value):
                return ast.copy_location(ast.Constant(value=value), n)
            yield "off_by_one", f"`{node.value}` -> `{value}`", apply
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and node.args and not node.keywords):
        stop = 0 if len(node.args) == 1 else 1
        for op, sign in ((ast.Add, "+"), (ast.Sub, "-")):
            def apply(n, stop=stop, op=op):
                arg = n.args[stop]
                n.args[stop] = ast.copy_location(
                    ast.BinOp(left=arg, op=op(), right=ast.Constant(value=1)), arg)
                return n
            yield "off_by_one", f"range's end {sign} 1", apply


def _op_text(op: ast.AST) -> str:
    text = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
            ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+",
            ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
            ast.Pow: "**", ast.And: "and", ast.Or: "or"}
    return text.get(type(op), type(op).__name__)


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, tuple[ast.AST, str] | None]]:
    """Every node in a fixed order with its parent, so that position k means the same node in
    a deep copy of the tree."""
    stack: list[tuple[ast.AST, tuple[ast.AST, str] | None]] = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        children = []
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                children += [(v, (node, field)) for v in value if isinstance(v, ast.AST)]
            elif isinstance(value, ast.AST):
                children.append((value, (node, field)))
        stack.extend(reversed(children))


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
        and isinstance(stmt.value.value, str)


def _replace_child(parent: ast.AST, field: str, old: ast.AST, new: ast.AST) -> None:
    value = getattr(parent, field)
    if isinstance(value, list):
        value[value.index(old)] = new
    else:
        setattr(parent, field, new)


def python_mutants(reference: str, test_code: str = "") -> list[Mutant]:
    try:
        tree = ast.parse(reference)
    except (SyntaxError, ValueError):
        return []
    base = ast.unparse(tree)
    nodes = list(_walk(tree))
    found: list[tuple[str, str, int, Callable, int | None]] = []
    for pos, (node, parent) in enumerate(nodes):
        # Annotations and f-string format specs mean nothing at run time / are fragile.
        if parent and parent[1] in ("annotation", "returns", "format_spec"):
            continue
        for kind, what, apply in _py_edits(node, parent):
            found.append((kind, what, pos, apply, getattr(node, "lineno", None)))
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for k, stmt in enumerate(body):
                if isinstance(stmt, _SKIP_DROP) or _is_docstring(stmt):
                    continue
                where = f" (line {stmt.lineno})"

                def drop(n, field=field, k=k):
                    stmts = getattr(n, field)
                    stmts[k] = ast.copy_location(ast.Pass(), stmts[k])
                    return n
                found.append(("drop", f"statement dropped (`{ast.unparse(stmt).splitlines()[0][:60]}`)"
                              + where, pos, drop, stmt.lineno))
    mutants = []
    for kind, what, pos, apply, line in found:
        copy_tree = copy.deepcopy(tree)
        target, parent = _nth(copy_tree, pos)
        new = apply(target)
        if new is not target and parent is not None:
            _replace_child(parent[0], parent[1], target, new)
        ast.fix_missing_locations(copy_tree)
        try:
            code = ast.unparse(copy_tree)
        except Exception:  # noqa: BLE001 - an edit the unparser cannot print is no mutant
            continue
        where = f" (line {line})" if line and kind != "drop" else ""
        mutants.append(Mutant(kind=kind, name=what + where, code=code + "\n",
                              diff=diff_line(base, code, line=line)))
    mutants += _python_constant_returns(tree, test_code)
    return mutants


def _nth(tree: ast.AST, pos: int):
    for k, item in enumerate(_walk(tree)):
        if k == pos:
            return item
    raise IndexError(pos)


def expected_constants(test_code: str, names: set[str], language: str) -> list[str]:
    """Source text of the literals the tests compare the results of `names` with."""
    if language == "python":
        return [ast.unparse(v) for v in _python_expected(test_code, names)]
    return _native_expected(test_code, names, language)


def _python_expected(test_code: str, names: set[str]) -> list[ast.expr]:
    try:
        tree = ast.parse(test_code)
    except (SyntaxError, ValueError):
        return []
    names = names | _aliases(tree, names)
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            left, right = node.left, node.comparators[0]
            for call, value in ((left, right), (right, left)):
                if _calls(call, names) and _literal(value):
                    found.append(value)
        elif isinstance(node, ast.Assert):
            test = node.test
            if _calls(test, names):
                found.append(ast.Constant(value=True))
            elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and _calls(test.operand, names):
                found.append(ast.Constant(value=False))
    unique: dict[str, ast.expr] = {}
    for value in found:
        unique.setdefault(ast.unparse(value), value)
    return list(unique.values())


def _aliases(tree: ast.Module, names: set[str]) -> set[str]:
    """Parameters that stand for one of `names`: HumanEval's `def check(candidate)` called as
    `check(entry_point)`."""
    params: dict[str, list[str]] = {
        n.name: [a.arg for a in n.args.args] for n in tree.body if isinstance(n, ast.FunctionDef)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in params:
            for arg, param in zip(node.args, params[node.func.id]):
                if isinstance(arg, ast.Name) and arg.id in names:
                    out.add(param)
    return out


def _calls(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def defined_functions(reference: str, language: str) -> list[str]:
    """Names of the functions the reference defines at top level, in order."""
    if language == "python":
        try:
            tree = ast.parse(reference)
        except (SyntaxError, ValueError):
            return []
        return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [name for name, _, _ in native_functions(tokenize(reference, language=language), language)]


def _python_constant_returns(tree: ast.Module, test_code: str) -> list[Mutant]:
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not functions or not test_code:
        return []
    names = {f.name for f in functions}
    constants = _python_expected(test_code, names)[:2] or [ast.Constant(value=None)]
    base = ast.unparse(tree)
    out = []
    for index, fn in enumerate(functions):
        for value in constants:
            copy_tree = copy.deepcopy(tree)
            target = [n for n in copy_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))][index]
            keep = target.body[:1] if _is_docstring(target.body[0]) else []
            target.body = keep + [ast.Return(value=copy.deepcopy(value))]
            ast.fix_missing_locations(copy_tree)
            code = ast.unparse(copy_tree)
            shown = ast.unparse(value)[:60]
            out.append(Mutant(kind="constant", name=f"`{fn.name}` returns {shown}", code=code + "\n",
                              diff=diff_line(base, code, line=fn.body[len(keep)].lineno
                                             if len(fn.body) > len(keep) else None)))
    return out


# --- C, C++, Rust: through the lexer ---------------------------------------------------------

_TYPE_WORDS = {
    "int", "long", "short", "char", "float", "double", "unsigned", "signed", "bool", "void", "auto",
    "const", "static", "struct", "enum", "union", "size_t", "std", "string", "vector", "map", "set",
    "pair", "array", "unordered_map", "unordered_set", "deque", "queue", "stack", "priority_queue",
    "tuple", "template", "typename", "class", "let", "mut", "usize", "isize", "i8", "i16", "i32",
    "i64", "i128", "u8", "u16", "u32", "u64", "u128", "f32", "f64", "str", "String", "Vec",
    "Option", "Result", "Box", "HashMap", "HashSet", "BTreeMap", "BTreeSet", "VecDeque", "impl",
    "dyn", "where", "use", "fn", "pub", "return", "break", "continue", "if", "else", "for", "while",
    "do", "switch", "case", "default", "goto", "typedef", "using", "namespace", "match", "loop",
    "in", "as", "ref", "extern", "inline", "constexpr", "register", "volatile", "uint64_t",
    "int64_t", "uint32_t", "int32_t", "ll", "ull", "ld",
}
_OPERAND_END = ("ident", "number", "string", "char")
_COMPARE = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "=="}
_NATIVE_BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "..": "..=", "..=": ".."}
_NATIVE_ARITH = {"+": ("-",), "-": ("+",), "*": ("+", "/"), "/": ("*",), "%": ("/",),
                 "+=": ("-=",), "-=": ("+=",), "*=": ("+=",), "++": ("--",), "--": ("++",)}


def _operand_end(t: Token) -> bool:
    if t.kind in ("number", "string", "char"):
        return True
    if t.kind == "ident":
        return t.text not in _TYPE_WORDS and t.text not in ("return", "case")
    return t.text in (")", "]")


def _operand_start(t: Token) -> bool:
    if t.kind in ("number", "string", "char"):
        return True
    if t.kind == "ident":
        return t.text not in _TYPE_WORDS or t.text in ("std",)
    return t.text in ("(", "-", "!", "*", "&", "[")


def _looks_generic(prev: Token, nxt: Token, language: str) -> bool:
    """`vector<int>`, `Vec<i32>`, `Option<T>`: angle brackets, not a comparison."""
    if prev.kind == "ident" and (prev.text in _TYPE_WORDS or prev.text[:1].isupper()):
        return True
    return nxt.kind == "ident" and (nxt.text in _TYPE_WORDS or (language == "rust" and nxt.text[:1].isupper()))


def native_functions(tokens: list[Token], language: str) -> list[tuple[str, int, int]]:
    """(name, index of the body's `{`, index of its `}`) for each top-level function."""
    sig = [k for k in significant(tokens)]
    out = []
    depth = 0
    s = 0
    while s < len(sig):
        t = tokens[sig[s]]
        if t.kind == "op" and t.text == "{":
            if depth == 0:
                name = _function_before(tokens, sig, s, language)
                close = matching(tokens, sig[s])
                if name and close > 0:
                    out.append((name, sig[s], close))
                    s = sig.index(close) + 1
                    continue
            depth += 1
        elif t.kind == "op" and t.text == "}":
            depth = max(0, depth - 1)
        s += 1
    return out


def _function_before(tokens: list[Token], sig: list[int], s: int, language: str) -> str | None:
    """The function whose body opens at sig[s], or None (a struct, a namespace, an initialiser)."""
    if language == "rust":
        for back in range(s - 1, -1, -1):
            t = tokens[sig[back]]
            if t.text in (";", "}", "{"):
                return None
            if t.text == "fn" and back + 1 < s:
                nxt = tokens[sig[back + 1]]
                return nxt.text if nxt.kind == "ident" else None
        return None
    # C/C++: `name ( ... ) [const noexcept ...] {`
    back = s - 1
    while back >= 0 and tokens[sig[back]].kind == "ident" and tokens[sig[back]].text in ("const", "noexcept", "override"):
        back -= 1
    if back < 0 or tokens[sig[back]].text != ")":
        return None
    depth = 0
    for j in range(back, -1, -1):
        t = tokens[sig[j]]
        if t.text == ")":
            depth += 1
        elif t.text == "(":
            depth -= 1
            if depth == 0:
                if j > 0 and tokens[sig[j - 1]].kind == "ident" and tokens[sig[j - 1]].text not in _TYPE_WORDS \
                        and tokens[sig[j - 1]].text not in ("if", "while", "for", "switch"):
                    return tokens[sig[j - 1]].text
                return None
    return None


def _render(tokens: list[Token], replace: dict[int, str]) -> str:
    return "".join(replace.get(k, t.text) for k, t in enumerate(tokens))


def native_mutants(reference: str, language: str, test_code: str = "") -> list[Mutant]:
    tokens = tokenize(reference, language=language)
    sig = significant(tokens)
    bodies = native_functions(tokens, language)
    inside = set()
    for _, open_, close in bodies:
        inside.update(range(open_, close + 1))
    found: list[tuple[str, str, dict[int, str]]] = []
    for s, k in enumerate(sig):
        if k not in inside:
            continue  # declarations, includes, struct fields: outside any function body
        t = tokens[k]
        prev = tokens[sig[s - 1]] if s else None
        nxt = tokens[sig[s + 1]] if s + 1 < len(sig) else None
        if t.kind == "op" and prev is not None and nxt is not None:
            binary = _operand_end(prev) and _operand_start(nxt)
            if t.text in _COMPARE and binary and not (t.text in "<>" and _looks_generic(prev, nxt, language)):
                found.append(("compare", f"`{t.text}` -> `{_COMPARE[t.text]}`", {k: _COMPARE[t.text]}))
                if t.text in _NATIVE_BOUNDARY:
                    new = _NATIVE_BOUNDARY[t.text]
                    found.append(("boundary", f"`{t.text}` -> `{new}`", {k: new}))
            elif t.text in ("..", "..=") and language == "rust" and _operand_start(nxt):
                new = _NATIVE_BOUNDARY[t.text]
                found.append(("boundary", f"`{t.text}` -> `{new}`", {k: new}))
            elif t.text in ("&&", "||") and binary:
                new = "||" if t.text == "&&" else "&&"
                found.append(("logic", f"`{t.text}` -> `{new}`", {k: new}))
            elif t.text in ("++", "--"):
                new = _NATIVE_ARITH[t.text][0]
                found.append(("arith", f"`{t.text}` -> `{new}`", {k: new}))
            elif t.text in _NATIVE_ARITH and (binary or t.text.endswith("=")):
                if t.text == "*" and language != "rust" and prev.kind == "ident" and nxt.kind == "ident" \
                        and (prev.line != nxt.line):
                    continue
                for new in _NATIVE_ARITH[t.text]:
                    found.append(("arith", f"`{t.text}` -> `{new}`", {k: new}))
            elif t.text == "!" and not _operand_end(prev) and nxt.text != "=":
                found.append(("logic", "`!` dropped", {k: ""}))
        elif t.kind == "ident" and t.text in ("true", "false"):
            new = "false" if t.text == "true" else "true"
            found.append(("logic", f"`{t.text}` -> `{new}`", {k: new}))
        elif t.kind == "number":
            value = int_value(t.text)
            if value is None:
                continue
            for delta in (1, -1):
                if value + delta < 0:
                    continue
                new = f"{value + delta}{int_suffix(t.text)}"
                found.append(("off_by_one", f"`{t.text}` -> `{new}`", {k: new}))
    found += _native_drops(tokens, sig, inside)
    base = reference
    mutants = []
    for kind, what, replace in found:
        code = _render(tokens, replace)
        line = tokens[min(replace)].line
        mutants.append(Mutant(kind=kind, name=f"{what} (line {line})", code=code,
                              diff=diff_line(base, code)))
    mutants += _native_constant_returns(tokens, bodies, language, test_code)
    return mutants


def _native_drops(tokens: list[Token], sig: list[int], inside: set[int]) -> list[tuple[str, str, dict[int, str]]]:
    """Expression statements (assignments, increments, calls) deleted one at a time."""
    out = []
    start = None
    depth = 0  # parentheses and brackets: a `;` inside `for (...)` ends no statement
    for s, k in enumerate(sig):
        t = tokens[k]
        if t.text in ("(", "["):
            depth += 1
        elif t.text in (")", "]"):
            depth -= 1
        if depth:
            continue
        if t.text in ("{", "}"):
            start = None
            continue
        if start is None:
            start = s
        if t.text == ";":
            first = tokens[sig[start]]
            span = sig[start:s + 1]
            if (sig[start] in inside and start < s and "{" not in {tokens[j].text for j in span}
                    and (first.kind != "ident" or first.text not in _TYPE_WORDS)
                    and first.text not in (")", "else")
                    and any(tokens[j].text in ("=", "+=", "-=", "*=", "/=", "%=", "++", "--", "(", "<<=", ">>=", "|=", "&=", "^=")
                            for j in span)):
                shown = " ".join(tokens[j].text for j in span)[:60]
                out.append(("drop", f"statement dropped (`{shown}`)", {j: "" for j in range(sig[start], k + 1)}))
            start = None
    return out


def _native_constant_returns(tokens: list[Token], bodies: list[tuple[str, int, int]], language: str,
                             test_code: str) -> list[Mutant]:
    if not test_code:
        return []
    names = {name for name, _, _ in bodies if name != "main"}
    constants = _native_expected(test_code, names, language)[:2] or ["0"]
    base = _render(tokens, {})
    out = []
    for name, open_, close in bodies:
        if name not in names:
            continue
        for value in constants:
            body = f"{{ {value} }}" if language == "rust" else f"{{ return {value}; }}"
            replace = {open_: body, **{j: "" for j in range(open_ + 1, close + 1)}}
            code = _render(tokens, replace)
            out.append(Mutant(kind="constant", name=f"`{name}` returns {value}", code=code,
                              diff=diff_line(base, code)))
    return out


def _native_expected(test_code: str, names: set[str], language: str) -> list[str]:
    tokens = tokenize(test_code, language=language)
    sig = significant(tokens)
    found: list[str] = []

    def literal_at(s: int) -> str | None:
        if s >= len(sig):
            return None
        t = tokens[sig[s]]
        if t.text == "-" and s + 1 < len(sig) and tokens[sig[s + 1]].kind == "number":
            return "-" + tokens[sig[s + 1]].text
        if t.kind in ("number", "string", "char") or t.text in ("true", "false"):
            return t.text
        return None

    for s, k in enumerate(sig):
        t = tokens[k]
        if t.kind != "ident" or t.text not in names or s + 1 >= len(sig) or tokens[sig[s + 1]].text != "(":
            continue
        close = matching(tokens, sig[s + 1])
        if close < 0:
            continue
        after = sig.index(close) + 1
        if after < len(sig) and tokens[sig[after]].text in ("==", "!=", ","):
            value = literal_at(after + 1)
            if value is not None and (tokens[sig[after]].text != "," or language == "rust"):
                found.append(value)
    return list(dict.fromkeys(found))


# --- choosing ---------------------------------------------------------------------------------

def mutants_for(problem: Problem, *, limit: int, seed: int = 0) -> list[Mutant]:
    """At most `limit` distinct mutants of the problem's reference, every kind represented
    before any kind gets a second one (whole-program ones first), in an order fixed by the
    problem id and `seed`."""
    reference = problem.reference
    if problem.language == "python":
        pool = python_mutants(reference, problem.test_code)
        base = _normalised_python(reference)
    else:
        pool = native_mutants(reference, problem.language, problem.test_code)
        base = reference
    pool = output_mutants(problem) + pool
    seen = {base}
    by_kind: dict[str, list[Mutant]] = {k: [] for k in KINDS}
    for m in pool:
        key = _normalised_python(m.code) if problem.language == "python" else m.code
        if key in seen or not m.code.strip():
            continue
        seen.add(key)
        by_kind.setdefault(m.kind, []).append(m)
    rng = random.Random(f"{problem.id}\0{seed}")
    for kind, items in by_kind.items():
        if kind not in ("sample_output", "constant"):
            rng.shuffle(items)
    chosen: list[Mutant] = []
    while len(chosen) < limit and any(by_kind.values()):
        for kind in list(by_kind):
            if by_kind[kind] and len(chosen) < limit:
                chosen.append(by_kind[kind].pop(0))
    return chosen


def _normalised_python(code: str) -> str:
    try:
        return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError):
        return code
