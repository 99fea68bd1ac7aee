"""The built-in problem set: schema, coverage, and every reference solution passes its tests."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from halo_forge.cli import main
from halo_forge.data import check, registry
from halo_forge.records import Problem

PROBLEMS = registry.load_problems("builtin")


def test_schema_and_coverage() -> None:
    assert len(PROBLEMS) == 40
    assert all(isinstance(p, Problem) and p.reference.strip() and p.tests_kind != "none"
               for p in PROBLEMS)
    by_language = collections.Counter(p.language for p in PROBLEMS)
    assert by_language == {"c": 10, "cpp": 10, "rust": 10, "python": 10}
    kinds = {(p.language, p.tests_kind) for p in PROBLEMS}
    for lang in ("c", "cpp", "rust", "python"):  # both kinds of tests in every language
        assert {(lang, "io"), (lang, "test_code")} <= kinds
    assert len({p.id for p in PROBLEMS}) == 40


def test_every_reference_passes_the_sandboxed_verifier_cleanly() -> None:
    # The CPU recipe trains on these: a reference that fails, or compiles with warnings,
    # would teach the model the wrong thing.
    verdicts = check.reference_verdicts(PROBLEMS)
    assert set(verdicts) == {p.id for p in PROBLEMS}
    failed = {pid: (v.status, v.output[-300:]) for pid, v in verdicts.items()
              if v.status != "passed" or v.reward != 1.0 or v.warnings}
    assert failed == {}
    assert all(v.tests_passed == v.tests_total > 0 for v in verdicts.values())


def test_prepare_verify_references_drops_a_broken_reference(tmp_path: Path) -> None:
    rows = [
        {"id": "good", "language": "python", "prompt": "Print 42.", "reference": "print(42)",
         "io_tests": [{"input": "", "output": "42\n"}]},
        {"id": "bad", "language": "c", "prompt": "Print 42.",
         "reference": "#include <stdio.h>\nint main(void){puts(\"41\");return 0;}",
         "io_tests": [{"input": "", "output": "42\n"}]},
    ]
    src = tmp_path / "local.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = tmp_path / "prompts.jsonl"
    assert main(["data", "prepare", "--dataset", "local", "--from", str(src), "--split", "all",
                 "--verify-references", "--prompts", str(prompts)]) == 0
    kept = [json.loads(line)["id"] for line in prompts.read_text().splitlines()]
    assert kept == ["good"]
