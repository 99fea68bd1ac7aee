"""A GPU run checked in minutes, with only torch, transformers, peft and accelerate (no model
hub, no vLLM): a randomly initialised model with Qwen2.5-0.5B's architecture
(bench/qwen2.5-0.5b-config.json, the published numbers), then

  1. bf16 LoRA SFT steps through halo_forge.train      tokens/s, peak GPU memory
  2. GPU memory before a training step and after train() returns (the hand-back vLLM needs)
  3. batched generation with the transformers backend  samples/s, tokens/s
  4. one streaming RAFT cycle (generate -> sandbox at the machine's core count -> filter ->
     train) through the pipeline                          both waits of the stream

    python bench/gpu_check.py            # on a GPU (exits 2 when there is none)
    python bench/gpu_check.py --cpu      # reduced sizes on CPU; tests/test_gpu_check.py runs it

Prints one table; exits non-zero when any step fails (the table still shows the others).
The model is random, so its samples fail verification and the RAFT cycle keeps none to train
on: the check measures the machinery (the stream, the sandbox, the waits), not the model. The tokenizer is the tiny recipe's (ids past its vocabulary decode to nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = Path(__file__).with_name("qwen2.5-0.5b-config.json")
GIB = 1024 ** 3

# (full GPU size, --cpu size) of each knob.
SIZES = {
    "sft_steps": (20, 2), "sft_batch": (8, 2), "sft_examples": (64, 8),
    "gen_problems": (32, 2), "gen_samples": (8, 2), "gen_tokens": (256, 8),
    "raft_problems": (16, 2), "raft_samples": (8, 2), "raft_tokens": (256, 8),
}


def _shrunk(config: dict[str, Any], vocab: int) -> dict[str, Any]:
    """The same architecture at a size 2 CPU cores run in seconds."""
    return {**config, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
            "max_position_embeddings": 2048}


def build_model(folder: Path, *, cpu: bool) -> Path:
    """A random-weight model folder: the Qwen2.5-0.5B config, the tiny recipe's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from halo_forge.tiny_model import build_tiny_model

    tok_dir = build_tiny_model(folder / "tokenizer-source", pretrain_steps=0)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    raw = json.loads(CONFIG.read_text())
    raw = _shrunk(raw, len(tokenizer)) if cpu else raw
    config = Qwen2Config(**{k: v for k, v in raw.items() if k not in ("architectures",
                                                                       "model_type")})
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    dtype = torch.float32 if cpu else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    out = folder / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


def _problems(n: int) -> list[Any]:
    from halo_forge.data.registry import load_problems

    problems = [p for p in load_problems("builtin") if p.language == "python"]
    return (problems * (n // len(problems) + 1))[:n]


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def sft_steps(model: Path, work: Path, size: Callable[[str], int], cpu: bool) -> dict[str, Any]:
    """LoRA SFT steps; tokens/s counts the examples' tokens times the passes made."""
    import torch
    from transformers import AutoTokenizer

    from halo_forge.data.chat import sft_text
    from halo_forge.train import SFTConfig, example_from_problem, train

    cuda = _cuda()
    examples = [example_from_problem(p) for p in _problems(size("sft_examples"))
                if p.reference]
    config = SFTConfig(model=str(model), max_steps=size("sft_steps"),
                       batch_size=size("sft_batch"), max_length=1024, logging_steps=1,
                       save_steps=10 ** 6, dtype="float32" if cpu else "bfloat16",
                       group_by_length=False)
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = [len(tokenizer(sft_text(p, tokenizer=tokenizer), add_special_tokens=False)
                   ["input_ids"]) for p in _problems(size("sft_examples")) if p.reference]
    if cuda:
        gc.collect()
        cuda.empty_cache()
        cuda.reset_peak_memory_stats()
        before = cuda.memory_allocated()
    start = time.perf_counter()
    result = train(config, data=examples, output_dir=work / "sft")
    wall = time.perf_counter() - start
    steps_tokens = result.global_step * config.batch_size * (sum(lengths) / len(lengths))
    row: dict[str, Any] = {"steps": result.global_step, "wall_s": wall,
                           "tokens_per_s": steps_tokens / wall, "adapter": result.adapter_dir}
    if cuda:
        row["peak_gib"] = cuda.max_memory_allocated() / GIB
        row["before_gib"] = before / GIB
        # What train() left behind in this process: vLLM needs it back before it wakes.
        gc.collect()
        row["after_gib"] = cuda.memory_allocated() / GIB
        row["reserved_after_gib"] = cuda.memory_reserved() / GIB
    del torch
    return row


def memory_hand_back(model: Path, work: Path, size: Callable[[str], int],
                     cpu: bool) -> dict[str, Any]:
    """One training step's model must be collectable once train() returns: a weak reference
    to it dies, and (on a GPU) allocated memory returns to what it was before."""
    from transformers import AutoModelForCausalLM

    from halo_forge import train as train_module
    from halo_forge.train import SFTConfig, example_from_problem

    refs: list[weakref.ref] = []
    original = AutoModelForCausalLM.from_pretrained

    def tracked(*args: Any, **kwargs: Any) -> Any:
        loaded = original(*args, **kwargs)
        refs.append(weakref.ref(loaded))
        return loaded

    cuda = _cuda()
    if cuda:
        gc.collect()
        cuda.empty_cache()
    before = cuda.memory_allocated() if cuda else 0
    AutoModelForCausalLM.from_pretrained = tracked  # type: ignore[method-assign]
    try:
        examples = [example_from_problem(p) for p in _problems(4) if p.reference]
        train_module.train(SFTConfig(model=str(model), max_steps=1, batch_size=2,
                                     save_steps=10 ** 6, group_by_length=False,
                                     dtype="float32" if cpu else "bfloat16"),
                           data=examples, output_dir=work / "one-step")
    finally:
        AutoModelForCausalLM.from_pretrained = original  # type: ignore[method-assign]
    gc.collect()
    row: dict[str, Any] = {"models_loaded": len(refs),
                           "models_alive": sum(r() is not None for r in refs)}
    if cuda:
        cuda.empty_cache()
        row["before_gib"] = before / GIB
        row["after_gib"] = cuda.memory_allocated() / GIB
        row["reserved_after_gib"] = cuda.memory_reserved() / GIB
    if row["models_alive"]:
        raise RuntimeError(f"{row['models_alive']} trained model(s) still referenced after "
                           "train() returned: their memory cannot go back to vLLM")
    return row


def generation(model: Path, size: Callable[[str], int], cpu: bool) -> dict[str, Any]:
    import anyio

    from halo_forge.generate import SamplingSettings, TransformersConfig, make_backend

    backend = make_backend(TransformersConfig(
        model=str(model), batch_size=64 if not cpu else 4,
        dtype="float32" if cpu else "bfloat16"))
    settings = SamplingSettings(max_new_tokens=size("gen_tokens"), seed=0, temperature=1.0)
    problems = _problems(size("gen_problems"))

    async def go() -> tuple[int, int]:
        n = tokens = 0
        async for batch in backend.stream(problems, samples_per_prompt=size("gen_samples"),
                                          params=settings):
            n += batch.stats.samples
            tokens += batch.stats.completion_tokens
        return n, tokens

    try:
        start = time.perf_counter()
        n, tokens = anyio.run(go)
        wall = time.perf_counter() - start
    finally:
        backend.close()
    if n != len(problems) * size("gen_samples"):
        raise RuntimeError(f"asked for {len(problems) * size('gen_samples')} samples, got {n}")
    return {"samples": n, "wall_s": wall, "samples_per_s": n / wall,
            "tokens_per_s": tokens / wall}


def raft_cycle(model: Path, work: Path, size: Callable[[str], int], cpu: bool) -> dict[str, Any]:
    from halo_forge.config import parse_config
    from halo_forge.pipeline import run_pipeline
    from halo_forge.progress import Progress

    cores = os.cpu_count() or 1
    text = f"""
[model]
name = "{model}"
[data]
dataset = "builtin"
languages = ["python"]
limit = {size("raft_problems")}
[sft]
enabled = false
[raft]
cycles = 1
samples_per_prompt = {size("raft_samples")}
max_steps = 2
batch_size = 2
[generation]
max_new_tokens = {size("raft_tokens")}
[generation.engine]
backend = "transformers"
batch_size = {64 if not cpu else 4}
dtype = "{'float32' if cpu else 'bfloat16'}"
[verifier]
concurrency = {cores}
[benchmark]
enabled = false
[output]
dir = "{work / 'raft'}"
plot = false
progress = "plain"
"""
    config = parse_config(text, source="gpu_check raft")
    start = time.perf_counter()
    code, summary = run_pipeline(config, config_text=text, progress=Progress("plain"))
    wall = time.perf_counter() - start
    if code != 0 or summary is None or not summary.metrics:
        raise RuntimeError(f"the RAFT cycle exited {code}")
    m = summary.metrics[-1]
    return {"wall_s": wall, "samples": m.samples, "verifier_workers": cores,
            "gen_wait_s": m.gen_wait_s, "verify_wait_s": m.verify_wait_s}


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true",
                        help="reduced sizes on CPU (what the test suite runs)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the model and runs (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if not args.cpu and _cuda() is None:
        print("gpu_check: no CUDA device; pass --cpu for the reduced CPU check",
              file=sys.stderr)
        return 2

    def size(name: str) -> int:
        return SIZES[name][1 if args.cpu else 0]

    rows: list[tuple[str, dict[str, Any] | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            model = build_model(work, cpu=args.cpu)
        except Exception:  # noqa: BLE001 - a check reports every failure, then exits non-zero
            traceback.print_exc()
            print("gpu_check: could not build the model", file=sys.stderr)
            return 1
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("lora sft", lambda: sft_steps(model, work, size, args.cpu)),
            ("memory hand-back", lambda: memory_hand_back(model, work, size, args.cpu)),
            ("generation", lambda: generation(model, size, args.cpu)),
            ("raft cycle", lambda: raft_cycle(model, work, size, args.cpu)),
        ]
        for name, step in steps:
            try:
                rows.append((name, step(), "ok"))
            except Exception as exc:  # noqa: BLE001 - every step runs and is reported
                traceback.print_exc()
                rows.append((name, None, f"FAILED: {type(exc).__name__}: {exc}"))
    device = "cpu (reduced)" if args.cpu else _cuda().get_device_name(0)
    print(f"\nhalo-forge gpu_check on {device}, model {CONFIG.name}"
          + (" (shrunk)" if args.cpu else ""))
    print(f"{'step':<18} {'status':<8} measurements")
    for name, row, status in rows:
        shown = "  ".join(f"{k}={_fmt(v)}" for k, v in (row or {}).items() if k != "adapter")
        print(f"{name:<18} {status if status == 'ok' else 'FAILED':<8} "
              f"{shown if row else status}")
    if args.json:
        args.json.write_text(json.dumps({name: {"status": status, **(row or {})}
                                         for name, row, status in rows}, indent=1))
    return 0 if all(status == "ok" for _, _, status in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
