"""A run's verified data out: each cycle's kept samples with their verdicts, as Parquet or JSONL
files that `datasets` loads as they are, and a README.md dataset card beside them.

    DIR/
      README.md                 the card: counts, the verifier settings (from config.json)
      data/cycle_N.parquet      one file per cycle exported (or cycle_N.jsonl)

`datasets.load_dataset("parquet", data_files="DIR/data/*.parquet")`, `Dataset.from_parquet`
and the Hub read it (the card's `configs` names the files). The folder is written beside DIR
and renamed into place, so an interrupted export leaves no half dataset under DIR's name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from halo_forge.errors import HaloError
from halo_forge.raft import KEPT, SAMPLES, VERDICTS
from halo_forge.records import Example, Sample, Verdict
from halo_forge.shards import ShardReader

FORMATS = ("parquet", "jsonl")
# Column order of every file; the card lists the same.
COLUMNS = {
    "id": "the sample's id (<problem_id>/c<cycle>/s<index>)",
    "problem_id": "the problem it answers",
    "cycle": "the RAFT cycle that generated and kept it",
    "language": "c, cpp, rust or python",
    "prompt": "the user turn the model was given",
    "completion": "the model's raw output",
    "code": "the code extracted from it and verified",
    "messages": "system, user and assistant turns as trained on",
    "reward": "the verifier's reward (the reward ladder)",
    "status": "the verdict: passed, ran, wrong_answer, ...",
    "compiled": "whether it compiled",
    "tests_passed": "tests passed",
    "tests_total": "tests run",
    "guard": "a reward-hacking guard that capped the reward, or empty",
}


def cycle_numbers(run_dir: Path) -> list[int]:
    """The cycles whose kept samples are on disk, in order."""
    found = []
    for p in (run_dir / "raft").glob("cycle_*"):
        m = re.fullmatch(r"cycle_(\d+)", p.name)
        if m and (p / KEPT).is_file():
            found.append(int(m.group(1)))
    return sorted(found)


def _check_run(run_dir: Path) -> None:
    if not run_dir.is_dir() or not (run_dir / "raft").is_dir():
        raise HaloError(f"{run_dir}: not a halo-forge run folder (no raft/ in it); give the "
                        "output.dir of a run that finished at least one RAFT cycle")


def select_cycles(run_dir: Path, cycle: str) -> list[int]:
    """`--cycle N|all` as cycle numbers, each with a kept.shard."""
    _check_run(run_dir)
    have = cycle_numbers(run_dir)
    if cycle == "all":
        if not have:
            raise HaloError(f"{run_dir}: no cycle has kept samples yet (no raft/cycle_N/{KEPT})")
        return have
    if not cycle.isdigit() or int(cycle) < 1:
        raise HaloError(f"--cycle {cycle}: expected a cycle number (1, 2, ...) or 'all'")
    if int(cycle) not in have:
        listed = ", ".join(map(str, have)) or "none"
        raise HaloError(f"{run_dir}: no cycle {cycle} with kept samples (raft/cycle_{cycle}/"
                        f"{KEPT}); cycles with kept samples: {listed}")
    return [int(cycle)]


def _turn(example: Example, role: str) -> str:
    return "\n\n".join(m.content for m in example.messages if m.role == role)


def cycle_rows(cycle_dir: Path, cycle: int) -> Iterator[dict[str, Any]]:
    """The kept samples of one cycle, each joined with its sample and its verdict by id."""
    samples = {s.id: s for s in ShardReader(cycle_dir / SAMPLES, Sample)}
    verdicts = {v.id: v for v in ShardReader(cycle_dir / VERDICTS, Verdict)}
    for example in ShardReader(cycle_dir / KEPT, Example):
        sample, verdict = samples.get(example.id), verdicts.get(example.id)
        if sample is None or verdict is None:
            missing = SAMPLES if sample is None else VERDICTS
            raise HaloError(f"{cycle_dir / KEPT}: kept sample {example.id!r} is not in "
                            f"{missing}; the cycle's shards do not belong together")
        yield {
            "id": sample.id,
            "problem_id": sample.problem_id,
            "cycle": cycle,
            "language": sample.language or verdict.language or "",
            "prompt": _turn(example, "user"),
            "completion": sample.completion,
            "code": sample.code,
            "messages": [{"role": m.role, "content": m.content} for m in example.messages],
            "reward": float(verdict.reward),
            "status": verdict.status,
            "compiled": verdict.compiled,
            "tests_passed": verdict.tests_passed,
            "tests_total": verdict.tests_total,
            "guard": verdict.guard,
        }


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([
        ("id", pa.string()), ("problem_id", pa.string()), ("cycle", pa.int64()),
        ("language", pa.string()), ("prompt", pa.string()), ("completion", pa.string()),
        ("code", pa.string()), ("messages", pa.list_(message)), ("reward", pa.float64()),
        ("status", pa.string()), ("compiled", pa.bool_()), ("tests_passed", pa.int64()),
        ("tests_total", pa.int64()), ("guard", pa.string()),
    ])
    # A schema of our own: every file has the same columns and types whatever its rows hold.
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _verifier_settings(run_dir: Path) -> tuple[dict[str, Any], str]:
    """config.json's [verifier] and the model's name ("" when config.json is missing)."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        return {}, ""
    except (OSError, ValueError) as exc:
        raise HaloError(f"{run_dir / 'config.json'}: unreadable ({exc}); it is the run's "
                        "settings, written when the run started") from None
    model = config.get("model") or {}
    name = "tiny model (model.tiny)" if model.get("tiny") else str(model.get("name") or "")
    return dict(config.get("verifier") or {}), name


def dataset_card(run_dir: Path, fmt: str, counts: dict[int, list[dict[str, Any]]]) -> str:
    settings, model = _verifier_settings(run_dir)
    rows = [r for cycle_rows_ in counts.values() for r in cycle_rows_]
    statuses = Counter(r["status"] for r in rows)
    languages = Counter(r["language"] for r in rows)
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: data/*.{fmt}",
        "tags:",
        "- code",
        "- halo-forge",
        "- verified",
        "---",
        "",
        "# Verified code samples from a halo-forge RAFT run",
        "",
        "Each row is a model completion that halo-forge's verifier compiled and ran in its "
        "sandbox, and that the run kept to train on, with the verdict it got.",
        "",
        f"- run: `{run_dir.name}`" + (f", model: {model}" if model else ""),
        f"- rows: {len(rows)}",
        "- per cycle: " + ", ".join(f"cycle {c}: {len(r)}" for c, r in counts.items()),
        "- statuses: " + (", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) or "none"),
        "- languages: " + (", ".join(f"{k} {n}" for k, n in sorted(languages.items()))
                           or "none"),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{"json" if fmt == "jsonl" else fmt}", '
        f'data_files="data/*.{fmt}", split="train")',
        "```",
        "",
        "## Columns",
        "",
        *(f"- `{name}`: {text}" for name, text in COLUMNS.items()),
        "",
        "## Verifier settings",
        "",
    ]
    if settings:
        lines += ["From the run's config.json (`[verifier]`):", "", "```json",
                  json.dumps(settings, indent=2, sort_keys=True), "```"]
    else:
        lines.append("Not recorded: the run folder has no config.json.")
    return "\n".join(lines) + "\n"


def export_run(run_dir: Path, output: Path, *, fmt: str = "parquet",
               cycle: str = "all") -> dict[int, int]:
    """Writes the dataset folder `output`; returns {cycle: rows}."""
    if fmt not in FORMATS:
        raise HaloError(f"--format {fmt}: unknown format; use {' or '.join(FORMATS)}")
    if output.exists() or output.is_symlink():
        raise HaloError(f"{output}: already exists; choose a new --output folder (an export "
                        "never writes over one)")
    cycles = select_cycles(run_dir, cycle)
    per_cycle = {c: list(cycle_rows(run_dir / "raft" / f"cycle_{c}", c)) for c in cycles}
    if not any(per_cycle.values()):
        raise HaloError(f"{run_dir}: cycle(s) {', '.join(map(str, cycles))} kept no samples; "
                        "nothing to export")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        temp.chmod(0o755)  # mkdtemp's 0700 would keep a dataset meant for sharing private
        (temp / "data").mkdir()
        write = _write_parquet if fmt == "parquet" else _write_jsonl
        for c, rows in per_cycle.items():
            if rows:  # datasets cannot read a Parquet file of no rows; the card counts it
                write(temp / "data" / f"cycle_{c}.{fmt}", rows)
        (temp / "README.md").write_text(dataset_card(run_dir, fmt, per_cycle))
        os.rename(temp, output)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return {c: len(rows) for c, rows in per_cycle.items()}


def summary(counts: dict[int, int], output: Path, fmt: str) -> str:
    parts: Sequence[str] = [f"cycle {c}: {n}" for c, n in counts.items()]
    return (f"exported {sum(counts.values())} kept samples ({', '.join(parts)}) as {fmt} to "
            f"{output}")


__all__ = ["COLUMNS", "FORMATS", "export_run", "summary"]
