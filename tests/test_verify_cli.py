"""`halo-forge verify` and `halo-forge bench verify` through halo_forge.cli.main."""

from __future__ import annotations

import json

import msgspec

from halo_forge.cli import main
from halo_forge.records import Verdict
from tests.util import write_jsonl


def test_verify_writes_one_verdict_per_line(tmp_path, capsys):
    rows = [
        {"id": "ok", "language": "python", "code": "print(int(input()) * 2)\n",
         "io_tests": [{"stdin": "2\n", "stdout": "4\n"}], "prompt": "double it"},
        {"id": "bad", "language": "python", "code": "print(0)\n", "io_tests": [{"stdin": "2\n", "stdout": "4\n"}]},
        {"id": "none", "completion": "no idea, sorry"},
        {"id": "fenced", "completion": "```python\nprint(4)\n```", "io_tests": [{"stdin": "", "stdout": "4"}]},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "sub" / "verdicts.jsonl"
    assert main(["verify", str(src), "--out", str(out), "--concurrency", "2", "--no-pch"]) == 0
    verdicts = {v.id: v for v in map(msgspec.json.Decoder(Verdict).decode, out.read_bytes().splitlines())}
    assert set(verdicts) == {"ok", "bad", "none", "fenced"}
    assert verdicts["ok"].status == "passed" and verdicts["ok"].reward == 1.0
    assert verdicts["bad"].status == "wrong_answer"
    assert verdicts["none"].status == "no_code"
    assert verdicts["fenced"].status == "passed"
    summary = capsys.readouterr().out
    assert "verified 4 samples" in summary and "mean reward" in summary and "cache hit rate" in summary
    assert "passed 2" in summary and "no_code 1" in summary
    assert not list(tmp_path.glob("sub/.*partial"))


def test_disk_cache_serves_a_second_run(tmp_path, capsys):
    rows = [{"id": f"s{i}", "language": "python", "code": "print(int(input()) * 2)\n",
             "io_tests": [{"stdin": "2\n", "stdout": "4\n"}]} for i in range(2)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    args = ["verify", str(src), "--out", str(tmp_path / "v.jsonl"), "--cache", str(tmp_path / "c.sqlite")]
    assert main(args) == 0
    assert "cache hit rate 50.0% (1/2)" in capsys.readouterr().out  # the repeat within the run
    assert main(args) == 0
    assert "cache hit rate 100.0% (2/2)" in capsys.readouterr().out  # everything, from the file
    verdicts = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert sorted(v["id"] for v in verdicts) == ["s0", "s1"] and all(v["cached"] for v in verdicts)


def test_exit_zero_when_everything_fails(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "language": "c", "code": "int main(void){ return y; }"}])
    out = tmp_path / "v.jsonl"
    assert main(["verify", str(src), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["status"] == "compile_error"


def test_bad_line_is_named(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "code": "print(1)", "language": "python"}, "{not json"])
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("halo-forge: error:") and "in.jsonl:2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v.jsonl").exists()


def test_schema_errors_are_named(tmp_path, capsys):
    for row, needle in (
        ({"id": "a"}, "needs `code` or `completion`"),
        ({"id": "a", "code": "x", "language": "cobol"}, "unknown language"),
        ({"id": 3, "code": "x"}, "$.id"),
        ({"id": "a", "code": "x", "io_tests": [{"stdin": 1}]}, "io_tests"),
    ):
        src = write_jsonl(tmp_path / "in.jsonl", [row])
        assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl")]) == 2
        err = capsys.readouterr().err
        assert "in.jsonl:1" in err and needle in err, err


def test_language_the_verifier_does_not_run_is_named(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "code": "print(1)", "language": "python"},
                                         {"id": "b", "code": "fn main(){}", "language": "rust"}])
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl"), "--verifier", "python"]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:2" in err and "--verifier auto" in err


def test_missing_input_and_bad_flags(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "v.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "code": "print(1)", "language": "python"}])
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl"), "--concurrency", "0"]) == 2
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl"), "--verifier", "javac"]) == 2


def test_bench_group_is_extensible():
    import argparse

    from halo_forge.cli.parser import add_group

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    first = add_group(sub, "bench", help="benchmarks")
    first.add_parser("verify")
    again = add_group(sub, "bench", help="benchmarks")
    assert again is first
    again.add_parser("pipeline")
    assert set(first.choices) == {"verify", "pipeline"}


def test_bench_verify_on_a_small_corpus(tmp_path, capsys):
    rows = [{"id": f"p{i}", "language": "python", "code": f"print(int(input()) + {i})\n",
             "io_tests": [{"stdin": "1\n", "stdout": f"{1 + i}\n"}]} for i in range(3)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    report = tmp_path / "bench.json"
    assert main(["bench", "verify", "--corpus", str(corpus), "--repeat", "2", "--rounds", "1",
                 "--concurrency", "2", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "bare compiler loop" in text and "verifier (no cache, no PCH)" in text and "x2" in text
    runs = json.loads(report.read_text())
    assert [r["samples"] for r in runs] == [3, 3, 3, 6]
    assert all(r["passed"] == r["samples"] for r in runs)  # both loops judge the corpus alike
    assert runs[0]["ratio_vs_bare"] == 1.0 and all(r["samples_per_s"] > 0 for r in runs)
    assert "cache hit rate 50%" in runs[3]["note"]


def test_verify_input_from_records():
    from halo_forge.records import IOTest, Problem, Sample
    from halo_forge.verify.types import verify_input

    problem = Problem(id="p", language="cpp", prompt="add", io_tests=[IOTest(stdin="1 2", stdout="3")],
                      test_code="")
    got = verify_input(problem, Sample(id="p/c0/s1", problem_id="p", completion="```cpp\nint main(){}\n```"))
    assert (got.id, got.language, got.test_code) == ("p/c0/s1", "cpp", None)
    assert got.io_tests[0].stdin == "1 2" and got.completion.startswith("```cpp")


def test_bad_out_paths_fail_before_any_work(tmp_path, capsys, monkeypatch):
    from halo_forge.verify import runner

    def no_work(*args, **kwargs):
        raise AssertionError("verification started before the output path was checked")

    monkeypatch.setattr(runner.Verifier, "__init__", no_work)
    src = write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "code": "print(1)", "language": "python"}])
    original = src.read_bytes()
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    for out, needle in ((tmp_path / "folder", "is a folder"),
                        (src, "is the input"),
                        (tmp_path / "file" / "v.jsonl", "is a file"),
                        ("/proc/halo-forge/v.jsonl", "cannot create files"),
                        ("/dev/null", "not a regular file")):
        assert main(["verify", str(src), "--out", str(out)]) == 2, out
        err = capsys.readouterr().err
        assert err.startswith(f"halo-forge: error: verify --out {out}: ") and needle in err, err
        assert err.count("\n") == 1
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl"), "--cache", str(src)]) == 2
    assert "verify --cache" in capsys.readouterr().err
    assert src.read_bytes() == original and list((tmp_path / "folder").iterdir()) == []


def test_duplicate_ids_are_refused_with_both_lines(tmp_path, capsys):
    rows = [{"id": "a", "code": "print(1)", "language": "python"},
            {"id": "b", "code": "print(2)", "language": "python"},
            "",
            {"id": "a", "code": "print(3)", "language": "python"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["verify", str(src), "--out", str(tmp_path / "v.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:4: duplicate id 'a' (also on line 1)" in err and err.count("\n") == 1
    assert not (tmp_path / "v.jsonl").exists()
