"""`halo-forge run [pipeline.toml]`: the whole run (data -> sft -> raft -> benchmark).

Without a file it runs the embedded default, examples/cpu-tiny.toml. Rerunning the same
command continues where a killed or interrupted run stopped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from halo_forge.cli.flags import add_struct_flags, given
from halo_forge.config import section_type
from halo_forge.errors import HaloError

# Keys of the file a flag may override.
_OVERRIDES = (("raft", ("cycles",)), ("output", ("progress",)))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run the whole pipeline from a pipeline.toml (resumable)",
        description="Run data -> sft -> raft cycles -> benchmark as configured in a "
                    "pipeline.toml (default: the embedded examples/cpu-tiny.toml). Rerun the "
                    "same command to resume after a crash, kill or Ctrl-C.")
    p.add_argument("config", nargs="?", default=None, help="pipeline.toml (default: cpu-tiny)")
    p.add_argument("--output", default=None, help="output folder (overrides output.dir)")
    p.add_argument("--force-stage", action="append", default=[], metavar="STAGE",
                   choices=("data", "sft", "raft", "benchmark"),
                   help="redo this stage and every stage after it (repeatable)")
    for section, names in _OVERRIDES:
        add_struct_flags(p, section_type(section), only=names, dest_prefix=f"{section}.",
                         default_note="the config file's")
    p.set_defaults(handler=_run)


def setup_logging() -> None:
    root = logging.getLogger("halo_forge")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s: %(message)s",
                                               datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def _run(args) -> int:
    from halo_forge.config import load_config, replace_key

    config, text = load_config(args.config)
    if args.output is not None:
        config = replace_key(config, "output.dir", args.output)
    for section, _ in _OVERRIDES:
        for name, value in given(section_type(section), args,
                                 dest_prefix=f"{section}.").items():
            config = replace_key(config, f"{section}.{name}", value)
    return run_config(config, config_text=text, force=args.force_stage)


def run_config(config, *, config_text: str = "", force=()) -> int:
    from halo_forge.paths import check_output_dir
    from halo_forge.pipeline import run_pipeline
    from halo_forge.progress import Progress

    # Before the first log line too (Pipeline.open checks again for library callers), so a bad
    # folder is the one line a user sees.
    check_output_dir(config.output.dir, what="output.dir (--output)")
    setup_logging()
    progress = Progress(config.output.progress)
    progress.log(f"output: {config.output.dir}")
    code, summary = run_pipeline(config, config_text=config_text, force=force,
                                 progress=progress)
    if summary is None:  # interrupted: run_pipeline has said so and how to resume
        return code
    for m in summary.metrics:
        progress.log(f"cycle {m.cycle}: pass {m.pass_rate:.1%} compile {m.compile_rate:.1%} "
                     f"reward {m.mean_reward:.3f} kept {m.kept}")
    from halo_forge.run_report import REPORT, summary_lines

    for line in summary_lines(summary.benchmark, sft_enabled=config.sft.enabled):
        progress.log(line)
    if (Path(summary.output_dir) / REPORT).exists():
        progress.log(f"report: {Path(summary.output_dir) / REPORT}")
    progress.log(f"done: {summary.output_dir} (final adapter: "
                 f"{summary.final_adapter or 'the base model'})")
    return code


__all__ = ["register", "run_config", "HaloError"]
