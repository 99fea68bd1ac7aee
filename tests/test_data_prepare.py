"""`halo-forge data prepare`: loaders on fixtures in the real schemas, outputs, split, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from halo_forge.cli import main
from halo_forge.data import chat, registry, split
from halo_forge.records import Example, Problem
from halo_forge.shards import read_shards
from tests.util import subprocess_env

FIX = Path(__file__).parent / "fixtures" / "data"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_list_shows_every_dataset_with_language_tests_and_origin(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # wide enough for the table
    assert main(["data", "prepare", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("builtin", "mbpp", "humaneval", "codeforces_cpp", "codeforces_rust",
                 "codeforces_python", "local"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        spec = registry.DATASETS[name]
        assert spec.language in line and spec.origin in line and spec.tests in line


@pytest.mark.parametrize("columns", [60, 100])
def test_list_fits_the_terminal_width(columns, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["data", "prepare", "--list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= columns
    for name, spec in registry.DATASETS.items():  # nothing is cut off, only wrapped
        assert name in out and spec.language in " ".join(out.split())


def test_language_chooses_among_the_builtin_problems(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["data", "prepare", "--dataset", "builtin", "--split", "all",
                 "--language", "rust", "--prompts", str(out)]) == 0
    langs = [r["language"] for r in rows(out)]
    assert langs and set(langs) == {"rust"}
    capsys.readouterr()
    assert main(["data", "prepare", "--dataset", "builtin", "--split", "all",
                 "--language", "cobol", "--prompts", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--language cobol" in err and "python" in err and err.count("\n") == 1


def test_split_has_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--split {train,test,all} which problems" in help_text


def test_mbpp_full_schema_to_sft_prompts_and_shards(tmp_path: Path) -> None:
    sft, prompts, shards = tmp_path / "sft.jsonl", tmp_path / "p.jsonl", tmp_path / "shards"
    assert main(["data", "prepare", "--dataset", "mbpp", "--from", str(FIX / "mbpp_full.jsonl"),
                 "--split", "all", "--output", str(sft), "--prompts", str(prompts),
                 "--shards", str(shards)]) == 0
    texts = [r["text"] for r in rows(sft)]
    prompt_rows = rows(prompts)
    assert len(texts) == len(prompt_rows) == 6
    text = next(t for t in texts if "double every number" in t)
    # ChatML: system, user (statement + one visible test), assistant (the fenced reference).
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWrite a function to double every number" in text
    assert "assert double_all([1, 2]) == [2, 4]" in text
    assert "assert double_all([]) == []" not in text  # the other tests stay hidden
    assert text.endswith("<|im_start|>assistant\n```python\ndef double_all(xs):\n"
                         "    return [2 * x for x in xs]\n```<|im_end|>\n")
    row = next(r for r in prompt_rows if r["id"] == "mbpp/700")
    assert row["language"] == "python" and "io_tests" not in row
    assert row["test_code"].startswith("SEP = '-'\n")  # test_setup_code runs before the asserts
    problems = list(read_shards(shards / "problems-00000.shard", Problem))
    examples = list(read_shards(shards / "examples-00000.shard", Example))
    assert {p.id for p in problems} == {r["id"] for r in prompt_rows}
    assert [chat.apply_chat_template(e.messages) for e in examples] == texts


def test_mbpp_uses_the_official_split(tmp_path: Path) -> None:
    ids = {}
    for which in ("train", "test"):
        out = tmp_path / f"{which}.jsonl"
        assert main(["data", "prepare", "--dataset", "mbpp", "--from",
                     str(FIX / "mbpp_full.jsonl"), "--split", which, "--prompts", str(out)]) == 0
        ids[which] = {r["id"] for r in rows(out)}
    assert ids["test"] == {"mbpp/42", "mbpp/300"}  # task ids 11-510
    assert ids["train"] == {"mbpp/3", "mbpp/555", "mbpp/700", "mbpp/901"}


def test_mbpp_sanitized_parquet(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["data", "prepare", "--dataset", "mbpp", "--from",
                 str(FIX / "mbpp_sanitized.parquet"), "--split", "all", "--prompts", str(out)]) == 0
    row = next(r for r in rows(out) if r["id"] == "mbpp/12")
    assert row["test_code"].startswith("import math\n") and "Write a function that returns the " \
        "square root" in row["prompt"]


def test_humaneval_from_the_package_works_offline(tmp_path: Path) -> None:
    out, sft = tmp_path / "p.jsonl", tmp_path / "sft.jsonl"
    assert main(["data", "prepare", "--dataset", "humaneval", "--split", "all",
                 "--prompts", str(out), "--output", str(sft)]) == 0
    prompt_rows = rows(out)
    assert len(prompt_rows) == 164 == len(rows(sft))
    first = next(r for r in prompt_rows if r["id"] == "HumanEval/0")
    assert "def has_close_elements" in first["prompt"]
    assert first["test_code"].rstrip().endswith("check(has_close_elements)")


def test_codeforces_merges_tests_and_references_and_skips_uncheckable(tmp_path: Path) -> None:
    prompts, sft = tmp_path / "p.jsonl", tmp_path / "sft.jsonl"
    assert main(["data", "prepare", "--dataset", "codeforces_cpp",
                 "--from", str(FIX / "codeforces_problems.jsonl"),
                 "--from", str(FIX / "codeforces_cots_solutions.parquet"),
                 "--split", "all", "--prompts", str(prompts), "--output", str(sft)]) == 0
    by_id = {r["id"]: r for r in rows(prompts)}
    # C is interactive and ships no interactor; D keeps its generated checker (#15).
    assert set(by_id) == {"codeforces/9001/A", "codeforces/9001/B", "codeforces/9001/D", "codeforces/9001/E"}
    assert by_id["codeforces/9001/D"]["checker"]["style"] == "open-r1"
    assert "checker" not in by_id["codeforces/9001/A"]
    a = by_id["codeforces/9001/A"]
    assert a["language"] == "cpp" and len(a["io_tests"]) == 3  # official tests, not the example
    assert by_id["codeforces/9001/E"]["io_tests"] == [{"stdin": "5\n", "stdout": "5 5\n"}]
    assert a["difficulty"] == 800 and a["title"]  # a benchmark from this file reports by rating
    from halo_forge.data import registry
    reread = {p.id: p for p in registry.load_problems("local", from_paths=[prompts])}
    assert reread["codeforces/9001/A"].difficulty == 800
    assert reread["codeforces/9001/A"].source == "codeforces_cpp"
    assert "# Apples" in a["prompt"] and "## Input" in a["prompt"] and "C++ program" in a["prompt"]
    texts = [r["text"] for r in rows(sft)]
    assert len(texts) == 2  # E has no solution anywhere
    apples = next(t for t in texts if "# Apples" in t)
    # The final program, not the draft inside <think>.
    assert "std::cin >> a >> b;\n    std::cout << a + b" in apples
    assert "int main(){}" not in apples and "<think>" not in apples.split("assistant")[-1]


def test_codeforces_rust_without_solutions_still_gives_prompts(tmp_path: Path, capsys) -> None:
    prompts, sft = tmp_path / "p.jsonl", tmp_path / "sft.jsonl"
    assert main(["data", "prepare", "--dataset", "codeforces_rust",
                 "--from", str(FIX / "codeforces_problems.jsonl"), "--split", "all",
                 "--prompts", str(prompts), "--output", str(sft)]) == 0
    assert all("Rust program" in r["prompt"] for r in rows(prompts))
    assert rows(sft) == []
    assert "4 problems without a reference left out" in capsys.readouterr().err


def test_local_with_field_mapping(tmp_path: Path) -> None:
    prompts, sft = tmp_path / "p.jsonl", tmp_path / "sft.jsonl"
    assert main(["data", "prepare", "--dataset", "local", "--from", str(FIX / "local_custom.jsonl"),
                 "--field", "id=qid", "--field", "prompt=question", "--field", "reference=answer",
                 "--field", "language=lang", "--field", "io_tests=tests", "--split", "all",
                 "--prompts", str(prompts), "--output", str(sft)]) == 0
    by_id = {r["id"]: r for r in rows(prompts)}
    assert by_id["q2"]["language"] == "python"  # "py" normalised
    assert by_id["q2"]["io_tests"][1] == {"stdin": "41\n", "stdout": "42\n"}
    q1 = next(r["text"] for r in rows(sft) if "number 42" in r["text"])
    # A fenced answer column is unwrapped, then fenced once in the answer.
    assert q1.count("```python") == 1 and "print(42)" in q1


def test_local_reads_a_saved_dataset_folder(tmp_path: Path) -> None:
    import datasets

    src = [{"prompt": "Print 1.", "reference": "print(1)", "io_tests": [{"stdin": "", "stdout": "1"}]}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(src)}).save_to_disk(tmp_path / "ds")
    out = tmp_path / "p.jsonl"
    assert main(["data", "prepare", "--dataset", "local", "--from", str(tmp_path / "ds"),
                 "--language", "python", "--split", "all", "--prompts", str(out)]) == 0
    assert rows(out)[0]["io_tests"] == [{"stdin": "", "stdout": "1"}]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--dataset", "nope", "--prompts", "x"], "unknown dataset 'nope'"),
        (["--dataset", "mbpp"], "nothing to write"),
        (["--dataset", "local", "--prompts", "x"], "needs --from"),
        (["--dataset", "local", "--from", str(FIX / "local_custom.jsonl"), "--prompts", "x"],
         "no language"),
        (["--dataset", "local", "--from", str(FIX / "local_custom.jsonl"), "--field", "oops",
          "--prompts", "x"], "expected FIELD=COLUMN"),
        (["--dataset", "mbpp", "--from", str(FIX / "local_custom.jsonl"), "--prompts", "x"],
         "none of the 2 rows is a checkable mbpp problem"),
        (["--dataset", "mbpp", "--from", "/nonexistent.jsonl", "--prompts", "x"],
         "no such file"),
    ],
)
def test_bad_input_is_one_line_error(argv, match, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["data", "prepare", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("halo-forge: error:") and match in err and "\n" not in err


def test_bad_jsonl_line_is_named(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "language": "c"}\n{"prompt": \n')
    assert main(["data", "prepare", "--dataset", "local", "--from", str(bad), "--split", "all",
                 "--prompts", str(tmp_path / "p.jsonl")]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err


def test_unreachable_hub_says_so_and_how_to_use_a_local_copy(tmp_path: Path) -> None:
    env = subprocess_env(HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [sys.executable, "-m", "halo_forge", "data", "prepare", "--dataset", "mbpp",
         "--prompts", str(tmp_path / "p.jsonl")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("halo-forge: error: cannot reach the Hugging Face hub for "
                           "google-research-datasets/mbpp")
    assert "--from PATH" in line


def _problems(n: int) -> list[Problem]:
    return [Problem(id=f"t/{i}", language="python", prompt=f"task number {i}") for i in range(n)]


def test_split_is_deterministic_and_independent_of_order_and_size() -> None:
    problems = _problems(400)
    train, test = split.split_problems(problems, seed=7, test_fraction=0.25)
    assert 60 < len(test) < 140 and len(train) + len(test) == 400
    assert not {p.id for p in train} & {p.id for p in test}
    # The same problem lands on the same side when the source is reordered or grows.
    train2, test2 = split.split_problems(list(reversed(problems)) + _problems(600)[400:],
                                         seed=7, test_fraction=0.25)
    assert {p.id for p in test} <= {p.id for p in test2}
    assert {p.id for p in train} <= {p.id for p in train2}
    # Another seed, another split.
    assert {p.id for p in split.split_problems(problems, seed=8, test_fraction=0.25)[1]} != \
        {p.id for p in test}


def test_same_statement_under_two_ids_never_leaks_into_train() -> None:
    problems = _problems(200)
    _, test = split.split_problems(problems, seed=1, test_fraction=0.3)
    victim = test[0]
    twins = [Problem(id=f"alias/{i}", language="python", prompt="  " + victim.prompt.upper())
             for i in range(50)]  # whitespace and case differ; same problem
    train, test = split.split_problems(problems + twins, seed=1, test_fraction=0.3)
    test_keys = {p.prompt.strip().lower() for p in test}
    assert not [p for p in train if p.prompt.strip().lower() in test_keys]


def test_limit_and_seed_select_reproducibly(tmp_path: Path) -> None:
    def ids(seed: int, limit: int) -> list[str]:
        out = tmp_path / f"{seed}-{limit}.jsonl"
        assert main(["data", "prepare", "--dataset", "humaneval", "--split", "train",
                     "--seed", str(seed), "--limit", str(limit), "--prompts", str(out)]) == 0
        return [r["id"] for r in rows(out)]

    a = ids(3, 10)
    assert len(a) == 10 and a == ids(3, 10)
    assert ids(3, 20)[:10] == a  # a larger limit extends the same selection
    assert ids(4, 10) != a


def test_tokenizer_chat_template_is_used(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    )
    tok.chat_template = (
        "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}<</{{ m['role'] }}>>"
        "{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}"
    )
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "sft.jsonl"
    assert main(["data", "prepare", "--dataset", "builtin", "--split", "all", "--limit", "2",
                 "--tokenizer", str(tmp_path / "tok"), "--system", "", "--output", str(out)]) == 0
    for r in rows(out):
        assert r["text"].startswith("<<user>>") and "<|im_start|>" not in r["text"]
        assert r["text"].endswith("```<</assistant>>")
    problem = Problem(id="a", language="c", prompt="Say hi.")
    assert chat.generation_prompt(problem, tokenizer=tok, system=None) == \
        "<<user>>Say hi.<</user>><<assistant>>"
    assert chat.generation_prompt(problem, system=None) == \
        "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["data", "prepare", "--dataset", "builtin", "--tokenizer",
                 str(tmp_path / "nothing"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "cannot load tokenizer" in capsys.readouterr().err
