"""The CPU recipe end to end: the tiny (pretrained) model, SFT, then RAFT cycles that keep
samples and train on them, on examples/cpu-tiny.toml with its own output folder.

Not yet asserted here (issue 8 is open): that the last cycle's adapter passes more samples than
the SFT adapter. With the current recipe it does not rise (measured: cycle pass rates
8.3%, 7.2%, 4.4% of 180 samples each; the pretrained base alone passes ~31%, so the LoRA
training itself loses what pretraining gave); the assertion belongs here once it does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from halo_forge.config import load_config, replace_key

CYCLES = 3


def test_cpu_recipe_runs_sft_and_raft_cycles_that_keep_and_train(tiny_model: Path,
                                                                 tmp_path: Path) -> None:
    from halo_forge.pipeline import run_pipeline

    config, _ = load_config(None)
    for key, value in (("output.dir", str(tmp_path / "run")), ("output.progress", "plain"),
                       ("output.plot", False), ("benchmark.enabled", False),
                       ("raft.cycles", CYCLES)):
        config = replace_key(config, key, value)
    out = tmp_path / "run"
    # The session's tiny model has the recipe's spec: the pipeline reuses it instead of
    # building it again (a rebuild with other settings would be refused).
    shutil.copytree(tiny_model, out / "model")

    code, summary = run_pipeline(config)
    assert code == 0 and summary is not None and summary.cycles_done == CYCLES

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == list(range(1, CYCLES + 1))
    for c in range(1, CYCLES + 1):
        cycle_dir = out / "raft" / f"cycle_{c}"
        assert (cycle_dir / "samples.shard").is_file() and (cycle_dir / "verdicts.shard").is_file()
    # Every cycle kept samples and trained on them: the mix RAFT needs was there each time.
    assert all(r["kept"] > 0 and r["train_steps"] > 0 for r in rows), rows
    for c in range(1, CYCLES + 1):
        assert (out / f"cycle_{c}_final" / "adapter_config.json").is_file()
    assert summary.final_adapter == str(out / f"cycle_{CYCLES}_final")

    # The SFT model passes some of its samples, not all: RAFT has something to keep and
    # something to improve.
    assert 0 < rows[0]["pass_rate"] < 0.8, rows[0]
