"""`halo-forge data prepare`: a dataset -> SFT text, a prompts file and shards.

Outputs (any combination):
- SFT JSONL: `{"text": ...}` per problem with a reference, in the model's chat template
  (ChatML by default);
- prompts JSONL: `{"id", "language", "prompt", "io_tests" and/or "test_code", "source"}` for
  RAFT and benchmarks;
- a shard folder: `problems-*.shard` (Problem records) and `examples-*.shard` (Example records).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.data import chat, registry, split
from halo_forge.data.jsonl import write_jsonl
from halo_forge.errors import HaloError
from halo_forge.records import Example, Problem
from halo_forge.shards import ShardWriter


class PrepareReport(msgspec.Struct, kw_only=True):
    dataset: str
    split: str
    rows: int = 0
    problems: int = 0  # in the dataset after merging and skipping
    skipped_rows: int = 0
    with_checker: int = 0  # problems judged by their own checker (records.JudgeProgram)
    interactive: int = 0  # problems judged by their own interactor
    in_split: int = 0
    selected: int = 0  # after --limit
    references_failed: int = 0  # dropped by --verify-references or --audit
    weak_dropped: list[str] = []  # --audit: ids whose tests accept a wrong program
    not_audited: int = 0  # --audit: kept without an audit (no reference, no tests, a checker)
    sft_written: int = 0
    sft_without_reference: int = 0
    prompts_written: int = 0
    shard_files: list[str] = []

    def lines(self) -> list[str]:
        out = [
            f"{self.dataset}: {self.rows} rows -> {self.problems} problems "
            f"({self.skipped_rows} rows not checkable, skipped)",
            f"split {self.split}: {self.in_split} problems, {self.selected} selected",
        ]
        if self.with_checker or self.interactive:
            out.append(f"judged by their own program: {self.with_checker} with a checker, "
                       f"{self.interactive} interactive")
        if self.references_failed:
            out.append(f"references that failed verification, dropped: {self.references_failed}")
        if self.weak_dropped:
            shown = ", ".join(self.weak_dropped[:5]) + (", ..." if len(self.weak_dropped) > 5 else "")
            out.append(f"weak tests (accept a wrong program), dropped: {len(self.weak_dropped)} "
                       f"({shown}; `halo-forge data audit {self.dataset}` says which program)")
        if self.not_audited:
            out.append(f"not audited (no reference, no tests, or a checker), kept: {self.not_audited}")
        if self.sft_written or self.sft_without_reference:
            out.append(f"SFT examples: {self.sft_written} written, "
                       f"{self.sft_without_reference} problems without a reference left out")
        if self.prompts_written:
            out.append(f"prompts: {self.prompts_written} written")
        if self.shard_files:
            out.append(f"shards: {len(self.shard_files)} files")
        return out


def _drop_weak(problems: list[Problem], report: PrepareReport, *, dataset: str,
               from_paths: Sequence[str | Path], config: Any) -> list[Problem]:
    """--audit: problems whose tests accept a wrong program, or whose reference fails, are
    dropped (counted and named in the report); the audit's results are cached per dataset."""
    from halo_forge.data import audit

    name = dataset if not from_paths else "local-" + audit.paths_key(list(from_paths))
    results = {r.id: r for r in audit.audit(problems, dataset=name, config=config)}
    report.weak_dropped = [p.id for p in problems if results[p.id].status == "weak"]
    failed = {p.id for p in problems if results[p.id].status == "reference_failed"}
    report.references_failed += len(failed)
    report.not_audited = sum(results[p.id].status in ("no_reference", "not_audited") for p in problems)
    dropped = set(report.weak_dropped) | failed
    return [p for p in problems if p.id not in dropped]


def prompt_row(problem: Problem) -> dict[str, Any]:
    row: dict[str, Any] = {"id": problem.id, "language": problem.language,
                           "prompt": problem.prompt}
    if problem.io_tests:
        row["io_tests"] = [{"stdin": t.stdin, "stdout": t.stdout} for t in problem.io_tests]
    if problem.test_code:
        row["test_code"] = problem.test_code
    if problem.python_packages:
        row["python_packages"] = True
    for name in ("checker", "interactor"):
        judge = getattr(problem, name)
        if judge is not None:
            row[name] = msgspec.to_builtins(judge)
    row["source"] = problem.source
    # Carried so that a benchmark or RAFT run from this file can report by difficulty.
    if problem.difficulty is not None:
        row["difficulty"] = problem.difficulty
    if problem.title:
        row["title"] = problem.title
    return row


def select(
    problems: Sequence[Problem],
    *,
    spec: registry.DatasetSpec,
    which: str,
    seed: int,
    test_fraction: float,
    limit: int | None,
) -> list[Problem]:
    if which == "all":
        chosen = list(problems)
    else:
        train, test = split.split_problems(
            problems, seed=seed, test_fraction=test_fraction, official=spec.official_split
        )
        chosen = train if which == "train" else test
    ordered = split.sample_order(chosen, seed=seed)
    return ordered if limit is None else ordered[:limit]


def prepare(
    *,
    dataset: str,
    which: str = "train",
    seed: int = 0,
    test_fraction: float = 0.1,
    limit: int | None = None,
    from_paths: Sequence[str | Path] = (),
    mapping: dict[str, str] | None = None,
    language: str | None = None,
    output: Path | None = None,
    prompts: Path | None = None,
    shards: Path | None = None,
    tokenizer: Any = None,
    system: str | None = chat.DEFAULT_SYSTEM,
    verify_references: bool = False,
    audit: bool = False,
    audit_config: Any = None,
) -> PrepareReport:
    if output is None and prompts is None and shards is None:
        raise HaloError("nothing to write: pass --output (SFT), --prompts and/or --shards")
    if limit is not None and limit < 0:
        raise HaloError("--limit must be >= 0")
    spec = registry.get_spec(dataset)
    stats = registry.LoadStats()
    problems = registry.load_problems(
        dataset, from_paths=from_paths, mapping=mapping, language=language, stats=stats
    )
    if language and dataset != "local":
        # Elsewhere each problem names its language, so --language chooses among them.
        found = sorted({p.language for p in problems})
        problems = [p for p in problems if p.language == language]
        if not problems:
            raise HaloError(f"--language {language}: {dataset} has no such problems; its "
                            f"languages: {', '.join(found)}")
    report = PrepareReport(dataset=dataset, split=which, rows=stats.rows,
                           problems=stats.problems, skipped_rows=stats.skipped,
                           with_checker=stats.with_checker, interactive=stats.interactive)
    chosen = select(problems, spec=spec, which=which, seed=seed, test_fraction=test_fraction,
                    limit=None)
    report.in_split = len(chosen)
    if verify_references:
        from halo_forge.data.check import failing_references

        bad = failing_references(chosen)
        report.references_failed = len(bad)
        chosen = [p for p in chosen if p.id not in bad]
    if audit:
        chosen = _drop_weak(chosen, report, dataset=dataset, from_paths=from_paths, config=audit_config)
    if limit is not None:
        chosen = chosen[:limit]
    report.selected = len(chosen)

    examples = [
        Example(id=p.id, messages=chat.problem_messages(p, system=system), source=p.source)
        for p in chosen
        if p.reference.strip()
    ]
    report.sft_without_reference = len(chosen) - len(examples)
    if output is not None:
        report.sft_written = write_jsonl(
            output,
            ({"text": chat.apply_chat_template(e.messages, tokenizer=tokenizer)}
             for e in examples),
        )
    if prompts is not None:
        report.prompts_written = write_jsonl(prompts, (prompt_row(p) for p in chosen))
    if shards is not None:
        paths: list[Path] = []
        for prefix, record_type, records in (("problems", Problem, chosen),
                                             ("examples", Example, examples)):
            for old in shards.glob(f"{prefix}-*.shard"):
                old.unlink()  # a rerun replaces the previous output instead of mixing with it
            with ShardWriter(shards, record_type, prefix=prefix) as w:
                w.write_all(records)
            paths += w.paths
        report.shard_files = [str(p) for p in paths]
    return report
