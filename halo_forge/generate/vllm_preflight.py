"""What a run with the vllm backend checks before it starts: the launch and the memory plan.

Each refusal here replaces a failure that would otherwise come hours into a run: one engine per
rank on the same GPU under `accelerate launch`, training with no memory beside an engine that
cannot sleep, or vLLM refusing its sleep mode under PyTorch's expandable segments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from halo_forge.errors import HaloError
from halo_forge.generate.base import GenerateConfig, VLLMConfig


def check_launch(engine: GenerateConfig, env: Mapping[str, str] | None = None) -> None:
    """Refuse a multi-process launch of the whole run: each rank would build its own engine on
    the same devices. One process drives the engine across the GPUs (tensor parallel)."""
    env = os.environ if env is None else env
    if not isinstance(engine, VLLMConfig):
        return
    try:
        world = int(env.get("WORLD_SIZE", "1") or "1")
    except ValueError:
        world = 1
    if world > 1:
        raise HaloError(
            f"the vllm backend runs one engine for the whole run, but this process is one of "
            f"WORLD_SIZE={world} ranks (accelerate launch / torchrun); run `python -m halo_forge "
            f"run CONFIG` without a launcher and set [generation.engine] tensor_parallel_size = "
            f"{world} to generate on {world} GPUs")


def check_memory_plan(engine: GenerateConfig, *, gpus: int,
                      env: Mapping[str, str] | None = None) -> None:
    """Refuse a memory plan vLLM or training would fail on later. `gpus`: CUDA devices visible
    (0: the CPU engine, which has no sleep mode and nothing to share)."""
    env = os.environ if env is None else env
    if not isinstance(engine, VLLMConfig) or gpus < 1:
        return
    if engine.tensor_parallel_size > gpus:
        raise HaloError(f"[generation.engine] tensor_parallel_size = "
                        f"{engine.tensor_parallel_size} but {gpus} GPU(s) are visible; set it "
                        f"to at most {gpus}")
    if not engine.enable_sleep_mode and gpus == engine.tensor_parallel_size:
        raise HaloError(
            "[generation.engine] enable_sleep_mode = false leaves training no GPU memory: the "
            "engine keeps gpu_memory_utilization of every GPU it uses while the adapter trains; "
            "set enable_sleep_mode = true")
    alloc = env.get("PYTORCH_CUDA_ALLOC_CONF", "") + "," + env.get("PYTORCH_ALLOC_CONF", "")
    options = {part.split(":", 1)[0].strip(): part.split(":", 1)[-1].strip().lower()
               for part in alloc.split(",") if ":" in part}
    if engine.enable_sleep_mode and options.get("expandable_segments") == "true":
        raise HaloError(
            "PYTORCH_CUDA_ALLOC_CONF has expandable_segments:True, which vLLM's sleep mode "
            "refuses; unset it (or drop expandable_segments) for runs with the vllm backend")


def visible_gpus() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
