"""Generation from any OpenAI-compatible server (`vllm serve`, llama.cpp, a hosted API).

The server applies the model's chat template, so requests carry chat messages. One request
per problem asks for its `n` samples; a server that ignores `n` (llama.cpp answers with one
choice) is asked again for the rest. Requests run concurrently (bounded by `concurrency`)
through halo_forge.chat_client, the client `data generate` uses, with its retries and backoff.

Several servers (`base_urls`) share the requests through generate.servers.ServerPool: the
live server with the fewest requests in flight gets the next one; a server that fails is taken
out and its requests re-sent to another. Each new adapter is loaded into every server through
vLLM's runtime LoRA endpoint before the next stream starts, and a greedy probe per server must
differ from the base model's (and the previous adapter's) there, as in the vllm backend.

Each yielded batch is one window of problems whose requests ran together: the window's
requests finish before the batch is yielded, so the task group never spans a `yield` (an
async generator must not yield inside a task group; its cancel scope would leak into the
consumer). Windows hold about `batch_size` samples, enough to keep `concurrency` requests busy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import msgspec

from halo_forge.chat_client import ApiError, ChatClient, Endpoint, NotFound
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
from halo_forge.generate.servers import Server, ServerPool
from halo_forge.generate.vllm_backend import PROBE_MESSAGES  # one probe prompt for both
from halo_forge.records import Problem, Sample

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_blocking(fn: Callable[[], Awaitable[T]]) -> T:
    """`fn()` to completion from synchronous code (load_adapter is synchronous: the pipeline
    calls it from a worker thread), in a thread of its own when this one runs an event loop."""
    try:
        asyncio.get_running_loop()  # halo-forge runs anyio on asyncio
    except RuntimeError:  # no event loop in this thread
        return anyio.run(fn)
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(anyio.run(fn))
        except BaseException as exc:  # handed to the caller below
            result.append(exc)

    thread = threading.Thread(target=target, name="halo-forge-openai-admin")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


Signature = tuple[str, float | None]  # a probe's greedy text and its summed logprob


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
        self._endpoint = Endpoint("openai-compatible", config.urls[0], config.model,
                                  config.api_key_env, False, config.max_tokens_field)
        self._api_key = os.environ.get(config.api_key_env) or None
        self.pool = ServerPool(config.urls, api_key=self._api_key,
                               health_timeout_s=config.health_timeout_s, transport=transport)
        self.pool.on_ready = self._ready
        self._loads = 0
        self._switching = False  # load_adapter at work: servers that answer get the new one
        self._probes: dict[tuple[str, str], Signature] = {}  # (server, served name) -> probe
        if config.adapter:
            self.load_adapter(config.adapter)

    def _client(self, server: Server, settings: SamplingSettings) -> ChatClient:
        # With several servers a silent or unreachable one fails its request at once: another
        # server takes it, instead of it waiting out the retries' back-off.
        return ChatClient(endpoint=self._endpoint, base_url=server.url, model=self.served,
                          api_key=self._api_key, temperature=settings.temperature,
                          max_tokens=settings.max_new_tokens, retries=self.config.retries,
                          timeout_s=self.config.timeout_s,
                          max_connections=self.config.concurrency, transport=self._transport,
                          retry_transport=len(self.pool.servers) == 1)

    def _fields(self, settings: SamplingSettings, n: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"top_p": settings.top_p}
        if self.config.send_n:
            fields["n"] = n
        if settings.stop:
            fields["stop"] = list(settings.stop)
        if settings.seed is not None:
            fields["seed"] = settings.seed
        return fields

    async def _send(self, clients: dict[str, ChatClient], messages: list[dict[str, str]],
                    fields: dict[str, Any]) -> dict[str, Any]:
        """One request's answer from whichever server takes it; a server that fails it is
        taken out and the request goes to another (ApiError once each server had a go)."""
        sends = 0
        while True:
            server = await self.pool.acquire()
            sends += 1
            try:
                return await clients[server.url].chat(messages, **fields)
            except ApiError as exc:
                self.pool.take_out(server, str(exc))
                if sends >= self.pool.max_sends:
                    raise
            except NotFound as exc:
                if self.served == self.model or sends >= self.pool.max_sends:
                    raise  # the base model is not there: a wrong URL or model name
                # A restarted server forgot the adapter: out until its health check, which
                # loads it again.
                self.pool.take_out(server, f"lost adapter {self.served} ({exc})")
            finally:
                self.pool.release(server)

    async def _one_problem(self, clients: dict[str, ChatClient], problem: Problem, n: int,
                           settings: SamplingSettings, out: list[tuple[str, int, int]]) -> int:
        """Appends up to n (completion, prompt tokens, completion tokens); returns failures."""
        messages = [{"role": m.role, "content": m.content}
                    for m in problem_messages(problem, system=self.system, with_answer=False)]
        for _ in range(n):  # each round gets at least one choice, so n rounds always suffice
            missing = n - len(out)
            if missing <= 0:
                break
            try:
                data = await self._send(clients, messages, self._fields(settings, missing))
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

    async def _limited(self, limiter: anyio.CapacityLimiter, clients: dict[str, ChatClient],
                       problem: Problem, n: int, settings: SamplingSettings,
                       out: list[tuple[str, int, int]], failed: list[int], i: int) -> None:
        async with limiter:
            failed[i] = await self._one_problem(clients, problem, n, settings, out)

    async def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
                     params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]:
        check_samples_per_prompt(samples_per_prompt)
        n = samples_per_prompt
        per_window = max(1, math.ceil(self.config.batch_size / n))
        await self.pool.check_all()
        self.pool.reset_stats()
        clients = {s.url: self._client(s, params) for s in self.pool.servers}
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
                            tg.start_soon(self._limited, limiter, clients, window[i], n, params,
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
                for client in clients.values():
                    await client.aclose()
            log.info("openai backend: cycle %d: %s", cycle, self.pool.describe())

    # --- adapters ------------------------------------------------------------------------

    def load_adapter(self, path: str | None) -> None:
        """Serve a new adapter: vLLM's runtime LoRA endpoint loads it into every live server
        under a new name (vLLM caches adapters by name), then the probe checks each applies it."""
        if not path:
            self.served, self.adapter = self.model, ""
            return
        if self.config.lora_loading != "vllm":
            raise HaloError(
                "the openai backend cannot load adapters into a server it does not run; set "
                "lora_loading = \"vllm\" for `vllm serve --enable-lora` started with "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or use the vllm backend")
        self._loads += 1
        name = f"halo-forge-{self._loads}"
        self._switching = True
        try:
            run_blocking(lambda: self._load_everywhere(name, str(path)))
        except BaseExceptionGroup as group:  # a probe's one line, not a group of them
            raise first_error(group) from None
        finally:
            self._switching = False

    async def _load_everywhere(self, name: str, path: str) -> None:
        await self.pool.check_all()
        refused: dict[str, str] = {}

        async def load(server: Server) -> None:
            why = await self._load_into(server, name, path)
            if why:
                refused[server.url] = why
                self.pool.take_out(server, why, count=False)

        async with anyio.create_task_group() as tg:
            for server in self.pool.live:
                tg.start_soon(load, server)
        if not self.pool.live:
            why = "; ".join(f"{u}: {r}" for u, r in refused.items())
            raise HaloError(
                f"no generation server loaded adapter {path} ({why}); each needs `vllm serve "
                "--enable-lora` started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and the "
                "adapter folder on a file system it sees")
        if self.config.probe != "off":
            async with anyio.create_task_group() as tg:
                for server in self.pool.live:
                    tg.start_soon(self._check_applied, server, name, path)
            if not self.pool.live:
                raise HaloError(f"adapter {path}: {self.pool.none_left()}")
        old = self.served if self.served != self.model else ""
        for server in self.pool.live if old else ():
            await self._unload(server, old)
        self._probes = {k: v for k, v in self._probes.items() if k[1] in (self.model, name)}
        self.served, self.adapter = name, path

    async def _post(self, server: Server, route: str, body: dict[str, Any]) -> tuple[int, str]:
        """(status, text) of POST {base}{route}; status 0 and the reason when none came."""
        import httpx

        timeout = self.config.timeout_s
        try:
            with anyio.fail_after(timeout):
                async with self.pool.http(timeout) as http:
                    resp = await http.post(server.url + route, json=body)
        except TimeoutError:
            return 0, f"no answer to POST {route} within {timeout:g}s"
        except httpx.HTTPError as exc:
            return 0, f"POST {route}: {type(exc).__name__}: {exc}"
        return resp.status_code, resp.text

    async def _load_into(self, server: Server, name: str, path: str) -> str:
        """"" when the server loaded adapter `path` as `name`, else why not."""
        status, text = await self._post(server, "/load_lora_adapter",
                                        {"lora_name": name, "lora_path": path})
        if status == 200 or (status == 400 and "already" in text.lower()):
            return ""  # 400 "already loaded": a server that kept it while it was out
        if status == 0:
            return text
        return f"POST /load_lora_adapter refused {path}: HTTP {status} {text[:200].strip()}"

    async def _unload(self, server: Server, name: str) -> None:
        """Frees the previous adapter's slot; a server that cannot is only slower."""
        status, text = await self._post(server, "/unload_lora_adapter", {"lora_name": name})
        if status != 200:
            log.info("openai backend: %s kept adapter %s (unload: %s %s)", server.url, name,
                     status or "", text[:200].strip())

    async def _ready(self, server: Server, served: list[str]) -> str:
        """A server that answers again (perhaps restarted) gets the adapter in use first."""
        if self._switching or not self.adapter or self.served in served:
            return ""
        return await self._load_into(server, self.served, self.adapter)

    async def _probe(self, server: Server, model: str) -> Signature | str:
        """The probe's signature on `server` for `model` (a base or adapter name), or why
        there is none."""
        body = {"model": model, "messages": PROBE_MESSAGES, "temperature": 0.0,
                self.config.max_tokens_field: self.config.probe_tokens, "seed": 0,
                "logprobs": True, "stream": False}
        status, text = await self._post(server, "/chat/completions", body)
        if status != 200:
            return f"probe for {model}: " + (text if status == 0 else f"HTTP {status} "
                                               f"{text[:200].strip()}")
        try:
            choice = msgspec.json.decode(text)["choices"][0]
            content = choice["message"]["content"] or ""
            tokens = (choice.get("logprobs") or {}).get("content") or []
            # The log-probability moves with any change in the weights, even when the greedy
            # text does not.
            logprob = round(sum(float(t["logprob"]) for t in tokens), 4) if tokens else None
        except (msgspec.DecodeError, KeyError, IndexError, TypeError, ValueError):
            return f"probe for {model}: not a chat-completions answer"
        return content, logprob

    async def _check_applied(self, server: Server, name: str, path: str) -> None:
        """Takes the server out when a probe cannot run; equal probes: error or warning."""
        key = (server.url, self.model)
        if key not in self._probes:
            base = await self._probe(server, self.model)
            if isinstance(base, str):
                self.pool.take_out(server, base, count=False)
                return
            self._probes[key] = base
        signature = await self._probe(server, name)
        if isinstance(signature, str):
            self.pool.take_out(server, signature, count=False)
            return
        self._probes[(server.url, name)] = signature
        before = [("the base model", self._probes[key])]
        previous = self._probes.get((server.url, self.served))
        if self.served != self.model and previous is not None:
            before.append((f"the previous adapter {self.adapter}", previous))
        for what, old in before:
            if signature == old:
                msg = (f"adapter {path} is not applied on {server.url}: the probe's output "
                       f"equals {what}'s (a server that ignores the adapter, or an untrained "
                       "adapter); set probe = \"warn\" to continue anyway")
                if self.config.probe == "error":
                    raise HaloError(msg)
                log.warning(msg)

    def sleep(self) -> None:
        """The servers own their GPUs; nothing to free here."""

    def wake_up(self) -> None:
        """The servers own their GPUs; nothing to restore here."""

    def close(self) -> None:
        """Clients are per stream and closed with it."""
