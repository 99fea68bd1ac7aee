"""`halo-forge data export RUN_DIR --format parquet|jsonl --output DIR`: a run's kept samples
with their verdicts as a dataset folder that `datasets` loads, and its card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halo_forge.cli import main
from halo_forge.raft import KEPT, SAMPLES, VERDICTS
from halo_forge.records import Example, Message, Sample, Verdict
from halo_forge.shards import ShardReader, write_shard

CODE = "def add(a, b):\n    return a + b\n"


def _cycle(run: Path, cycle: int, n: int, kept: list[int]) -> None:
    """A cycle's shards as RAFT writes them: n samples and verdicts, the kept ones as
    chat examples with the sample's id."""
    d = run / "raft" / f"cycle_{cycle}"
    samples = [Sample(id=f"p{i}/c{cycle}/s0", problem_id=f"p{i}", cycle=cycle,
                      language="python", completion=f"```python\n{CODE}```\n# {cycle}.{i}",
                      code=CODE + f"# {cycle}.{i}\n") for i in range(n)]
    statuses = ["passed", "wrong_answer", "ran", "compile_error"]
    verdicts = [Verdict(id=s.id, status=statuses[i % 4], reward=[1.0, 0.75, 0.7, 0.0][i % 4],
                        compiled=i % 4 != 3, tests_passed=[3, 2, 0, 0][i % 4],
                        tests_total=[3, 4, 0, 3][i % 4], language="python",
                        guard="stub: empty body" if i == 1 else "")
                for i, s in enumerate(samples)]
    examples = [Example(id=samples[i].id, messages=[
        Message(role="system", content="You write code."),
        Message(role="user", content=f"Write add, problem {i}."),
        Message(role="assistant", content=samples[i].completion)],
        source=f"raft:c{cycle}", reward=verdicts[i].reward) for i in kept]
    write_shard(d / SAMPLES, samples, Sample)
    write_shard(d / VERDICTS, verdicts, Verdict)
    write_shard(d / KEPT, examples, Example)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _cycle(run, 1, 6, kept=[0, 1, 2])
    _cycle(run, 2, 5, kept=[0, 4, 2, 1])
    (run / "config.json").write_text(json.dumps({
        "model": {"tiny": True}, "verifier": {"timeout_s": 7.5, "python_warm": True}}))
    return run


def _expected(run: Path, cycle: int) -> list[dict]:
    d = run / "raft" / f"cycle_{cycle}"
    samples = {s.id: s for s in ShardReader(d / SAMPLES, Sample)}
    verdicts = {v.id: v for v in ShardReader(d / VERDICTS, Verdict)}
    out = []
    for ex in ShardReader(d / KEPT, Example):
        s, v = samples[ex.id], verdicts[ex.id]
        out.append({"id": s.id, "problem_id": s.problem_id, "cycle": cycle,
                    "language": s.language, "prompt": ex.messages[1].content,
                    "completion": s.completion, "code": s.code, "reward": v.reward,
                    "status": v.status, "compiled": v.compiled,
                    "tests_passed": v.tests_passed, "tests_total": v.tests_total,
                    "guard": v.guard,
                    "messages": [{"role": m.role, "content": m.content} for m in ex.messages]})
    return out


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_all_cycles_loads_with_datasets_and_matches_the_shards(run, tmp_path, fmt,
                                                                      capsys) -> None:
    import datasets

    out = tmp_path / "export"
    assert main(["data", "export", str(run), "--format", fmt, "--output", str(out)]) == 0
    assert "exported 7 kept samples (cycle 1: 3, cycle 2: 4)" in capsys.readouterr().err
    files = sorted(p.name for p in (out / "data").iterdir())
    assert files == [f"cycle_1.{fmt}", f"cycle_2.{fmt}"]
    builder = "json" if fmt == "jsonl" else fmt
    ds = datasets.load_dataset(builder, data_files=str(out / "data" / f"*.{fmt}"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    expected = _expected(run, 1) + _expected(run, 2)
    assert set(ds.column_names) == set(expected[0])
    got = sorted(ds.to_list(), key=lambda r: (r["cycle"], r["id"]))
    assert got == sorted(expected, key=lambda r: (r["cycle"], r["id"]))


def test_one_cycle_from_parquet_and_the_card(run, tmp_path) -> None:
    import datasets

    out = tmp_path / "c2"
    assert main(["data", "export", str(run), "--format", "parquet", "--output", str(out),
                 "--cycle", "2"]) == 0
    ds = datasets.Dataset.from_parquet(str(out / "data" / "cycle_2.parquet"),
                                       cache_dir=str(tmp_path / "hf"))
    assert ds.to_list() == _expected(run, 2)  # the kept order, not the samples' order
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "path: data/*.parquet" in card
    assert "- rows: 4" in card and "cycle 2: 4" in card and "cycle 1" not in card
    statuses = {r["status"] for r in ds}
    for status in statuses:
        assert f"{status} {sum(r['status'] == status for r in ds)}" in card
    assert '"timeout_s": 7.5' in card and "tiny model" in card


def test_a_cycle_that_kept_nothing_gets_no_file_but_its_count(tmp_path, capsys) -> None:
    import datasets

    run = tmp_path / "run"
    _cycle(run, 1, 3, kept=[])
    _cycle(run, 2, 3, kept=[2])
    out = tmp_path / "out"
    assert main(["data", "export", str(run), "--format", "parquet", "--output", str(out),
                 "--cycle", "1"]) == 2
    assert "kept no samples; nothing to export" in capsys.readouterr().err
    assert main(["data", "export", str(run), "--format", "parquet", "--output", str(out)]) == 0
    assert [p.name for p in (out / "data").iterdir()] == ["cycle_2.parquet"]
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.to_list() == _expected(run, 2)
    card = (out / "README.md").read_text()
    assert "cycle 1: 0, cycle 2: 1" in card
    assert "Not recorded" in card  # no config.json


@pytest.mark.parametrize("case, message", [
    ("not_run", "not a halo-forge run folder"),
    ("no_cycle", "no cycle 9 with kept samples"),
    ("bad_cycle", "--cycle two: expected a cycle number"),
    ("format", "--format csv: unknown format; use parquet or jsonl"),
    ("exists", "already exists; choose a new --output folder"),
    ("half", "give both --format parquet|jsonl and --output DIR"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, case, message) -> None:
    out = tmp_path / "out"
    args = {"not_run": [str(tmp_path), "--format", "parquet", "--output", str(out)],
            "no_cycle": [str(run), "--format", "parquet", "--output", str(out), "--cycle", "9"],
            "bad_cycle": [str(run), "--format", "jsonl", "--output", str(out),
                          "--cycle", "two"],
            "format": [str(run), "--format", "csv", "--output", str(out)],
            "exists": [str(run), "--format", "parquet", "--output", str(run)],
            "half": [str(run), "--format", "parquet"]}[case]
    assert main(["data", "export", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written under the name asked for
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_shards_form_still_writes_jsonl(run, tmp_path) -> None:
    out = tmp_path / "kept.jsonl"
    assert main(["data", "export", str(run / "raft" / "cycle_1" / KEPT), "--out",
                 str(out)]) == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [
        "p0/c1/s0", "p1/c1/s0", "p2/c1/s0"]
