"""`halo-forge data generate` against httpx.MockTransport standing in for the remote API."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from halo_forge.cli import main as cli_main
from halo_forge.data import synthesize
from halo_forge.errors import HaloError
from halo_forge.records import Problem, Verdict


def answer(n: int, *, wrong: bool = False, tests: bool = True) -> str:
    expected = "WRONG" if wrong else f"{n}"
    body = f"print(int(input()) * 0 + {n})"
    tests_part = ("## Tests\n```json\n" + json.dumps([{"stdin": "1\n", "stdout": f"{expected}\n"}])
                  + "\n```\n") if tests else ""
    return (f"<think>plan</think>\n## Problem\nRead a number and print {n}.\n\n"
            f"## Solution\n```python\n{body}\n```\n\n{tests_part}")


class FakeApi:
    """Answers by a script: a list of (status, content-or-None, headers)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, content, headers = self.script.pop(0) if self.script else (200, answer(999), {})
        if status != 200:
            return httpx.Response(status, headers=headers, json={"error": {"message": "busy"}})
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        })


@asynccontextmanager
async def judge(samples):
    """Stands in for the sandboxed verifier in the logic tests: a solution passes when the
    number it prints is the expected output (the real verifier runs it; see the last test)."""

    async def verdicts():
        async for s in samples:
            printed = s["code"].rsplit("+ ", 1)[1].rstrip(")\n")
            ok = all(t["stdout"].strip() == printed for t in s["io_tests"])
            yield Verdict(id=s["id"], status="passed" if ok else "wrong_answer",
                          reward=1.0 if ok else 0.5, compiled=True)

    yield verdicts()


def args(tmp_path: Path, **kw) -> synthesize.GenerateOptions:
    base = dict(topic="python_io_test", backend="deepseek", output=str(tmp_path / "gen.jsonl"),
                count=3, concurrency=2, temperature=0.7, topics_dir=[str(tmp_path)])
    base.update({k: str(v) if isinstance(v, Path) else v for k, v in kw.items()})
    return synthesize.GenerateOptions(**base)


@pytest.fixture(autouse=True)
def _setup(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "python_io_test.toml").write_text(
        'name = "python_io_test"\nlanguage = "python"\ntests = "io"\n'
        'instructions = "Keep it tiny."\nseeds = ["numbers", "printing"]\n'
    )
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-deepseek")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    monkeypatch.setattr(synthesize.ChatClient, "_delay", lambda self, attempt, ra: 0.0)


def kept(path: Path) -> list[Problem]:
    return [msgspec.json.decode(line, type=Problem) for line in path.read_bytes().splitlines()]


def test_deepseek_request_is_what_the_api_accepts_and_pairs_stay_together(tmp_path) -> None:
    api = FakeApi([(200, answer(n), {}) for n in range(3)])
    assert synthesize.main(args(tmp_path), transport=httpx.MockTransport(api), verify=judge) == 0
    req = api.requests[0]
    assert str(req.url) == "https://api.deepseek.com/chat/completions"
    assert req.method == "POST" and req.headers["authorization"] == "Bearer sk-test-deepseek"
    body = json.loads(req.content)
    assert body["model"] == "deepseek-chat" and body["stream"] is False
    assert body["max_tokens"] > 0 and body["temperature"] == 0.7
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "## Solution" in body["messages"][1]["content"]
    problems = kept(tmp_path / "gen.jsonl")
    assert len(problems) == 3
    for p in problems:  # each statement kept with the solution from the same answer
        n = p.prompt.split("print ")[1].rstrip(".")
        assert p.reference.strip().endswith(f"+ {n})") and p.io_tests[0].stdout == f"{n}\n"
        assert p.source == "generate:python_io_test" and p.language == "python"


def test_openai_and_compatible_backends(tmp_path) -> None:
    api = FakeApi([(200, answer(1), {})])
    synthesize.main(args(tmp_path, backend="openai", count=1), transport=httpx.MockTransport(api),
                  verify=judge)
    req = api.requests[0]
    assert str(req.url) == "https://api.openai.com/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test-openai"
    assert "max_completion_tokens" in json.loads(req.content)

    api = FakeApi([(200, answer(2), {})])
    synthesize.main(args(tmp_path, backend="openai-compatible", base_url="http://gpu:8000/v1",
                       model="qwen", count=1, output=tmp_path / "b.jsonl"),
                  transport=httpx.MockTransport(api), verify=judge)
    req = api.requests[0]
    assert str(req.url) == "http://gpu:8000/v1/chat/completions"
    assert json.loads(req.content)["model"] == "qwen"


def test_retries_429_and_5xx_then_succeeds(tmp_path) -> None:
    api = FakeApi([(429, None, {"retry-after": "0"}), (503, None, {}), (500, None, {}),
                   (200, answer(5), {})])
    summary = anyio_run(tmp_path, api, count=1, concurrency=1)
    assert len(api.requests) == 4 and summary.kept_this_run == 1 and summary.dropped == {}


def test_gives_up_after_retries_and_counts_it(tmp_path) -> None:
    api = FakeApi([(503, None, {})] * 7 + [(200, answer(6), {})])
    summary = anyio_run(tmp_path, api, count=1, concurrency=1)
    assert summary.dropped == {"api_error": 1} and summary.kept_this_run == 1
    assert summary.attempts_this_run == 2


def test_summary_says_how_many_were_dropped_and_why(tmp_path, capsys) -> None:
    api = FakeApi([
        (200, answer(1), {}),
        (200, answer(1), {}),  # the same problem again
        (200, answer(2, wrong=True), {}),  # its tests disagree with its solution
        (200, "Sorry, I cannot help.", {}),
        (200, answer(3, tests=False), {}),
        (200, answer(4), {}),
    ])
    assert synthesize.main(args(tmp_path, count=2, concurrency=1),
                         transport=httpx.MockTransport(api), verify=judge) == 0
    err = capsys.readouterr().err
    assert "kept 2 new problems (2 in the output) from 6 requests" in err
    assert "dropped 4:" in err
    for reason in ("duplicate 1", "verify_wrong_answer 1", "no_problem 1", "no_tests 1"):
        assert reason in err


def test_rerun_continues_and_dedupes_against_what_was_kept(tmp_path) -> None:
    api = FakeApi([(200, answer(1), {}), (200, answer(2), {})])
    anyio_run(tmp_path, api, count=2, concurrency=1)
    out = tmp_path / "gen.jsonl"
    with open(out, "ab") as f:
        f.write(b'{"id": "gen/torn", "langu')  # a run killed mid-line
    api = FakeApi([(200, answer(2), {}), (200, answer(3), {}), (200, answer(4), {})])
    summary = anyio_run(tmp_path, api, count=4, concurrency=1)
    assert summary.dropped == {"duplicate": 1} and summary.kept == 4
    assert [p.prompt for p in kept(out)] == [f"Read a number and print {n}." for n in (1, 2, 3, 4)]
    state = json.loads((tmp_path / "gen.jsonl.state.json").read_text())
    assert state["attempts"] == 5 and state["dropped"] == {"duplicate": 1}
    # Nothing left to do: no request at all.
    api = FakeApi([])
    assert anyio_run(tmp_path, api, count=4).kept_this_run == 0 and api.requests == []


def test_concurrency_never_overshoots_the_count(tmp_path) -> None:
    api = FakeApi([(200, answer(n), {}) for n in range(20)])
    summary = anyio_run(tmp_path, api, count=5, concurrency=4)
    assert summary.kept == 5 and len(kept(tmp_path / "gen.jsonl")) == 5
    assert len(api.requests) == 5  # no request whose answer could not be used


@pytest.mark.parametrize(
    "kw, env, match",
    [
        ({}, {"DEEPSEEK_API_KEY": None}, r"needs an API key in \$DEEPSEEK_API_KEY"),
        ({"backend": "openai-compatible"}, {}, "needs --base-url"),
        ({"topic": "nope"}, {}, "unknown topic 'nope'"),
    ],
)
def test_config_errors(tmp_path, monkeypatch, kw, env, match) -> None:
    for k, v in env.items():
        monkeypatch.delenv(k) if v is None else monkeypatch.setenv(k, v)
    with pytest.raises(HaloError, match=match):
        synthesize.main(args(tmp_path, **kw), transport=httpx.MockTransport(FakeApi([])),
                      verify=judge)


def test_refused_key_is_one_clear_error(tmp_path, capsys, monkeypatch) -> None:
    api = FakeApi([(401, None, {})] * 5)
    with pytest.raises(HaloError, match="API key was refused"):
        synthesize.main(args(tmp_path), transport=httpx.MockTransport(api), verify=judge)


def test_list_topics_shows_the_shipped_ones(capsys) -> None:
    assert cli_main(["data", "generate", "--list-topics"]) == 0
    out = capsys.readouterr().out
    for name in ("python_basics", "cpp_stdio", "rust_stdio", "c_functions"):
        assert name in out


def test_shipped_topics_are_valid() -> None:
    for path in synthesize.topic_files().values():
        topic = synthesize.load_topic(path)
        assert topic.seeds and topic.instructions.strip()


def anyio_run(tmp_path, api, *, count, concurrency=2, verify=judge):
    import anyio

    a = args(tmp_path, count=count, concurrency=concurrency)
    client = synthesize.make_client(a, transport=httpx.MockTransport(api))
    topic = synthesize.find_topic(a.topic, a.topics_dir)
    return anyio.run(lambda: synthesize.run(topic=topic, client=client, output=Path(a.output),
                                          count=count, concurrency=concurrency, verify=verify))


def test_real_verifier_keeps_only_solutions_that_pass(tmp_path) -> None:
    api = FakeApi([(200, answer(1), {}), (200, answer(2, wrong=True), {}), (200, answer(3), {})])
    summary = anyio_run(tmp_path, api, count=2, concurrency=1, verify=None)
    assert summary.kept == 2 and summary.dropped == {"verify_wrong_answer": 1}


def test_the_command_needs_a_topic_and_an_output(tmp_path, capsys) -> None:
    assert cli_main(["data", "generate", "--topic", "python_io_test"]) == 2
    assert "needs --topic and --output" in capsys.readouterr().err
    # The flags become typed options: a backend the library does not know is refused there too.
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"topic": "t", "output": "o", "backend": "nope"}, synthesize.GenerateOptions)
