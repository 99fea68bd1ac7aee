"""bench/gpu_check.py's reduced CPU mode: the script a session lent a GPU runs must work before
it gets there."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_config_is_qwen2_5_0_5b():
    raw = json.loads((SCRIPT.parent / "qwen2.5-0.5b-config.json").read_text())
    from transformers import Qwen2Config

    config = Qwen2Config(**{k: v for k, v in raw.items() if k not in ("architectures",
                                                                       "model_type")})
    # Parameters of the published model (tied embeddings): about 494 M.
    h, i, layers, v = (config.hidden_size, config.intermediate_size,
                       config.num_hidden_layers, config.vocab_size)
    kv = h // config.num_attention_heads * config.num_key_value_heads
    per_layer = h * h * 2 + h * kv * 2 + h + 2 * kv + 3 * h * i + 2 * h
    assert 480e6 < v * h + layers * per_layer + h < 500e6


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_prints_one_table(tmp_path, capsys):
    gpu_check = _load()
    assert gpu_check.main(["--cpu", "--work", str(tmp_path / "w"),
                           "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert list(rows) == ["lora sft", "memory hand-back", "generation", "raft cycle"]
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["lora sft"]["steps"] == gpu_check.SIZES["sft_steps"][1]
    assert rows["memory hand-back"]["models_loaded"] >= 1
    assert rows["memory hand-back"]["models_alive"] == 0  # train() kept no reference
    sizes = {k: v[1] for k, v in gpu_check.SIZES.items()}
    assert rows["generation"]["samples"] == sizes["gen_problems"] * sizes["gen_samples"]
    assert rows["raft cycle"]["samples"] > 0 and rows["raft cycle"]["verify_wait_s"] >= 0
    out = capsys.readouterr().out
    assert out.count("step ") == 1 and "FAILED" not in out


def test_a_failing_step_is_reported_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    gpu_check = _load()
    model = tmp_path / "m"

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(gpu_check, "build_model", lambda folder, cpu: model)
    for name in ("sft_steps", "memory_hand_back", "raft_cycle"):
        monkeypatch.setattr(gpu_check, name, lambda *a, **k: {"x": 1})
    monkeypatch.setattr(gpu_check, "generation", fail)
    assert gpu_check.main(["--cpu", "--work", str(tmp_path / "w")]) == 1
    out = capsys.readouterr().out
    table = out[out.index("step "):].splitlines()
    assert [line.split()[0] for line in table[1:]] == ["lora", "memory", "generation", "raft"]
    assert "FAILED: RuntimeError: boom" in out and out.count("ok") == 3


def test_without_a_gpu_the_full_mode_says_so(monkeypatch, capsys):
    gpu_check = _load()
    monkeypatch.setattr(gpu_check, "_cuda", lambda: None)
    assert gpu_check.main([]) == 2
    assert "--cpu" in capsys.readouterr().err
