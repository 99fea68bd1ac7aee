"""One OpenAI-compatible chat-completions client: httpx, retries with backoff, clear errors.

Shared by `data generate` (problems from an LLM API) and the `openai` generation backend
(samples from any OpenAI-compatible server: `vllm serve`, llama.cpp, a hosted API), so both
retry the same way: 408/409/429/5xx and transport errors with exponential backoff and jitter
(honouring Retry-After); a refused key or a wrong URL/model is a HaloError at once, because
retrying cannot fix it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import anyio

from halo_forge.errors import HaloError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible API: where it is, its default model, where its key comes from.
    (A generation backend is generate.base.Backend; this is only the server it may talk to.)"""

    name: str
    base_url: str | None
    model: str | None
    key_env: str
    key_required: bool
    # OpenAI's current name for the output budget; DeepSeek, vLLM and llama.cpp read max_tokens.
    max_tokens_field: str = "max_tokens"


OPENAI_COMPATIBLE = Endpoint("openai-compatible", None, None, "OPENAI_API_KEY", False)


class ApiError(Exception):
    """The request failed after its retries (or got an answer that is not chat-completions)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} {detail}".strip())
        self.reason = reason


class NotFound(HaloError):
    """HTTP 404: no such URL or model. A server that lost a runtime-loaded adapter (restarted)
    answers so too, which a caller with other servers can recover from."""


class ChatClient:
    """POST {base_url}/chat/completions with retries; one shared httpx.AsyncClient."""

    def __init__(self, *, endpoint: Endpoint, base_url: str, model: str, api_key: str | None,
                 temperature: float = 1.0, max_tokens: int = 4096, retries: int = 6,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, timeout_s: float = 300.0,
                 max_connections: int = 100, transport: Any = None,
                 retry_transport: bool = True) -> None:
        import httpx

        self.endpoint, self.model = endpoint, model
        # The whole request's deadline: httpx's timeout is per phase, so a server that
        # trickles bytes (or a test transport that never answers) could hold it far longer.
        self.timeout_s = timeout_s
        # False: an unreachable or silent server fails the request at once (ApiError
        # "unreachable"), for a caller that has another server to send it to.
        self.retry_transport = retry_transport
        self.temperature, self.max_tokens = temperature, max_tokens
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers,
                                       timeout=timeout_s, limits=limits, transport=transport)
        self.requests = 0
        self.retried = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    def body(self, messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
        """The request body; `fields` (n, top_p, stop, seed, ...) override the defaults."""
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "temperature": self.temperature,
                                self.endpoint.max_tokens_field: self.max_tokens, "stream": False}
        body.update(fields)
        return body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        base = min(self.backoff_s * (2 ** attempt), self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # jitter so workers do not retry in lockstep

    async def chat(self, messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
        """The decoded chat-completions answer (it has a non-empty `choices` list).

        Raises HaloError for what retrying cannot fix (a bad key, a wrong URL or model) and
        ApiError when the retries ran out or the answer is not chat-completions JSON."""
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self.requests += 1
            retry_after = None
            try:
                with anyio.fail_after(self.timeout_s):
                    resp = await self._http.post("chat/completions",
                                                 json=self.body(messages, **fields))
            except (httpx.TransportError, TimeoutError) as exc:  # refused, reset, timed out
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if not self.retry_transport:
                    raise ApiError("unreachable", last) from None
            else:
                if resp.status_code == 200:
                    try:
                        data = resp.json()
                        choices = data["choices"]
                        if not isinstance(choices, list) or not choices:
                            raise ValueError("no choices")
                        return data
                    except (ValueError, KeyError, TypeError):
                        raise ApiError("bad_response") from None
                if resp.status_code in (401, 403):
                    raise HaloError(f"{self.endpoint.name}: the API key was refused "
                                    f"(HTTP {resp.status_code}); check ${self.endpoint.key_env}")
                if resp.status_code in (400, 404, 422):
                    kind = NotFound if resp.status_code == 404 else HaloError
                    raise kind(f"{self.endpoint.name}: HTTP {resp.status_code} from "
                               f"{resp.request.url}: {resp.text[:200].strip()}; check "
                               "--base-url and --model")
                if resp.status_code not in RETRY_STATUS:
                    raise ApiError(f"http_{resp.status_code}")
                last = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("retry-after")
            if attempt < self.retries:
                await anyio.sleep(self._delay(attempt, retry_after))
        raise ApiError("api_error", last)

    async def complete(self, messages: list[dict[str, str]]) -> str:
        """The first answer's text (see `chat` for the errors)."""
        data = await self.chat(messages)
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ApiError("bad_response") from None
