"""The openai backend against httpx.MockTransport standing in for an OpenAI-compatible server."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from halo_forge.chat_client import ChatClient
from halo_forge.data.registry import load_problems
from halo_forge.errors import HaloError
from halo_forge.generate import OpenAIConfig, SamplingSettings
from halo_forge.generate.openai_backend import OpenAIBackend


class Server:
    """Answers chat completions with `n` choices (or `max_n`, like llama.cpp's one), and the
    health check (GET /models) with the model."""

    def __init__(self, *, max_n: int | None = None, fail: int | None = None,
                 delay: float = 0.0) -> None:
        self.max_n, self.fail, self.delay = max_n, fail, delay
        self.bodies: list[dict] = []
        self.requests: list[httpx.Request] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "qwen-coder"}]})
        self.requests.append(request)
        body = json.loads(request.content)
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail is not None:
            return httpx.Response(self.fail, json={"error": {"message": "nope"}})
        n = body.get("n", 1) if self.max_n is None else min(self.max_n, body.get("n", 1))
        user = body["messages"][-1]["content"][:10]
        return httpx.Response(200, json={
            "id": "c", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": i, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"```python\nprint({user!r}, {i})\n```"}}
                for i in range(n)],
            "usage": {"prompt_tokens": 50, "completion_tokens": 7 * n, "total_tokens": 0}})


def run_stream(backend, problems, n, settings):
    async def go():
        return [b async for b in backend.stream(problems, samples_per_prompt=n, params=settings)]
    return anyio.run(go)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(ChatClient, "_delay", lambda self, attempt, ra: 0.0)
    monkeypatch.setenv("TEST_KEY", "sk-local")


def config(**kw) -> OpenAIConfig:
    base = dict(base_url="http://gpu:8000/v1", model="qwen-coder", api_key_env="TEST_KEY",
                batch_size=64, concurrency=4)
    base.update(kw)
    return OpenAIConfig(**base)


def test_request_shape_is_what_the_api_accepts() -> None:
    server = Server()
    backend = OpenAIBackend(config(), transport=httpx.MockTransport(server))
    problems = load_problems("builtin")[:2]
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=256,
                                stop=["</s>"], seed=5)
    batches = run_stream(backend, problems, 3, settings)
    req = server.requests[0]
    assert str(req.url) == "http://gpu:8000/v1/chat/completions" and req.method == "POST"
    assert req.headers["authorization"] == "Bearer sk-local"
    body = server.bodies[0]
    assert body == {"model": "qwen-coder", "messages": body["messages"], "temperature": 0.8,
                    "max_tokens": 256, "stream": False, "top_p": 0.95, "n": 3,
                    "stop": ["</s>"], "seed": 5}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] in {p.prompt for p in problems}
    samples = [s for b in batches for s in b]
    assert len(server.requests) == 2 and len(samples) == 6
    assert {(s.problem_id, s.index) for s in samples} == {(p.id, i) for p in problems
                                                         for i in range(3)}
    assert all(s.completion.startswith("```python\nprint(") and s.completion_tokens == 7
               for s in samples)
    assert all(s.code == "" for s in samples)  # extraction is the verifier's, not generation's
    assert batches[0].stats.completion_tokens == 42 and batches[0].stats.failed == 0


def test_many_requests_in_flight_bounded_by_concurrency() -> None:
    server = Server(delay=0.05)
    backend = OpenAIBackend(config(concurrency=5, batch_size=40),
                            transport=httpx.MockTransport(server))
    problems = load_problems("builtin")[:20]
    batches = run_stream(backend, problems, 2, SamplingSettings(max_new_tokens=32))
    assert server.max_in_flight == 5
    assert [len(b) for b in batches] == [40]  # 20 problems x 2 samples = one window


def test_a_server_that_ignores_n_is_asked_again_for_the_rest() -> None:
    server = Server(max_n=1)
    backend = OpenAIBackend(config(), transport=httpx.MockTransport(server))
    batches = run_stream(backend, load_problems("builtin")[:2], 3, SamplingSettings())
    assert len(server.requests) == 6 and sum(len(b) for b in batches) == 6
    assert sorted(b["n"] for b in server.bodies) == [1, 1, 2, 2, 3, 3]


def test_failures_count_as_missing_samples_and_a_refused_key_stops() -> None:
    server = Server(fail=503)  # its health check passes, its chat completions do not
    backend = OpenAIBackend(config(retries=1), transport=httpx.MockTransport(server))
    batches = run_stream(backend, load_problems("builtin")[:2], 3, SamplingSettings())
    assert sum(len(b) for b in batches) == 0 and batches[0].stats.failed == 6
    # Each problem: one try and one retry, then (the server answering its health check
    # again) once more with its retry.
    assert len(server.requests) == 8
    backend = OpenAIBackend(config(), transport=httpx.MockTransport(Server(fail=401)))
    with pytest.raises(HaloError, match=r"refused.*\$TEST_KEY"):
        run_stream(backend, load_problems("builtin")[:1], 1, SamplingSettings())


def test_adapters_load_into_vllm_serve_under_new_names(tmp_path) -> None:
    posted = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": "qwen-coder"}]})
        posted.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200, text="Success")

    backend = OpenAIBackend(config(lora_loading="vllm", probe="off"),
                            transport=httpx.MockTransport(handler))
    backend.load_adapter(str(tmp_path / "a"))
    backend.load_adapter(str(tmp_path / "a"))  # the same path retrained: a new name again
    assert [u for u, _ in posted] == ["http://gpu:8000/v1/load_lora_adapter"] * 2 + [
        "http://gpu:8000/v1/unload_lora_adapter"]
    assert [b["lora_name"] for _, b in posted] == ["halo-forge-1", "halo-forge-2",
                                                    "halo-forge-1"]
    assert backend.served == "halo-forge-2" and backend.adapter == str(tmp_path / "a")
    with pytest.raises(HaloError, match="lora_loading"):
        OpenAIBackend(config()).load_adapter(str(tmp_path / "a"))
