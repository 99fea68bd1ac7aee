"""Which of several OpenAI-compatible servers gets each request, and which of them are up.

The openai backend sends every request through a ServerPool: `acquire()` picks the live
server with the fewest requests in flight (ties go round robin), so a slow or busy server gets
fewer. A server whose request fails (unreachable, silent past the deadline, 5xx after the
client's retries) is taken out; its failed requests are re-sent to another, and it is asked
again (GET {base}/models) after a back-off that doubles each time it stays down. A server that
answers may be a restarted one that lost the runtime-loaded adapter, so the backend's
`on_ready` (given the names the server lists) loads it again before it gets requests. When no server is left, every server is asked once more, and
if none answers the run stops with one line naming them. Every wait here has a deadline: the
health check's own, and the request's in ChatClient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from halo_forge.errors import HaloError

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 300.0


@dataclass(eq=False)
class Server:
    url: str  # the base URL, without a trailing slash
    live: bool = True
    outstanding: int = 0  # requests in flight on it now
    requests: int = 0  # sent to it this cycle (each re-send counts)
    failures: int = 0  # of those, failed there this cycle
    reason: str = ""  # why it was taken out
    retry_at: float = 0.0  # monotonic time of the next health check while it is out
    backoff_s: float = FIRST_BACKOFF_S
    checking: bool = False


class ServerPool:
    def __init__(self, urls: Sequence[str], *, api_key: str | None, health_timeout_s: float,
                 transport: Any = None) -> None:
        if not urls:
            raise HaloError("the openai backend needs a server: set base_url or base_urls")
        self.servers = [Server(u.rstrip("/")) for u in urls]
        self.health_timeout_s = health_timeout_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = transport
        # Called with the model names a server lists each time it answers the health check,
        # before it gets requests; returns "" or why it cannot serve.
        self.on_ready: Callable[[Server, list[str]], Awaitable[str]] | None = None
        self._next = 0  # round robin among equally loaded servers
        self._lock: anyio.Lock | None = None  # made in the event loop that uses it
        self._down: str = ""  # set when a full check found no server; cleared by check_all

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def live(self) -> list[Server]:
        return [s for s in self.servers if s.live]

    @property
    def max_sends(self) -> int:
        """How often one request is sent before it counts as failed: each server once, and
        once more for a server that came back."""
        return len(self.servers) + 1

    def http(self, timeout_s: float) -> Any:
        import httpx

        return httpx.AsyncClient(timeout=timeout_s, headers=self.headers,
                                 transport=self.transport)

    # --- health --------------------------------------------------------------------------

    async def health(self, server: Server) -> tuple[str, list[str]]:
        """("", the model names it serves) when GET {base}/models answers 200 within the
        health timeout, else (why not, [])."""
        import httpx

        try:
            with anyio.fail_after(self.health_timeout_s):
                async with self.http(self.health_timeout_s) as http:
                    resp = await http.get(server.url + "/models")
        except TimeoutError:
            return f"no answer to GET /models within {self.health_timeout_s:g}s", []
        except httpx.HTTPError as exc:
            return (f"GET /models: {type(exc).__name__}: {exc}" if str(exc)
                    else f"GET /models: {type(exc).__name__}"), []
        if resp.status_code >= 500:
            return f"GET /models: HTTP {resp.status_code}", []
        if resp.status_code != 200:  # up, without the route (or with a key it refuses: the
            return "", []            # requests will say so in one line)
        try:
            names = [str(m["id"]) for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError):
            names = []  # a server that lists nothing usable still answers
        return "", names

    async def _check(self, server: Server) -> None:
        server.checking = True
        try:
            why, names = await self.health(server)
            if not why and self.on_ready is not None:
                why = await self.on_ready(server, names)
        finally:
            server.checking = False
        if why:
            self.take_out(server, why, count=False)
        elif not server.live:
            server.live, server.reason, server.backoff_s = True, "", FIRST_BACKOFF_S
            log.info("openai backend: %s is back", server.url)

    async def check_all(self) -> None:
        """Ask every server (together); those that do not answer are out. None: HaloError."""
        self._down = ""
        self._lock = anyio.Lock()
        async with anyio.create_task_group() as tg:
            for server in self.servers:
                tg.start_soon(self._check, server)
        if not self.live:
            self._down = self.none_left()
            raise HaloError(self._down)

    def take_out(self, server: Server, reason: str, *, count: bool = True) -> None:
        if count:
            server.failures += 1
        if server.live:
            log.warning("openai backend: %s taken out (%s); its requests go to the others",
                        server.url, reason)
        elif server.reason == reason and server.retry_at > time.monotonic():
            return  # already out for this, and its back-off is running
        else:
            server.backoff_s = min(server.backoff_s * 2, MAX_BACKOFF_S)
        server.live, server.reason = False, reason
        server.retry_at = time.monotonic() + server.backoff_s

    def none_left(self) -> str:
        why = "; ".join(f"{s.url}: {s.reason}" for s in self.servers)
        return (f"no generation server is answering ({why}); check that `vllm serve` runs on "
                "each of base_urls, that this machine can reach them, and the servers' logs")

    # --- choosing --------------------------------------------------------------------------

    async def acquire(self) -> Server:
        """The server for the next request (counted as in flight until `release`)."""
        now = time.monotonic()
        for server in self.servers:  # one caller checks a server whose back-off ran out
            if not server.live and not server.checking and server.retry_at <= now:
                await self._check(server)
        if not self.live:
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:  # one full check at a time; the others see its result
                if self._down:
                    raise HaloError(self._down)
                if not self.live:
                    async with anyio.create_task_group() as tg:
                        for server in self.servers:
                            if not server.checking:
                                tg.start_soon(self._check, server)
                    if not self.live:
                        self._down = self.none_left()
                        raise HaloError(self._down)
        n = len(self.servers)
        order = [self.servers[(self._next + i) % n] for i in range(n)]
        best = min((s for s in order if s.live), key=lambda s: s.outstanding)
        self._next = (self.servers.index(best) + 1) % n
        best.outstanding += 1
        best.requests += 1
        return best

    @staticmethod
    def release(server: Server) -> None:
        server.outstanding -= 1

    # --- stats ---------------------------------------------------------------------------

    def describe(self) -> str:
        return "; ".join(f"{s.url}: {s.requests} requests, {s.failures} failed"
                         + ("" if s.live else f", out ({s.reason})") for s in self.servers)

    def reset_stats(self) -> None:
        for server in self.servers:
            server.requests = server.failures = 0
