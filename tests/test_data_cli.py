"""`halo-forge data inspect / export / import`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from halo_forge.cli import main
from halo_forge.records import Problem, Sample
from halo_forge.shards import ShardAppender, ShardReader, write_shard


def _samples(n: int) -> list[Sample]:
    return [Sample(id=f"s{i}", problem_id="p", index=i, completion=f"c{i}") for i in range(n)]


def test_inspect_prints_jsonl_with_limit_and_count(tmp_path: Path, capsysbinary) -> None:
    write_shard(tmp_path / "a.shard", _samples(7), Sample)
    write_shard(tmp_path / "b.shard", _samples(3), Sample)
    assert main(["data", "inspect", str(tmp_path), "--limit", "4"]) == 0
    out, err = capsysbinary.readouterr()
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["id"] for r in lines] == ["s0", "s1", "s2", "s3"]
    assert lines[0]["problem_id"] == "p" and lines[0]["params"]["temperature"] == 1.0
    assert "10 records (Sample v1) in 2 file(s); printed 4" in err.decode()


def test_inspect_of_a_truncated_shard_is_an_error_naming_file_and_offset(tmp_path, capsys) -> None:
    path = tmp_path / "a.shard"
    write_shard(path, _samples(50), Sample)
    os.truncate(path, path.stat().st_size - 30)
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"halo-forge: error: {path}: truncated shard") and "at byte" in err
    assert "Traceback" not in err


def test_inspect_partial_reads_an_unfinished_appender(tmp_path: Path, capsysbinary) -> None:
    path = tmp_path / "run.shard"
    app = ShardAppender(path, Sample)
    for s in _samples(5):
        app.append(s)
    app.flush()
    app._file.close()  # the stage was killed before close()
    assert main(["data", "inspect", str(path), "--partial"]) == 0
    out, err = capsysbinary.readouterr()
    assert len(out.decode().splitlines()) == 5
    assert "unfinished" in err.decode()


def test_export_import_round_trip(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", language="rust", prompt=f"do {i}", reference="fn main(){}")
                for i in range(20)]
    write_shard(tmp_path / "in.shard", problems, Problem)
    assert main(["data", "export", str(tmp_path / "in.shard"), "--out",
                 str(tmp_path / "p.jsonl")]) == 0
    assert main(["data", "import", str(tmp_path / "p.jsonl"), "--type", "Problem", "--out",
                 str(tmp_path / "out")]) == 0
    (path,) = sorted((tmp_path / "out").glob("*.shard"))
    assert list(ShardReader(path, Problem)) == problems


def test_import_names_the_bad_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "a", "language": "c", "prompt": "x"}\n{"id": "b", "language": "go", '
                   '"prompt": "y"}\n')
    assert main(["data", "import", str(src), "--type", "Problem", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2: not a Problem" in err
    assert not list((tmp_path / "o").glob("*.shard"))  # nothing half-written
