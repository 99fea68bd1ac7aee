"""Generation backends: transformers (CPU/GPU, the tested path), vLLM (fast, GPU), and any
OpenAI-compatible server. See base.py for the interface; `make_backend(config)` builds one.
Backends import their heavy libraries only when made, so importing this package is cheap."""

from __future__ import annotations

from halo_forge.generate.base import (
    Backend,
    Batch,
    BatchStats,
    GenerateConfig,
    OpenAIConfig,
    SamplingSettings,
    TransformersConfig,
    VLLMConfig,
)


def make_backend(config: GenerateConfig) -> Backend:
    if isinstance(config, TransformersConfig):
        from halo_forge.generate.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if isinstance(config, VLLMConfig):
        from halo_forge.generate.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    if isinstance(config, OpenAIConfig):
        from halo_forge.generate.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    raise TypeError(f"not a generation config: {type(config).__name__}")


__all__ = ["Backend", "Batch", "BatchStats", "GenerateConfig", "OpenAIConfig",
           "SamplingSettings", "TransformersConfig", "VLLMConfig", "make_backend"]
