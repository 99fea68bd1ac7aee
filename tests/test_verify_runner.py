"""The runner against the real sandbox: each toolchain, each status, guards, cache, streaming."""

from __future__ import annotations

import shutil
import time

import anyio
import msgspec
import pytest

from halo_forge.errors import HaloError
from halo_forge.sandbox import Limits
from halo_forge.verify.cache import VerdictCache
from halo_forge.verify.config import Compiler, VerifierConfig
from halo_forge.verify.runner import Verifier, verify_many, verify_stream
from halo_forge.verify.types import VerifySample

AB = [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "40 2\n", "stdout": "42\n"}]
C_SUM = '#include <stdio.h>\nint main(void){long a,b;if(scanf("%ld %ld",&a,&b)!=2)return 1;printf("%ld\\n",a+b);return 0;}\n'
CPP_SUM = "#include <bits/stdc++.h>\nusing namespace std;\nint main(){long long a,b;cin>>a>>b;cout<<a+b<<endl;}\n"
RUST_SUM = ("use std::io::Read;\nfn main(){let mut s=String::new();std::io::stdin().read_to_string(&mut s).unwrap();"
            "let v:Vec<i64>=s.split_whitespace().map(|x|x.parse().unwrap()).collect();println!(\"{}\",v[0]+v[1]);}\n")
PY_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"

FAST = VerifierConfig(
    run_limits=Limits(cpu_s=1.0, wall_s=3.0, memory_mb=256, output_bytes=1 << 16),
    pch=False,
)


def sample(id, code=None, **kw):
    fields = {"id": id, **kw} if code is None else {"id": id, "code": code, **kw}
    return msgspec.convert(fields, VerifySample)


def run(samples, config=FAST, **kw):
    return {v.id: v for v in verify_many(samples, config=config, **kw)}


def test_each_language_passes_io_tests():
    got = run([
        sample("c", C_SUM, language="c", io_tests=AB),
        sample("cpp", CPP_SUM, language="cpp", io_tests=AB),
        sample("rust", RUST_SUM, language="rust", io_tests=AB),
        sample("py", PY_SUM, language="python", io_tests=AB),
    ])
    for key in ("c", "cpp", "rust", "py"):
        v = got[key]
        assert (v.status, v.reward, v.tests_passed, v.tests_total, v.compiled) == ("passed", 1.0, 2, 2, True), v
        assert v.wall_s > 0 and v.language == {"py": "python"}.get(key, key)


def test_statuses():
    got = run([
        sample("wrong", "print(int(input().split()[0]))\n", language="python", io_tests=AB),
        sample("half", "a, b = map(int, input().split())\nprint(3)\n", language="python", io_tests=AB),
        sample("crash", "int main(void){volatile int *p = 0; return *p;}\n", language="c", io_tests=AB),
        sample("raise", "raise ValueError('no')\n", language="python", io_tests=AB),
        sample("loop", "int main(void){for(volatile unsigned long i=0;;i++);}\n", language="c", io_tests=AB),
        sample("hog", "#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc(1<<20);"
               "if(!p)return 3;memset(p,1,1<<20);}}\n", language="c", io_tests=AB[:1]),
        sample("badalloc", "#include <vector>\n#include <cstdio>\nint main(){std::vector<char> v(size_t(4) << 30);"
               "std::printf(\"%d\\n\", v[7]);}\n", language="cpp", io_tests=AB[:1]),
        sample("pyhog", "x = bytearray(4 << 30)\n", language="python", io_tests=AB[:1]),
        sample("flood", "while True:\n    print('y' * 1000)\n", language="python", io_tests=AB[:1]),
        sample("broken", "int main(void){ return x; }\n", language="c", io_tests=AB),
        sample("pysyntax", "def f(:\n", language="python", io_tests=AB),
        sample("empty", "   \n", language="c"),
        sample("prose", completion="I cannot solve this.", language="cpp"),
    ])
    expect = {
        "wrong": ("wrong_answer", 0.5, 0), "half": ("wrong_answer", 0.75, 1), "crash": ("runtime_error", 0.5, 0),
        "raise": ("runtime_error", 0.5, 0), "badalloc": ("memory_limit", 0.5, 0), "pyhog": ("memory_limit", 0.5, 0),
        "loop": ("timeout", 0.5, 0), "flood": ("output_limit", 0.5, 0),
        "broken": ("compile_error", 0.0, 0), "pysyntax": ("compile_error", 0.0, 0), "empty": ("no_code", 0.0, 0),
        "prose": ("no_code", 0.0, 0),
    }
    for key, (status, reward, passed) in expect.items():
        v = got[key]
        assert (v.status, v.reward, v.tests_passed) == (status, reward, passed), v
    # the program's own failure to allocate, or the sandbox's verdict on it: both are not a pass
    assert got["hog"].status in ("memory_limit", "runtime_error") and got["hog"].reward == 0.5
    assert "x" in got["broken"].output and not got["broken"].compiled
    assert "expected" in got["wrong"].output
    assert got["loop"].tests_total == 2


def test_after_max_timeouts_the_remaining_tests_are_not_run():
    from halo_forge.sandbox import Sandbox

    class CountingSandbox:
        def __init__(self, inner):
            self.inner, self.runs = inner, 0

        def workdir(self, *args, **kwargs):
            return self.inner.workdir(*args, **kwargs)

        async def run(self, argv, **kwargs):
            self.runs += 1
            return await self.inner.run(argv, **kwargs)

    loop = sample("loop", "int main(void){for(volatile unsigned long i=0;;i++);}\n", language="c",
                  io_tests=AB + AB)

    async def go():
        async with Sandbox(max_concurrency=1) as sb:
            spy = CountingSandbox(sb)
            async with verify_stream([loop], config=FAST, sandbox=spy) as stream:
                verdicts = [v async for v in stream]
        return verdicts, spy.runs

    (verdict,), runs = anyio.run(go)
    assert verdict.status == "timeout" and verdict.tests_total == 4
    assert runs == 2  # the compile and the first test; max_timeouts=1 skips the other three


def test_samples_ahead_of_a_free_slot_wait_in_the_sandbox_queue_and_never_run_beside_another():
    """verify_stream takes twice the slots in: the extra samples' host side is done while the
    slot's run goes, and their runs wait in the zygote's queue. Never two runs at a time, and
    the wait in the queue is not the run's time."""
    from halo_forge.sandbox import Sandbox

    class SpySandbox:
        def __init__(self, inner):
            self.inner, self.waiting, self.most_waiting, self.spans = inner, 0, 0, []
            self.max_concurrency = inner.max_concurrency

        def workdir(self, *args, **kwargs):
            return self.inner.workdir(*args, **kwargs)

        async def run(self, argv, **kwargs):
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            try:
                result = await self.inner.run(argv, **kwargs)
            finally:
                self.waiting -= 1
            self.spans.append(tuple(float(t) for t in result.stdout.split()))  # the program's own clock
            return result

    # CLOCK_MONOTONIC is the machine's (runs get no time namespace): spans compare across runs.
    sleepy = [sample(f"s{i}", f"import time\nprint(time.monotonic())\ntime.sleep(0.8)  # {i}\n"
                     "print(time.monotonic())\n", language="python") for i in range(3)]

    async def go():
        async with Sandbox(max_concurrency=1) as sb:
            spy = SpySandbox(sb)
            async with verify_stream(sleepy, config=FAST, sandbox=spy, concurrency=1) as stream:
                verdicts = [v async for v in stream]
        return verdicts, spy

    verdicts, spy = anyio.run(go)
    assert sorted(v.status for v in verdicts) == ["ran"] * 3, verdicts
    assert spy.most_waiting == 2  # one running, one queued behind it
    spans = sorted(spy.spans)
    assert len(spans) == 3 and all(len(s) == 2 for s in spans), spans
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans  # none began before the one ahead ended
    # The 0.8 s a queued run waited is not its wall time (each is one start and one sleep).
    assert all(v.wall_s < 1.5 for v in verdicts), verdicts


def test_a_concurrency_asked_of_verify_many_or_stream_sizes_their_own_sandbox():
    from halo_forge.verify.runner import _sized

    assert _sized(None, 3).concurrency == 3  # the sandbox holds 3 runs, not the cores
    assert _sized(FAST, 1).concurrency == 1 and _sized(FAST, 1).run_limits == FAST.run_limits
    assert _sized(VerifierConfig(concurrency=5), 3).concurrency == 5  # the config's own wins
    assert _sized(None, None) is None


def test_hostile_timeout_ends_promptly():
    start = time.monotonic()
    got = run([sample("sleep", "import time\ntime.sleep(60)\n", language="python")])
    assert got["sleep"].status == "timeout"
    assert time.monotonic() - start < 30


def test_warnings_ran_and_no_tests_ladder():
    got = run([
        sample("clean", "int main(void){return 0;}\nint helper(int x){return x + 1;}\n", language="c"),
        sample("warn", "int main(void){int unused; return 0;}\nint helper(int x){return x;}\n", language="c"),
        sample("warn_fails", "int main(void){int unused; return 1;}\nint helper(int x){return x;}\n", language="c"),
        sample("warn_tests", "#include <stdio.h>\nint main(void){int unused;long a,b;scanf(\"%ld %ld\",&a,&b);"
               "printf(\"%ld\\n\",a+b);}\n", language="c", io_tests=AB),
        sample("fails", "import sys\nsys.exit(3)\n", language="python"),
    ])
    # no tests: it ran, which is never "passed" (#14)
    assert (got["clean"].status, got["clean"].reward, got["clean"].warnings) == ("ran", 0.7, False)
    # warnings lower the compile step's worth; a program that runs is worth more than either
    assert (got["warn"].status, got["warn"].reward, got["warn"].warnings) == ("ran", 0.7, True)
    assert "unused" in got["warn"].output
    assert (got["warn_fails"].status, got["warn_fails"].reward) == ("runtime_error", 0.3)
    assert got["warn_tests"].reward == 1.0 and got["warn_tests"].warnings
    assert (got["fails"].status, got["fails"].reward) == ("runtime_error", 0.5)


def test_test_code_python_c_rust():
    rust_tests = ("#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn a() { assert_eq!(add(1, 2), 3); }\n"
                  "    #[test]\n    fn b() { assert_eq!(add(2, 2), 4); }\n    #[test]\n    fn c() { assert_eq!(add(0, 0), 1); }\n}\n")
    c_test = "#include <assert.h>\nint main(void){ assert(add(1,2)==3); assert(add(-1,1)==0); return 0; }\n"
    got = run([
        sample("py_ok", "def add(a, b):\n    return a + b\n", language="python", test_code="assert add(1, 2) == 3\n"),
        sample("py_bad", "def add(a, b):\n    return a - b\n", language="python", test_code="assert add(1, 2) == 3\n"),
        sample("c_ok", "int add(int a, int b){ return a + b; }\n", language="c", test_code=c_test),
        sample("c_bad", "int add(int a, int b){ return a * b; }\n", language="c", test_code=c_test),
        sample("rs", "pub fn add(a: i32, b: i32) -> i32 { a + b }\n", language="rust", test_code=rust_tests),
    ])
    assert (got["py_ok"].status, got["py_ok"].reward, got["py_ok"].tests_total) == ("passed", 1.0, 1)
    assert (got["py_bad"].status, got["py_bad"].reward) == ("wrong_answer", 0.5)
    assert (got["c_ok"].status, got["c_ok"].reward) == ("passed", 1.0)
    assert (got["c_bad"].status, got["c_bad"].reward) == ("wrong_answer", 0.5)
    rs = got["rs"]
    assert (rs.status, rs.tests_passed, rs.tests_total) == ("wrong_answer", 2, 3), rs
    assert rs.reward == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_guards_cap_reward():
    test_code = "assert add(1, 2) == 3\nassert add(2, 2) == 5\n"  # the second assert fails for an honest add
    got = run([
        # exits with success before the failing assert: caught statically ...
        sample("exit", "import sys\ndef add(a, b):\n    return a + b\nsys.exit(0)\n", language="python", test_code=test_code),
        # ... and at run time, when the static scan cannot see it
        sample("sysexit", "def add(a, b):\n    raise SystemExit(0)\n", language="python", test_code=test_code),
        sample("stub", "def solve():\n    pass\n", language="python"),
        sample("todo", "fn solve() -> i32 { todo!() }\nfn main() { }\n", language="rust"),
        sample("ndebug", "#define NDEBUG\nint add(int a, int b){ return 0; }\n", language="c",
               test_code="#include <assert.h>\nint main(void){ assert(add(1,2)==3); return 0; }\n"),
    ])
    for key in ("exit", "sysexit", "stub", "todo", "ndebug"):
        v = got[key]
        assert v.guard and v.status != "passed" and v.reward <= 0.5, v
    assert got["sysexit"].guard == "exited before its tests finished"
    assert got["stub"].reward == 0.5  # not the 0.7 of a program that does something


def test_extraction_from_completion_and_language_from_fence():
    completion = "<think>use python? no</think>\nHere:\n```rust\n" + RUST_SUM + "```\n"
    got = run([sample("fenced", completion=completion, io_tests=AB)])
    assert got["fenced"].status == "passed" and got["fenced"].language == "rust"


def test_cache_dedupes_identical_samples(tmp_path):
    cache = VerdictCache(tmp_path / "v.sqlite")
    samples = [sample(f"s{i}", PY_SUM, language="python", io_tests=AB) for i in range(4)]
    got = verify_many(samples, config=FAST, cache=cache)
    assert [v.id for v in got] == ["s0", "s1", "s2", "s3"]
    assert sum(v.cached for v in got) == 3 and cache.stats.hit_rate == 0.75
    assert all(v.status == "passed" for v in got)
    # a changed test is different work
    other = verify_many([sample("t", PY_SUM, language="python", io_tests=AB[:1])], config=FAST, cache=cache)
    assert not other[0].cached


def test_sandbox_error_is_never_a_bad_sample():
    from halo_forge.sandbox import RunResult, Sandbox

    class Broken(Sandbox):
        async def run(self, argv, **kw):
            return RunResult(status="sandbox_error", exit_code=None, signal=None, cpu_s=0.0, wall_s=0.0,
                             peak_memory_kb=0, stdout=b"", stderr=b"", error="clone failed: test")

    async def main():
        async with Broken() as sb, Verifier(FAST, sandbox=sb) as v:
            return await v.verify(sample("x", PY_SUM, language="python", io_tests=AB))

    v = anyio.run(main)
    assert v.status == "sandbox_error" and "clone failed" in v.output and v.reward == 0.0


def test_stream_yields_as_they_finish():
    slow = sample("slow", "import time\ntime.sleep(1.5)\nprint(3)\n", language="python")
    fast = sample("fast", "print(3)\n", language="python")

    async def main():
        order = []
        async with verify_stream([slow, fast], config=FAST, concurrency=2) as verdicts:
            async for v in verdicts:
                order.append(v.id)
        return order

    assert anyio.run(main) == ["fast", "slow"]


def test_stream_accepts_dicts_and_async_iterables():
    async def source():
        for i in range(3):
            yield {"id": f"d{i}", "language": "python", "code": f"print({i})\n",
                   "io_tests": [{"stdin": "", "stdout": f"{i}\n"}], "prompt": "ignored"}

    async def main():
        async with verify_stream(source(), config=FAST) as verdicts:
            return [v async for v in verdicts]

    got = anyio.run(main)
    assert sorted(v.id for v in got) == ["d0", "d1", "d2"] and all(v.status == "passed" for v in got)


def test_missing_compiler_is_a_clear_error():
    config = msgspec.structs.replace(FAST, verifier="gcc", gcc_c=Compiler(command="no-such-cc-halo"))
    with pytest.raises(HaloError, match="no-such-cc-halo.*not found"):
        verify_many([sample("x", C_SUM, language="c")], config=config)


def test_language_outside_the_verifier_is_a_clear_error():
    # several samples fail at once: still one HaloError, not an exception group
    samples = [sample(f"x{i}", C_SUM, language="c") for i in range(4)]
    with pytest.raises(HaloError, match="--verifier python"):
        verify_many(samples, config=msgspec.structs.replace(FAST, verifier="python"))


def test_c_is_compiled_as_c_not_cpp():
    # valid C, invalid C++ (implicit void* conversion, `new` as a name)
    code = "#include <stdlib.h>\nint main(void){ int *new = malloc(4); free(new); return 0; }\n"
    assert run([sample("c", code, language="c")])["c"].status == "ran"  # no tests: ran, not passed
    assert run([sample("cpp", code, language="cpp")])["cpp"].status == "compile_error"


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (apt-get install clang)")
def test_clang_toolchain():
    config = msgspec.structs.replace(FAST, verifier="clang")
    got = run([sample("c", C_SUM, language="c", io_tests=AB), sample("cpp", CPP_SUM, language="cpp", io_tests=AB)],
              config=config)
    assert got["c"].status == "passed" and got["cpp"].status == "passed"


def test_leaving_the_stream_early_cancels_what_is_in_flight():
    # verify_stream is a context manager (its tasks live in the block's task group): leaving
    # after the first verdict cancels the sample still running instead of waiting for it.
    fast = sample("fast", "print(3)\n", language="python")
    stuck = sample("stuck", "import time\ntime.sleep(60)\n", language="python")
    config = msgspec.structs.replace(FAST, run_limits=msgspec.structs.replace(
        FAST.run_limits, cpu_s=60.0, wall_s=120.0))

    async def main():
        with anyio.fail_after(40):  # a hang guard: the stuck sample alone would take 60 s
            async with verify_stream([stuck, fast], config=config, concurrency=2) as verdicts:
                async for v in verdicts:
                    return v.id

    assert anyio.run(main) == "fast"
