"""Checkpoints a kill cannot leave half-written for a resume to pick (halo_forge/checkpoints.py),
and train(resume=True) on a folder holding a torn one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from halo_forge.checkpoints import MANIFEST, certify, is_complete, last_complete, rotate


def _checkpoint(run: Path, step: int, *, state: bool = True) -> Path:
    d = run / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (d / "optimizer.pt").write_bytes(b"o" * 200)
    if state:
        (d / "trainer_state.json").write_text("{}")
    return d


def test_certified_checkpoint_is_complete_until_a_file_is_torn(tmp_path: Path):
    d = _checkpoint(tmp_path, 2)
    assert not is_complete(d)  # written, not certified
    certify(d)
    assert is_complete(d) and (d / MANIFEST).is_file()
    with open(d / "optimizer.pt", "r+b") as f:  # a torn optimizer.pt
        f.truncate(50)
    assert not is_complete(d)
    (d / "optimizer.pt").unlink()
    assert not is_complete(d)


def test_newest_complete_checkpoint_is_taken_and_torn_ones_after_it_removed(tmp_path: Path):
    good = _checkpoint(tmp_path, 2)
    certify(good)
    torn = _checkpoint(tmp_path, 4, state=True)  # whole-looking, never certified
    lines: list[str] = []
    assert last_complete(tmp_path, log=lines.append) == good
    assert not torn.exists()
    assert any("incomplete checkpoint" in line for line in lines)


def test_legacy_run_without_manifests_skips_a_checkpoint_without_trainer_state(tmp_path: Path):
    good = _checkpoint(tmp_path, 3)
    torn = _checkpoint(tmp_path, 6, state=False)  # killed before trainer_state.json
    assert last_complete(tmp_path) == good
    assert not torn.exists()
    assert last_complete(tmp_path / "missing") is None


def test_rotation_keeps_the_newest_complete_ones(tmp_path: Path):
    for step in (1, 3, 4):
        certify(_checkpoint(tmp_path, step))
    _checkpoint(tmp_path, 2)  # a torn one from an earlier stop
    rotate(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-4"]


def test_a_legacy_checkpoint_once_taken_is_certified(tmp_path: Path):
    old = _checkpoint(tmp_path, 5)
    assert last_complete(tmp_path) == old
    assert (old / MANIFEST).is_file() and is_complete(old)


@pytest.mark.slow
def test_train_resumes_past_a_torn_checkpoint(tiny_model: Path, sft_examples, tmp_path: Path):
    from halo_forge.train import SFTConfig, train

    out = tmp_path / "run"
    config = SFTConfig(model=str(tiny_model), max_steps=2, batch_size=4, grad_accum=1,
                       save_steps=1, save_total_limit=1, logging_steps=1, progress=False,
                       seed=0)
    first = train(config, data=sft_examples[:8], output_dir=out)
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    # Our rotation ran after certification: only the newest, and it is certified.
    assert ckpts == ["checkpoint-2"] and is_complete(out / "checkpoint-2")
    # A kill while checkpoint-3 was written: weights and a torn optimizer, no trainer state.
    torn = out / "checkpoint-3"
    shutil.copytree(out / "checkpoint-2", torn)
    (torn / MANIFEST).unlink()
    (torn / "trainer_state.json").unlink()
    with open(torn / "optimizer.pt", "r+b") as f:
        f.truncate(10)
    lines: list[str] = []
    again = train(SFTConfig(**{**_fields(config), "max_steps": 3}), data=sft_examples[:8],
                  output_dir=out, resume=True, log=lines.append)
    assert again.resumed_from == str(out / "checkpoint-2")
    assert again.global_step == 3 and first.global_step == 2
    assert any("checkpoint-3" in line and "incomplete" in line for line in lines), lines
    assert is_complete(out / "checkpoint-3")  # written anew, whole


def _fields(config) -> dict:
    import msgspec

    return msgspec.structs.asdict(config)
