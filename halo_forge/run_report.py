"""What a finished run says: the summary lines and OUTPUT/report.md.

The benchmark stage records up to four scores (pipeline.py, `_benchmark`): the final adapter
on the held-out split and on the training split, and the base model and the SFT adapter on the
held-out split. A number is only worth showing beside what it should be compared with, so the
lines put them together: held-out pass@1 from base through SFT to the final adapter (the
method's gain), held-out beside training split (how much of it is memorised), and, when no
held-out problem was solved at all, one sentence saying so instead of a bare 0%. Problems
without tests are scored as run@k and compile@k, never pass@k (records.py, `ran`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from halo_forge.metrics import CycleMetrics

REPORT = "report.md"

# The benchmark record's keys for the parts besides the held-out final adapter.
TRAIN_SPLIT, BASE, SFT = "train_split", "base", "sft"


def scores(summary: Any, *, adapter: str) -> dict[str, Any]:
    """A BenchmarkSummary's numbers as a JSON-ready record (ks as strings)."""
    def keyed(d: Mapping[int, float]) -> dict[str, float]:
        return {str(k): v for k, v in d.items()}

    return {"adapter": adapter, "problems": summary.problems, "samples": summary.n,
            "pass_at_k": keyed(summary.pass_at_k), "compile_at_k": keyed(summary.compile_at_k),
            "run_at_k": keyed(summary.run_at_k), "untested_problems": summary.untested_problems,
            "solved": summary.solved}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _first(d: Mapping[str, float]) -> float | None:
    """The value at the smallest k (pass@1 when 1 was asked for)."""
    if not d:
        return None
    return d[min(d, key=int)]


def _first_k(d: Mapping[str, float]) -> str:
    return min(d, key=int) if d else "1"


def rates_text(part: Mapping[str, Any]) -> str:
    """pass@k when the problems have tests, else run@k and compile@k (never called pass)."""
    if part.get("pass_at_k"):
        return ", ".join(f"pass@{k} {v:.1%}" for k, v in part["pass_at_k"].items())
    shown = [f"run@{k} {v:.1%}" for k, v in part.get("run_at_k", {}).items()]
    shown += [f"compile@{k} {v:.1%}" for k, v in part.get("compile_at_k", {}).items()]
    return ", ".join(shown) + " (no tests: pass@k needs tests)"


def _start_label(sft_enabled: bool) -> str:
    return "SFT" if sft_enabled else "start adapter"


def summary_lines(benchmark: Mapping[str, Any], *, sft_enabled: bool = True) -> list[str]:
    """The benchmark's part of the run summary: a few lines, each comparing something."""
    if not benchmark or benchmark.get("skipped") or not (
            benchmark.get("pass_at_k") or benchmark.get("run_at_k")):
        return []
    lines = []
    n, samples = benchmark.get("problems", 0), benchmark.get("samples", 0)
    held = f"held-out ({n} problems" + (f" x {samples} samples)" if samples else ")")
    train = benchmark.get(TRAIN_SPLIT)
    tested = bool(benchmark.get("pass_at_k"))
    if tested and max(benchmark["pass_at_k"].values()) == 0.0:
        # A bare 0% reads as a broken run; say what it means.
        where = ""
        if train and train.get("pass_at_k"):
            k = _first_k(train["pass_at_k"])
            where = f" while it reaches pass@{k} {_first(train['pass_at_k']):.1%} on its training split"
        lines.append(f"benchmark: the final adapter solved none of the {n} held-out problems"
                     f"{where}: it has not generalised past the problems it trained on "
                     "(a tiny model often cannot; a real base model should)")
    else:
        line = f"benchmark (final adapter): {held} {rates_text(benchmark)}"
        if train:
            line += f"; training split ({train['problems']} problems) {rates_text(train)}"
        lines.append(line)
    if tested:
        chain = []
        for key, label in ((BASE, "base"), (SFT, _start_label(sft_enabled))):
            part = benchmark.get(key)
            if part and part.get("pass_at_k"):
                chain.append((label, _first(part["pass_at_k"])))
        k = _first_k(benchmark["pass_at_k"])
        final = _first(benchmark["pass_at_k"])
        if chain and not (final == 0.0 and all(v == 0.0 for _, v in chain)):
            # (all zero: the sentence above has said it)
            chain.append(("final", final))
            text = " -> ".join(f"{label} {v:.1%}" for label, v in chain)
            gain = final - chain[0][1]
            lines.append(f"held-out pass@{k}: {text} ({gain * 100:+.1f} points over the "
                         f"{chain[0][0]})")
    return lines


def markdown(benchmark: Mapping[str, Any], metrics: Sequence[CycleMetrics], *,
             sft_enabled: bool = True) -> str:
    """OUTPUT/report.md: every score of the run in one table, then the cycles."""
    out = ["# halo-forge run report", ""]
    rows = []
    for key, label, split in ((BASE, "base model", "held-out"),
                              (SFT, _start_label(sft_enabled) + " adapter", "held-out"),
                              ("", "final adapter", "held-out"),
                              (TRAIN_SPLIT, "final adapter", "training split")):
        part = benchmark if key == "" else benchmark.get(key)
        if not part or not (part.get("pass_at_k") or part.get("run_at_k")):
            continue
        rows.append((label, split, part))
    if rows:
        ks = sorted({k for _, _, p in rows for k in (p.get("pass_at_k") or p.get("run_at_k"))},
                    key=int)
        tested = any(p.get("pass_at_k") for _, _, p in rows)
        name = "pass" if tested else "run"
        out += ["| model | split | problems | "
                + " | ".join(f"{name}@{k}" for k in ks) + " | "
                + " | ".join(f"compile@{k}" for k in ks) + " |",
                "|" + "---|" * (3 + 2 * len(ks))]
        for label, split, part in rows:
            main = part.get("pass_at_k") if tested else part.get("run_at_k")
            out.append(f"| {label} | {split} | {part.get('problems', 0)} | "
                       + " | ".join(_pct((main or {}).get(k)) for k in ks) + " | "
                       + " | ".join(_pct(part.get("compile_at_k", {}).get(k)) for k in ks)
                       + " |")
        out.append("")
        out += [f"- {line}" for line in summary_lines(benchmark, sft_enabled=sft_enabled)]
        out.append("")
    elif benchmark.get("skipped"):
        out += ["No benchmark (disabled, or no held-out split).", ""]
    if metrics:
        out += ["## RAFT cycles (training prompts)", "",
                "| cycle | pass | ran (no tests) | compile | mean reward | kept | train loss "
                "| held-out pass@1 |", "|---|---|---|---|---|---|---|---|"]
        for m in metrics:
            out.append(f"| {m.cycle} | {_pct(m.pass_rate)} | {_pct(m.run_rate)} | "
                       f"{_pct(m.compile_rate)} | {m.mean_reward:.3f} | {m.kept} | "
                       f"{'-' if m.train_loss is None else f'{m.train_loss:.4f}'} | "
                       f"{_pct(m.eval_pass_at_1)} |")
        out.append("")
    return "\n".join(out)


__all__ = ["BASE", "REPORT", "SFT", "TRAIN_SPLIT", "markdown", "rates_text", "scores",
           "summary_lines"]
