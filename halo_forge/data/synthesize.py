"""`halo-forge data generate`: new problems from an LLM API, each solution verified before it is kept.

One request asks for a problem, its solution and its tests in one answer, so the three stay
paired. The solution is run against the tests in the sandbox (halo_forge.verify); only a
`passed` verdict is kept. Requests run concurrently (anyio), 429/5xx and transport errors are
retried with exponential backoff (honouring Retry-After), output is appended line by line with
a small state file beside it, so a rerun continues where the last one stopped, and duplicates
(the same statement or the same solution) are dropped.

Backends speak the OpenAI chat-completions protocol: DeepSeek (https://api.deepseek.com),
OpenAI, and any compatible server (vLLM, llama.cpp) through --base-url.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec

from halo_forge.atomic import write_atomic
from halo_forge.chat_client import ApiError, ChatClient, Endpoint
from halo_forge.data.chat import FENCE, LANGUAGE_NAMES
from halo_forge.data.jsonl import complete_lines, encode_line
from halo_forge.errors import HaloError, first_error
from halo_forge.records import IOTest, Language, Problem
from halo_forge.verify.extract import find_blocks, strip_reasoning

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

TOPICS_DIR = Path(__file__).resolve().parent / "topics"


class Topic(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A topic file (TOML): what kind of problems to ask for."""

    name: str
    language: Language
    instructions: str
    seeds: list[str]
    tests: Literal["io", "test_code"] = "io"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one idea")


BACKENDS = {
    "deepseek": Endpoint("deepseek", "https://api.deepseek.com", "deepseek-chat",
                         "DEEPSEEK_API_KEY", True),
    "openai": Endpoint("openai", "https://api.openai.com/v1", "gpt-4o-mini", "OPENAI_API_KEY",
                       True, "max_completion_tokens"),
    "openai-compatible": Endpoint("openai-compatible", None, None, "OPENAI_API_KEY", False),
}


# --- topics ------------------------------------------------------------------------------


def _toml_load(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise HaloError(f"{path}: cannot read topic ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise HaloError(f"{path}: invalid TOML ({exc})") from None


def load_topic(path: Path) -> Topic:
    try:
        return msgspec.convert(_toml_load(path), Topic)
    except msgspec.ValidationError as exc:
        raise HaloError(f"{path}: invalid topic: {exc}") from None


def topic_files(extra_dirs: Sequence[Path] = ()) -> dict[str, Path]:
    """Topic name (file stem) -> file; a user's folder overrides the built-in topics."""
    found: dict[str, Path] = {}
    for d in (TOPICS_DIR, *extra_dirs):
        for p in sorted(Path(d).glob("*.toml")):
            found[p.stem] = p
    return found


def find_topic(name_or_path: str, extra_dirs: Sequence[Path] = ()) -> Topic:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_topic(path)
    files = topic_files(extra_dirs)
    if name_or_path not in files:
        raise HaloError(f"unknown topic {name_or_path!r}; known: {', '.join(files) or 'none'} "
                        "(or pass a .toml file, or --topics-dir)")
    return load_topic(files[name_or_path])


# --- the conversation --------------------------------------------------------------------

SYSTEM = ("You write programming exercises together with a correct reference solution and "
          "tests that the solution passes. You follow the requested format exactly.")

_TEST_CODE_HELP = {
    "python": "Python asserts that call the function; they run after the solution, in the "
              "same file",
    "rust": "a `#[cfg(test)] mod tests { use super::*; ... }` module with `#[test]` functions; "
            "it is appended to the solution and run with `rustc --test`",
    "c": "a C `int main(void)` that calls the function and returns 1 when a check fails, 0 "
         "when all pass; it is appended after the solution",
    "cpp": "a C++ `int main()` that calls the function and returns 1 when a check fails, 0 "
           "when all pass; it is appended after the solution",
}


def request_messages(topic: Topic, seed: str) -> list[dict[str, str]]:
    lang, fence = LANGUAGE_NAMES[topic.language], FENCE[topic.language]
    if topic.tests == "io":
        tests = ('```json\n[{"stdin": "<input>", "stdout": "<expected output>"}, ...]\n```\n'
                 "(at least 3 tests, covering edge cases; stdout exactly as the solution prints it)")
    else:
        tests = (f"```{fence}\n<test code>\n```\n({_TEST_CODE_HELP[topic.language]}; at least "
                 "3 checks)")
    user = (
        f"Write one new, self-contained {lang} programming problem about: {seed}.\n"
        f"{topic.instructions.strip()}\n\n"
        "Reply in exactly this format and nothing else:\n\n"
        "## Problem\n<the statement a student sees, with the exact input/output format or "
        "function signature>\n\n"
        f"## Solution\n```{fence}\n<a complete, correct {lang} solution>\n```\n\n"
        f"## Tests\n{tests}\n"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_SECTION = re.compile(r"^#{1,4}\s*(problem|solution|tests?)\s*:?\s*$", re.I | re.M)


class ParseError(Exception):
    """The answer does not follow the format; `reason` is the summary's category."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_answer(text: str, topic: Topic) -> tuple[str, str, list[IOTest], str]:
    """(statement, solution, io_tests, test_code) from one answer, or ParseError."""
    text = strip_reasoning(text)
    marks = list(_SECTION.finditer(text))
    sections: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections.setdefault(m.group(1).lower().rstrip("s"), text[m.end():end].strip())
    statement = sections.get("problem", "")
    if not statement:
        raise ParseError("no_problem")
    code_blocks = [b for b in find_blocks(sections.get("solution", "")) if b.closed]
    solution = next((b.code for b in code_blocks if b.language == topic.language), "")
    if not solution and code_blocks and code_blocks[0].language is None:
        solution = code_blocks[0].code
    if not solution.strip():
        raise ParseError("no_solution")
    test_blocks = [b for b in find_blocks(sections.get("test", "")) if b.closed]
    io_tests: list[IOTest] = []
    test_code = ""
    if topic.tests == "io":
        block = next((b for b in test_blocks if b.tag in ("json", "")), None)
        if block is None:
            raise ParseError("no_tests")
        try:
            raw = json.loads(block.code)
            io_tests = [IOTest(stdin=str(t["stdin"]), stdout=str(t["stdout"])) for t in raw]
        except (ValueError, TypeError, KeyError):
            raise ParseError("bad_tests") from None
    else:
        test_code = next((b.code for b in test_blocks if b.language == topic.language), "")
    if not io_tests and not test_code.strip():
        raise ParseError("no_tests")
    return statement, solution.rstrip() + "\n", io_tests, test_code


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def problem_id(topic: Topic, statement: str) -> str:
    return f"gen/{topic.name}/{hashlib.sha256(_norm(statement).encode()).hexdigest()[:12]}"


# --- the run -------------------------------------------------------------------------------


class GenState(msgspec.Struct, kw_only=True):
    """Beside the output (OUTPUT.state.json): what earlier runs spent and dropped."""

    attempts: int = 0
    dropped: dict[str, int] = {}


class Summary(msgspec.Struct, kw_only=True):
    kept: int = 0  # in the output, this run and earlier ones
    kept_this_run: int = 0
    attempts_this_run: int = 0
    dropped: dict[str, int] = {}  # this run, by reason

    def lines(self) -> list[str]:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items(), key=lambda kv: -kv[1]))
        return [f"kept {self.kept_this_run} new problems ({self.kept} in the output) from "
                f"{self.attempts_this_run} requests",
                f"dropped {sum(self.dropped.values())}" + (f": {drops}" if drops else "")]


# samples -> an async context manager giving the verdicts (the shape of verify_stream).
VerifyFn = Callable[[AsyncIterator[dict[str, Any]]], AbstractAsyncContextManager[AsyncIterator[Any]]]


def _default_verify(
        samples: AsyncIterator[dict[str, Any]]) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
    from halo_forge.verify import verify_stream

    return verify_stream(samples)


class _Wake:
    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def run(
    *,
    topic: Topic,
    client: ChatClient,
    output: Path,
    count: int,
    concurrency: int = 4,
    max_attempts: int | None = None,
    verify: VerifyFn | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Summary:
    verify = verify or _default_verify
    state_path = output.with_name(output.name + ".state.json")
    state = (msgspec.json.decode(state_path.read_bytes(), type=GenState)
             if state_path.exists() else GenState())
    seen: set[str] = set()
    kept_before = 0
    for n, line in enumerate(complete_lines(output), 1):
        try:
            p = msgspec.json.decode(line, type=Problem)
        except msgspec.DecodeError as exc:
            raise HaloError(f"{output}:{n}: not a problem record ({exc}); use a new --output") \
                from None
        seen.update((_norm(p.prompt), _norm(p.reference)))
        kept_before += 1
    summary = Summary(kept=kept_before)
    if kept_before >= count:
        return summary
    max_attempts = max_attempts if max_attempts is not None else 3 * (count - kept_before)
    output.parent.mkdir(parents=True, exist_ok=True)
    out_file = open(output, "ab")
    dropped: Counter[str] = Counter()
    wake = _Wake()
    pending: dict[str, Problem] = {}  # in verification
    in_flight = 0  # requests
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](max(1, concurrency))

    def save_state() -> None:
        write_atomic(state_path, msgspec.json.encode(state))

    def drop(reason: str) -> None:
        dropped[reason] += 1
        state.dropped[reason] = state.dropped.get(reason, 0) + 1
        save_state()
        progress(f"dropped: {reason}")

    def produce(answer: str, seed: str) -> dict[str, Any] | None:
        """The verify sample for an answer (its problem goes to `pending`), or None if dropped."""
        try:
            statement, solution, io_tests, test_code = parse_answer(answer, topic)
        except ParseError as exc:
            drop(exc.reason)
            return None
        keys = (_norm(statement), _norm(solution))
        if keys[0] in seen or keys[1] in seen:
            drop("duplicate")
            return None
        seen.update(keys)
        problem = Problem(id=problem_id(topic, statement), language=topic.language,
                          prompt=statement, io_tests=io_tests, test_code=test_code,
                          reference=solution, source=f"generate:{topic.name}", title=seed)
        pending[problem.id] = problem
        sample: dict[str, Any] = {"id": problem.id, "language": problem.language,
                                  "code": solution}
        if io_tests:
            sample["io_tests"] = [{"stdin": t.stdin, "stdout": t.stdout} for t in io_tests]
        if test_code:
            sample["test_code"] = test_code
        return sample

    async def worker(number: int) -> None:
        nonlocal in_flight
        seed = topic.seeds[number % len(topic.seeds)]
        sample = None
        try:
            answer = await client.complete(request_messages(topic, seed))
            sample = produce(answer, seed)
        except ApiError as exc:
            drop(exc.reason)
        finally:
            # No await between `pending` gaining the problem and this: the dispatcher's
            # count of work under way never misses it.
            in_flight -= 1
            wake.set()
        if sample is not None:
            await send.send(sample)

    async def dispatch() -> None:
        nonlocal in_flight
        async with send:
            async with anyio.create_task_group() as workers:
                while summary.attempts_this_run < max_attempts:
                    kept = kept_before + summary.kept_this_run
                    if kept >= count:
                        break
                    if in_flight >= concurrency or kept + in_flight + len(pending) >= count:
                        await wake.wait()
                        continue
                    number = state.attempts
                    state.attempts += 1
                    summary.attempts_this_run += 1
                    save_state()
                    in_flight += 1
                    workers.start_soon(worker, number)
        # `send` closed: verification drains what is pending and ends.

    async def samples() -> AsyncIterator[dict[str, Any]]:
        async with receive:
            async for sample in receive:
                yield sample

    async def consume() -> None:
        async with verify(samples()) as verdicts:
            async for verdict in verdicts:
                problem = pending.pop(verdict.id, None)
                if problem is None:
                    continue
                if verdict.status == "passed":
                    out_file.write(encode_line(problem))
                    out_file.flush()
                    os.fsync(out_file.fileno())
                    summary.kept_this_run += 1
                    progress(f"kept {kept_before + summary.kept_this_run}/{count}: {problem.id}")
                else:
                    drop(f"verify_{verdict.status}")
                wake.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatch)
            tg.start_soon(consume)
    except BaseExceptionGroup as group:  # surface a HaloError as itself, not as a group
        raise first_error(group) from None
    finally:
        out_file.close()
        await client.aclose()
    summary.kept = kept_before + summary.kept_this_run
    summary.dropped = dict(dropped)
    return summary


# --- CLI -----------------------------------------------------------------------------------


class GenerateOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `halo-forge data generate` asks for; `main` takes these, not the parsed flags."""

    topic: str  # a topic name or a topic .toml
    output: str  # problems JSONL, appended to (a rerun continues)
    backend: Literal["deepseek", "openai", "openai-compatible"] = "deepseek"
    model: str = ""  # "" = the backend's
    base_url: str = ""  # "" = the backend's (openai-compatible has none)
    count: int = 10  # problems to keep
    concurrency: int = 4  # requests in flight
    max_attempts: int | None = None  # None = 3 x count
    temperature: float = 1.0
    topics_dir: list[str] = []  # extra folders of topic .toml files


def make_client(options: GenerateOptions, *, transport: Any = None) -> ChatClient:
    backend = BACKENDS[options.backend]
    base_url = options.base_url or backend.base_url
    if not base_url:
        raise HaloError("--backend openai-compatible needs --base-url, e.g. "
                        "http://localhost:8000/v1 for a local vLLM server")
    model = options.model or backend.model
    if not model:
        raise HaloError("--backend openai-compatible needs --model (the name the server serves)")
    key = os.environ.get(backend.key_env)
    if backend.key_required and not key:
        raise HaloError(f"--backend {backend.name} needs an API key in ${backend.key_env}")
    return ChatClient(endpoint=backend, base_url=base_url, model=model, api_key=key,
                      temperature=options.temperature, transport=transport)


def main(options: GenerateOptions, *, transport: Any = None,
         verify: VerifyFn | None = None) -> int:
    if options.count < 1 or options.concurrency < 1:
        raise HaloError("--count and --concurrency must be at least 1")
    dirs = [Path(d) for d in options.topics_dir]
    topic = find_topic(options.topic, dirs)
    client = make_client(options, transport=transport)
    summary = anyio.run(lambda: run(
        topic=topic, client=client, output=Path(options.output), count=options.count,
        concurrency=options.concurrency, max_attempts=options.max_attempts, verify=verify,
        progress=lambda line: print(line, file=sys.stderr),
    ))
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 0
