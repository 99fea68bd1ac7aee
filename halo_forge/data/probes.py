"""Inputs the test-strength audit makes up, and the programs that show a solution's behaviour
on them, so that a mutant the tests accept can be compared with the reference.

- stdin/stdout problems: new inputs made from the tests' own by changing one or two values,
  inside the domain the tests show: an integer moves by one but stays within the smallest and
  largest integers the tests use, a count that may size what follows only goes down, a word is
  shuffled or loses a character, a value is swapped for another test's value in its place.
- function problems (test code): the calls the test code makes with literal arguments, and
  copies with one argument changed the same way; a probe program calls the solution on each and
  prints a canonical form of the result (and, in Python, of the arguments after the call).

Inputs may still break a constraint the statement states and the tests do not show; the
audit only trusts an input on which the reference exits cleanly and prints the same thing twice.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable
from typing import Any

import msgspec

from halo_forge.data.mutants import _aliases, defined_functions
from halo_forge.data.tokens import Token, int_suffix, int_value, matching, significant, tokenize
from halo_forge.records import IOTest, Problem


class CallProbe(msgspec.Struct, frozen=True, kw_only=True):
    """Calls to make on a function problem's solution: source text of each call, and the
    footer that makes a program of the solution call them one after another from argv[1]."""

    calls: list[str]
    footer: str

    def program(self, code: str, language: str) -> str:
        if language == "python":
            return code.rstrip("\n") + "\n\n" + self.footer
        return _NATIVE_HEADERS.get(language, "") + code.rstrip("\n") + "\n\n" + self.footer


# --- stdin/stdout problems ---------------------------------------------------------------------

# Numbers are pieces of their own even inside `1,-2,3` or `a=5`, so that separators stay put.
_PIECE = re.compile(r"\s+|-?\d+(?:\.\d+)?|[^\W\d_]+|.", re.DOTALL)
_INT = re.compile(r"-?\d+")
_WORD = re.compile(r"[^\W\d_]")  # a letter: only pieces with one are words to vary


def io_inputs(tests: list[IOTest], *, count: int, seed: str) -> list[str]:
    """Up to `count` new stdin texts, none equal to a test's, in a fixed order."""
    rng = random.Random(seed)
    parsed = [_PIECE.findall(t.stdin) for t in tests]
    ints = [int(p) for pieces in parsed for p in pieces if _INT.fullmatch(p)]
    low, high = (min(ints), max(ints)) if ints else (0, 0)
    words = [p for pieces in parsed for p in pieces if _WORD.search(p)]
    originals = {t.stdin for t in tests}
    out: dict[str, None] = {}
    attempts = 0
    while len(out) < count and attempts < count * 20 and parsed:
        attempts += 1
        pieces = list(parsed[attempts % len(parsed)])
        slots = [k for k, p in enumerate(pieces) if _INT.fullmatch(p) or _WORD.search(p)]
        if not slots:
            continue
        sizes = _size_slots(pieces)
        for _ in range(1 if rng.random() < 0.7 else 2):
            k = rng.choice(slots)
            pieces[k] = _perturb_token(pieces[k], rng, low=low, high=high, words=words,
                                       only_down=k in sizes)
        text = "".join(pieces)
        if text not in originals:
            out.setdefault(text, None)
    return list(out)


def _size_slots(pieces: list[str]) -> set[int]:
    """Integers that may size what follows: a number alone on its line, or the input's first."""
    sizes: set[int] = set()
    line_start = True
    first = True
    for k, p in enumerate(pieces):
        if not p.strip():
            if "\n" in p:
                line_start = True
            continue
        if _INT.fullmatch(p) and first:
            sizes.add(k)
        if _INT.fullmatch(p) and line_start:
            rest = pieces[k + 1] if k + 1 < len(pieces) else "\n"
            if not rest.strip() and ("\n" in rest or k + 1 == len(pieces)):
                sizes.add(k)
        first = False
        line_start = False
    return sizes


def _perturb_token(token: str, rng: random.Random, *, low: int, high: int, words: list[str],
                   only_down: bool) -> str:
    if _INT.fullmatch(token):
        v = int(token)
        if only_down:
            choices = [x for x in (v - 1, v // 2) if x >= max(low, 1 if v > 0 else low) and x != v]
        else:
            choices = [x for x in (v - 1, v + 1, rng.randint(low, high)) if low <= x <= high and x != v]
        return str(rng.choice(choices)) if choices else token
    return _perturb_word(token, rng, words)


_BRACKETS = set("()[]{}<>")


def _perturb_word(word: str, rng: random.Random, pool: list[str]) -> str:
    options: list[str] = []
    if _BRACKETS & set(word):
        # Brackets are usually balanced by the statement's rules: move whole groups (split on
        # spaces, each balanced in the tests) instead of characters, which would unbalance them.
        groups = word.split(" ")
        others = [g for w in pool for g in w.split(" ") if g and g != word]
        if len(groups) > 1:
            k = rng.randrange(len(groups))
            shuffled = groups[:]
            rng.shuffle(shuffled)
            options += [" ".join(shuffled), " ".join(groups[:k] + groups[k + 1:]),
                        " ".join(groups[:k] + [groups[k]] + groups[k:])]
        else:
            options.append(word + word)
        if others:
            k = rng.randrange(len(groups))
            options.append(" ".join(groups[:k] + [rng.choice(others)] + groups[k + 1:]))
        options = [o for o in options if o and o != word]
        return rng.choice(options) if options else word
    if len(word) > 1:
        letters = list(word)
        rng.shuffle(letters)
        options += ["".join(letters), word[::-1], word[:-1]]
        i = rng.randrange(len(word))
        alphabet = sorted(set("".join(pool) or word))
        options.append(word[:i] + rng.choice(alphabet) + word[i + 1:])
    options += [w for w in pool if w != word][:3]
    options = [o for o in options if o and o != word]
    return rng.choice(options) if options else word


# --- function problems: Python -------------------------------------------------------------------

_PY_FOOTER = '''
def _ha_show(x, depth=0):
    import re as _re
    if depth > 20:
        return "..."
    if isinstance(x, bool) or x is None:
        return repr(x)
    if isinstance(x, float):
        return format(x, ".6g")
    if isinstance(x, (set, frozenset)):
        return "{" + ", ".join(sorted(_ha_show(i, depth + 1) for i in x)) + "}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_ha_show(i, depth + 1) for i in x)
        return ("[%s]" if isinstance(x, list) else "(%s)") % inner
    if isinstance(x, dict):
        return "{" + ", ".join(_ha_show(k, depth + 1) + ": " + _ha_show(v, depth + 1) for k, v in x.items()) + "}"
    try:
        text = repr(x)
    except BaseException:
        text = type(x).__name__
    return _re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _ha_probe():
    import sys
    start = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    for i in range(start, len(_HA_CALLS)):
        name, args, kwargs = _HA_CALLS[i]
        try:
            result = globals()[name](*args, **kwargs)
            if hasattr(result, "__next__"):
                result = list(result)
            text = _ha_show(result) + " | " + _ha_show(args)
        except BaseException as exc:
            text = "raised " + type(exc).__name__
        sys.stdout.write("%d\\t%s\\n" % (i, text.replace("\\n", " ")[:2000]))
        sys.stdout.flush()


_ha_probe()
'''


def _python_sites(problem: Problem) -> list[tuple[str, tuple, dict]]:
    names = set(defined_functions(problem.reference, "python"))
    try:
        tree = ast.parse(problem.test_code)
    except (SyntaxError, ValueError):
        return []
    aliases = _aliases(tree, names)
    params: dict[str, str] = {}
    for node in ast.walk(tree):  # which function each alias stands for
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            for arg in node.args:
                if isinstance(arg, ast.Name) and arg.id in names:
                    fn = next((f for f in tree.body if isinstance(f, ast.FunctionDef)
                               and f.name == node.func.id), None)
                    if fn:
                        for a, p in zip(node.args, fn.args.args):
                            if isinstance(a, ast.Name) and a.id in names:
                                params[p.arg] = a.id
    sites = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        name = node.func.id
        target = name if name in names else params.get(name) if name in aliases else None
        if target is None or any(isinstance(a, ast.Starred) for a in node.args):
            continue
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if len(kwargs) != len(node.keywords):
            continue
        sites.append((target, args, kwargs))
    return sites


def _leaves(value: Any, kind: type) -> list[Any]:
    if isinstance(value, bool):
        return []
    if isinstance(value, kind):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [x for v in value for x in _leaves(v, kind)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v, kind)]
    return []


def _perturb_value(value: Any, rng: random.Random, pools: dict[type, list]) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        ints = pools[int]
        low, high = (min(ints), max(ints)) if ints else (value, value)
        choices = [x for x in (value - 1, value + 1, rng.choice(ints) if ints else value)
                   if low <= x <= high and x != value]
        return rng.choice(choices) if choices else value
    if isinstance(value, float):
        floats = pools[float]
        low, high = (min(floats), max(floats)) if floats else (value, value)
        choices = [x for x in (value * 1.5, value - 1.0, value + 1.0, rng.choice(floats) if floats else value)
                   if low <= x <= high and x != value]
        return rng.choice(choices) if choices else value
    if isinstance(value, str):
        return _perturb_word(value, rng, pools[str]) if value else value
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            return value
        op = rng.randrange(4)
        if op == 0 and len(items) > 1:
            items.pop(rng.randrange(len(items)))
        elif op == 1 and len(items) > 1:
            rng.shuffle(items)
        elif op == 2:
            items.insert(rng.randrange(len(items) + 1), rng.choice(items))
        else:
            k = rng.randrange(len(items))
            items[k] = _perturb_value(items[k], rng, pools)
        return type(value)(items) if isinstance(value, tuple) and type(value) is tuple else items
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        return {**value, key: _perturb_value(value[key], rng, pools)}
    return value


def _python_probe(problem: Problem, *, count: int, seed: str) -> CallProbe | None:
    sites = _python_sites(problem)
    if not sites:
        return None
    rng = random.Random(seed)
    everything = [v for _, args, kwargs in sites for v in (*args, *kwargs.values())]
    pools = {kind: _leaves(everything, kind) for kind in (int, float, str)}
    calls: dict[str, tuple[str, tuple, dict]] = {}
    for site in sites[:8]:  # the tests' own inputs: an assert may check less than the call shows
        calls.setdefault(repr(site), site)
    attempts = 0
    while len(calls) < count + min(len(sites), 8) and attempts < count * 20:
        attempts += 1
        name, args, kwargs = sites[attempts % len(sites)]
        args, kwargs = list(args), dict(kwargs)
        slots = [("a", k) for k in range(len(args))] + [("k", k) for k in kwargs]
        if not slots:
            continue
        where, k = rng.choice(slots)
        if where == "a":
            args[k] = _perturb_value(args[k], rng, pools)
        else:
            kwargs[k] = _perturb_value(kwargs[k], rng, pools)
        site = (name, tuple(args), kwargs)
        try:
            if ast.literal_eval(repr(site)) != site:
                continue
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        calls.setdefault(repr(site), site)
    chosen = list(calls.values())
    listing = "_HA_CALLS = [\n" + "".join(f"    {site!r},\n" for site in chosen) + "]\n"
    shown = [f"{n}({', '.join([*map(repr, a), *(f'{k}={v!r}' for k, v in kw.items())])})"
             for n, a, kw in chosen]
    return CallProbe(calls=shown, footer=listing + _PY_FOOTER)


# --- function problems: C, C++, Rust --------------------------------------------------------------

_C_SHOW = r'''
static void ha_ll(long long x) { printf("%lld", x); }
static void ha_ull(unsigned long long x) { printf("%llu", x); }
static void ha_ld(long double x) { printf("%.6Lg", x); }
static void ha_s(const char *x) { if (x) printf("\"%s\"", x); else printf("NULL"); }
static void ha_p(const void *x) { (void)x; printf("?"); }
#define HA_SHOW(x) _Generic((x), _Bool: ha_ll, char: ha_ll, signed char: ha_ll, short: ha_ll, \
    int: ha_ll, long: ha_ll, long long: ha_ll, unsigned char: ha_ull, unsigned short: ha_ull, \
    unsigned: ha_ull, unsigned long: ha_ull, unsigned long long: ha_ull, float: ha_ld, \
    double: ha_ld, long double: ha_ld, char *: ha_s, const char *: ha_s, default: ha_p)(x)
'''

_CPP_SHOW = r'''
template <class T, class = void> struct ha_iterable : std::false_type {};
template <class T> struct ha_iterable<T, std::void_t<decltype(std::begin(std::declval<const T&>())),
    decltype(std::end(std::declval<const T&>()))>> : std::true_type {};
template <class T, class = void> struct ha_streamable : std::false_type {};
template <class T> struct ha_streamable<T, std::void_t<decltype(std::declval<std::ostream&>()
    << std::declval<const T&>())>> : std::true_type {};
template <class T> void ha_show(std::ostream& o, const T& x);
template <class A, class B> void ha_show(std::ostream& o, const std::pair<A, B>& p) {
    o << '('; ha_show(o, p.first); o << ", "; ha_show(o, p.second); o << ')';
}
template <class T> void ha_show(std::ostream& o, const T& x) {
    if constexpr (std::is_same_v<T, std::string>) o << '"' << x << '"';
    else if constexpr (std::is_same_v<T, bool>) o << (x ? "true" : "false");
    else if constexpr (std::is_same_v<T, char>) o << '\'' << x << '\'';
    else if constexpr (std::is_floating_point_v<T>) { o.precision(6); o << x; }
    else if constexpr (std::is_arithmetic_v<T>) o << +x;
    else if constexpr (std::is_convertible_v<T, const char*>) o << '"' << static_cast<const char*>(x) << '"';
    else if constexpr (ha_iterable<T>::value) {
        o << '['; bool first = true;
        for (const auto& e : x) { if (!first) o << ", "; first = false; ha_show(o, e); }
        o << ']';
    }
    else if constexpr (ha_streamable<T>::value) o << x;
    else o << '?';
}
template <class F> void ha_call(F fn) {
    try {
        if constexpr (std::is_void_v<decltype(fn())>) { fn(); std::cout << "void"; }
        else { auto r = fn(); ha_show(std::cout, r); }
    } catch (...) { std::cout << "threw"; }
}
'''

_NATIVE_HEADERS = {
    "c": "#include <stdio.h>\n#include <stdlib.h>\n",
    "cpp": ("#include <cstdio>\n#include <cstdlib>\n#include <iostream>\n#include <iterator>\n"
            "#include <string>\n#include <type_traits>\n#include <utility>\n"),
}


def _native_sites(problem: Problem) -> list[tuple[str, list[Token]]]:
    """(function name, the argument tokens) of each call the test code makes to the reference."""
    language = problem.language
    names = set(defined_functions(problem.reference, language)) - {"main"}
    tokens = tokenize(problem.test_code, language=language)
    sig = significant(tokens)
    sites = []
    for s, k in enumerate(sig):
        t = tokens[k]
        if t.kind != "ident" or t.text not in names or s + 1 >= len(sig) or tokens[sig[s + 1]].text != "(":
            continue
        if s and tokens[sig[s - 1]].text in ("fn", ".", "->", "::"):
            continue
        close = matching(tokens, sig[s + 1])
        if close < 0:
            continue
        inner = tokens[sig[s + 1] + 1:close]
        if any(x.kind == "ident" and x.text in names for x in inner):
            continue  # nested calls: keep the probe to one call of the solution per line
        sites.append((t.text, inner))
    return sites


def _brace_sizes(inner: list[Token]) -> list[int]:
    """Element counts of the brace/bracket lists among a call's arguments."""
    sizes = []
    for k, t in enumerate(inner):
        if t.text in ("{", "["):
            close = matching(inner, k)
            if close < 0:
                continue
            depth, items, empty = 0, 1, True
            for x in inner[k + 1:close]:
                if x.text in ("(", "[", "{"):
                    depth += 1
                elif x.text in (")", "]", "}"):
                    depth -= 1
                elif x.text == "," and depth == 0:
                    items += 1
                if x.code:
                    empty = False
            sizes.append(0 if empty else items)
    return sizes


def _unary_minus(inner: list[Token], k: int) -> bool:
    """inner[k] (a number) is negated by the `-` before it, not subtracted from something."""
    code = [j for j in range(k) if inner[j].code]
    if not code or inner[code[-1]].text != "-" or code[-1] != k - 1:
        return False
    return len(code) == 1 or inner[code[-2]].text in ("(", ",", "{", "[", "=")


def _signed(inner: list[Token], k: int) -> int:
    v = int_value(inner[k].text)
    assert v is not None
    return -v if _unary_minus(inner, k) else v


def _perturb_native(inner: list[Token], rng: random.Random, *, low: int, high: int,
                    chars: list[str], words: list[str]) -> str | None:
    slots = [k for k, t in enumerate(inner)
             if (t.kind == "number" and int_value(t.text) is not None)
             or (t.kind == "string" and t.text.startswith('"') and "\\" not in t.text)
             or (t.kind == "char" and "\\" not in t.text)]
    if not slots:
        return None
    sizes = set(_brace_sizes(inner))
    k = rng.choice(slots)
    t = inner[k]
    if t.kind == "number":
        value = _signed(inner, k)
        choices = [x for x in (value - 1, value + 1, rng.randint(low, high)) if low <= x <= high and x != value]
        if value in sizes:  # may be an array's length: never past its end
            choices = [x for x in choices if 0 <= x < value]
        if not choices:
            return None
        new = rng.choice(choices)
        replace = {k: f"{new}{int_suffix(t.text)}"}
        if _unary_minus(inner, k):
            replace[k - 1] = ""
        elif new < 0:
            replace[k] = f"({new}{int_suffix(t.text)})"
    elif t.kind == "string":
        body = t.text[1:-1]
        new_body = _perturb_word(body, rng, words) if body else body
        if new_body == body or "\\" in new_body or '"' in new_body:
            return None
        replace = {k: '"' + new_body + '"'}
    else:
        others = [c for c in chars if c != t.text]
        if not others:
            return None
        replace = {k: rng.choice(others)}
    return "".join(replace.get(j, x.text) for j, x in enumerate(inner))


def _native_probe(problem: Problem, *, count: int, seed: str) -> CallProbe | None:
    language = problem.language
    sites = _native_sites(problem)
    if not sites:
        return None
    rng = random.Random(seed)
    ints, chars, words = [], [], []
    for _, inner in sites:
        for k, t in enumerate(inner):
            if t.kind == "number" and int_value(t.text) is not None:
                ints.append(_signed(inner, k))
            elif t.kind == "char" and "\\" not in t.text:
                chars.append(t.text)
            elif t.kind == "string" and t.text.startswith('"'):
                words.append(t.text[1:-1])
    low, high = (min(ints), max(ints)) if ints else (0, 0)
    calls: dict[str, None] = {}
    for name, inner in sites[:8]:
        calls.setdefault(f"{name}({''.join(x.text for x in inner)})", None)
    attempts = 0
    while len(calls) < count + min(len(sites), 8) and attempts < count * 20:
        attempts += 1
        name, inner = sites[attempts % len(sites)]
        args = _perturb_native(inner, rng, low=low, high=high, chars=chars, words=words)
        if args is not None:
            calls.setdefault(f"{name}({args})", None)
    chosen = list(calls)
    void = _void_functions(problem.reference, language)
    return CallProbe(calls=chosen, footer=_native_footer(chosen, language, void))


def _void_functions(reference: str, language: str) -> set[str]:
    if language != "c":
        return set()
    tokens = tokenize(reference, language=language)
    sig = significant(tokens)
    out = set()
    from halo_forge.data.mutants import native_functions

    for name, _, _ in native_functions(tokens, language):
        at = next((s for s, k in enumerate(sig) if tokens[k].text == name), None)
        if at is None:
            continue
        words = []
        for back in range(at - 1, -1, -1):
            t = tokens[sig[back]]
            if t.text in (";", "}", "{"):
                break
            words.append(t.text)
        if "void" in words and "*" not in words:
            out.add(name)
    return out


def _native_footer(calls: list[str], language: str, void: set[str]) -> str:
    lines: list[str] = []
    if language == "c":
        lines.append(_C_SHOW)
        lines.append("int main(int argc, char **argv) {\n    int ha_start = argc > 1 ? atoi(argv[1]) : 0;\n"
                     "    switch (ha_start) {")
        for i, call in enumerate(calls):
            name = call[:call.index("(")]
            show = f"{call}; printf(\"void\");" if name in void else f"HA_SHOW({call});"
            lines.append(f"    case {i}: printf(\"{i}\\t\"); {show} printf(\"\\n\"); fflush(stdout); /* fall through */")
        lines.append("    default: break;\n    }\n    return 0;\n}\n")
    elif language == "cpp":
        lines.append(_CPP_SHOW)
        lines.append("int main(int argc, char **argv) {\n    int ha_start = argc > 1 ? std::atoi(argv[1]) : 0;\n"
                     "    switch (ha_start) {")
        for i, call in enumerate(calls):
            lines.append(f"    case {i}: std::cout << \"{i}\\t\"; ha_call([&]() {{ return {call}; }}); "
                         "std::cout << std::endl; [[fallthrough]];")
        lines.append("    default: break;\n    }\n    return 0;\n}\n")
    else:
        lines.append("fn main() {\n    let ha_start: usize = std::env::args().nth(1)"
                     ".and_then(|s| s.parse().ok()).unwrap_or(0);\n"
                     "    std::panic::set_hook(Box::new(|_| {}));")
        for i, call in enumerate(calls):
            lines.append(
                f"    if ha_start <= {i} {{ let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe("
                f"|| format!(\"{{:?}}\", {call}))); println!(\"{i}\\t{{}}\", "
                "r.unwrap_or_else(|_| \"panicked\".to_string())); }")
        lines.append("}\n")
    return "\n".join(lines)


def call_probe(problem: Problem, *, count: int, seed: str) -> CallProbe | None:
    """The calls to compare a function problem's solutions on, or None when the test code
    makes no call with literal arguments the audit can read."""
    maker: Callable[..., CallProbe | None] = _python_probe if problem.language == "python" else _native_probe
    return maker(problem, count=count, seed=seed)
