"""Generation from any OpenAI-compatible server (`vllm serve`, llama.cpp, a hosted API).

The server applies the model's chat template, so requests carry chat messages. One request
per problem asks for its `n` samples; a server that ignores `n` (llama.cpp answers with one
choice) is asked again for the rest. Requests run concurrently (bounded by `concurrency`)
through halo_forge.chat_client, the client `data generate` uses, with its retries and backoff.

Each yielded batch is one window of problems whose requests ran together: the window's
requests finish before the batch is yielded, so the task group never spans a `yield` (an
async generator must not yield inside a task group; its cancel scope would leak into the
consumer). Windows hold about `batch_size` samples, enough to keep `concurrency` requests busy.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from halo_forge.chat_client import ApiError, ChatClient, Endpoint
from halo_forge.data.chat import DEFAULT_SYSTEM, problem_messages
from halo_forge.errors import HaloError, first_error
from halo_forge.generate.base import (
    Batch,
    BatchStats,
    OpenAIConfig,
    SamplingSettings,
    check_samples_per_prompt,
    chunked,
    generation_params,
    make_sample,
)
from halo_forge.records import Problem, Sample

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, transport: Any = None) -> None:
        if not config.model:
            raise HaloError("the openai backend needs a model: the name the server serves "
                            "([model] name, or --model)")
        self.config = config
        self.model = config.model  # the name the server serves
        self.served = config.model  # what requests ask for: the model, or a loaded adapter
        self.adapter = ""
        self.system = DEFAULT_SYSTEM if config.system is None else (config.system or None)
        self._transport = transport
        self._endpoint = Endpoint("openai-compatible", config.base_url, config.model,
                                  config.api_key_env, False, config.max_tokens_field)
        self._api_key = os.environ.get(config.api_key_env) or None
        self._loads = 0
        if config.adapter:
            self.load_adapter(config.adapter)

    def _client(self, settings: SamplingSettings) -> ChatClient:
        return ChatClient(endpoint=self._endpoint, base_url=self.config.base_url,
                          model=self.served, api_key=self._api_key,
                          temperature=settings.temperature, max_tokens=settings.max_new_tokens,
                          retries=self.config.retries, timeout_s=self.config.timeout_s,
                          max_connections=self.config.concurrency, transport=self._transport)

    def _fields(self, settings: SamplingSettings, n: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"top_p": settings.top_p}
        if self.config.send_n:
            fields["n"] = n
        if settings.stop:
            fields["stop"] = list(settings.stop)
        if settings.seed is not None:
            fields["seed"] = settings.seed
        return fields

    async def _one_problem(self, client: ChatClient, problem: Problem, n: int,
                           settings: SamplingSettings, out: list[tuple[str, int, int]]) -> int:
        """Appends up to n (completion, prompt tokens, completion tokens); returns failures."""
        messages = [{"role": m.role, "content": m.content}
                    for m in problem_messages(problem, system=self.system, with_answer=False)]
        for _ in range(n):  # each round gets at least one choice, so n rounds always suffice
            missing = n - len(out)
            if missing <= 0:
                break
            try:
                data = await client.chat(messages, **self._fields(settings, missing))
            except ApiError as exc:
                log.warning("openai backend: %s: request failed (%s); %d samples missing",
                            problem.id, exc, missing)
                return missing
            usage = data.get("usage") or {}
            choices = data["choices"][:missing]
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            total = int(usage.get("completion_tokens") or 0)
            for choice in choices:
                try:
                    text = choice["message"]["content"] or ""
                except (KeyError, TypeError):
                    text = ""
                # usage counts every choice together; split it evenly between them.
                out.append((text, prompt_tokens, total // max(1, len(choices))))
        return max(0, n - len(out))

    async def _limited(self, limiter: anyio.CapacityLimiter, client: ChatClient,
                       problem: Problem, n: int, settings: SamplingSettings,
                       out: list[tuple[str, int, int]], failed: list[int], i: int) -> None:
        async with limiter:
            failed[i] = await self._one_problem(client, problem, n, settings, out)

    async def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
                     params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]:
        check_samples_per_prompt(samples_per_prompt)
        n = samples_per_prompt
        per_window = max(1, math.ceil(self.config.batch_size / n))
        client = self._client(params)
        limiter = anyio.CapacityLimiter(self.config.concurrency)
        gp = generation_params(model=self.served, adapter=self.adapter, settings=params,
                               seed=params.seed)
        try:
            for window in chunked(problems, per_window):
                results: list[list[tuple[str, int, int]]] = [[] for _ in window]
                failed = [0] * len(window)

                start = time.perf_counter()
                try:
                    async with anyio.create_task_group() as tg:
                        for i in range(len(window)):
                            tg.start_soon(self._limited, limiter, client, window[i], n, params,
                                          results[i], failed, i)
                except BaseExceptionGroup as group:  # a refused key: say so, not as a group
                    raise first_error(group) from None
                wall = time.perf_counter() - start
                samples: list[Sample] = []
                for problem, got in zip(window, results):
                    for index, (text, n_prompt, n_completion) in enumerate(got):
                        samples.append(make_sample(
                            problem, cycle=cycle, index=index, completion=text,
                            prompt_tokens=n_prompt, completion_tokens=n_completion, params=gp))
                yield Batch(samples, BatchStats(
                    samples=len(samples), prompt_tokens=sum(s.prompt_tokens for s in samples),
                    completion_tokens=sum(s.completion_tokens for s in samples), wall_s=wall,
                    failed=sum(failed)))
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def load_adapter(self, path: str | None) -> None:
        """Serve a new adapter: vLLM's runtime LoRA endpoint loads it under a new name."""
        if not path:
            self.served, self.adapter = self.model, ""
            return
        if self.config.lora_loading != "vllm":
            raise HaloError(
                "the openai backend cannot load adapters into a server it does not run; set "
                "lora_loading = \"vllm\" for `vllm serve --enable-lora` started with "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or use the vllm backend")
        import httpx

        self._loads += 1
        name = f"halo-forge-{self._loads}"  # a new name per adapter: vLLM caches by name
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = self.config.base_url.rstrip("/") + "/load_lora_adapter"
        transport = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
        try:
            with httpx.Client(timeout=self.config.timeout_s, transport=transport) as http:
                resp = http.post(url, json={"lora_name": name, "lora_path": str(path)},
                                 headers=headers)
        except httpx.TransportError as exc:
            raise HaloError(f"cannot reach {url} to load adapter {path} ({exc})") from None
        if resp.status_code != 200:
            raise HaloError(f"{url} refused adapter {path}: HTTP {resp.status_code} "
                            f"{resp.text[:200].strip()}")
        self.served, self.adapter = name, str(path)

    def sleep(self) -> None:
        """The server owns its GPU; nothing to free here."""

    def wake_up(self) -> None:
        """The server owns its GPU; nothing to restore here."""

    def close(self) -> None:
        """Clients are per stream and closed with it."""
