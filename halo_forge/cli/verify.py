"""`halo-forge verify`: samples JSONL in, one verdict per line out (resumable)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from halo_forge.argtypes import positive_int
from halo_forge.cli.cluster import add_ray_address, cluster_settings
from halo_forge.cli.flags import add_struct_flags
from halo_forge.errors import HaloError
from halo_forge.verify.config import VerifierConfig

# How far ahead of the oldest unwritten verdict the input may run, per worker: enough that a
# slow sample does not idle the others for long, little enough to bound what is held.
_REORDER_PER_WORKER = 8


def add_verifier_flags(parser: argparse.ArgumentParser) -> None:
    """--verifier and --concurrency, made from VerifierConfig (its defaults and help)."""
    add_struct_flags(parser, VerifierConfig, only=("verifier", "concurrency"),
                     types_={"concurrency": positive_int}, defaults=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser(
        "verify", help="compile and test samples in the sandbox, write one verdict per line",
        description="Read samples (JSONL: id, language, code or completion, io_tests, test_code; "
                    "ids unique) and write one verdict per line (same id) with status and reward. "
                    "Stopped part-way (Ctrl-C, SIGTERM, a kill), a rerun of the same command on "
                    "the same input keeps the verdicts already written and verifies the rest.",
    )
    verify.add_argument("input", metavar="INPUT.jsonl", help="samples, one JSON object per line")
    verify.add_argument("--out", required=True, metavar="VERDICTS.jsonl", help="where verdicts go")
    add_verifier_flags(verify)
    add_ray_address(verify)
    # From VerifierConfig; the two switches that turn a default off keep their seed spelling.
    add_struct_flags(verify, VerifierConfig, only=("cache_path", "compare", "float_tolerance"),
                     aliases={"cache_path": ("--cache",)}, defaults=True)
    verify.add_argument("--no-cache", action="store_true", help="verify repeated samples again")
    verify.add_argument("--no-pch", action="store_true", help="compile without the precompiled <bits/stdc++.h>")
    verify.set_defaults(handler=run_verify)


def read_samples(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, VerifySample) for each non-blank line; a HaloError naming the line for
    anything unreadable."""
    from halo_forge.data.jsonl import read_jsonl
    from halo_forge.verify.types import VerifySample

    return read_jsonl(path, VerifySample, what="a valid sample")


def run_verify(args: argparse.Namespace) -> int:
    import anyio
    import msgspec

    from halo_forge.cluster import open_verifier
    from halo_forge.paths import check_output_file
    from halo_forge.progress import Progress
    from halo_forge.verify.cache import VerdictCache
    from halo_forge.verify.in_order import InOrder
    from halo_forge.verify.partial import PartialVerdicts, resume_key
    from halo_forge.verify.runner import verify_indexed

    source, out = Path(args.input), Path(args.out)
    try:
        config = VerifierConfig(
            verifier=args.verifier, concurrency=args.concurrency, cache=not args.no_cache,
            cache_path=args.cache_path, pch=not args.no_pch, compare=args.compare,
            float_tolerance=args.float_tolerance,
        )
    except (ValueError, TypeError) as exc:
        raise HaloError(f"verify: {exc}") from None
    cluster = cluster_settings(args)
    check_output_file(out, what="verify --out", input_paths=[source])
    if config.cache and args.cache_path:
        check_output_file(args.cache_path, what="verify --cache", input_paths=[source, out])
    # Validate the whole input before any work, so a bad line 90,000 fails in a second.
    first_line: dict[str, int] = {}
    for number, sample in read_samples(source):
        seen = first_line.setdefault(sample.id, number)  # type: ignore[attr-defined]
        if seen != number:
            raise HaloError(f"{source}:{number}: duplicate id {sample.id!r} (also on line "  # type: ignore[attr-defined]
                            f"{seen}); give each sample its own id, or their verdicts cannot "
                            "be told apart")
        if sample.language is not None and sample.language not in config.languages:  # type: ignore[attr-defined]
            raise HaloError(f"{source}:{number}: sample is {sample.language} but --verifier "  # type: ignore[attr-defined]
                            f"{config.verifier} handles {', '.join(config.languages)}: use --verifier auto")
    total = len(first_line)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Verdicts are written in input order, so the partial file is always the verdicts of the
    # input's first lines and a rerun skips exactly that many samples.
    partial = PartialVerdicts(out, resume_key(source, config), list(first_line))
    del first_line
    encoder = msgspec.json.Encoder()
    counts: Counter[str] = Counter(v.status for v in partial.resumed)
    rewards = sum(v.reward for v in partial.resumed)
    resumed = len(partial.resumed)
    cache = VerdictCache(config.cache_path) if config.cache else None
    started = time.perf_counter()

    async def main(bar: Any) -> None:
        nonlocal rewards
        samples = itertools.islice((s for _, s in read_samples(source)), resumed, None)
        async with open_verifier(config, cluster, cache=cache) as verifier:
            order: InOrder[Any, Any] = InOrder(
                window=_REORDER_PER_WORKER * verifier.config.workers())
            async with verify_indexed(order.gate(samples), verifier=verifier) as pairs:
                async for index, verdict in pairs:
                    # Counted when written, so an interrupted run reports what it kept.
                    for due in order.put(index, verdict):
                        partial.append(encoder.encode(due) + b"\n")
                        counts[due.status] += 1
                        rewards += due.reward
                    bar.advance(1, status=f"{counts['passed']} passed")

    if resumed:
        print(f"verify: resuming: {resumed} of {total} verdicts kept from an interrupted run",
              file=sys.stderr)
    try:
        with (_sigterm_as_interrupt(),
              Progress(every_s=5.0).task("verify", total=total, completed=resumed) as bar):
            anyio.run(main, bar)
        partial.publish()
    except KeyboardInterrupt:
        print(f"verify: interrupted; {sum(counts.values())} of {total} verdicts kept in "
              f"{partial.path}: rerun the same command to continue", file=sys.stderr)
        raise
    finally:
        partial.close()
        if cache is not None:
            cache.close()
    elapsed = time.perf_counter() - started
    done = sum(counts.values())
    hits = cache.stats.hits if cache else 0
    lookups = cache.stats.lookups if cache else 0
    fresh = done - resumed
    print(f"verified {done} samples in {elapsed:.1f} s ({fresh / elapsed if elapsed else 0:.1f} samples/s"
          f"{f'; {resumed} resumed' if resumed else ''}); "
          f"mean reward {rewards / done if done else 0:.3f}; "
          f"cache hit rate {100 * hits / lookups if lookups else 0:.1f}% ({hits}/{lookups})")
    print("  " + "  ".join(f"{status} {n}" for status, n in counts.most_common()) if counts else "  (no samples)")
    if counts.get("sandbox_error"):
        print(f"  warning: {counts['sandbox_error']} sandbox errors (infrastructure, not the programs): "
              f"see `halo-forge sandbox check`", file=sys.stderr)
    print(f"  verdicts: {out}")
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run the way Ctrl-C does (in-flight runs cancelled and killed, verdicts
    kept for a rerun) instead of killing the process with its sandboxes mid-run. Re-raising it
    as SIGINT lets the event loop's own SIGINT handling cancel the work cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
