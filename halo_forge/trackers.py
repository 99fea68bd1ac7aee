"""Experiment trackers: the per-cycle metrics to TensorBoard, Weights & Biases or trackio
([output] trackers), one small adapter for all three.

Training steps do not pass through here: the trainer reports them itself through transformers'
own `report_to` (train.py), with the same names. metrics.jsonl stays the run's record; a tracker
is a view of it, so one that fails while logging is dropped with a warning, never the run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.errors import HaloError
from halo_forge.metrics import CycleMetrics

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "wandb", "trackio")
TENSORBOARD_DIR = "tensorboard"  # OUTPUT/tensorboard: the cycle scalars
PROJECT = "halo-forge"  # the wandb/trackio project unless WANDB_PROJECT/TRACKIO_PROJECT says
_INSTALL = {
    "tensorboard": "pip install tensorboard",
    "wandb": "pip install 'halo-forge[trackers]'",
    "trackio": "pip install 'halo-forge[trackers]'",
}


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_trackers(names: Sequence[str], *, key: str = "output.trackers") -> None:
    """Every tracker asked for is known and installed, said before anything runs (a missing
    wandb found after SFT would cost the hours SFT took)."""
    for name in names:
        if name not in TRACKERS:
            raise HaloError(f"{key}: unknown tracker {name!r}; use {', '.join(TRACKERS)}")
        if not installed(name):
            raise HaloError(f"{key} names {name} but it is not installed: {_INSTALL[name]} "
                            f"(or remove it from {key})")


def trainer_report_to(trackers: Sequence[str], *, tensorboard: bool = False) -> list[str]:
    """transformers' report_to for the trackers configured. The old `output.tensorboard = true`
    never required the package, so without it that one is left out rather than refused."""
    names = list(trackers)
    if tensorboard and "tensorboard" not in names and installed("tensorboard"):
        names.insert(0, "tensorboard")
    return names


def scalars(row: CycleMetrics) -> dict[str, float]:
    """A cycle's numbers as tracker scalars: raft/<field>, and raft/status/<status> counts."""
    out: dict[str, float] = {}
    for name, value in msgspec.structs.asdict(row).items():
        if name == "cycle" or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[f"raft/{name}"] = float(value)
    for status, count in row.statuses.items():
        out[f"raft/status/{status}"] = float(count)
    return out


class _TensorBoardSink:
    def __init__(self, directory: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(directory))

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _RunSink:
    """wandb and trackio share one shape: module.init(project, name, config) -> log -> finish."""

    def __init__(self, module_name: str, *, run_name: str, config: dict[str, Any],
                 out: Path) -> None:
        self._module = importlib.import_module(module_name)
        project = os.environ.get(f"{module_name.upper()}_PROJECT") or PROJECT
        extra: dict[str, Any] = {"dir": str(out)} if module_name == "wandb" else {}
        self._module.init(project=project, name=run_name, config=config, **extra)

    def log(self, values: dict[str, float], step: int) -> None:
        self._module.log(values, step=step)

    def close(self) -> None:
        self._module.finish()


class CycleTrackers:
    """The per-cycle metrics to every tracker configured. `tensorboard` is the old
    output.tensorboard switch: without the package it warns instead of failing."""

    def __init__(self, out: Path, trackers: Sequence[str], *, tensorboard: bool = False,
                 run_name: str = "", config: dict[str, Any] | None = None) -> None:
        self._sinks: dict[str, Any] = {}
        names = list(trackers)
        if tensorboard and "tensorboard" not in names:
            if installed("tensorboard"):
                names.insert(0, "tensorboard")
            else:
                log.warning("output.tensorboard is on but the tensorboard package is not "
                            "installed (pip install tensorboard); writing metrics.jsonl and the "
                            "plot only")
        check_trackers(names)
        for name in names:
            if name == "tensorboard":
                self._sinks[name] = _TensorBoardSink(out / TENSORBOARD_DIR)
            else:
                self._sinks[name] = _RunSink(name, run_name=run_name or out.name,
                                             config=config or {}, out=out)

    @property
    def names(self) -> list[str]:
        return list(self._sinks)

    def log(self, row: CycleMetrics) -> None:
        values = scalars(row)
        for name, sink in list(self._sinks.items()):
            try:
                sink.log(values, row.cycle)
            except Exception as exc:  # noqa: BLE001 - a tracker's own failure, any kind
                log.warning("tracker %s failed (%s); it gets no more metrics this run "
                            "(metrics.jsonl has them all)", name, exc)
                self._drop(name)

    def _drop(self, name: str) -> None:
        sink = self._sinks.pop(name)
        try:
            sink.close()
        except Exception:  # noqa: BLE001, S110 - already failed once; the warning said so
            pass

    def close(self) -> None:
        for name in list(self._sinks):
            self._drop(name)
