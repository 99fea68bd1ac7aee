"""The generation interface every backend implements, and what its configs and batches are.

A backend is made from a small msgspec config (`make_backend(config)`), and

    async for batch in backend.stream(problems, samples_per_prompt=8, params=settings):
        ...  # batch.samples: list[Sample], batch.stats: samples/s, tokens/s

yields Samples in batches of bounded size as the model finishes them. Model work runs in a
worker thread, so the event loop keeps verifying earlier batches while the model generates.
`load_adapter(path)` switches to a new LoRA adapter (each RAFT cycle trains one),
`sleep()`/`wake_up()` free the accelerator around training, and `close()` releases it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, TypeVar

import msgspec

from halo_forge.records import GenerationParams, Problem, Sample

T = TypeVar("T")


class SamplingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to sample. temperature 0 is greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: list[str] = []  # the completion ends before the first of these (not included)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")


class _Common(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str = ""  # HF id or local folder; "" = the adapter's base model
    adapter: str = ""  # LoRA adapter folder; "" = the base model
    system: str | None = None  # None: halo_forge.data.chat.DEFAULT_SYSTEM; "" = no system turn


class TransformersConfig(_Common, tag="transformers", tag_field="backend"):
    batch_size: int = 16  # sequences per generate() call (= per yielded batch)
    device: str = "auto"  # "auto": cuda when there is one, else cpu
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


# The ranks vLLM's engine accepts as max_lora_rank; it refuses any other value when it starts.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class VLLMConfig(_Common, tag="vllm", tag_field="backend"):
    batch_size: int = 256  # prompts per LLM.generate() call; vLLM schedules within it
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_lora_rank: Annotated[int, msgspec.Meta(description=(
        "vllm: the largest LoRA rank the engine serves, >= the adapter's rank; one of "
        + ", ".join(map(str, VLLM_LORA_RANKS))))] = 64
    max_model_len: int | None = None
    dtype: str = "auto"
    enable_sleep_mode: bool = True
    seed: int = 0
    # After each new adapter: a greedy fixed-seed probe must differ from the base model's and
    # the previous adapter's, else the adapter is not applied (stale LoRA cache, wrong path).
    probe: Literal["error", "warn", "off"] = "error"
    probe_tokens: int = 24

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.tensor_parallel_size < 1:
            raise ValueError("batch_size and tensor_parallel_size must be at least 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if self.max_lora_rank not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of vLLM's {list(VLLM_LORA_RANKS)}, "
                             f"got {self.max_lora_rank}")


class OpenAIConfig(_Common, tag="openai", tag_field="backend"):
    # One server (base_url) or several (base_urls: each request goes to the live one with the
    # fewest requests in flight; one that fails is taken out and its requests re-sent).
    base_url: str = ""  # "" with no base_urls: http://localhost:8000/v1
    base_urls: list[str] = []
    api_key_env: str = "OPENAI_API_KEY"  # read from the environment, never from the config
    batch_size: int = 256  # samples per yielded batch (its requests run concurrently)
    concurrency: int = 32  # requests in flight, over all servers together
    max_tokens_field: str = "max_tokens"  # OpenAI's own API wants "max_completion_tokens"
    send_n: bool = True  # ask for n choices per request (servers that ignore it get topped up)
    timeout_s: float = 600.0  # one request's deadline (and one adapter load's)
    retries: int = 6  # per server, for 5xx answers (and transport errors with one server)
    health_timeout_s: float = 10.0  # GET {base}/models must answer within this
    # How load_adapter reaches the server: "vllm" uses vLLM's runtime LoRA endpoint
    # (`vllm serve --enable-lora` with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); "none" refuses.
    lora_loading: Literal["none", "vllm"] = "none"
    # After each adapter load, per server: a greedy probe (with logprobs) must differ from the
    # base model's and the previous adapter's, else the adapter is not applied there.
    probe: Literal["error", "warn", "off"] = "error"
    probe_tokens: int = 24

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        if self.base_url and self.base_urls:
            raise ValueError("set base_url (one server) or base_urls (several), not both")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_urls: {url!r} is not an http(s):// URL")
        if len({u.rstrip("/") for u in self.urls}) != len(self.urls):
            raise ValueError("base_urls: a server is listed twice")
        if self.timeout_s <= 0 or self.health_timeout_s <= 0:
            raise ValueError("timeout_s and health_timeout_s must be > 0")
        if self.retries < 0 or self.probe_tokens < 1:
            raise ValueError("retries must be >= 0 and probe_tokens >= 1")
        # `model` may be empty here: in a pipeline it comes from [model] when the backend is
        # made; OpenAIBackend refuses to start without it.

    @property
    def urls(self) -> list[str]:
        """The servers' base URLs (base_url is the one-server shorthand)."""
        return list(self.base_urls) or [self.base_url or "http://localhost:8000/v1"]


GenerateConfig = TransformersConfig | VLLMConfig | OpenAIConfig
# backend name ([generation.engine] backend, --backend) -> its settings; the one list of them.
ENGINES: dict[str, type[GenerateConfig]] = {
    c.__struct_config__.tag: c for c in (TransformersConfig, VLLMConfig, OpenAIConfig)}


class BatchStats(msgspec.Struct, kw_only=True):
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    failed: int = 0  # samples asked for but not produced (requests that failed after retries)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def describe(self) -> str:
        return (f"{self.samples} samples in {self.wall_s:.2f}s: {self.samples_per_s:.1f} "
                f"samples/s, {self.tokens_per_s:.0f} tokens/s")


@dataclass(frozen=True)
class Batch:
    """Samples finished together and the throughput of making them; iterates as its samples."""

    samples: list[Sample]
    stats: BatchStats

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)


class Backend(Protocol):
    name: str
    model: str  # the base model
    adapter: str  # the adapter now applied ("" = the base model)

    def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
               params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]: ...

    def load_adapter(self, path: str | None) -> None: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...

    def close(self) -> None: ...


def sample_id(problem_id: str, cycle: int, index: int) -> str:
    return f"{problem_id}/c{cycle}/s{index}"


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop string (OpenAI semantics: the stop is not included)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def make_sample(problem: Problem, *, cycle: int, index: int, completion: str,
                prompt_tokens: int, completion_tokens: int,
                params: GenerationParams) -> Sample:
    """The completion as a Sample. `code` stays empty: extraction is the verifier's (one
    definition of what counts as the code); RAFT fills it where the stages meet."""
    return Sample(
        id=sample_id(problem.id, cycle, index), problem_id=problem.id, cycle=cycle, index=index,
        language=problem.language, completion=completion,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, params=params,
    )


def generation_params(*, model: str, adapter: str, settings: SamplingSettings,
                      seed: int | None) -> GenerationParams:
    return GenerationParams(model=model, adapter=adapter, temperature=settings.temperature,
                            top_p=settings.top_p, max_new_tokens=settings.max_new_tokens,
                            seed=seed)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_samples_per_prompt(n: int) -> None:
    from halo_forge.errors import HaloError

    if n < 1:
        raise HaloError(f"samples per prompt must be at least 1, got {n}")
