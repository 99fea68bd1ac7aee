"""`data prepare` keeps problems that ship their own checker or interactor, and counts them
(its report, and `--list` after a load)."""

from __future__ import annotations

import json
from pathlib import Path

from halo_forge.cli import main
from halo_forge.data import registry
from halo_forge.data.loaders import codeforces_problem

BASE = {"title": "T", "description": "d", "input_format": "i", "output_format": "o",
        "examples": [{"input": "1\n", "output": "1\n"}], "official_tests": [{"input": "3\n", "output": "1 2 3\n"}],
        "input_mode": "stdio", "executable": True, "rating": 800}
ROWS = [
    {**BASE, "id": "1/A"},
    {**BASE, "id": "1/B", "generated_checker": "import sys\nprint(1)\n"},
    {**BASE, "id": "1/C", "interaction_format": "guess it"},  # interactive, nothing to talk to
    {**BASE, "id": "1/D", "interaction_format": "guess it", "interactor": "int main(){return 0;}"},
    {**BASE, "id": "1/E", "checker": {"source": "int main(){}", "headers": {"testlib.h": "// x"}}},
]


def write_rows(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_codeforces_rows_keep_their_judges():
    got = {r["id"]: codeforces_problem(r, "cpp") for r in ROWS}
    assert got["1/A"].checker is None and got["1/A"].interactor is None
    assert (got["1/B"].checker.language, got["1/B"].checker.style) == ("python", "open-r1")
    assert got["1/C"] is None
    d = got["1/D"]
    assert d.interactor.language == "cpp" and d.interactor.style == "testlib" and d.checker is None
    assert "## Interaction" in d.prompt and "flush" in d.prompt and "## Example" not in d.prompt
    assert got["1/E"].checker.headers == {"testlib.h": "// x"}
    assert "Any correct answer is accepted" in got["1/B"].prompt


def test_prepare_keeps_and_counts_them_and_list_shows_the_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["data", "prepare", "--list"]) == 0
    assert "last load" not in capsys.readouterr().out  # never loaded here: nothing to count
    prompts = tmp_path / "p.jsonl"
    assert main(["data", "prepare", "--dataset", "codeforces_cpp", "--from", str(write_rows(tmp_path / "cf.jsonl")),
                 "--split", "all", "--prompts", str(prompts)]) == 0
    assert "judged by their own program: 2 with a checker, 1 interactive" in capsys.readouterr().err
    rows = {r["id"]: r for r in map(json.loads, prompts.read_text().splitlines())}
    assert set(rows) == {"codeforces/1/A", "codeforces/1/B", "codeforces/1/D", "codeforces/1/E"}
    # The prompts file carries the judges, and reads back as the same problems.
    back = {p.id: p for p in registry.load_problems("local", from_paths=[prompts])}
    assert back["codeforces/1/D"].interactor.source == "int main(){return 0;}"
    assert back["codeforces/1/B"].checker.style == "open-r1"
    assert main(["data", "prepare", "--list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(last load: 2/4 checker, 1 interactive)" in out


def test_references_are_verified_by_the_problems_own_judge():
    from halo_forge.data.check import failing_references
    from halo_forge.records import IOTest, JudgeProgram, Problem

    checker = JudgeProgram(language="python", style="open-r1", source=(
        "import sys\nn = int(open(sys.argv[1]).read())\n"
        "print(1 if sorted(open(sys.argv[3]).read().split(), key=int) == [str(i) for i in range(1, n + 1)] else 0)\n"))
    tests = [IOTest(stdin="3\n", stdout="1 2 3\n")]
    right = Problem(id="right", language="python", prompt="p", io_tests=tests, checker=checker,
                    reference="print(3, 2, 1)\n")
    wrong = Problem(id="wrong", language="python", prompt="p", io_tests=tests, checker=checker,
                    reference="print(3, 3, 1)\n")
    # Without the checker, "3 2 1" would fail the exact compare against "1 2 3".
    assert failing_references([right, wrong]) == {"wrong": "wrong_answer"}
