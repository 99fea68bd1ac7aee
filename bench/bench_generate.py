"""Generation throughput: the transformers backend batched against one sequence at a time,
and, where vLLM imports, the vllm backend against the batched transformers backend.

    python bench/bench_generate.py [--problems N] [--samples K] [--batch B] [--tokens T]
    python -m pytest bench/bench_generate.py      # the same under pytest-benchmark
    .venv-vllm/bin/python bench/bench_generate.py # with the vLLM row (README: vLLM on CPU)

Each pair uses the same tiny model (built on the fly), prompts and sampling settings, in the
same run; the first baseline is batch_size=1 (what a naive loop over prompts does). The vLLM
pair uses the tiny model with 64-wide heads (the narrowest vLLM's CPU attention accepts) for
both engines, and leaves the engine's start (~20 s) out of its timing. Prints samples/s,
tokens/s and the ratios. On a GPU with a real model both advantages are much larger than on
2 CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402

from halo_forge.data.registry import load_problems  # noqa: E402
from halo_forge.generate import (  # noqa: E402
    SamplingSettings,
    TransformersConfig,
    VLLMConfig,
    make_backend,
)
from halo_forge.tiny_model import build_tiny_model  # noqa: E402


def run(backend, problems, samples: int, tokens: int) -> tuple[int, int, float]:
    settings = SamplingSettings(max_new_tokens=tokens, seed=0)

    async def go():
        n = toks = 0
        async for batch in backend.stream(problems, samples_per_prompt=samples, params=settings):
            n += batch.stats.samples
            toks += batch.stats.completion_tokens
        return n, toks

    start = time.perf_counter()
    n, toks = anyio.run(go)
    return n, toks, time.perf_counter() - start


def compare(model: Path, *, problems: int, samples: int, batch: int, tokens: int) -> float:
    probs = load_problems("builtin")[:problems]
    results = {}
    for name, size in (("one at a time", 1), (f"batched ({batch})", batch)):
        backend = make_backend(TransformersConfig(model=str(model), batch_size=size))
        run(backend, probs[:1], 1, 4)  # warm-up
        n, toks, wall = run(backend, probs, samples, tokens)
        results[name] = n / wall
        print(f"{name:>16}: {n} samples, {n / wall:7.1f} samples/s, {toks / wall:8.0f} tokens/s")
        backend.close()
    ratio = results[f"batched ({batch})"] / results["one at a time"]
    print(f"batched / one at a time: {ratio:.1f}x samples/s")
    return ratio


def compare_vllm(model: Path, *, problems: int, samples: int, batch: int, tokens: int) -> float:
    """vllm / transformers (batched) samples/s on the same prompts and settings."""
    probs = load_problems("builtin")[:problems]
    results = {}
    engines = (
        ("transformers", TransformersConfig(model=str(model), batch_size=batch)),
        # examples/cpu-tiny-vllm.toml's engine settings.
        ("vllm", VLLMConfig(model=str(model), dtype="float32", gpu_memory_utilization=0.1,
                            max_model_len=1024, enable_sleep_mode=False, max_lora_rank=16)),
    )
    for name, config in engines:
        backend = make_backend(config)
        run(backend, probs[:1], 1, 4)  # warm-up
        n, toks, wall = run(backend, probs, samples, tokens)
        results[name] = n / wall
        print(f"{name:>16}: {n} samples, {n / wall:7.1f} samples/s, {toks / wall:8.0f} tokens/s")
        backend.close()
    ratio = results["vllm"] / results["transformers"]
    print(f"vllm / transformers (batched {batch}): {ratio:.1f}x samples/s")
    return ratio


def has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def test_batched_generation(benchmark, tmp_path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    ratio = benchmark.pedantic(compare, args=(model,), kwargs=dict(
        problems=8, samples=4, batch=16, tokens=32), rounds=1, iterations=1)
    assert ratio > 0


def test_vllm_against_transformers(benchmark, tmp_path) -> None:
    import pytest

    if not has_vllm():
        pytest.skip("needs vLLM (.venv-vllm; README: 'The vLLM engine on CPU')")
    model = build_tiny_model(tmp_path / "tiny", heads=1)
    ratio = benchmark.pedantic(compare_vllm, args=(model,), kwargs=dict(
        problems=8, samples=4, batch=16, tokens=32), rounds=1, iterations=1)
    assert ratio > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        compare(model, problems=a.problems, samples=a.samples, batch=a.batch, tokens=a.tokens)
        if has_vllm():
            wide = build_tiny_model(Path(tmp) / "tiny-vllm", heads=1)
            compare_vllm(wide, problems=a.problems, samples=a.samples, batch=a.batch,
                         tokens=a.tokens)
        else:
            print("vllm: not importable here; run it with .venv-vllm/bin/python for that row")


if __name__ == "__main__":
    main()
