"""`halo-forge sandbox check`: which protections are active here, and why any are not."""

from __future__ import annotations

from halo_forge.cli.parser import add_group


def register(subparsers) -> None:
    sub = add_group(subparsers, "sandbox", help="inspect the sandbox that verifies programs")
    check = sub.add_parser("check", help="list active protections and run a trivial program")
    check.add_argument("--strict", action="store_true",
                       help="exit 1 when any protection is off (default: report only)")
    check.set_defaults(handler=_check)


def _check(args) -> int:
    import anyio

    from halo_forge.sandbox import Limits, Sandbox

    async def probe(sb: Sandbox):
        with sb.workdir() as wd:
            return await sb.run(["true"], cwd=wd, limits=Limits(cpu_s=2, wall_s=10))

    with Sandbox(max_concurrency=1) as sb:
        prot = sb.protections()
        result = anyio.run(probe, sb)
    width = max(len(n) for n in prot)
    for name, reason in prot.items():
        print(f"{name:<{width}}  {'active' if reason is None else 'OFF: ' + reason}")
    off = [n for n, r in prot.items() if r is not None]
    if result.status != "ok":
        print(f"trivial run: {result.status} {result.error}".rstrip())
        return 1
    print(f"trivial run: ok ({result.wall_s * 1000:.1f} ms)")
    print(f"{len(prot) - len(off)}/{len(prot)} protections active")
    return 1 if (off and args.strict) else 0
