"""Per-cycle metrics: one JSON line per cycle and a PNG plot of the rates and loss next to it
(trackers.py sends the same rows to TensorBoard, wandb or trackio when asked).

The JSONL is rewritten (atomically) from the finished cycles' records on every update, so a
resumed run never writes a cycle twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.atomic import atomic_open

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
PLOT = "metrics.png"


class CycleMetrics(msgspec.Struct, kw_only=True):
    cycle: int
    samples: int = 0
    verdicts: int = 0
    sandbox_errors: int = 0
    compile_rate: float = 0.0
    pass_rate: float = 0.0  # every test passed
    run_rate: float = 0.0  # no tests; ran and exited 0 (never part of pass_rate)
    mean_reward: float = 0.0
    kept: int = 0
    kept_prompts: int = 0
    filter_removed: dict[str, int] = {}
    statuses: dict[str, int] = {}
    guards: dict[str, int] = {}  # guard_key(Verdict.guard) -> verdicts that guard capped
    learning_rate: float = 0.0
    tokens_per_s: float = 0.0
    verify_per_s: float = 0.0
    gen_s: float = 0.0
    gen_verify_s: float = 0.0  # wall time of the streaming generate + verify stage
    filter_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    gen_wait_s: float = 0.0  # generation waited on verification (full buffer)
    verify_wait_s: float = 0.0  # verification waited on generation (empty buffer)
    train_steps: int = 0
    train_loss: float | None = None
    eval_pass_at_1: float | None = None
    eval_compile_rate: float | None = None
    resumed: bool = False  # part of this cycle was done by an earlier, interrupted process


def guard_key(reason: str) -> str:
    """The defence a Verdict.guard reason names: its text before the first ':' ("stub: empty
    main" -> "stub"), so that counts per cycle stay comparable whatever detail follows."""
    return reason.partition(":")[0].strip()


def write_metrics(path: Path, rows: Sequence[CycleMetrics]) -> None:
    with atomic_open(path) as f:
        for row in sorted(rows, key=lambda r: r.cycle):
            f.write(msgspec.json.encode(row) + b"\n")


def read_metrics(path: Path) -> list[CycleMetrics]:
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(CycleMetrics)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


# One style per series, all different: when two series are equal (a pass rate that is the
# compile rate, say) the later line is drawn over the earlier, so each keeps its own marker,
# dash pattern and size, and the larger hollow markers beneath stay visible round the smaller.
_STYLES = [
    {"marker": "o", "linestyle": "-", "markersize": 11, "markerfacecolor": "none", "linewidth": 3.0},
    {"marker": "s", "linestyle": "--", "markersize": 8, "markerfacecolor": "none", "linewidth": 2.2},
    {"marker": "^", "linestyle": "-.", "markersize": 6, "linewidth": 1.6},
    {"marker": "x", "linestyle": ":", "markersize": 6, "linewidth": 1.4},
    {"marker": "v", "linestyle": (0, (1, 3)), "markersize": 5, "linewidth": 1.2},
]
_LOSS_STYLE = {"marker": "D", "linestyle": (0, (5, 2, 1, 2)), "markersize": 5, "linewidth": 1.4,
               "color": "black"}


def _figure(rows: Sequence[CycleMetrics], plt: Any) -> Any:
    rows = sorted(rows, key=lambda r: r.cycle)
    x = [r.cycle for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    series: list[tuple[str, list[Any]]] = [
        ("pass rate", [r.pass_rate for r in rows]),
        ("compile rate", [r.compile_rate for r in rows]),
        ("mean reward", [r.mean_reward for r in rows]),
    ]
    if any(r.run_rate for r in rows):
        series.append(("ran, no tests", [r.run_rate for r in rows]))
    if any(r.eval_pass_at_1 is not None for r in rows):
        series.append(("held-out pass@1", [r.eval_pass_at_1 for r in rows]))
    for (label, ys), style in zip(series, _STYLES, strict=False):
        ax.plot(x, ys, label=label, **style)
    handles, labels = ax.get_legend_handles_labels()
    if any(r.train_loss is not None for r in rows):
        # A loss is not a rate (it may exceed 1): its own axis, on the right.
        loss_ax = ax.twinx()
        loss_ax.plot(x, [r.train_loss for r in rows], label="training loss", **_LOSS_STYLE)
        loss_ax.set_ylabel("training loss")
        loss_ax.set_ylim(bottom=0)
        more_handles, more_labels = loss_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.set_xlabel("RAFT cycle")
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, loc="best", fontsize=8)
    ax.set_title("halo-forge: per-cycle rates and training loss")
    fig.tight_layout()
    return fig


def plot(rows: Sequence[CycleMetrics], path: Path) -> bool:
    """The per-cycle rates and the training loss as a PNG; False (and a log line) when
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no %s (pip install matplotlib)", path.name)
        return False
    fig = _figure(rows, plt)
    try:
        with atomic_open(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return True
