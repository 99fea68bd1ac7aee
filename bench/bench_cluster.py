"""Verification through Ray workers against this machine's verifier, in the same run (#16).

    python bench/bench_cluster.py [--programs N] [--rounds R] [--concurrency C]
                                  [--skip-local | --skip-nodes]

A c-torture-style corpus (small C programs that check their own arithmetic, bit tricks,
sorting and struct copies, abort() on a wrong result and print "ok"; each program distinct,
so no verdict cache helps), verified:
1. by the local Verifier and by a RayVerifier (`[cluster] address = "local"`: one worker with
   the same total concurrency C) alternately, R rounds each, best round kept; prints both
   rates and their ratio (target: Ray costs under 10% of throughput on one machine);
2. on a Ray cluster of single-CPU raylets (ray.cluster_utils, as Ray's own tests simulate
   nodes): one worker of concurrency 1, then a second node added and two; prints both rates
   and their ratio (target: near 2x where two cores are free).
Cache off, precompiled headers as configured (C uses none); every worker is warmed (sandbox
started, toolchains probed) before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import msgspec  # noqa: E402

from halo_forge.cluster.settings import ClusterSettings  # noqa: E402
from halo_forge.cluster.verifier import RayVerifier  # noqa: E402
from halo_forge.verify.config import VerifierConfig  # noqa: E402
from halo_forge.verify.runner import Verifier, verify_indexed  # noqa: E402
from halo_forge.verify.types import VerifySample  # noqa: E402

_TORTURE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct S { int a; long b; char c[12]; short d[3]; };
static int cmp(const void *x, const void *y) { return *(const int *)x - *(const int *)y; }
static unsigned rev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; i++) { r = (r << 1) | (x & 1u); x >>= 1; }
  return r;
}
static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(void) {
  long n = %(n)d, s = 0;
  for (long i = 0; i < n; i++) s += i;
  if (s != n * (n - 1) / 2) abort();
  unsigned x = %(seed)uu;
  if (rev(rev(x)) != x) abort();
  int v[%(len)d];
  for (int i = 0; i < %(len)d; i++) v[i] = (int)((x * (unsigned)(i + 7)) %% 1000u);
  qsort(v, %(len)d, sizeof v[0], cmp);
  for (int i = 1; i < %(len)d; i++) if (v[i - 1] > v[i]) abort();
  struct S a = {%(seed)d, %(n)dL, "torture", {1, 2, 3}}, b;
  memcpy(&b, &a, sizeof a);
  if (b.a != a.a || b.b != a.b || strcmp(b.c, "torture") || b.d[2] != 3) abort();
  if (fib(%(fib)d) <= 0) abort();
  puts("ok");
  return 0;
}
"""


def corpus(programs: int) -> list[VerifySample]:
    return [msgspec.convert({"id": f"torture-{k}", "language": "c",
                             "code": _TORTURE % {"n": 1000 + k, "seed": 7919 * (k + 1) % 100003,
                                                 "len": 16 + k % 48, "fib": 18 + k % 5},
                             "io_tests": [{"stdin": "", "stdout": "ok\n"}]}, VerifySample)
            for k in range(programs)]


async def _rate(verifier, samples: list[VerifySample]) -> tuple[float, int]:
    passed = 0
    start = time.perf_counter()
    async with verify_indexed(samples, verifier=verifier) as pairs:
        async for _, verdict in pairs:
            passed += verdict.status == "passed"
    return len(samples) / (time.perf_counter() - start), passed


async def _warm(verifier, n: int) -> None:
    warm = [msgspec.structs.replace(s, id=f"warm-{i}") for i, s in enumerate(corpus(n))]
    await _rate(verifier, warm)


def _best(rates: list[float]) -> str:
    return "best of " + ", ".join(f"{r:.2f}" for r in rates)


async def local_vs_ray(samples, config, rounds: int) -> None:
    c = config.workers()
    settings = ClusterSettings(address="local", workers_per_node=1, concurrency_per_worker=c)
    local_rates, ray_rates = [], []
    async with Verifier(config) as local, RayVerifier(config, settings) as remote:
        assert remote.config.workers() == c
        await _warm(local, c)
        await _warm(remote, c)
        for _ in range(rounds):
            rate, ok_local = await _rate(local, samples)
            local_rates.append(rate)
            rate, ok_ray = await _rate(remote, samples)
            ray_rates.append(rate)
    lo, ra = max(local_rates), max(ray_rates)
    print(f"local verifier, concurrency {c}:          {lo:7.2f} samples/s ({_best(local_rates)}; "
          f"{ok_local}/{len(samples)} passed)")
    print(f"ray, 1 worker x {c} (address = local):    {ra:7.2f} samples/s ({_best(ray_rates)}; "
          f"{ok_ray}/{len(samples)} passed)")
    print(f"ray / local: {ra / lo:.3f}x (Ray's cost: {100 * (1 - ra / lo):.1f}% of throughput)")


async def _workers_rate(address: str, config, samples, rounds: int, expect: int) -> list[float]:
    settings = ClusterSettings(address=address, concurrency_per_worker=1)
    rates = []
    async with RayVerifier(config, settings) as remote:
        assert len(remote.live_workers()) == expect, remote.reports
        await _warm(remote, 2 * expect)
        for _ in range(rounds):
            rates.append((await _rate(remote, samples))[0])
    return rates


# A new raylet's start-up (its prestarted Python workers importing Ray) takes cores for a few
# seconds: not what is measured.
_SETTLE_S = 5.0


def one_vs_two(samples, config, rounds: int) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        time.sleep(_SETTLE_S)
        one = anyio.run(_workers_rate, cluster.address, config, samples, rounds, 1)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        time.sleep(_SETTLE_S)
        two = anyio.run(_workers_rate, cluster.address, config, samples, rounds, 2)
    finally:
        cluster.shutdown()
    print(f"1 single-core worker:   {max(one):7.2f} samples/s ({_best(one)})")
    print(f"2 single-core workers:  {max(two):7.2f} samples/s ({_best(two)})")
    print(f"2 / 1 workers: {max(two) / max(one):.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=40, help="corpus size")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side; best kept")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="total concurrency of both sides (default: the cores)")
    parser.add_argument("--skip-nodes", action="store_true", help="only local vs ray")
    parser.add_argument("--skip-local", action="store_true", help="only 1 vs 2 workers")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    samples = corpus(args.programs)
    config = VerifierConfig(verifier="gcc", concurrency=args.concurrency, cache=False)
    print(f"bench cluster: {len(samples)} c-torture-style programs, {os.cpu_count()} cores, "
          f"{args.rounds} rounds each")
    if not args.skip_local:
        anyio.run(local_vs_ray, samples, config, args.rounds)
    if not args.skip_nodes:
        one_vs_two(samples, config, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
