"""`halo-forge bench ...`: throughput benchmarks against a baseline measured in the same run."""

from __future__ import annotations

import argparse

from halo_forge.argtypes import positive_int
from halo_forge.cli.parser import add_group
from halo_forge.cli.verify import add_verifier_flags


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = add_group(subparsers, "bench",
                      help="throughput benchmarks against a baseline in the same run")
    p = bench.add_parser(
        "verify", help="verified samples/s vs a bare compiler loop on the same corpus",
        description="Measure the verifier (samples/s, p50/p99 latency, CPU) on a corpus against a plain "
                    "subprocess compile-and-run loop at the same concurrency, in the same run. "
                    "The baseline runs the corpus UNSANDBOXED: use trusted corpora only.",
    )
    p.add_argument("--corpus", default=None, metavar="CORPUS.jsonl",
                   help="samples to verify (default: the corpus shipped in examples/verify/)")
    add_verifier_flags(p)
    p.add_argument("--repeat", type=positive_int, default=3, metavar="K",
                   help="copies of each sample in the cached run (RAFT-style repeats; default 3)")
    p.add_argument("--rounds", type=positive_int, default=2, metavar="R",
                   help="alternate the bare loop and the plain verifier R times, keep each one's best (default 2)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from halo_forge.paths import check_output_file
    from halo_forge.verify.bench import run_benchmark

    if args.json:
        check_output_file(args.json, what="bench verify --json",
                          input_paths=[args.corpus] if args.corpus else ())
    return run_benchmark(corpus=args.corpus, verifier=args.verifier, concurrency=args.concurrency,
                         repeat=args.repeat, rounds=args.rounds, json_path=args.json)
