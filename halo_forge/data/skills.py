"""The `skills` dataset: small programs composed of skills, with new combinations held out.

Every problem is a triple (task, input format, language): read a list of integers in one of
FORMATS, compute one of TASKS over it, print the result, in C, C++, Rust or Python. Its
reference is literally three blocks: a read block that depends only on (format, language), a
compute block that depends only on (task, language), and the output line of the language, each
block under a comment that repeats the prompt's sentence asking for it (see COMMENT). So
a held-out triple is a program nobody showed the model, made of parts it has seen: the CPU
recipe's held-out pass@1 then measures whether training taught the composition, which a set
of unrelated problems (`builtin`) cannot show.

The split is the dataset's own (`official_split`), never a hash: HELD_OUT is one task per
(format, language), chosen so that each of the triple's three pairs (task, language),
(format, language), (task, format) still occurs in the training split. `data.test_fraction`
and `data.split_seed` do not move it (as for MBPP's official split).

Everything is generated here, deterministically: same code, same problems.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from halo_forge.errors import HaloError
from halo_forge.records import IOTest, Problem

LANGUAGES = ("c", "cpp", "rust", "python")
NAMES = {"c": "C", "cpp": "C++", "rust": "Rust", "python": "Python"}

# task -> (the prompt's words, its value over a list, compute block per language). Each
# compute block leaves the answer in `r`; the read blocks leave the list in `a` (C: a[0..n)).
TASKS: dict[str, tuple[str, Any, dict[str, str]]] = {
    "sum": ("sum of the integers", sum, {
        "c": "long long r = 0;\nfor (int i = 0; i < n; i++) r += a[i];",
        "cpp": "long long r = 0;\nfor (long long x : a) r += x;",
        "rust": "let r: i64 = a.iter().sum();",
        "python": "r = sum(a)",
    }),
    "max": ("largest integer", max, {
        "c": "long long r = a[0];\nfor (int i = 1; i < n; i++) if (a[i] > r) r = a[i];",
        "cpp": "long long r = a[0];\nfor (long long x : a) if (x > r) r = x;",
        "rust": "let r = *a.iter().max().unwrap();",
        "python": "r = max(a)",
    }),
    "min": ("smallest integer", min, {
        "c": "long long r = a[0];\nfor (int i = 1; i < n; i++) if (a[i] < r) r = a[i];",
        "cpp": "long long r = a[0];\nfor (long long x : a) if (x < r) r = x;",
        "rust": "let r = *a.iter().min().unwrap();",
        "python": "r = min(a)",
    }),
    "even": ("count of the even integers", lambda a: sum(x % 2 == 0 for x in a), {
        "c": "long long r = 0;\nfor (int i = 0; i < n; i++) if (a[i] % 2 == 0) r++;",
        "cpp": "long long r = 0;\nfor (long long x : a) if (x % 2 == 0) r++;",
        "rust": "let r = a.iter().filter(|&&x| x % 2 == 0).count();",
        "python": "r = sum(1 for x in a if x % 2 == 0)",
    }),
    "positive": ("number of the positive integers", lambda a: sum(x > 0 for x in a), {
        "c": "long long r = 0;\nfor (int i = 0; i < n; i++) if (a[i] > 0) r++;",
        "cpp": "long long r = 0;\nfor (long long x : a) if (x > 0) r++;",
        "rust": "let r = a.iter().filter(|&&x| x > 0).count();",
        "python": "r = sum(1 for x in a if x > 0)",
    }),
    "squares": ("total of the squares of the integers", lambda a: sum(x * x for x in a), {
        "c": "long long r = 0;\nfor (int i = 0; i < n; i++) r += a[i] * a[i];",
        "cpp": "long long r = 0;\nfor (long long x : a) r += x * x;",
        "rust": "let r: i64 = a.iter().map(|x| x * x).sum();",
        "python": "r = sum(x * x for x in a)",
    }),
}

# format -> (the prompt's words, how a list is written as stdin, read block per language).
FORMATS: dict[str, tuple[str, Any, dict[str, str]]] = {
    "count": ("n on the first line, then n integers on the second line",
              lambda a: f"{len(a)}\n{' '.join(map(str, a))}\n", {
        "c": "scanf(\"%d\", &n);\nfor (int i = 0; i < n; i++) scanf(\"%lld\", &a[i]);",
        "cpp": "int n;\nstd::cin >> n;\nstd::vector<long long> a(n);\nfor (auto &x : a) std::cin >> x;",
        "rust": "let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();\n"
                "let a = &v[1..];",
        "python": "a = [int(x) for x in sys.stdin.read().split()][1:]",
    }),
    "lines": ("integers, one per line, until the end of input",
              lambda a: "".join(f"{x}\n" for x in a), {
        "c": "while (scanf(\"%lld\", &a[n]) == 1) n++;",
        "cpp": "std::vector<long long> a;\nlong long v;\nwhile (std::cin >> v) a.push_back(v);",
        "rust": "let a: Vec<i64> = s.lines().map(|x| x.trim().parse().unwrap()).collect();",
        "python": "a = [int(x) for x in sys.stdin.read().split()]",
    }),
    "comma": ("one line of integers separated by commas",
              lambda a: ",".join(map(str, a)) + "\n", {
        "c": "do scanf(\"%lld\", &a[n++]); while (getchar() == ',');",
        "cpp": "std::vector<long long> a;\nlong long v;\nchar c;\n"
               "while (std::cin >> v) {\n    a.push_back(v);\n    std::cin >> c;\n}",
        "rust": "let a: Vec<i64> = s.trim().split(',').map(|x| x.parse().unwrap()).collect();",
        "python": "a = [int(x) for x in sys.stdin.read().split(\",\")]",
    }),
}

# The frame of a program per language: {read} and {compute} are indented blocks.
FRAMES = {
    "c": ("#include <stdio.h>\n\nint main(void) {\n    long long a[1000];\n    int n = 0;\n"
          "{read}\n{compute}\n    printf(\"%lld\\n\", r);\n    return 0;\n}\n"),
    "cpp": ("#include <iostream>\n#include <vector>\n\nint main() {\n{read}\n{compute}\n"
            "    std::cout << r << \"\\n\";\n    return 0;\n}\n"),
    "rust": ("use std::io::Read;\n\nfn main() {\n    let mut s = String::new();\n"
             "    std::io::stdin().read_to_string(&mut s).unwrap();\n{read}\n{compute}\n"
             "    println!(\"{}\", r);\n}\n"),
    "python": "import sys\n\n{read}\n{compute}\nprint(r)\n",
}
INDENT = {"c": "    ", "cpp": "    ", "rust": "    ", "python": ""}

# The edge cases every problem is tested on (rendered in its format), beside one list of its
# own: single elements (a maximum started from a[1] reads past the end), only negatives (one
# started at 0 fails), zeros and ones (`> 1` for "positive"), values whose squares and sums
# need 64 bits. `halo-forge data audit skills` found the ones added after the first version.
EDGE_LISTS = ([7], [-6], [-3, -8, -1], [0, 5, 0, -4, 1, 2], [1000000, -999999, 123456, 42, 77])


def problem_id(task: str, fmt: str, language: str) -> str:
    return f"skills/{task}-{fmt}-{language}"


def _held_out() -> frozenset[tuple[str, str, str]]:
    # One task per (format, language), walking the tasks so that a (task, language) pair is
    # held out for one of its three formats at most and a (task, format) pair for two of its
    # four languages: every pair of a held-out triple stays in training.
    tasks, formats = list(TASKS), list(FORMATS)
    return frozenset(
        (tasks[(fi + len(formats) * li) % len(tasks)], fmt, lang)
        for li, lang in enumerate(LANGUAGES) for fi, fmt in enumerate(formats)
    )


HELD_OUT = _held_out()


def triple(problem: Problem) -> tuple[str, str, str]:
    """(task, format, language) of a skills problem, read from its id."""
    parts = tuple(problem.id.removeprefix("skills/").split("-"))
    if (len(parts) != 3 or parts[0] not in TASKS or parts[1] not in FORMATS
            or parts[2] not in LANGUAGES):
        raise HaloError(f"skills: {problem.id!r} is not a skills id (skills/TASK-FORMAT-LANGUAGE "
                        f"with TASK in {', '.join(TASKS)}, FORMAT in {', '.join(FORMATS)}); "
                        "for other problems use --dataset local")
    return parts  # type: ignore[return-value]


def official_split(problem: Problem) -> str:
    return "test" if triple(problem) in HELD_OUT else "train"


def prompt(task: str, fmt: str, language: str) -> str:
    # In the order the program needs them, counted back from the answer: the language (the
    # code fence, the answer's first token) last, nearest to where the answer starts.
    return f"{read_sentence(fmt)} {print_sentence(task)} Write the program in {NAMES[language]}."


# Each block is preceded by a comment that repeats the prompt's own sentence for it. A tiny
# model writes a block from what is just before it, not from a prompt a hundred tokens back:
# without the comments, samples for a held-out triple carried the compute block that training
# paired with the read block just written. With them, writing a program is copying a sentence
# of the prompt (a copy any pair of layers learns) and then the block that training shows after
# that sentence in that language, so a held-out triple needs no association training lacks.
COMMENT = {"c": "// ", "cpp": "// ", "rust": "// ", "python": "# "}


def read_sentence(fmt: str) -> str:
    return f"Read {FORMATS[fmt][0]}."


def print_sentence(task: str) -> str:
    return f"Print {TASKS[task][0]}."


def commented_block(kind: str, name: str, language: str) -> str:
    """A read block (kind "read", name a format) or a compute block ("compute", a task) of
    `language`, below its comment and indented as in a reference."""
    if kind == "read":
        sentence, code = read_sentence(name), FORMATS[name][2][language]
    else:
        sentence, code = print_sentence(name), TASKS[name][2][language]
    pad = INDENT[language]
    lines = [COMMENT[language] + sentence, *code.split("\n")]
    return "\n".join(pad + line if line else line for line in lines)


def reference(task: str, fmt: str, language: str) -> str:
    return FRAMES[language].replace("{read}", commented_block("read", fmt, language)).replace(
        "{compute}", commented_block("compute", task, language))


def input_lists(pid: str) -> list[list[int]]:
    """The lists a problem's tests give its program: one of its own, then EDGE_LISTS."""
    rng = random.Random(pid)  # a str seed is stable across runs and processes
    return [[rng.randint(-50, 50) for _ in range(rng.randint(5, 9))], *map(list, EDGE_LISTS)]


def _tests(task: str, fmt: str, pid: str) -> list[IOTest]:
    value, render = TASKS[task][1], FORMATS[fmt][1]
    return [IOTest(stdin=render(a), stdout=f"{value(a)}\n") for a in input_lists(pid)]


def problems() -> Iterator[Problem]:
    """Every (task, format, language) problem, in a fixed order."""
    for language in LANGUAGES:
        for fmt in FORMATS:
            for task in TASKS:
                pid = problem_id(task, fmt, language)
                yield Problem(id=pid, language=language, prompt=prompt(task, fmt, language),
                              io_tests=_tests(task, fmt, pid),
                              reference=reference(task, fmt, language), source="skills",
                              difficulty=1.0, title=f"{task}, {fmt} input")


def rows() -> Iterator[Mapping[str, Any]]:
    return (msgspec.to_builtins(p) for p in problems())


def problem_from_row(row: Mapping[str, Any]) -> Problem:
    """A row of `rows()` (or of a file written from them, with --from) as a Problem."""
    try:
        problem = msgspec.convert(row, Problem)
    except msgspec.ValidationError as exc:
        raise HaloError(f"skills: invalid problem {row.get('id')!r}: {exc}") from None
    triple(problem)  # the split reads the triple from the id: refuse ids it cannot read
    return problem
