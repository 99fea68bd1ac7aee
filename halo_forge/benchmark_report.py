"""What a benchmark run shows a reader: its output folder (written by write_outputs), the
Markdown report, the pass@k chart, and the comparison of two runs (per k, and which problems
flipped).

pass@k (every test passed) and compile@k (it compiled) are always separate tables, rows and
lines: a reader must never take one for the other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from halo_forge.atomic import atomic_open, write_atomic
from halo_forge.benchmark_records import (
    CHART_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    BenchmarkSummary,
    ProblemResult,
    Rates,
    read_results,
    read_summary,
)

_json = msgspec.json.Encoder()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _rates_table(title: str, label: str, groups: dict[str, Rates], ks: Sequence[int],
                 field: str) -> list[str]:
    lines = [f"### {title}", "", "| " + " | ".join([label, "problems", *(f"k={k}" for k in ks)]) + " |",
             "|" + "---|" * (2 + len(ks))]
    for name, r in groups.items():
        values = getattr(r, field)
        lines.append("| " + " | ".join([name, str(r.problems), *(_pct(values.get(k)) for k in ks)]) + " |")
    return [*lines, ""]


def markdown_report(summary: BenchmarkSummary, results: Sequence[ProblemResult]) -> str:
    s, ks = summary, summary.ks
    sampling = s.sampling
    lines = [
        "# halo-forge benchmark", "",
        "| | |", "|---|---|",
        f"| model | `{s.model}` |",
        f"| adapter | {f'`{s.adapter}`' if s.adapter else 'none (base model)'} |",
        f"| backend | {s.backend} |",
        f"| dataset | {s.dataset or 'n/a'} |",
        f"| problems | {s.problems} |",
        f"| verifier | {s.verifier} |",
        f"| samples per problem (n) | {s.n} |",
        (f"| sampling | temperature {sampling.temperature:g}, top_p {sampling.top_p:g}, "
        f"max_new_tokens {sampling.max_new_tokens}, seed {sampling.seed} |"),
        "",
        ("pass@k: the chance that at least one of k samples passes every test of its problem. "
        "compile@k: the chance that at least one of k samples compiles (it may still be wrong). "
        "Both use the unbiased estimator 1 - C(n-c, k) / C(n, k), averaged over problems."),
        "",
    ]
    if s.untested_problems >= s.problems:
        lines += [("**No problem has tests**, so there is no pass@k: run@k below is the chance "
                   "that one of k samples compiles, runs and exits 0, which says nothing of "
                   "whether its answer is right."), ""]
    else:
        lines += [
            "## pass@k (all tests passed)", "",
            "| k | pass@k | problems scored |", "|---|---|---|",
            *(f"| {k} | {_pct(s.pass_at_k.get(k))} | {s.scored_problems.get(k, 0)} |" for k in ks),
            "",
            f"Problems solved by at least one sample: {s.solved} of {s.problems}.",
            "",
        ]
    if s.untested_problems:
        lines += [
            f"## run@k (ran and exited 0; {s.untested_problems} problems without tests)", "",
            "| k | run@k |", "|---|---|",
            *(f"| {k} | {_pct(s.run_at_k.get(k))} |" for k in ks),
            "",
        ]
    lines += [
        "## compile@k (compiled; tests not considered)", "",
        "| k | compile@k | problems scored |", "|---|---|---|",
        *(f"| {k} | {_pct(s.compile_at_k.get(k))} | {s.scored_problems.get(k, 0)} |" for k in ks),
        "",
    ]
    if len(s.by_language) > 1:
        lines += _rates_table("pass@k by language", "language", s.by_language, ks, "pass_at_k")
        lines += _rates_table("compile@k by language", "language", s.by_language, ks, "compile_at_k")
    if set(s.by_difficulty) - {"unknown"}:
        lines += _rates_table("pass@k by difficulty", "difficulty", s.by_difficulty, ks, "pass_at_k")
        lines += _rates_table("compile@k by difficulty", "difficulty", s.by_difficulty, ks,
                              "compile_at_k")
    lines += ["## Verdicts", "", "| status | samples |", "|---|---|",
              *(f"| {status} | {count} |" for status, count in s.status_counts.items()), ""]
    if s.sandbox_errors or s.generation_failed:
        lines += [(f"**Left out of scoring:** {s.sandbox_errors} sandbox errors (infrastructure "
                  f"failures, not the model's) and {s.generation_failed} samples the backend "
                  "did not produce. A problem with fewer than k scored samples is left out of "
                  "pass@k for that k (see 'problems scored')."), ""]
    untested = sum(r.tests == "none" for r in results)
    if untested and untested < s.problems:
        lines += [(f"Note: {untested} problems have no tests: they count as unsolved in pass@k "
                  "and have their own run@k."), ""]
    lines += [
        "## Throughput", "",
        f"- wall time {s.wall_s:.1f} s; {s.samples_per_s:.2f} samples/s verified end to end",
        (f"- generation {s.generate_s:.1f} s, {s.completion_tokens} completion tokens "
        f"({s.tokens_per_s:.0f} tokens/s)"),
        (f"- generation waited on verification {s.generation_waited_s:.1f} s; verification "
        f"waited on generation {s.verification_waited_s:.1f} s"),
        f"- mean reward {s.mean_reward:.3f}",
        "",
        "## Problems", "",
        "| problem | language | n | passed | compiled | best reward |", "|---|---|---|---|---|---|",
        *(f"| {r.id} | {r.language} | {r.n} | {r.passed} | {r.compiled} | {r.best_reward:.2f} |"
          for r in results),
        "",
    ]
    return "\n".join(lines)


def write_chart(path: Path, summary: BenchmarkSummary) -> None:
    """A bar chart of pass@k (overall, and per language when there are several), as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on training boxes
    import matplotlib.pyplot as plt
    import numpy as np

    ks = summary.ks
    # With no tests anywhere the chart shows run@k, labelled as such, never as pass@k.
    metric, field = ("pass", "pass_at_k") if summary.pass_at_k else ("run", "run_at_k")
    series = {"all": getattr(summary, field)}
    if len(summary.by_language) > 1:
        series.update({lang: getattr(r, field) for lang, r in summary.by_language.items()})
    x = np.arange(len(ks))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(ks) * len(series) ** 0.5 + 2), 3.6), dpi=110)
    try:
        for i, (name, values) in enumerate(series.items()):
            heights = [100 * values.get(k, 0.0) for k in ks]
            bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(x, [f"{metric}@{k}" for k in ks])
        ax.set_ylim(0, 105)
        ax.set_ylabel("% of problems (all tests passed)" if metric == "pass"
                      else "% of problems (ran and exited 0; no tests)")
        name = "/".join(summary.model.rstrip("/").split("/")[-2:])  # an HF id, or a folder's tail
        name += " + adapter" if summary.adapter else ""
        ax.set_title(f"{name}: {summary.dataset or 'benchmark'}, n={summary.n}", fontsize=9)
        if len(series) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)


def write_outputs(output_dir: Path, summary: BenchmarkSummary,
                  results: Sequence[ProblemResult]) -> None:
    """results.jsonl, report.md, pass_at_k.png, then summary.json last: a folder with a
    summary is a finished run."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / RESULTS_FILE, b"".join(_json.encode(r) + b"\n" for r in results))
    write_atomic(output_dir / REPORT_FILE, markdown_report(summary, results).encode())
    write_chart(output_dir / CHART_FILE, summary)
    write_atomic(output_dir / SUMMARY_FILE, msgspec.json.format(_json.encode(summary)) + b"\n")


# --- comparison ----------------------------------------------------------------------------


class KDelta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    k: int
    pass_a: float | None
    pass_b: float | None
    compile_a: float | None
    compile_b: float | None

    @property
    def pass_delta(self) -> float | None:
        return None if self.pass_a is None or self.pass_b is None else self.pass_b - self.pass_a

    @property
    def compile_delta(self) -> float | None:
        if self.compile_a is None or self.compile_b is None:
            return None
        return self.compile_b - self.compile_a


class Comparison(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    a: str
    b: str
    ks: list[KDelta] = []
    gained: list[str] = []  # problems B solves (a sample passed) and A does not
    lost: list[str] = []  # problems A solves and B does not
    common_problems: int = 0
    only_a: int = 0  # problems in one run only (not compared)
    only_b: int = 0
    warnings: list[str] = []  # settings that differ between the runs


def compare_runs(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Comparison:
    sa, sb = read_summary(a), read_summary(b)
    ra = {r.id: r for r in read_results(a)}
    rb = {r.id: r for r in read_results(b)}
    warnings = []
    for field in ("dataset", "verifier", "n"):
        va, vb = getattr(sa, field), getattr(sb, field)
        if va != vb:
            warnings.append(f"{field} differs: {va!r} vs {vb!r}")
    if sa.sampling != sb.sampling:
        warnings.append("sampling settings differ")
    common = [pid for pid in ra if pid in rb]
    if len(common) != len(ra) or len(common) != len(rb):
        warnings.append(f"the runs share {len(common)} problems; pass@k covers each run's own set")
    ks = sorted(set(sa.ks) | set(sb.ks))
    return Comparison(
        a=str(a), b=str(b),
        ks=[KDelta(k=k, pass_a=sa.pass_at_k.get(k), pass_b=sb.pass_at_k.get(k),
                   compile_a=sa.compile_at_k.get(k), compile_b=sb.compile_at_k.get(k)) for k in ks],
        gained=[pid for pid in common if rb[pid].solved and not ra[pid].solved],
        lost=[pid for pid in common if ra[pid].solved and not rb[pid].solved],
        common_problems=len(common), only_a=len(ra) - len(common), only_b=len(rb) - len(common),
        warnings=warnings,
    )


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}"


def format_comparison(c: Comparison) -> str:
    lines = [f"A: {c.a}", f"B: {c.b}", ""]
    lines += [f"warning: {w}" for w in c.warnings]
    if c.warnings:
        lines.append("")
    header = f"{'':<12}{'A':>9}{'B':>9}{'B-A (pts)':>12}"
    lines += ["pass@k (all tests passed)", header]
    lines += [f"{f'pass@{d.k}':<12}{_pct(d.pass_a):>9}{_pct(d.pass_b):>9}{_signed(d.pass_delta):>12}"
              for d in c.ks]
    lines += ["", "compile@k (compiled)", header]
    lines += [f"{f'compile@{d.k}':<12}{_pct(d.compile_a):>9}{_pct(d.compile_b):>9}"
              f"{_signed(d.compile_delta):>12}" for d in c.ks]
    lines += ["", f"problems compared: {c.common_problems}"
              + (f" ({c.only_a} only in A, {c.only_b} only in B)" if c.only_a or c.only_b else "")]
    lines.append(f"solved in B, not in A ({len(c.gained)}): {', '.join(c.gained) or '-'}")
    lines.append(f"solved in A, not in B ({len(c.lost)}): {', '.join(c.lost) or '-'}")
    return "\n".join(lines)


__all__ = ["Comparison", "KDelta", "compare_runs", "format_comparison", "markdown_report",
           "write_chart", "write_outputs"]
