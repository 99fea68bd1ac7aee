"""`halo-forge cluster check`: the Ray cluster's nodes as the verifier would use them (workers,
slots, cores, sandbox protections, toolchain versions), and `--ray-address` for the commands
that verify."""

from __future__ import annotations

import argparse

from halo_forge.cli.parser import add_group

_FLAG = "--ray-address"


def add_ray_address(parser: argparse.ArgumentParser) -> None:
    """--ray-address, which overrides [cluster] address (its help is the setting's own)."""
    import msgspec

    from halo_forge.cli.flags import _unwrap
    from halo_forge.cluster.settings import ClusterSettings

    field = next(f for f in msgspec.structs.fields(ClusterSettings) if f.name == "address")
    parser.add_argument(_FLAG, dest="cluster.address", metavar="ADDRESS", default=None,
                        help=_unwrap(field.type)[1].replace("%", "%%")
                        + " (overrides [cluster] address)")


def ray_address(args: argparse.Namespace) -> str | None:
    """--ray-address as given, or None."""
    return getattr(args, "cluster.address", None)


def cluster_settings(args: argparse.Namespace, base=None):
    """`base` (default: ClusterSettings()) with --ray-address applied; a HaloError naming the
    flag when the address is not one."""
    import msgspec

    from halo_forge.cluster.settings import ClusterSettings
    from halo_forge.errors import HaloError

    base = base if base is not None else ClusterSettings()
    address = ray_address(args)
    if address is None:
        return base
    try:
        return msgspec.structs.replace(base, address=address)
    except ValueError as exc:
        raise HaloError(f"{_FLAG}: {exc}") from None


def register(subparsers) -> None:
    sub = add_group(subparsers, "cluster", help="verification on a Ray cluster")
    check = sub.add_parser(
        "check", help="list the cluster's nodes: workers, cores, sandbox, toolchains",
        description="Start the verifier workers on the Ray cluster as a run would and list each "
                    "node: workers, slots (samples verified at once), cores, the sandbox's "
                    "protections and the toolchain versions. Mixed toolchains are refused "
                    "(exit 2) unless --allow-mixed-toolchains.")
    add_ray_address(check)
    check.add_argument("--config", metavar="TOML",
                       help="a pipeline.toml whose [cluster] and [verifier] to use")
    check.add_argument("--allow-mixed-toolchains", action="store_true",
                       help="report mixed toolchains without refusing them")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    import anyio
    import msgspec

    from halo_forge.cluster.check import refuse_mixed_toolchains, table, toolchain_mismatch
    from halo_forge.cluster.verifier import RayVerifier
    from halo_forge.errors import HaloError
    from halo_forge.verify.config import VerifierConfig

    verifier_config, base = VerifierConfig(), None
    if args.config:
        from halo_forge.config import load_config

        config, _ = load_config(args.config)
        verifier_config, base = config.verifier, config.cluster
    settings = cluster_settings(args, base)
    if not settings.enabled:
        raise HaloError(f"cluster check: no cluster address: pass {_FLAG} (auto, local, "
                        "ray://host:10001 or host:6379) or set [cluster] address")
    if args.allow_mixed_toolchains:
        settings = msgspec.structs.replace(settings, allow_mixed_toolchains=True)

    async def reports():
        async with RayVerifier(verifier_config, settings, check_toolchains=False) as v:
            return v.reports

    found = anyio.run(reports)
    for line in table(found):
        print(line)
    why = toolchain_mismatch(found)
    print(f"toolchains: {'differ: ' + why if why else 'the same on every node'}")
    refuse_mixed_toolchains(found, allow=settings.allow_mixed_toolchains)
    return 0
