"""The openai backend over several servers: balancing, failover, health checks, adapters.

Each server is a FakeVLLM behind one httpx.MockTransport (routed by host): chat completions,
GET /v1/models listing the base model and the loaded adapters, and vLLM's runtime LoRA routes
(POST /v1/load_lora_adapter {lora_name, lora_path}, /v1/unload_lora_adapter {lora_name}).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest

from halo_forge.chat_client import ChatClient
from halo_forge.config import parse_config
from halo_forge.data.registry import load_problems
from halo_forge.errors import HaloError
from halo_forge.generate import OpenAIConfig, SamplingSettings
from halo_forge.generate.openai_backend import OpenAIBackend
from halo_forge.generate.servers import FIRST_BACKOFF_S, ServerPool
from halo_forge.raft import generate_and_verify, read_cycle
from halo_forge.records import Verdict

MODEL = "qwen-coder"


class FakeVLLM:
    def __init__(self, host: str, *, delay: float = 0.0, fail_after: int | None = None,
                 fail: str = "refused", applies: bool = True, refuses: bool = False,
                 forget_after: int | None = None) -> None:
        self.host, self.delay = host, delay
        self.fail_after, self.fail = fail_after, fail  # after this many chats: refused | 503
        self.applies, self.refuses = applies, refuses  # applies: adapters change the output
        self.forget_after = forget_after  # after this many chats: restarted, adapters gone
        self.down = ""  # "refused" | "503" | "hang": every route answers so
        self.lists_models = True  # False: no GET /v1/models route (404)
        self.loaded: dict[str, str] = {}  # adapter name -> path
        self.log: list[tuple[str, str, dict]] = []  # (method, route, body) as they came
        self.chats = 0  # chat completions answered (probes included)

    @property
    def url(self) -> str:
        return f"http://{self.host}:8000/v1"

    def generations(self) -> list[dict]:
        return [b for m, r, b in self.log if r == "/chat/completions" and "logprobs" not in b]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/v1")
        body = json.loads(request.content) if request.content else {}
        self.log.append((request.method, route, body))
        if self.down == "hang":
            await anyio.sleep(3600)
        if self.down == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if self.down == "503":
            return httpx.Response(503, json={"error": "overloaded"})
        if route == "/models":
            if not self.lists_models:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": name} for name in (MODEL, *self.loaded)]})
        if route == "/load_lora_adapter":
            if self.refuses:
                return httpx.Response(404, json={"message": "No adapter found"})
            if body["lora_name"] in self.loaded:
                return httpx.Response(400, json={"message": "The lora adapter "
                                                 f"'{body['lora_name']}' has already been loaded."})
            self.loaded[body["lora_name"]] = body["lora_path"]
            return httpx.Response(200, text="Success")
        if route == "/unload_lora_adapter":
            self.loaded.pop(body["lora_name"], None)
            return httpx.Response(200, text="Success")
        assert route == "/chat/completions", route
        if self.forget_after is not None and self.chats >= self.forget_after:
            self.loaded.clear()
        if body["model"] not in (MODEL, *self.loaded):
            return httpx.Response(404, json={"message": f"model {body['model']} not found"})
        if self.fail_after is not None and self.chats >= self.fail_after:
            self.down = self.fail
            return await self.handle(request)
        self.chats += 1
        await anyio.sleep(self.delay)
        model = body["model"] if self.applies else MODEL
        if body.get("logprobs"):  # the probe: greedy text and logprobs that follow the weights
            return httpx.Response(200, json={"choices": [{"index": 0, "message": {
                "role": "assistant", "content": f"def total(xs): ...  # {model}"},
                "logprobs": {"content": [{"token": "def", "logprob": -0.5 - len(model) / 100},
                                         {"token": " total", "logprob": -1.25}]}}]})
        user = body["messages"][-1]["content"][:12]
        return httpx.Response(200, json={
            "choices": [{"index": i, "message": {"role": "assistant",
                                                 "content": f"print({user!r}, {i})"}}
                        for i in range(body.get("n", 1))],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5 * body.get("n", 1)}})


class Cluster:
    def __init__(self, *servers: FakeVLLM) -> None:
        self.servers = {s.host: s for s in servers}
        self.transport = httpx.MockTransport(self)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        return await self.servers[request.url.host].handle(request)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(ChatClient, "_delay", lambda self, attempt, ra: 0.0)


def backend(*servers: FakeVLLM, **kw) -> OpenAIBackend:
    settings = dict(base_urls=[s.url for s in servers], model=MODEL, batch_size=64,
                    concurrency=4, retries=1, lora_loading="vllm", health_timeout_s=5.0)
    settings.update(kw)
    return OpenAIBackend(OpenAIConfig(**settings), transport=Cluster(*servers).transport)


PROBLEMS = load_problems("builtin")[:12]


def generate(b: OpenAIBackend, problems=PROBLEMS, n: int = 2) -> list:
    async def go():
        return [s async for batch in b.stream(problems, samples_per_prompt=n,
                                              params=SamplingSettings(max_new_tokens=16))
                for s in batch]
    return anyio.run(go)


def assert_each_sample_once(samples, problems=PROBLEMS, n: int = 2) -> None:
    assert sorted(s.id for s in samples) == sorted(f"{p.id}/c0/s{i}" for p in problems
                                                   for i in range(n))


def test_the_server_with_fewer_requests_in_flight_gets_the_next() -> None:
    fast, slow = FakeVLLM("fast"), FakeVLLM("slow", delay=0.5)
    samples = generate(backend(fast, slow))
    assert_each_sample_once(samples)
    # The slow server holds its first requests while the fast one answers all the rest.
    assert fast.chats > slow.chats >= 1 and fast.chats + slow.chats == len(PROBLEMS)
    # Equally loaded servers take turns.
    a, b, c = FakeVLLM("a"), FakeVLLM("b"), FakeVLLM("c")
    generate(backend(a, b, c, concurrency=1), n=1)
    assert (a.chats, b.chats, c.chats) == (4, 4, 4)


def test_a_server_out_is_asked_again_after_its_backoff_and_comes_back() -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b")
    pool = ServerPool([a.url, b.url], api_key=None, health_timeout_s=1.0,
                      transport=Cluster(a, b).transport)

    async def go() -> None:
        await pool.check_all()
        out, other = pool.servers
        pool.take_out(out, "HTTP 503")
        assert await pool.acquire() is other  # its back-off is running: not asked yet
        assert [r for _, r, _ in a.log] == ["/models"]
        a.down, out.retry_at = "503", 0.0  # the back-off ran out; still down
        assert await pool.acquire() is other
        assert not out.live and out.backoff_s == 2 * FIRST_BACKOFF_S
        a.down, out.retry_at = "", 0.0
        assert await pool.acquire() is out and out.live  # back, and the least loaded
        assert out.backoff_s == FIRST_BACKOFF_S

    anyio.run(go)


@pytest.mark.parametrize("fail", ["refused", "503"])
def test_a_server_failing_mid_cycle_is_taken_out_and_its_requests_resent(fail, caplog) -> None:
    bad, good = FakeVLLM("bad", fail_after=3, fail=fail), FakeVLLM("good", delay=0.01)
    b = backend(bad, good)
    with caplog.at_level(logging.INFO, logger="halo_forge.generate"):
        samples = generate(b)
    assert_each_sample_once(samples)
    assert bad.chats == 3 and good.chats == len(PROBLEMS) - 3
    out = {s.url: s for s in b.pool.servers}[bad.url]
    assert not out.live and out.failures >= 1
    assert f"{bad.url}: " in caplog.text and "taken out" in caplog.text
    assert f"{good.url}: {good.chats} requests, 0 failed" in caplog.text  # the cycle's stats


def test_no_server_left_is_one_line_naming_them() -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b")
    a.down, b.down = "refused", "503"
    with pytest.raises(HaloError) as err:
        generate(backend(a, b))
    assert a.url in str(err.value) and b.url in str(err.value) and "\n" not in str(err.value)
    assert "vllm serve" in str(err.value)
    # Both die mid-cycle: the same line, not a hang or a traceback.
    a, b = FakeVLLM("a", fail_after=2), FakeVLLM("b", fail_after=2, fail="503")
    with pytest.raises(HaloError, match="no generation server is answering"):
        generate(backend(a, b))


def test_a_server_that_never_answers_times_out() -> None:
    silent, good = FakeVLLM("silent"), FakeVLLM("good")
    silent.down = "hang"
    b = backend(silent, good, health_timeout_s=0.2)
    assert_each_sample_once(generate(b))
    out = {s.url: s for s in b.pool.servers}[silent.url]
    assert not out.live and "no answer to GET /models within 0.2s" in out.reason
    # Alone, it is a one-line error after the health check's deadline.
    with pytest.raises(HaloError, match="no answer to GET /models"):
        generate(backend(silent, health_timeout_s=0.2))
    # A server without the /models route is up all the same (its requests say the rest).
    plain = FakeVLLM("plain")
    plain.lists_models = False
    assert_each_sample_once(generate(backend(plain)))
    # One that answers the health check but not a request: the request's deadline.
    late = FakeVLLM("late", delay=3600)
    b = backend(late, FakeVLLM("good2"), timeout_s=0.2)
    assert_each_sample_once(generate(b))
    assert not {s.url: s for s in b.pool.servers}[late.url].live


def test_each_adapter_is_loaded_into_every_server_before_the_cycle(tmp_path) -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b")
    be = backend(a, b)
    be.load_adapter(str(tmp_path / "cycle_1"))
    for s in (a, b):
        loads = [body for m, r, body in s.log if r == "/load_lora_adapter"]
        assert loads == [{"lora_name": "halo-forge-1", "lora_path": str(tmp_path / "cycle_1")}]
    generate(be)
    for s in (a, b):
        routes = [r for m, r, body in s.log]
        first_generation = next(i for i, (m, r, body) in enumerate(s.log)
                                if r == "/chat/completions" and "logprobs" not in body)
        assert routes.index("/load_lora_adapter") < first_generation
        assert {g["model"] for g in s.generations()} == {"halo-forge-1"}
    # The next cycle's adapter: a new name everywhere, the old one unloaded.
    be.load_adapter(str(tmp_path / "cycle_1"))  # the same folder retrained
    assert a.loaded == b.loaded == {"halo-forge-2": str(tmp_path / "cycle_1")}
    assert be.served == "halo-forge-2" and be.adapter == str(tmp_path / "cycle_1")
    with pytest.raises(HaloError, match="lora_loading"):
        backend(FakeVLLM("c"), lora_loading="none").load_adapter(str(tmp_path / "a"))


def test_a_restarted_server_gets_the_adapter_again_before_requests(tmp_path) -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b")
    be = backend(a, b)
    be.load_adapter(str(tmp_path / "ad"))
    a.loaded.clear()  # restarted between cycles: the runtime-loaded adapter is gone
    assert_each_sample_once(generate(be))
    assert a.loaded == {"halo-forge-1": str(tmp_path / "ad")}
    assert {g["model"] for g in a.generations()} == {"halo-forge-1"}


def test_a_server_that_forgets_the_adapter_mid_cycle_is_taken_out(tmp_path) -> None:
    a, b = FakeVLLM("a", forget_after=5), FakeVLLM("b", delay=0.01)  # 2 of a's 5: probes
    be = backend(a, b)
    be.load_adapter(str(tmp_path / "ad"))
    assert_each_sample_once(generate(be))
    out = {s.url: s for s in be.pool.servers}[a.url]
    assert not out.live and "lost adapter halo-forge-1" in out.reason
    assert {g["model"] for g in a.generations() + b.generations()} == {"halo-forge-1"}
    # The base model missing is a wrong name, not a lost adapter: one line at once.
    with pytest.raises(HaloError, match="HTTP 404.*check --base-url and --model"):
        generate(backend(FakeVLLM("c"), model="no-such-model"))


def test_a_server_that_ignores_the_adapter_fails_the_probe(tmp_path, caplog) -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b", applies=False)
    with pytest.raises(HaloError) as err:
        backend(a, b).load_adapter(str(tmp_path / "ad"))
    assert f"not applied on {b.url}" in str(err.value) and "base model" in str(err.value)
    assert "\n" not in str(err.value)
    a, b = FakeVLLM("a"), FakeVLLM("b", applies=False)
    with caplog.at_level(logging.WARNING):
        backend(a, b, probe="warn").load_adapter(str(tmp_path / "ad"))
    assert f"not applied on {b.url}" in caplog.text
    a, b = FakeVLLM("a"), FakeVLLM("b", applies=False)
    backend(a, b, probe="off").load_adapter(str(tmp_path / "ad"))
    assert not [body for m, r, body in b.log if body.get("logprobs")]


def test_a_server_that_refuses_the_adapter_is_taken_out(tmp_path) -> None:
    a, b = FakeVLLM("a"), FakeVLLM("b", refuses=True)
    be = backend(a, b)
    be.load_adapter(str(tmp_path / "ad"))
    assert [s.url for s in be.pool.live] == [a.url]
    with pytest.raises(HaloError) as err:
        backend(FakeVLLM("c", refuses=True), FakeVLLM("d", refuses=True)).load_adapter(
            str(tmp_path / "ad"))
    assert "no generation server loaded adapter" in str(err.value)
    assert "http://c:8000/v1: POST /load_lora_adapter refused" in str(err.value)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in str(err.value) and "\n" not in str(err.value)


class _RealServer(BaseHTTPRequestHandler):
    """A server on a real socket that stops answering (drops each connection) after
    `server.fail_after` chat completions, as a vLLM process dying mid-cycle looks."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if not self.server.dead:
            self._reply({"data": [{"id": MODEL}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.dead |= self.server.chats >= self.server.fail_after
            if self.server.dead:
                return  # no answer at all: the client sees the connection end
            self.server.chats += 1
        self._reply({"choices": [{"index": i, "message": {"role": "assistant", "content": "x"}}
                                 for i in range(body.get("n", 1))],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


def test_real_sockets_a_server_dying_mid_cycle_and_one_never_up() -> None:
    servers = []
    for fail_after in (3, 10**6):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _RealServer)
        server.dead, server.chats, server.fail_after = False, 0, fail_after
        server.lock = threading.Lock()
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    urls = [f"http://127.0.0.1:{srv.server_address[1]}/v1" for srv in servers]
    urls.append(f"http://127.0.0.1:{refused}/v1")
    try:
        be = OpenAIBackend(OpenAIConfig(base_urls=urls, model=MODEL, batch_size=64,
                                        concurrency=4, retries=1, timeout_s=30.0))
        assert_each_sample_once(generate(be))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert [s.live for s in be.pool.servers] == [False, True, False]
    assert servers[0].chats == 3 and servers[1].chats == len(PROBLEMS) - 3


class _Verifier:
    async def verify(self, sample):
        return Verdict(id=sample.id, status="passed", reward=1.0, compiled=True)


@pytest.mark.anyio
async def test_a_raft_cycle_over_two_servers_one_failing_records_each_sample_once(
        tmp_path) -> None:
    bad, good = FakeVLLM("bad", fail_after=4), FakeVLLM("good", delay=0.01)
    be = backend(bad, good)
    be.load_adapter(str(tmp_path / "cycle_0_final"))  # the pipeline does this in a thread
    stats = await generate_and_verify(problems=PROBLEMS, backend=be, verifier=_Verifier(),
                                      cycle=1, cycle_dir=tmp_path / "c1", samples_per_prompt=3,
                                      settings=SamplingSettings(max_new_tokens=16),
                                      concurrency=2)
    samples, verdicts = read_cycle(tmp_path / "c1")
    want = sorted(f"{p.id}/c1/s{i}" for p in PROBLEMS for i in range(3))
    assert sorted(s.id for s in samples) == sorted(v.id for v in verdicts) == want
    assert stats.verdicts == len(want)
    assert {s.params.adapter for s in samples} == {str(tmp_path / "cycle_0_final")}
    assert {g["model"] for g in bad.generations() + good.generations()} == {"halo-forge-1"}
    assert not {s.url: s for s in be.pool.servers}[bad.url].live


MINIMAL = '[model]\ntiny = true\n[generation.engine]\n' \
          'backend = "openai"\n'


def test_base_url_and_base_urls_are_one_setting() -> None:
    with pytest.raises(HaloError, match="set base_url .* or base_urls .*, not both"):
        parse_config(MINIMAL + 'base_url = "http://a:8000/v1"\nbase_urls = ["http://b:8000/v1"]\n')
    c = parse_config(MINIMAL + 'base_url = "http://a:8000/v1"\n').generation.engine
    assert c.urls == ["http://a:8000/v1"]
    assert parse_config(MINIMAL).generation.engine.urls == ["http://localhost:8000/v1"]
    with pytest.raises(HaloError, match="listed twice"):
        parse_config(MINIMAL + 'base_urls = ["http://b:8000/v1", "http://b:8000/v1/"]\n')
