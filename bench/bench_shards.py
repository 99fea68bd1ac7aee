"""Shard write/read throughput against JSONL written with the json module, same records.

    python bench/bench_shards.py [--records N]     # prints records/s, sizes and the ratios
    python -m pytest bench/bench_shards.py          # the same pairs under pytest-benchmark

The records are RAFT-like Samples (a completion of a few hundred bytes of code and prose);
the baseline is what a pipeline without shards would do: json.dumps per line on write,
json.loads + Sample(**row) per line on read.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from halo_forge.records import GenerationParams, Sample  # noqa: E402
from halo_forge.shards import ShardReader, write_shard  # noqa: E402

_WORDS = ("int", "main", "return", "for", "while", "std::cin", "vector", "auto", "x", "n",
          "if", "else", "print", "the", "answer", "is", "loop", "sum", "+=", "0", "1", ";")


def make_records(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        code = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 160)))
        out.append(Sample(
            id=f"cf/{i % 997}/c{i % 5}/s{i}", problem_id=f"cf/{i % 997}", cycle=i % 5, index=i,
            language="cpp", completion=f"Here is my solution.\n```cpp\n{code}\n```\n", code=code,
            prompt_tokens=rng.randint(100, 900), completion_tokens=rng.randint(50, 600),
            params=GenerationParams(model="Qwen2.5-Coder-7B", temperature=0.8, top_p=0.95,
                                    max_new_tokens=1024, seed=i),
        ))
    return out


def write_jsonl_baseline(path: Path, records: list[Sample]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(msgspec.to_builtins(r)) + "\n")


def read_jsonl_baseline(path: Path) -> list[Sample]:
    with open(path, encoding="utf-8") as f:
        return [msgspec.convert(json.loads(line), Sample) for line in f]


def write_shard_run(path: Path, records: list[Sample]) -> None:
    write_shard(path, records, Sample)


def read_shard_run(path: Path) -> list[Sample]:
    return list(ShardReader(path, Sample))


def _best(fn, *args, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    records = make_records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        shard, jsonl = Path(tmp) / "s.shard", Path(tmp) / "s.jsonl"
        w_shard = _best(write_shard_run, shard, records, repeat=args.repeat)
        w_json = _best(write_jsonl_baseline, jsonl, records, repeat=args.repeat)
        r_shard = _best(read_shard_run, shard, repeat=args.repeat)
        r_json = _best(read_jsonl_baseline, jsonl, repeat=args.repeat)
        assert read_shard_run(shard) == records == read_jsonl_baseline(jsonl)
        s_size, j_size = shard.stat().st_size, jsonl.stat().st_size
    n = args.records
    print(f"{n} Sample records, best of {args.repeat}")
    print(f"write: shards {n / w_shard:,.0f} rec/s   jsonl(json) {n / w_json:,.0f} rec/s   "
          f"ratio {w_json / w_shard:.2f}x")
    print(f"read:  shards {n / r_shard:,.0f} rec/s   jsonl(json) {n / r_json:,.0f} rec/s   "
          f"ratio {r_json / r_shard:.2f}x")
    print(f"size:  shards {s_size / 1e6:.1f} MB   jsonl {j_size / 1e6:.1f} MB   "
          f"ratio {j_size / s_size:.2f}x smaller")
    return 0


# --- pytest-benchmark: each pair in one group, so the report shows them side by side -------

_N = 20_000


def _records():
    return make_records(_N)


def test_write_shard(benchmark, tmp_path):
    benchmark.group = "write"
    benchmark(write_shard_run, tmp_path / "s.shard", _records())


def test_write_jsonl_baseline(benchmark, tmp_path):
    benchmark.group = "write"
    benchmark(write_jsonl_baseline, tmp_path / "s.jsonl", _records())


def test_read_shard(benchmark, tmp_path):
    benchmark.group = "read"
    write_shard_run(tmp_path / "s.shard", _records())
    assert len(benchmark(read_shard_run, tmp_path / "s.shard")) == _N


def test_read_jsonl_baseline(benchmark, tmp_path):
    benchmark.group = "read"
    write_jsonl_baseline(tmp_path / "s.jsonl", _records())
    assert len(benchmark(read_jsonl_baseline, tmp_path / "s.jsonl")) == _N


if __name__ == "__main__":
    sys.exit(main())
