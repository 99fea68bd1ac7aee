"""Code extraction from raw completions (issue 4, "Code extraction")."""

from __future__ import annotations

import pytest

from halo_forge.verify.extract import (
    extract_code,
    find_blocks,
    guess_language,
    strip_reasoning,
    why_no_code,
)

CPP = "#include <bits/stdc++.h>\nusing namespace std;\nint main() {\n    cout << 1 << endl;\n}\n"
RUST = 'fn main() {\n    let x = 2;\n    println!("{}", x);\n}\n'
PY = "def add(a, b):\n    return a + b\n"
C = '#include <stdio.h>\nint main(void) {\n    printf("hi\\n");\n    return 0;\n}\n'


@pytest.mark.parametrize(
    "tag, language",
    [("c", "c"), ("cpp", "cpp"), ("c++", "cpp"), ("cc", "cpp"), ("C++", "cpp"), ("rust", "rust"),
     ("rs", "rust"), ("python", "python"), ("py", "python"), ("python3", "python")],
)
def test_fence_tag_names_language_and_never_leaks(tag, language):
    code = {"c": C, "cpp": CPP, "rust": RUST, "python": PY}[language]
    got = extract_code(f"Here you go:\n```{tag}\n{code}```\nDone.")
    assert got is not None
    assert got.code == code
    assert got.language == language


def test_untagged_fence_with_requested_language():
    got = extract_code(f"```\n{PY}```", language="python")
    assert got.code == PY and got.language == "python" and got.source == "fenced"


def test_untagged_fence_language_guessed():
    assert extract_code(f"```\n{RUST}```").language == "rust"
    assert extract_code(f"```\n{CPP}```").language == "cpp"
    assert extract_code(f"```\n{C}```").language == "c"


def test_prefers_requested_language_then_longest():
    long_py = PY + "\n\ndef mul(a, b):\n    return a * b\n" * 5
    text = f"```python\n{long_py}```\nIn C++:\n```cpp\n{CPP}```\n```cpp\nint x;\n```"
    assert extract_code(text, language="cpp").code == CPP
    assert extract_code(text, language="python").code == long_py
    # No request: the longest block in a language we run.
    assert extract_code(text).code == long_py


def test_output_blocks_are_not_code():
    text = f"```text\n1 2 3\n```\n```cpp\n{CPP}```\n```bash\n./a.out < in.txt\n```"
    assert extract_code(text, language="cpp").code == CPP


def test_block_in_other_language_is_no_code():
    assert extract_code(f"```python\n{PY}```", language="rust") is None


@pytest.mark.parametrize("fenced", [True, False])
def test_no_code_in_the_wanted_language_names_the_one_found(fenced):
    text = f"```python\n{PY}```" if fenced else PY
    why = why_no_code(text, language="rust")
    assert "python" in why and "rust" in why
    # Prose alone, or no wanted language, keeps the plain message.
    assert why_no_code("I cannot solve this.", language="rust") == "no code found in the completion"
    assert "python" not in why_no_code("sorry", language=None)


def test_tilde_fences_and_longer_fences():
    assert extract_code(f"~~~rust\n{RUST}~~~").code == RUST
    inner = "```\nnot the end\n```\n"
    got = extract_code(f"````python\n{PY}s = '''\n{inner}'''\n````")
    assert "not the end" in got.code and got.code.startswith(PY)


def test_indented_fence_in_a_list_is_dedented():
    text = "1. Write it:\n   ```python\n   def f():\n       return 1\n   ```\n"
    assert extract_code(text).code == "def f():\n    return 1\n"


def test_unclosed_fence_runs_to_the_end():
    got = extract_code(f"```cpp\n{CPP}")
    assert got.code == CPP
    assert not find_blocks(f"```cpp\n{CPP}")[0].closed


def test_think_block_ignored():
    text = f"<think>maybe\n```python\nprint('wrong')\n```\n</think>\n```python\n{PY}```"
    assert extract_code(text).code == PY
    # a lone closing tag: the template opened <think> in the prompt
    assert extract_code(f"```python\nprint(0)\n```\n</think>\n```python\n{PY}```").code == PY
    # reasoning that never ended holds no answer
    assert extract_code(f"<think>let me try\n```python\n{PY}```") is None
    assert strip_reasoning("a<THINK>b</THINK>c") == "ac"


def test_unfenced_whole_completion_is_code():
    for code, lang in ((PY, "python"), (C, "c"), (CPP, "cpp"), (RUST, "rust")):
        got = extract_code(code)
        assert got is not None and got.source == "unfenced", lang
        assert got.language == lang and got.code == code


def test_unfenced_prose_is_no_code():
    assert extract_code("I am not sure how to solve this problem.") is None
    assert extract_code("The answer is 42.", language="python") is None
    assert extract_code("Hello", language="python") is None
    assert extract_code("First, read n. Then loop over the array and print the sum.", language="cpp") is None
    assert extract_code("") is None
    assert extract_code("```python\n```") is None  # an empty fence


def test_prose_around_unfenced_code_is_no_code():
    text = "Sure! Here is my solution which reads the input and prints it.\n" + C + \
           "This program works because printf prints the string to the output.\n" \
           "It handles every case correctly and quickly, as required by the task.\n"
    assert extract_code(text, language="c") is None


def test_c_is_fallback_for_cpp_but_not_the_reverse():
    assert extract_code(f"```c\n{C}```", language="cpp").code == C
    assert extract_code(f"```cpp\n{CPP}```", language="c") is None


def test_guess_language():
    assert guess_language(PY) == "python"
    assert guess_language(RUST) == "rust"
    assert guess_language(CPP) == "cpp"
    assert guess_language(C) == "c"
    assert guess_language("just words here") is None


def test_a_verdict_for_code_in_the_wrong_language_says_which_was_found_and_wanted():
    import msgspec

    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import verify_many
    from halo_forge.verify.types import VerifySample

    samples = [msgspec.convert({"id": i, "completion": text, "language": "rust"}, VerifySample)
               for i, text in (("py", f"```python\n{PY}```"), ("prose", "No idea."))]
    got = {v.id: v for v in verify_many(samples, config=VerifierConfig(pch=False))}
    assert got["py"].status == "no_code" and got["prose"].status == "no_code"
    assert "python" in got["py"].output and "rust" in got["py"].output
    assert got["prose"].output == "no code found in the completion"
