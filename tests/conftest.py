"""Shared fixtures. Add fixtures here; never remove one another test file uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub here: a model id that is not a local folder must fail at once, not after retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def anyio_backend():
    """Async tests (pytest.mark.anyio) run on asyncio, the backend halo-forge's pipeline uses."""
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A real model folder (2-layer Qwen2, safetensors, BPE tokenizer with a ChatML template),
    built once per test session from the built-in problems."""
    from halo_forge.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def sft_examples():
    """The built-in problems with a reference, as chat examples."""
    from halo_forge.data.registry import load_problems
    from halo_forge.train import example_from_problem

    return [example_from_problem(p) for p in load_problems("builtin") if p.reference.strip()]


@pytest.fixture(scope="session")
def trained_adapter(tiny_model, sft_examples, tmp_path_factory):
    """One short LoRA SFT run on the tiny model: (TrainResult, run folder)."""
    from halo_forge.train import SFTConfig, train

    out = tmp_path_factory.mktemp("sft") / "run"
    config = SFTConfig(model=str(tiny_model), max_steps=64, batch_size=4, grad_accum=1,
                       learning_rate=5e-3, warmup_ratio=0.1, logging_steps=1, save_steps=64,
                       eval_steps=64, eval_fraction=0.1, progress=False, seed=0)
    return train(config, data=sft_examples, output_dir=out), out
