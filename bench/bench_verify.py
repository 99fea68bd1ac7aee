"""Verifier throughput against a bare compiler loop on the same corpus, in the same run.

    python bench/bench_verify.py [--corpus CORPUS.jsonl] [--concurrency N] [--repeat K]
    (the same as `halo-forge bench verify`)

Prints verified samples/s, p50/p99 latency and CPU seconds per sample for: a bare
subprocess compile+run loop; the verifier without cache or PCH (target >= 0.95x the bare
loop); with the precompiled <bits/stdc++.h>; and with the verdict cache on repeated samples.
"""

from __future__ import annotations

import sys

from halo_forge.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "verify", *sys.argv[1:]]))
