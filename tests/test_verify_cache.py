"""The verdict cache: keys, memory + sqlite, in-flight de-duplication, hit rate."""

from __future__ import annotations

import anyio
import pytest

from halo_forge.records import Verdict
from halo_forge.verify.cache import VerdictCache, cache_key


def _verdict(status="passed", reward=1.0):
    return Verdict(id="x", status=status, reward=reward, compiled=True)


def test_key_depends_on_every_part():
    base = cache_key("g++ 12", ("-O2",), "int main(){}", [])
    assert base == cache_key("g++ 12", ("-O2",), "int main(){}", [])
    assert base != cache_key("g++ 13", ("-O2",), "int main(){}", [])
    assert base != cache_key("g++ 12", ("-O0",), "int main(){}", [])
    assert base != cache_key("g++ 12", ("-O2",), "int main(){ }", [])
    assert base != cache_key("g++ 12", ("-O2",), "int main(){}", [{"stdin": "1"}])
    # parts are length-framed: moving a boundary changes the key
    assert cache_key("ab", "c") != cache_key("a", "bc")


def test_identical_work_done_once_even_when_concurrent():
    cache = VerdictCache()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return _verdict()

    results = []

    async def one():
        results.append(await cache.get_or_compute("k", compute))

    async def main():
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        results.append(await cache.get_or_compute("k", compute))

    anyio.run(main)
    assert calls == 1
    assert sorted(hit for _, hit in results) == [False] + [True] * 5
    assert cache.stats.lookups == 6 and cache.stats.hits == 5
    assert cache.stats.hit_rate == pytest.approx(5 / 6)


def test_sandbox_errors_are_not_cached():
    cache = VerdictCache()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        return _verdict("sandbox_error", 0.0)

    async def main():
        await cache.get_or_compute("k", compute)
        await cache.get_or_compute("k", compute)

    anyio.run(main)
    assert calls == 2 and cache.stats.hits == 0 and len(cache) == 0


def test_failed_computation_lets_a_waiter_retry():
    cache = VerdictCache()
    attempts = []

    async def compute():
        attempts.append(1)
        await anyio.sleep(0.02)
        if len(attempts) == 1:
            raise RuntimeError("boom")
        return _verdict()

    async def main():
        got = []

        async def first():
            with pytest.raises(RuntimeError):
                await cache.get_or_compute("k", compute)

        async def second():
            await anyio.sleep(0.005)
            got.append(await cache.get_or_compute("k", compute))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
        return got

    got = anyio.run(main)
    assert len(attempts) == 2 and got[0][0].status == "passed"


def test_disk_cache_survives_a_new_process(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    cache = VerdictCache(path)
    cache.put("k", _verdict(reward=0.75))
    cache.close()
    again = VerdictCache(path)
    got = again.get("k")
    assert got is not None and got.reward == 0.75
    assert again.get("other") is None


def test_corrupt_disk_cache_is_a_clear_error(tmp_path):
    from halo_forge.errors import HaloError

    path = tmp_path / "verdicts.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HaloError, match="verdicts.sqlite"):
        VerdictCache(path)
